"""The per-token picture on real text (study/smol_picture.py), checked on the tiny A2 complementary
world, where it runs in seconds: the same code picks the SmolLM2 group."""

import pytest
import torch

from sgopd_lite.config import TrainConfig
from sgopd_lite.data import check_steps
from sgopd_lite.study.smol_picture import ROWS, borrow_frames, describe, find_example


@pytest.fixture(scope="module")
def a2c_world():
    from sgopd_lite.worlds import load_world

    cfg = TrainConfig(method="opd", world={"style_gap": 0.0, "teacher_noise": 1.0, "teacher_slip_kind": "borrow",
                                           "student_slip_kind": "carry"})
    return load_world(cfg, verbose=False), cfg


def test_frames_sit_on_digits_of_correct_borrow_steps_where_the_teacher_wants_another(char_tokenizer):
    q = "10-5-4"
    text = "10-5=5\n5-4=1\n\\boxed{1}"
    ids = char_tokenizer.encode(text, add_special_tokens=False)
    top = list(ids)
    top[text.index("=5") + 1] = char_tokenizer.encode("1", add_special_tokens=False)[0]   # the teacher's '1'
    top[text.index("=1") + 1] = char_tokenizer.encode("9", add_special_tokens=False)[0]   # no borrow on 5-4
    frames = borrow_frames(char_tokenizer, q, ids, top)
    assert [t for t, f in enumerate(frames) if f] == [text.index("=5") + 1]
    assert borrow_frames(char_tokenizer, q, ids, ids) == [False] * len(ids)            # the teacher agrees
    operand = list(ids)
    operand[text.index("-5") + 1] = top[text.index("=5") + 1]                        # an operand, not the result
    assert not any(borrow_frames(char_tokenizer, q, ids, operand))
    wrong = "10-5=6\n6-4=2\n\\boxed{2}"                                               # the borrow forgotten
    wids = char_tokenizer.encode(wrong, add_special_tokens=False)
    assert not any(borrow_frames(char_tokenizer, q, wids, [0] * len(wids)))
    assert check_steps(q, wrong)[0].verdict == -1


def test_the_picked_group_shows_what_each_verifier_keeps_at_the_borrow_digit(a2c_world):
    world, cfg = a2c_world
    found = find_example(world, max_new_tokens=cfg.max_new_tokens)
    right, wrong = found["records"]
    assert right["reward"] == 1 and wrong["reward"] == 0 and right["question"] == wrong["question"]
    assert set(right["roles"]) == set(ROWS) and any(right["teacher_wrong"])
    trusted = found["probe_passes"] / found["probe_m"] >= 0.5
    for t, framed in enumerate(right["teacher_wrong"]):
        if framed and right["a2"][t] < 0:
            assert right["roles"]["OPDVR's gate"][t] == 0.0         # a correct rollout: the push down is masked
    for rec in (right, wrong):
        probe = torch.tensor(rec["roles"]["teacher probe"])
        if trusted:
            assert torch.allclose(probe, torch.tensor(rec["a2"]))
            assert torch.allclose(torch.tensor(rec["roles"]["probe, sign of a2"]), torch.sign(probe))
        else:                                                     # the prompt falls back to the reward
            assert torch.allclose(probe, torch.tensor(rec["roles"]["GRPO"]))
    lines = describe(found)
    assert lines[0].startswith("correct rollout of") and "the teacher wants" in lines[1]
