"""Accuracy per skill: arithmetic problems labelled carry / borrow / both / none, and every
evaluation reporting one row per skill next to avg@n and pass@k."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sgopd_lite.data import SKILLS, Problem, arithmetic_split, skill_of
from sgopd_lite.evaluate import per_skill_accuracy

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("question, skill", [
    ("12+5", "none"), ("17+5", "carry"), ("15-7", "borrow"), ("15-4", "none"),
    ("17+5-9", "both"),          # 22 carries, then 22-9 borrows
    ("13-5+9", "borrow"),        # 8+9 = 17 carries? units 8+9 = 17: yes -> both
    ("3-12", "none"),            # a negative result is not a borrow of the written algorithm
])
def test_skill_labels_follow_the_left_to_right_solution(question, skill):
    if question == "13-5+9":
        skill = "both"
    assert skill_of(question) == skill


def test_questions_that_are_not_arithmetic_have_no_label():
    assert skill_of("What is the smallest prime larger than 10?") is None
    assert skill_of("2*x+1") is None


def test_the_held_out_split_keeps_its_skill_counts():
    counts = {s: 0 for s in SKILLS}
    for p in arithmetic_split("eval"):
        counts[skill_of(p.question)] += 1
    assert counts == {"carry": 65, "borrow": 28, "both": 11, "none": 152}


def test_per_skill_accuracy_is_avg_at_n_within_each_label():
    problems = [Problem(str(i), q, "0") for i, q in enumerate(["17+5", "18+3", "15-7", "1+1", "x"])]
    out = per_skill_accuracy(problems, [2, 0, 1, 2, 2], n=2)
    assert out == {"carry": {"avg": 0.5, "problems": 2}, "borrow": {"avg": 0.5, "problems": 1},
                   "none": {"avg": 1.0, "problems": 1}}
    assert list(out) == [s for s in SKILLS if s in out]           # SKILLS order


def test_eval_cli_prints_one_row_per_skill(tmp_path):
    out = tmp_path / "res.json"
    proc = subprocess.run([sys.executable, "-m", "sgopd_lite", "eval", "--model", "tiny-student", "--n", "2",
                           "--limit", "40", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| skill | problems | avg@2 |" in proc.stdout
    per_skill = json.loads(out.read_text())["per_skill"]
    for skill, v in per_skill.items():
        assert f"| {skill} | {v['problems']} | {v['avg']:.3f} |" in proc.stdout
    assert sum(v["problems"] for v in per_skill.values()) == 40


def test_the_trainers_evaluation_logs_each_skill(tmp_path, char_tokenizer):
    from conftest import make_tiny_world
    from sgopd_lite.config import TrainConfig
    from sgopd_lite.train import Trainer

    world = make_tiny_world(char_tokenizer, n_eval=30)
    cfg = TrainConfig(method="opd", steps=1, prompts_per_step=2, group_size=2, max_new_tokens=8, eval_every=0,
                      eval_problems=30, eval_n=2, save_every=0, log_rollouts=0, out_dir=str(tmp_path / "run"))
    m = Trainer(cfg, world=world, verbose=False).evaluate()
    counts = {s: m[f"eval_problems_{s}"] for s in SKILLS if f"eval_problems_{s}" in m}
    assert sum(counts.values()) == 30 and len(counts) >= 2
    for s in counts:
        assert 0.0 <= m[f"eval_avg@2_{s}"] <= 1.0


def test_the_skill_balanced_split_has_64_of_each_skill_and_no_shared_question():
    balanced = arithmetic_split("eval_skills")
    counts = {s: 0 for s in SKILLS}
    for p in balanced:
        counts[skill_of(p.question)] += 1
    assert counts == {s: 64 for s in SKILLS}
    seen = {p.question for p in arithmetic_split("eval")} | {p.question for p in arithmetic_split("train")}
    assert not seen & {p.question for p in balanced}
    assert len({p.question for p in balanced}) == 256


def test_regenerating_the_splits_gives_the_committed_files(tmp_path):
    from sgopd_lite.data import DATA_DIR, regenerate_splits

    for name, path in regenerate_splits(tmp_path).items():
        assert path.read_bytes() == (DATA_DIR / path.name).read_bytes(), name


def test_a_run_can_evaluate_on_a_split_by_name():
    from sgopd_lite.config import TrainConfig
    from sgopd_lite.worlds.base import problem_sets

    cfg = TrainConfig(world={"eval_data": "eval_skills"})
    assert [p.question for p in problem_sets(cfg.world)[1]] == [p.question for p in arithmetic_split("eval_skills")]


def test_skill_table_has_one_column_per_skill_and_reads_trainer_metrics():
    from sgopd_lite.evaluate import skill_table, skills_from_metrics

    m = {"eval_avg@8_carry": 0.25, "eval_avg@8_none": 0.75, "eval_avg@8": 0.5}
    assert skills_from_metrics(m, 8) == {"carry": 0.25, "none": 0.75}
    table = skill_table({"opd": skills_from_metrics(m, 8)}, {"carry": 65, "borrow": 28, "none": 152}, 8)
    assert table.splitlines()[0] == "| model (avg@8) | carry (65) | borrow (28) | none (152) |"
    assert table.splitlines()[2] == "| opd | 0.250 | - | 0.750 |"
