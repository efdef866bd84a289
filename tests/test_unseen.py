"""Evaluation no model has seen: the replay of each committed tiny model's SFT draws, the
`eval_unseen` split, the build rule for later models, the second held-out set in a run, and the
starting-model measurement's arithmetic."""

import dataclasses
import itertools
import json
import math
import random

import pytest

from conftest import make_tiny_world
from sgopd_lite.config import TrainConfig
from sgopd_lite.data import SKILLS, arithmetic_split, expression_text, parse_expression, skill_of
from sgopd_lite.worlds import tiny
from sgopd_lite.worlds.base import unseen_set


def _questions(split):
    return {p.question for p in arithmetic_split(split)}


def test_replay_finds_the_committed_models_overlap_with_eval_skills():
    """The review's count, from the builds' own random streams: 211 of the 256 skill-balanced
    problems were in every committed teacher's SFT data, 163 in every committed student's."""
    models = tiny.committed_models()
    assert set(models) == tiny.EARLY_KEYS
    skills = _questions("eval_skills")
    per_skill = {"teacher": {"carry": 58, "borrow": 53, "both": 43, "none": 57}}
    for key, (cfg, role) in models.items():
        overlap = tiny.sft_seen(cfg, role) & skills
        assert len(overlap) == {"teacher": 211, "student": 163}[role], key
        if role in per_skill:
            assert {s: sum(skill_of(q) == s for q in overlap) for s in SKILLS} == per_skill[role]
        assert not tiny.sft_seen(cfg, role) & _questions("eval"), key   # the one split they skipped


def test_replay_follows_the_same_stream_as_the_build():
    """sft_questions reads the draws sft_train trains on: the first batches agree question by question."""
    cfg = tiny.TinyWorldConfig(**tiny.SETTINGS["A2 complementary"])
    for role in ("teacher", "student"):
        draws = tiny.sft_draws(random.Random(f"{cfg.seed}-{role}"), cfg, role, _questions("eval"))
        batches = [q for _ in range(3) for q, _ in tiny.sft_examples(draws, cfg.batch_size, cfg, role)]
        assert tiny.sft_questions(cfg, role)[:len(batches)] == batches


def test_eval_unseen_is_disjoint_from_every_models_sft_data_and_every_other_split():
    unseen = arithmetic_split("eval_unseen")
    questions = [p.question for p in unseen]
    assert len(set(questions)) == len(questions) == 256
    assert {s: sum(skill_of(q) == s for q in questions) for s in SKILLS} == {s: 64 for s in SKILLS}
    for key, (cfg, role) in tiny.committed_models().items():
        assert not set(questions) & tiny.sft_seen(cfg, role), key
    for split in ("train", "eval", "eval_skills"):
        assert not set(questions) & _questions(split), split
    # every two-operand question was drawn while the models were built: all of these have three
    assert all(len(parse_expression(q)[0]) == 3 for q in questions)
    for p in unseen:                               # gold answers are the arithmetic's
        operands, ops = parse_expression(p.question)
        assert int(p.answer) == eval(p.question)   # noqa: S307 (digits and +/- only)


def test_committed_eval_unseen_is_what_the_generator_writes(tmp_path):
    problems, counts = tiny.unseen_problems()
    assert [p.question for p in problems] == [p.question for p in arithmetic_split("eval_unseen")]
    assert all(counts[s] >= 64 for s in SKILLS)           # each skill has more than it takes
    path = tiny.write_unseen_split(tmp_path / "u.jsonl")
    assert path.read_text() == (tiny.DATA_DIR / "arith_eval_unseen.jsonl").read_text()


def test_all_questions_enumerates_the_task():
    task = tiny.ArithmeticTask()
    got = list(tiny.all_questions(task))
    assert len(got) == len(set(got)) == 20 * 20 * 2 + 20 ** 3 * 4
    rng = random.Random(3)
    drawn = {expression_text(*tiny.sample_expression(rng, task)) for _ in range(500)}
    assert drawn <= set(got)


def test_later_builds_skip_every_evaluation_split_and_committed_keys_stay():
    for name in ("both hold", "A1 graded", "A2 shared", "A2 complementary", "both broken"):
        cfg = tiny.TinyWorldConfig(**tiny.SETTINGS[name])
        for role in ("teacher", "student"):
            assert tiny.role_key(cfg, role) in tiny.EARLY_KEYS
            assert tiny.sft_exclusion(cfg, role) == ("eval",)
    new = tiny.TinyWorldConfig(teacher_noise=0.5)
    assert tiny.role_key(new, "teacher") not in tiny.EARLY_KEYS
    assert tiny.role_key(new, "teacher") != tiny._early_key(new, "teacher")   # the recipe changed, so does the key
    assert tiny.sft_exclusion(new, "teacher") == tiny.EVALUATION_SPLITS
    held = set().union(*(_questions(s) for s in tiny.EVALUATION_SPLITS))
    seen = tiny.sft_seen(new, "teacher")
    assert len(seen) > 20000 and not seen & held
    # the default student is committed and reused by the new world: its recipe is unchanged
    assert tiny.role_key(new, "student") == "student-89dc05f5b0"


def test_unseen_set_follows_the_world_section():
    w = TrainConfig().world
    assert [p.question for p in unseen_set(w)] == [p.question for p in arithmetic_split("eval_unseen")]
    assert unseen_set(dataclasses.replace(w, eval_unseen=None)) == []
    assert unseen_set(dataclasses.replace(w, size="smol")) == []            # auto: the tiny world only
    assert unseen_set(dataclasses.replace(w, eval_data="eval_unseen")) == []  # already the first set
    assert len(unseen_set(dataclasses.replace(w, eval_unseen="eval_skills"))) == 256


def test_second_held_out_set_is_scored_and_never_moves_training(tmp_path, char_tokenizer):
    from sgopd_lite.train import Trainer

    def run(name, unseen):
        world = make_tiny_world(char_tokenizer)
        world.unseen_problems = unseen
        cfg = TrainConfig(steps=2, prompts_per_step=3, group_size=4, max_new_tokens=12, eval_every=1,
                          eval_problems=4, eval_n=2, save_every=0, log_rollouts=0, out_dir=str(tmp_path / name))
        return Trainer(cfg, world=world, verbose=False).run()

    plain = run("plain", [])
    both = run("both", arithmetic_split("eval_unseen"))
    for a, b in zip(plain, both):
        for key in ("loss_pg", "grad_norm", "reward_mean", "eval_avg@2"):
            assert a[key] == b[key], key
        assert not any(k.startswith("eval_unseen_") for k in a)
        assert b["eval_unseen_problems_carry"] == 1 and 0 <= b["eval_unseen_avg@2"] <= 1
    from sgopd_lite.study.sweep import summarize
    summary = summarize(TrainConfig(eval_n=2), both, 1.0, name="x")
    assert set(summary["per_skill_unseen"]) == set(SKILLS) and "avg_unseen" in summary
    assert "per_skill_unseen" not in summarize(TrainConfig(eval_n=2), plain, 1.0, name="x")


def test_unseen_study_tables_and_flags_on_planted_accuracies():
    from sgopd_lite.study import unseen

    skills, unseen_split = arithmetic_split("eval_skills"), arithmetic_split("eval_unseen")
    seen = frozenset(p.question for p in skills[:128])
    # planted: right on every seen problem, wrong on every unseen-part one; borrow low on eval_unseen
    acc_skills = [1.0 if p.question in seen else 0.0 for p in skills]
    acc_unseen = [0.1 if skill_of(p.question) == "borrow" else (1.0 if i % 2 else 0.0)
                  for i, p in enumerate(unseen_split)]
    t = unseen.model_table(acc_skills, acc_unseen, seen)
    for s in SKILLS:
        assert t[s]["seen"]["mean"] == 1.0 and t[s]["unseen part"]["mean"] == 0.0
        assert t[s]["seen"]["problems"] + t[s]["unseen part"]["problems"] == 64
        d = t[s]["unseen minus eval_skills"]
        assert d["mean"] == pytest.approx(t[s]["eval_unseen"]["mean"] - t[s]["eval_skills"]["mean"])
        assert d["half"] == pytest.approx(math.hypot(t[s]["eval_unseen"]["half"], t[s]["eval_skills"]["half"]))
    assert t["borrow"]["eval_unseen"]["half"] == pytest.approx(0.0)   # constant accuracies: no spread
    result = {"worlds": {"w": {"student": "k"}}, "models": {"k": {"skills": t}}}
    assert "borrow" in unseen.flagged(result["models"], "k")
    assert unseen.table(result).count("\n") == 2 + len(SKILLS) - 1


def test_committed_start_measurement_covers_the_four_worlds():
    from sgopd_lite.assets import project_dir
    from sgopd_lite.study import unseen

    result = json.loads((project_dir() / unseen.RESULT).read_text())
    assert list(result["worlds"]) == list(unseen.WORLDS)
    for roles in result["worlds"].values():
        for role, key in roles.items():
            m = result["models"][key]
            assert m["role"] == role and m["seen_in_eval_skills"] == {"teacher": 211, "student": 163}[role]
            for s in SKILLS:
                assert m["skills"][s]["eval_skills"]["problems"] == m["skills"][s]["eval_unseen"]["problems"] == 64


def test_report_section_says_whether_a_planted_skill_moves_on_unseen_problems():
    from sgopd_lite.study import unseen

    def parts(a, b):
        c = lambda m: {"mean": m, "half": 0.02, "problems": 64}
        return {"eval_skills": c(a), "seen": c(a), "unseen part": c(a), "3 operands": c(a), "eval_unseen": c(b),
                "unseen minus eval_skills": {"mean": b - a, "half": 0.03},
                "unseen minus 3 operands": {"mean": b - a, "half": 0.03}}

    def result(student_borrow_unseen):
        skills = {s: parts(0.5, 0.5) for s in SKILLS}
        student = dict(skills, borrow=parts(0.55, student_borrow_unseen))
        return {"n": 8, "seed": 0, "eval_unseen_problems": {s: 64 for s in SKILLS},
                "worlds": {"A2 complementary": {"teacher": "t", "student": "s"}},
                "models": {"t": {"role": "teacher", "seen_in_eval_skills": 211, "skills": skills},
                           "s": {"role": "student", "seen_in_eval_skills": 163, "skills": student}}}

    same = "\n".join(unseen.report_section(result(0.54)))
    assert "none of the 8 model-skill cells" in same and "read the same" in same
    moved = "\n".join(unseen.report_section(result(0.30)))
    assert "1 of 8 model-skill cells" in moved and "A planted skill differs" in moved and "student borrow" in moved
    assert unseen.report_section({}) == []
