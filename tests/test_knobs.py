"""The knob table of docs/usage.md is generated from the config dataclasses (sgopd_lite/knobs.py)
and must not drift from them."""

import dataclasses
import shutil
from pathlib import Path

from sgopd_lite.__main__ import main
from sgopd_lite.config import _NESTED, TrainConfig
from sgopd_lite.gate import GateConfig
from sgopd_lite.knobs import field_comments, knob_table, table_in, write_knob_table

USAGE = Path(__file__).resolve().parents[1] / "docs" / "usage.md"


def test_docs_usage_holds_the_table_the_dataclasses_give():
    assert table_in(USAGE) == knob_table(), "run `python -m sgopd_lite knobs --write docs/usage.md`"


def test_every_knob_has_a_row_with_a_meaning():
    table = knob_table()
    keys = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _NESTED]
    keys += [f"{g}.{f.name}" for g, cls in _NESTED.items() for f in dataclasses.fields(cls)]
    for key in keys:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{key}` |"))
        assert row.split(" | ")[-1].strip(" |"), f"{key} has no comment in its dataclass"


def test_comments_continue_on_indented_lines_and_a_topic_line_belongs_to_no_field():
    notes = field_comments(GateConfig)
    assert notes["truncated"].endswith('"wrong" (r = 0) or "neutral" (a1 = 0, no evidence)')
    assert "four cells" not in notes["truncated"]              # the comment line above correct_up
    assert notes["correct_up"] == "a1 > 0, a2 > 0: consensus on a correct rollout"


def test_the_command_writes_the_table_between_its_markers(tmp_path, capsys):
    page = tmp_path / "usage.md"
    shutil.copy(USAGE, page)
    text = page.read_text()
    stale = text.replace(table_in(USAGE), "| `steps` | `1` | old |")
    page.write_text(stale)
    assert main(["knobs", "--write", str(page)]) == 0 and "rewrote" in capsys.readouterr().out
    assert page.read_text() == text
    assert write_knob_table(page) is False
    assert main(["knobs"]) == 0 and capsys.readouterr().out.strip() == knob_table()


def test_every_method_has_a_row_in_docs_usage():
    from sgopd_lite.config import METHODS

    text = USAGE.read_text()
    assert [m for m in METHODS if f"\n| `{m}` |" not in text] == []
