"""The tiny world's tokenizer and models (no training: that is what `world --report` measures)."""

import pytest

from sgopd_lite.data import format_prompt
from sgopd_lite.worlds.tiny import NetConfig, TinyWorldConfig, build_tokenizer, load_tokenizer, make_model, role_key


def test_tokenizer_is_character_level_and_round_trips():
    tok = build_tokenizer()
    text = "15-4=11\n11+16 is 27\nso \\boxed{27}"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text
    prompt = format_prompt(tok, "15-4+16")
    assert tok(prompt, add_special_tokens=False)["input_ids"][-1] == tok.convert_tokens_to_ids("<|assistant|>")


def test_saved_tokenizer_reloads_identically_next_to_a_qwen2_config(tmp_path):
    # AutoTokenizer would rebuild a Qwen2Tokenizer here and drop spaces and newlines.
    tok = build_tokenizer()
    model = make_model(NetConfig(hidden=32, layers=1, heads=2, mlp=64), tok, seed=0)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    prompt = format_prompt(tok, "3+4") + "3+4=7\n\\boxed{7}"
    assert again(prompt, add_special_tokens=False)["input_ids"] == tok(prompt, add_special_tokens=False)["input_ids"]
    assert again.eos_token_id == tok.eos_token_id and again.pad_token_id == tok.pad_token_id


def test_knob_variants_share_the_unchanged_model():
    base = TinyWorldConfig()
    assert role_key(TinyWorldConfig(style_gap=1.0), "teacher") == role_key(base, "teacher")
    assert role_key(TinyWorldConfig(style_gap=1.0), "student") != role_key(base, "student")
    assert role_key(TinyWorldConfig(teacher_noise=1.0), "student") == role_key(base, "student")
    assert role_key(TinyWorldConfig(teacher_noise=1.0), "teacher") != role_key(base, "teacher")


def test_models_end_responses_with_the_tokenizers_eos():
    tok = build_tokenizer()
    model = make_model(NetConfig(hidden=32, layers=1, heads=2, mlp=64), tok, seed=0)
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.config.vocab_size == len(tok)
    assert model.config._attn_implementation == "eager"


def test_student_slip_forgets_carries_and_borrows_in_the_students_data_only():
    import random

    from sgopd_lite.data import has_borrow, has_carry, solve
    from sgopd_lite.worlds.tiny import sft_draws, sft_examples

    assert solve([15, 7], ["-"], borrow_slip=True) == ("15-7=18\n\\boxed{18}", 18)   # borrow forgotten
    assert solve([15, 7], ["+"], slip=True)[1] == 12                                 # carry forgotten
    assert has_borrow(15, "-", 7) and not has_borrow(17, "-", 5) and not has_borrow(5, "-", 7)
    cfg = TinyWorldConfig(student_slip=1.0)
    student = sft_examples(sft_draws(random.Random(0), cfg, "student", set()), 200, cfg, "student")
    teacher = sft_examples(sft_draws(random.Random(0), cfg, "teacher", set()), 200, cfg, "teacher")

    def wrong(pairs):
        return sum(f"\\boxed{{{eval(q)}}}" not in sol for q, sol in pairs)
    assert wrong(teacher) == 0                       # the knob leaves the teacher's data clean
    assert wrong(student) > 40                       # every carrying / borrowing problem goes wrong
    # the default student keeps 10% clean solutions: it has seen the right step too
    assert TinyWorldConfig().student_slip == 0.9
    assert role_key(TinyWorldConfig(student_slip=0.5), "student") != role_key(TinyWorldConfig(), "student")
    assert has_carry(15, "+", 7)


def test_knob_evidence_is_zero_when_the_student_is_the_teacher():
    import torch

    from sgopd_lite.data import arithmetic_split
    from sgopd_lite.worlds.tiny import knob_evidence

    tok = build_tokenizer()
    model = make_model(NetConfig(hidden=32, layers=1, heads=2, mlp=64), tok, seed=0).eval()
    torch.manual_seed(0)
    ev = knob_evidence(tok, model, model, arithmetic_split("eval")[:4], n=2, max_new_tokens=8)
    assert ev["rollouts"] == 8 and abs(ev["a2_mean"]) < 1e-6
    sharp = make_model(NetConfig(hidden=32, layers=1, heads=2, mlp=64), tok, seed=0).eval()
    with torch.no_grad():
        sharp.model.norm.weight *= 30          # a peaked student: the near-uniform teacher disagrees
    torch.manual_seed(0)
    assert knob_evidence(tok, model, sharp, arithmetic_split("eval")[:4], n=2, max_new_tokens=8)["a2_mean"] < -0.5


def test_knob_values_from_yaml_ints_hit_the_same_cache_entry():
    assert role_key(TinyWorldConfig(style_gap=1), "student") == role_key(TinyWorldConfig(style_gap=1.0), "student")
    assert role_key(TinyWorldConfig(teacher_noise=1), "teacher") == role_key(TinyWorldConfig(teacher_noise=1.0), "teacher")


def test_first_mistake_finds_the_first_wrong_character_in_either_style():
    from sgopd_lite.worlds.tiny import first_mistake

    assert first_mistake("15-4+16", "15-4=11\n11+16=27\n\\boxed{27}") is None
    assert first_mistake("15-4+16", "15-4=12\n12+16=28\n\\boxed{28}") == 6
    assert first_mistake("15-4+16", "15-4 is 11\n11+16 is 26\nso \\boxed{26}") == 21
    assert first_mistake("15-4+16", "15-4=11\n11+16=27") == 16          # EOS where "\\n" belonged


def test_missing_pair_is_built_in_two_processes_and_cached(tmp_path, monkeypatch):
    """Both models missing: teacher and student train side by side (one process each, half the
    CPUs each), land in the cache with their meta.json, and load; a second call builds nothing."""
    import json

    from sgopd_lite.worlds import tiny as T

    monkeypatch.setenv("SGOPD_CACHE", str(tmp_path))
    monkeypatch.setattr(T.os, "cpu_count", lambda: 2)
    cfg = TinyWorldConfig(teacher=NetConfig(hidden=16, layers=1, heads=2, mlp=32),
                          student=NetConfig(hidden=16, layers=1, heads=2, mlp=16),
                          teacher_steps=2, student_steps=2, batch_size=4)
    tok, teacher, student = T.load_tiny_pair(cfg=cfg, verbose=False)
    for role, model in (("teacher", teacher), ("student", student)):
        path = tmp_path / "tiny" / role_key(cfg, role)
        meta = json.loads((path / "meta.json").read_text())
        assert meta["role"] == role and meta["threads"] == 1            # 2 CPUs, 2 processes
        assert model.config.hidden_size == 16
    assert not any(p.requires_grad for p in teacher.parameters())
    monkeypatch.setattr(T, "build_model", lambda *a, **k: pytest.fail("rebuilt"))
    T.load_tiny_pair(cfg=cfg, verbose=False)
    with pytest.raises(FileNotFoundError, match="not built"):
        T.load_tiny_pair(cfg=TinyWorldConfig(teacher_steps=3), build=False, verbose=False)


def test_world_report_names_every_setting_with_skills_and_the_wrong_teacher_share(capsys):
    from sgopd_lite.worlds.tiny import REPORT_SETTINGS, world_report

    rows = world_report(n=2, limit=12, verbose=False, evidence_problems=4)
    out = capsys.readouterr().out
    assert "wrong-teacher tokens" in out.splitlines()[3] or "wrong-teacher tokens" in out
    names = [name for name, _ in REPORT_SETTINGS]
    assert [r["setting"] for r in rows] == names
    assert names == ["both hold", "A1 graded", "A2 shared", "A2 complementary", "both broken"]
    for name in names:
        assert name in names
        assert f"| {name} | student |" in out and f"| {name} | teacher |" in out
    for r in rows:
        assert 0.0 <= r["evidence"]["teacher_wrong"] <= 1.0 and r["student"]["per_skill"]


def test_world_report_prints_error_adoption_for_teacher_and_student(capsys):
    """The A2 complementary teacher forgets borrows, its student carries: the report says so."""
    from sgopd_lite.worlds.tiny import world_report

    rows = world_report(n=2, limit=48, verbose=False, evidence_problems=2,
                        settings=[("A2 complementary", {"teacher_noise": 1.0, "teacher_slip_kind": "borrow",
                                                        "student_slip_kind": "carry"})])
    out = capsys.readouterr().out
    assert "forgotten borrow" in out and "| A2 complementary | teacher |" in out
    teacher, student = rows[0]["teacher"]["slip"], rows[0]["student"]["slip"]
    assert teacher["borrow"] > 0.5 > student["borrow"]
    assert student["carry"] > 0.5 > teacher["carry"]
