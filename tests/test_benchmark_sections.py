"""benchmarks/sections.py: a script rewrites its own section of docs/benchmarks.md only."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from sections import KEPT, PAGE_TITLE, write_section  # noqa: E402


def test_a_rewritten_section_keeps_the_other_sections_and_its_own_hand_written_prose(tmp_path):
    page = tmp_path / "benchmarks.md"
    write_section(page, "A", "| a | 1 |")
    write_section(page, "B", "| b | 1 |")
    text = page.read_text().replace("| a | 1 |\n", f"| a | 1 |\n\n{KEPT}\nWhat a means.\n")
    page.write_text(text)
    write_section(page, "A", "| a | 2 |")
    write_section(page, "B", "| b | 2 |")
    assert page.read_text() == (
        f"{PAGE_TITLE}\n## A\n\n| a | 2 |\n\n{KEPT}\nWhat a means.\n\n## B\n\n| b | 2 |\n"
    )
