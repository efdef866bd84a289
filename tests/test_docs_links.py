"""The pages a reader follows stay inside the repository: no link or path to a folder beside it,
and every "docs/method.md §N" that code, notebooks and docs cite names a section that exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "notebooks" / "README.md"]
SOURCES = [*sorted((ROOT / "sgopd_lite").rglob("*.py")), *sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))]
# The result pages and their generators (study/worlds_report.py, study/report.py) still cite the
# spec by its old file name; they change with the next regeneration of those pages.
GENERATED = {"results.md", "results_first_study.md", "worlds_report.py", "report.py"}


def _sections() -> dict[str, str]:
    """{number: GitHub anchor} of docs/method.md's numbered sections."""
    out = {}
    for title in re.findall(r"^## (\d+\. .+)$", (ROOT / "docs" / "method.md").read_text(), re.M):
        anchor = re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
        out[title.split(".")[0]] = anchor
    return out


def test_no_page_sends_a_reader_outside_the_repository():
    for page in PAGES:
        text = page.read_text()
        assert "../shared" not in text, page
        if page.name not in GENERATED:
            assert "METHOD.md" not in text, page
    for src in SOURCES:
        text = src.read_text()
        assert "../shared" not in text, src
        if src.name not in GENERATED:
            assert "METHOD.md" not in text and "METHOD §" not in text, src


def test_every_cited_section_of_method_md_exists():
    sections = _sections()
    assert sorted(sections, key=int) == [str(i) for i in range(1, len(sections) + 1)]   # numbered 1..n, no gap
    cited = 0
    for path in [*PAGES, *SOURCES]:
        for first, second in re.findall(r"method\.md §(\d+)(?:-(\d+))?", path.read_text()):
            assert first in sections and (not second or second in sections), (path, first, second)
            cited += 1
        for number, anchor in re.findall(r"method\.md §(\d+)\]\(\.\./docs/method\.md#([\w-]+)\)", path.read_text()):
            assert sections[number] == anchor, (path, number, anchor)
    assert cited > 20
