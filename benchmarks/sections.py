"""docs/benchmarks.md is written by several scripts: each replaces its own ``## `` section."""

from pathlib import Path

PAGE_TITLE = "# Benchmarks\n"


def write_section(path, title, body):
    """Put ``## title`` with ``body`` into the markdown file at ``path``, keeping other sections."""
    path = Path(path)
    text = path.read_text() if path.exists() else PAGE_TITLE
    heading = f"## {title}\n"
    sections = text.split("\n## ")
    head, rest = sections[0], [f"## {section}" for section in sections[1:]]
    new = f"{heading}\n{body.strip()}\n"
    for index, section in enumerate(rest):
        if section.startswith(heading):
            rest[index] = new
            break
    else:
        rest.append(new)
    path.write_text(
        "\n".join([head.rstrip() + "\n", *[section.rstrip() + "\n" for section in rest]])
    )
