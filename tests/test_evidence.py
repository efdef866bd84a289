"""Per-token evidence of harm: where the tiny task knows the correct next token, is the teacher
wrong, and what does each gate do to the advantage there? And the A2 complementary knobs."""

import pytest
import torch

from sgopd_lite.gate import GateConfig, gate_evidence, sign_gate
from sgopd_lite.worlds.tiny import TinyWorldConfig, correct_next_tokens, role_key, sft_draws, sft_examples


def test_correct_next_tokens_stop_after_the_first_mistake(char_tokenizer):
    tok = char_tokenizer
    ids = tok("17+5=12\n\\boxed{12}", add_special_tokens=False)["input_ids"]     # the carry forgotten
    out = correct_next_tokens(tok, "17+5", ids)
    gold = tok("17+5=22", add_special_tokens=False)["input_ids"]
    assert out[:4] == gold[:4] and out[4] == -1      # "17+5" agrees; "=" or " is": a style choice
    assert out[5] == gold[5] != ids[5]               # the first mistake: counted, with the right token
    assert all(t == -1 for t in out[6:])             # later positions: no correct continuation
    right = tok("17+5=22\n\\boxed{22}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    out = correct_next_tokens(tok, "17+5", right)                  # a correct rollout, EOS included
    assert out[4] == -1 and out[:4] + out[5:] == right[:4] + right[5:]


def test_gate_evidence_sorts_positions_by_the_teachers_error_and_the_gates_effect():
    # 1 rollout, 4 known positions; the teacher is wrong at positions 0 and 1.
    a2 = torch.tensor([[-1.0, 0.5, -0.5, 1.0]])
    adv = torch.tensor([[0.0, 0.9, -0.5, 0.3]])          # zeroed, amplified, unchanged, shrunk
    top = torch.tensor([[7, 7, 3, 4]])
    correct = torch.tensor([[1, 2, 3, 4]])
    out = gate_evidence(a2, adv, top, correct, torch.ones(1, 4))
    assert out["evidence_positions"] == 4 and out["evidence_teacher_wrong"] == 0.5
    assert out["evidence_wrong_zeroed"] == 0.5 and out["evidence_wrong_amplified"] == 0.5
    assert out["evidence_right_unchanged"] == 0.5 and out["evidence_right_shrunk"] == 0.5
    assert out["evidence_wrong_adv_mean"] == pytest.approx(0.45)
    # unknown positions (-1) and masked ones are not counted
    out = gate_evidence(a2, adv, top, torch.tensor([[1, -1, 3, 4]]), torch.tensor([[1, 1, 1, 0]]))
    assert out["evidence_positions"] == 2 and out["evidence_teacher_wrong"] == 0.5


def test_opdvr_zeroes_a_wrong_teachers_push_on_a_correct_rollout():
    # a correct rollout whose correct token the wrong teacher pushes down (conflict I)
    teacher, old = torch.tensor([[-3.0]]), torch.tensor([[-1.0]])
    r, g, mask = torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), torch.ones(2, 1)
    teacher, old = teacher.repeat(2, 1), old.repeat(2, 1)
    top, correct = torch.tensor([[5], [5]]), torch.tensor([[1], [-1]])
    for cfg, effect in ((GateConfig.opd(), "unchanged"), (GateConfig.opdvr(), "zeroed"), (GateConfig(), "unchanged")):
        out = sign_gate(teacher, old, r, g, mask, cfg=cfg)
        ev = gate_evidence(out.a2, out.advantage, top, correct, mask)
        assert ev[f"evidence_wrong_{effect}"] == 1.0, cfg


def test_complementary_knobs_shape_the_sft_data_and_keep_old_keys():
    import random

    default = TinyWorldConfig()
    assert role_key(default, "teacher") == role_key(TinyWorldConfig(teacher_slip_kind="carry"), "teacher")
    assert role_key(default, "student") == role_key(TinyWorldConfig(student_slip_kind="both"), "student")
    comp = TinyWorldConfig(teacher_noise=1.0, teacher_slip_kind="borrow", student_slip_kind="carry")
    assert role_key(comp, "teacher") != role_key(TinyWorldConfig(teacher_noise=1.0), "teacher")
    # the complementary teacher forgets borrows only: 15-7 is 18, 17+5 stays 22
    pairs = dict(sft_examples(sft_draws(random.Random(0), comp, "teacher", set()), 3000, comp, "teacher"))
    assert pairs.get("15-7", "15-7=18").startswith("15-7=18")
    assert pairs.get("17+5", "17+5=22").startswith("17+5=22")
    from sgopd_lite.data import has_borrow
    two_terms = {q: s for q, s in pairs.items() if "+" not in q and q.count("-") == 1}
    borrows = {q: s for q, s in two_terms.items() if has_borrow(*[int(x) for x in q.split("-")][:1], "-",
                                                               int(q.split("-")[1]))}
    assert borrows and all(s.startswith(f"{q}={eval(q) + 10}") for q, s in borrows.items())
    with pytest.raises(ValueError, match="teacher_slip_kind"):
        TinyWorldConfig(teacher_slip_kind="both")


def test_the_trainer_logs_the_evidence_for_a_world_with_an_oracle(tmp_path, char_tokenizer):
    from conftest import make_tiny_world
    from sgopd_lite.config import TrainConfig
    from sgopd_lite.train import Trainer

    world = make_tiny_world(char_tokenizer)
    world.token_oracle = lambda q, ids: correct_next_tokens(char_tokenizer, q, ids)
    cfg = TrainConfig(method="opdvr", steps=1, prompts_per_step=2, group_size=4, max_new_tokens=10, eval_every=0,
                      eval_problems=2, eval_n=2, save_every=0, log_rollouts=0, out_dir=str(tmp_path / "run"))
    m = Trainer(cfg, world=world, verbose=False).run()[0]
    assert m["evidence_positions"] > 0 and 0.0 <= m["evidence_teacher_wrong"] <= 1.0
    world.token_oracle = None
    m = Trainer(cfg.__class__(**{**cfg.__dict__, "out_dir": str(tmp_path / "r2")}), world=world,
                verbose=False).run()[0]
    assert "evidence_positions" not in m


def test_the_oracle_follows_either_style_and_leaves_the_style_choice_unknown(char_tokenizer):
    tok = char_tokenizer
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]
    # a chain-style rollout with a digit error: the error, not the style, is the first mistake
    out = correct_next_tokens(tok, "15-4+16", ids("15-4=12\n12+16 is 28\nso \\boxed{28}"))
    assert out[:5] == ids("15-4=")[:4] + [-1]        # "=" vs " is ": a style choice, both right
    assert out[6] == ids("15-4=11")[6] and all(t == -1 for t in out[7:])
    # a prose rollout is followed in prose: no position of its wording counts as a mistake
    prose = ids("15-4 is 11\n11+16 is 27\nso \\boxed{27}") + [tok.eos_token_id]
    out = correct_next_tokens(tok, "15-4+16", prose)
    assert all(o in (t, -1) for o, t in zip(out, prose)) and out[-1] == tok.eos_token_id
    # a question that is not arithmetic: nothing is known
    assert correct_next_tokens(tok, "What is 2 plus 2?", ids("4")) == [-1]
