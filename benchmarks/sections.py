"""docs/benchmarks.md is written by several scripts: each replaces its own ``## `` section.

A section may end in prose written by hand (what the numbers mean, other runs' ranges):
everything from the line :data:`KEPT` on is kept when the script writes the section again.
"""

from pathlib import Path

PAGE_TITLE = "# Benchmarks\n"
#: the line after which a section's text is written by hand and kept by :func:`write_section`
KEPT = "<!-- written by hand from here on: kept when the section is regenerated -->"


def write_section(path, title, body):
    """Put ``## title`` with ``body`` into the markdown file at ``path``, keeping other sections
    and the section's own text from the line :data:`KEPT` on."""
    path = Path(path)
    text = path.read_text() if path.exists() else PAGE_TITLE
    heading = f"## {title}\n"
    sections = text.split("\n## ")
    head, rest = sections[0], [f"## {section}" for section in sections[1:]]
    new = f"{heading}\n{body.strip()}\n"
    for index, section in enumerate(rest):
        if section.startswith(heading):
            _, marker, kept = section.partition(f"\n{KEPT}\n")
            rest[index] = f"{new}\n{KEPT}\n{kept}" if marker else new
            break
    else:
        rest.append(new)
    path.write_text(
        "\n".join([head.rstrip() + "\n", *[section.rstrip() + "\n" for section in rest]])
    )
