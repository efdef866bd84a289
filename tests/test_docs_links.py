"""The pages a reader follows stay inside the repository.

A reader of this repository has docs/method.md as its method page; the upstream specification it
was written from, and the project's tracker of work items, are not theirs to open. Every page they
can open is scanned, the generated ones with no exemption: README.md; docs/**, including
docs/results.md and docs/results_first_study.md (written by `python -m sgopd_lite report`) and the
executed notebooks in docs/notebooks/; notebooks/ (the .py sources, the paired .ipynb and the
README); every .py file of sgopd_lite/, tests/ and benchmarks/ (docstrings, comments and the text
that generators write); configs/**/*.yaml (the study files' comments); results/**/*.md (sweep
reports). On each page:

* no path into a folder beside the repository;
* no citation of the upstream specification by its file name in any form (the name in capitals
  followed by ".md", by a section sign or by the word "section");
* every section sign belongs to a citation of docs/method.md, such as "docs/method.md §4",
  "method.md §3, §5" or "method.md §3-5"; only docs/method.md itself cites its sections bare;
* no pointer into the tracker (a phrase such as the <name> issue, a numbered issue, the word's
  possessive): a page says what the rule is, or names the study file that fixed it;

and every section of docs/method.md that a page cites, by number or by link, exists.

This file passes its own check: its patterns spell the section sign as \\u00a7, and the planted
bad phrases of the checker's own tests are built from pieces.
"""

import html
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTION = "\u00a7"

# the upstream specification by its file name: the name followed by ".md", a section sign or "section"
SPEC = re.compile(r"\bMETHOD(?:\.md\b|\s*\u00a7|\s+sections?\b)")
# a citation of docs/method.md, with its list of sections: "method.md §3", "method.md §3-5",
# "method.md §3, §5", "method.md §2 and §5" (and "method.md §N", which states the rule)
CITATION = re.compile(r"method\.md\s\u00a7(?:\d+|N)(?:-\d+)?(?:(?:,|\s+and|\s+or|,\s+and)\s+\u00a7\d+(?:-\d+)?)*")
BARE = re.compile(r"\u00a7\d+(?:-\d+)?")            # inside docs/method.md
# the tracker: "the" and the word (one word between allowed), its possessive, a number after it,
# or a colon after it
TRACKER = re.compile(r"\bthe\s+(?:[\w/-]+\s+)?issue\b|\bissue's\b|\bissues?\s*#?\d|\bissue\s*:", re.I)
# a link to a section of docs/method.md, with the number it shows: markdown (also the bare
# "(#4-...)" links inside docs/method.md) and the HTML of the executed notebooks
LINKED = [re.compile(r"\u00a7(\d+)\]\((?:[^)\s#]*method\.md)?#([\w-]+)\)"),
          re.compile(r"href=\"[^\"]*method\.md#([\w-]+)\">[^<]*\u00a7(\d+)<")]
ANCHOR = re.compile(r"method\.md#([\w-]+)")
OUTSIDE = re.compile(r"\.\./shared\b")                  # the folder beside the checkout


def pages(root: Path = ROOT) -> list[Path]:
    """Every page a reader of the checkout at `root` can open, generated ones included."""
    out = [root / "README.md", root / "Makefile", root / "pyproject.toml", root / "environment.yml"]
    out += sorted(p for p in (root / "docs").rglob("*") if p.suffix in (".md", ".html"))
    out += sorted(p for p in (root / "notebooks").glob("*") if p.suffix in (".py", ".ipynb", ".md"))
    for folder in ("sgopd_lite", "tests", "benchmarks"):
        out += sorted((root / folder).rglob("*.py"))
    out += sorted(p for p in (root / "configs").rglob("*") if p.suffix in (".yaml", ".yml"))
    out += sorted((root / "results").rglob("*.md"))
    return [p for p in out if p.is_file()]


def text_of(path: Path) -> str:
    """What a reader sees: a notebook's cell sources, an HTML page with its entities decoded."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        return "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
    if path.suffix == ".html":
        return html.unescape(text)
    return text


def sections(root: Path = ROOT) -> dict[str, str]:
    """{number: GitHub anchor} of docs/method.md's numbered sections."""
    out = {}
    for title in re.findall(r"^## (\d+\. .+)$", (root / "docs" / "method.md").read_text(), re.M):
        anchor = re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
        out[title.split(".")[0]] = anchor
    return out


def _numbers(match: re.Match) -> list[str]:
    """The section numbers a CITATION or BARE match names ("3-5" gives 3 and 5; not the rule's N)."""
    return [n for n in re.findall(r"\d+|N", match.group()[match.group().index(SECTION):]) if n.isdigit()]


def cited_numbers(text: str, method_page: bool = False) -> list[str]:
    """Every section number of docs/method.md that `text` cites."""
    found = [*CITATION.finditer(text), *(BARE.finditer(text) if method_page else ())]
    return [n for m in found for n in _numbers(m)]


def problems(text: str, name: str, method_page: bool = False, known: dict[str, str] | None = None) -> list[str]:
    """What is wrong with one page's text, one problem each ("name:line: why: the line"). The
    patterns run over the whole text, so a phrase broken across two lines is found too."""
    known = sections() if known is None else known
    anchors = set(known.values())
    lines = text.split("\n")
    out = []

    def say(pos: int, why: str) -> None:
        number = text.count("\n", 0, pos) + 1
        out.append(f"{name}:{number}: {why}: {lines[number - 1].strip()[:160]}")

    for m in OUTSIDE.finditer(text):
        say(m.start(), "a path outside the repository")
    for m in SPEC.finditer(text):
        say(m.start(), "cites the upstream specification; cite docs/method.md instead")
    for m in TRACKER.finditer(text):
        say(m.start(), "points into the tracker of work items, which readers do not see; say what the rule is")
    blank = lambda m: re.sub(r"[^\n]", " ", m.group())             # same length, same line breaks
    rest = CITATION.sub(blank, text)
    for m in re.finditer(SECTION, BARE.sub(blank, rest) if method_page else rest):
        say(m.start(), "a section sign that is not a docs/method.md citation")
    for m in [*CITATION.finditer(text), *(BARE.finditer(text) if method_page else ())]:
        for n in _numbers(m):
            if n not in known:
                say(m.start(), f"docs/method.md has no section {n}")
    for m in ANCHOR.finditer(text):
        if m.group(1) not in anchors:
            say(m.start(), f"docs/method.md has no section with the anchor #{m.group(1)}")
    for m in LINKED[0].finditer(text):
        if known.get(m.group(1)) != m.group(2):
            say(m.start(), f"the link of section {m.group(1)} goes to #{m.group(2)}")
    for m in LINKED[1].finditer(text):
        if known.get(m.group(2)) != m.group(1):
            say(m.start(), f"the link of section {m.group(2)} goes to #{m.group(1)}")
    return out


def problems_in(path: Path, root: Path = ROOT, known: dict[str, str] | None = None) -> list[str]:
    method_page = path == root / "docs" / "method.md"
    return problems(text_of(path), str(path.relative_to(root)), method_page, known)


def all_problems(root: Path = ROOT) -> list[str]:
    """Every problem of every page of the checkout at `root` (a test can point it at another)."""
    known = sections(root)
    return [p for path in pages(root) for p in problems_in(path, root, known)]


# ---------------------------------------------------------------- the repository

def test_the_generated_pages_are_scanned_too():
    names = {str(p.relative_to(ROOT)) for p in pages()}
    for must in ("README.md", "docs/method.md", "docs/results.md", "docs/results_first_study.md",
                 "docs/notebooks/README.md", "docs/notebooks/03_sign_gate.html", "notebooks/03_sign_gate.py",
                 "notebooks/03_sign_gate.ipynb", "notebooks/README.md", "sgopd_lite/study/worlds_report.py",
                 "tests/test_gate.py", "benchmarks/bench_probe.py", "configs/studies/pts_a1g.yaml"):
        assert must in names, must


def test_no_page_sends_a_reader_outside_the_repository():
    found = all_problems()
    assert not found, "\n".join(found)


def test_method_md_is_numbered_and_pages_cite_it():
    known = sections()
    assert sorted(known, key=int) == [str(i) for i in range(1, len(known) + 1)]   # numbered 1..n, no gap
    cited = sum(len(cited_numbers(text_of(p))) for p in pages())
    assert cited > 20


# ---------------------------------------------------------------- the checker itself

SPEC_NAME = "METH" + "OD"                   # pieces, so that this file passes its own check
ISSUE = "iss" + "ue"
S = SECTION


@pytest.mark.parametrize("line", [
    f"For comparison ({SPEC_NAME}.md {S}10): the paper reports",
    f"Conflict tokens (teacher and verifier disagree, {SPEC_NAME} {S}4)",
    f"see {SPEC_NAME} section 6",
    f"cells ({S}4), phased teacher sampling ({S}6)",
    f"docs/method.md {S}3 and then {S}5 later",                     # not a list: "and then"
    f"seeds 0-1 (the {ISSUE}'s first cut: 2 seeds)",
    f"The trainer {ISSUE}'s target is +10 points",
    f"what the models/data {ISSUE} expected",
    f"# {ISSUE.title()} 15, part 2: the thresholds",
    f"({ISSUE}: on-policy in every configuration)",
    f"see the {ISSUE} tracker",
    "a page of ../" + "shared/docs",
    f"the opposite of what the\n{ISSUE} expected",                # broken across two lines
    f"as in {SPEC_NAME}\n{S}4",
    f"docs/method.md {S}99",                                        # no such section
    f"[docs/method.md {S}3](../docs/method.md#4-the-sign-consistency-gate)",   # link to another one
])
def test_the_checker_refuses(line):
    assert problems(line, "page") != []


@pytest.mark.parametrize("line", [
    f"docs/method.md {S}3, {S}5, {S}6",
    f"the gate (method.md {S}3-5) and the verifier (method.md {S}2 and {S}5)",
    f"[docs/method.md {S}3](../docs/method.md#3-the-two-signals)",
    f'<a href="../docs/method.md#4-the-sign-consistency-gate">docs/method.md {S}4</a>',
    "METHODS = (\"opd\", \"sgopd\")",                               # a name, not the specification
    "the peers' issue trackers are full of such runs",
    "a cut that configs/studies/pts_a1g.yaml fixed before the study ran",
    f"the losses (docs/method.md {S}3,\n{S}5)",                      # a list broken across two lines
])
def test_the_checker_accepts(line):
    assert problems(line, "page") == []


def test_bare_sections_are_allowed_in_method_md_only():
    line = f"its tokens are neutral ([{S}4](#4-the-sign-consistency-gate)), as in {S}3"
    assert problems(line, "docs/method.md", method_page=True) == []
    assert problems(line, "docs/usage.md") != []
    assert problems(f"see {S}99", "docs/method.md", method_page=True) != []    # no such section


def test_a_planted_generated_page_citing_the_specification_fails(tmp_path):
    """A results page and an executed notebook as a generator would write them, citing the
    specification: the same functions that scan the repository refuse them, and the clean
    versions pass."""
    docs = tmp_path / "docs"
    (docs / "notebooks").mkdir(parents=True)
    (docs / "method.md").write_text((ROOT / "docs" / "method.md").read_text())
    bad = f"The OPDVR numbers come from a reading note of that paper ({SPEC_NAME}.md {S}10).\n"
    (docs / "results.md").write_text("# Results\n\n" + bad)
    cell = {"cell_type": "markdown", "metadata": {}, "source": ["as in ", f"{SPEC_NAME} {S}4"]}
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "01_x.ipynb").write_text(json.dumps({"cells": [cell]}))
    (docs / "notebooks" / "01_x.html").write_text(f"<p>as in {SPEC_NAME} &sect;4</p>")
    assert {p.name for p in pages(tmp_path)} == {"method.md", "results.md", "01_x.ipynb", "01_x.html"}
    found = all_problems(tmp_path)
    refused = {f.split(":")[0] for f in found if "upstream specification" in f}
    assert refused == {"docs/results.md", "notebooks/01_x.ipynb", "docs/notebooks/01_x.html"}, found
    (docs / "results.md").write_text(bad.replace(f"{SPEC_NAME}.md", "docs/method.md"))
    (docs / "notebooks" / "01_x.html").write_text("<p>as in docs/method.md &sect;4</p>")
    cell["source"] = ["as in ", f"docs/method.md {S}4"]
    (tmp_path / "notebooks" / "01_x.ipynb").write_text(json.dumps({"cells": [cell]}))
    assert all_problems(tmp_path) == []
