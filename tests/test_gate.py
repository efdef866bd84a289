"""The sign-consistency gate: special cases, hand-made groups, and properties (docs/method.md §3-5)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sgopd_lite.gate import GateConfig, TokenClass, group_advantage, sign_gate

C, I, II, N = TokenClass.CONSENSUS, TokenClass.CONFLICT_I, TokenClass.CONFLICT_II, TokenClass.NEUTRAL


def _batch(B=6, T=7, G=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    teacher = -torch.rand(B, T, generator=g) * 3
    old = -torch.rand(B, T, generator=g) * 3
    ref = -torch.rand(B, T, generator=g) * 3
    rewards = torch.randint(0, 2, (B,), generator=g).float()
    rewards[0], rewards[1] = 1.0, 0.0          # at least one group with evidence
    group_ids = torch.arange(B) // G
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return teacher, old, ref, rewards, group_ids, mask


def test_hand_made_three_rollout_group():
    # One prompt, three rollouts: two correct, one wrong. a1 = r - 2/3.
    teacher = torch.tensor([[-0.1, -2.0], [-1.0, -0.5], [-0.3, -0.3]])
    old = torch.tensor([[-0.5, -1.0], [-1.0, -1.5], [-0.6, -0.1]])
    # a2 =                [ 0.4, -1.0],  [ 0.0,  1.0],  [ 0.3, -0.2]
    rewards = torch.tensor([1.0, 1.0, 0.0])
    out = sign_gate(teacher, old, rewards, torch.zeros(3, dtype=torch.long), torch.ones(3, 2))
    torch.testing.assert_close(out.a1, torch.tensor([1 / 3, 1 / 3, -2 / 3]))
    expected = torch.tensor([[C, I], [N, C], [II, C]])
    assert torch.equal(out.token_class, expected)
    torch.testing.assert_close(out.lambda_t, torch.tensor([[1.8, 1.0], [1.0, 1.8], [1.0, 1.8]]))
    torch.testing.assert_close(out.advantage, out.lambda_t * out.a2)
    assert out.metrics["frac_consensus"] == pytest.approx(3 / 6)
    assert out.metrics["frac_conflict_i"] == pytest.approx(1 / 6)
    assert out.metrics["frac_conflict_ii"] == pytest.approx(1 / 6)
    assert out.metrics["frac_neutral"] == pytest.approx(1 / 6)
    assert out.metrics["a2_mean"] == pytest.approx((0.4 - 1.0 + 0.0 + 1.0 + 0.3 - 0.2) / 6, abs=1e-6)
    assert out.metrics["kl_k1"] == pytest.approx(-out.metrics["a2_mean"])


def test_identical_teacher_and_student_give_zero_advantage():
    t, _, _, r, gid, m = _batch()
    for cfg in (GateConfig(), GateConfig(a1_mode="sign"), GateConfig.conflict_masking()):
        out = sign_gate(t, t.clone(), r, gid, m, cfg=cfg)
        assert out.advantage.abs().max().item() == 0.0
        assert (out.token_class == N).all()          # a2 = 0 is no teacher evidence
        assert out.metrics["kl_k3"] == 0.0


def test_unit_lambdas_reproduce_plain_opd_exactly():
    t, o, ref, r, gid, m = _batch()
    for cfg in (GateConfig.opd(), GateConfig.opd(a1_mode="sign"), GateConfig.opd(reference="initial")):
        out = sign_gate(t, o, r, gid, m, ref_logp=ref if cfg.reference == "initial" else None, cfg=cfg)
        assert torch.equal(out.advantage, torch.where(m, t - o, torch.zeros(())))


@pytest.mark.parametrize("lam", [0.5, 1.25, 2.0])
def test_equal_lambdas_with_initial_reference_reproduce_g_opd(lam):
    # G-OPD: A = lam * (log pT - log pref) - (log pold - log pref), for every response token
    t, o, ref, r, gid, m = _batch(seed=3)
    out = sign_gate(t, o, r, gid, m, ref_logp=ref, cfg=GateConfig.exopd(lam))
    g_opd = lam * (t - ref) - (o - ref)
    torch.testing.assert_close(out.advantage, torch.where(m, g_opd, torch.zeros(())))


def test_reference_old_is_lambda_times_a2_and_initial_differs():
    t, o, ref, r, gid, m = _batch(seed=4)
    old = sign_gate(t, o, r, gid, m, cfg=GateConfig())
    torch.testing.assert_close(old.advantage, old.lambda_t * old.a2)
    init = sign_gate(t, o, r, gid, m, ref_logp=ref, cfg=GateConfig(reference="initial"))
    assert torch.equal(init.token_class, old.token_class)      # classes come from a1, a2 only
    assert not torch.allclose(init.advantage, old.advantage)
    # with reference = initial the consensus size comes from the G-OPD reward, so it may be < 0
    # even where a2 > 0: check the formula, not the sign
    expected = old.a2 + (old.lambda_t - 1) * torch.where(m, t - ref, torch.zeros(()))
    torch.testing.assert_close(init.advantage, expected)


def test_conflict_masking_zeroes_conflict_tokens_only():
    t, o, _, r, gid, m = _batch(seed=5)
    out = sign_gate(t, o, r, gid, m, cfg=GateConfig.conflict_masking())
    conflict = (out.token_class == I) | (out.token_class == II)
    assert conflict.any()
    assert (out.advantage[conflict] == 0).all()
    keep = m & ~conflict
    torch.testing.assert_close(out.advantage[keep], out.a2[keep])


def test_dead_zone_makes_small_a2_neutral():
    teacher = torch.tensor([[-1.0, -1.0, -1.0]])
    old = torch.tensor([[-1.05, -1.5, -0.5]])           # a2 = 0.05, 0.5, -0.5
    out = sign_gate(teacher.repeat(2, 1), old.repeat(2, 1), torch.tensor([1.0, 0.0]),
                    torch.zeros(2, dtype=torch.long), torch.ones(2, 3), cfg=GateConfig(tau=0.1))
    assert out.token_class[0].tolist() == [N, C, I]
    assert out.token_class[1].tolist() == [N, II, C]


def test_group_mode_all_equal_rewards_are_neutral_sign_mode_is_not():
    t, o, _, _, _, m = _batch(B=4, G=4)
    gid = torch.zeros(4, dtype=torch.long)
    ones = torch.ones(4)
    group = sign_gate(t, o, ones, gid, m, cfg=GateConfig())
    assert (group.a1 == 0).all() and (group.token_class == N).all()
    assert group.metrics["frac_rollouts_no_evidence"] == 1.0
    sign = sign_gate(t, o, ones, gid, m, cfg=GateConfig(a1_mode="sign"))
    assert (sign.a1 == 1).all() and (sign.token_class[m] != N).any()


def test_group_advantage_handles_interleaved_ids_and_shaped_rewards():
    r = torch.tensor([1.0, 0.3, 0.0, 0.3, 0.1, 0.1])
    gid = torch.tensor([7, 2, 7, 2, 5, 5])               # groups need not be contiguous
    a1 = group_advantage(r, gid)
    torch.testing.assert_close(a1, torch.tensor([0.5, 0.0, -0.5, 0.0, 0.0, 0.0]))
    assert (a1[[1, 3, 4, 5]] == 0).all()                 # exactly zero: no float residue


def test_padding_positions_are_neutral_with_zero_advantage():
    t, o, _, r, gid, m = _batch(seed=6)
    out = sign_gate(t, o, r, gid, m)
    assert (out.token_class[~m] == N).all()
    assert (out.advantage[~m] == 0).all() and (out.a2[~m] == 0).all()


def test_adv_clip_bounds_the_advantage():
    t, o, _, r, gid, m = _batch(seed=7)
    out = sign_gate(t, o, r, gid, m, cfg=GateConfig(adv_clip=0.5))
    assert out.advantage.abs().max().item() <= 0.5
    assert out.advantage.abs().max().item() == pytest.approx(0.5)


def test_outputs_are_detached():
    t, o, _, r, gid, m = _batch()
    t.requires_grad_()
    out = sign_gate(t, o, r, gid, m)
    assert not out.advantage.requires_grad


@pytest.mark.parametrize("kwargs, field", [
    ({"lambda_e": 0.9, "lambda_i": 0.5}, "lambda_e"),
    ({"lambda_i": 1.5}, "lambda_i"),
    ({"lambda_i": -0.1}, "lambda_i"),
    ({"tau": -1.0}, "tau"),
    ({"a1_mode": "mean"}, "a1_mode"),
    ({"reference": "teacher"}, "reference"),
    ({"adv_clip": 0.0}, "adv_clip"),
    ({"lambda_n": float("nan")}, "lambda_n"),
])
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        GateConfig(**kwargs)


def test_uniform_lambda_below_one_is_allowed_when_not_gating():
    cfg = GateConfig.exopd(0.5)          # interpolating ExOPD: no gate, so no lambda_e >= 1 rule
    assert not cfg.gating and cfg.lambda_e == 0.5


def test_call_errors_are_clear():
    t, o, ref, r, gid, m = _batch()
    with pytest.raises(ValueError, match="ref_logp"):
        sign_gate(t, o, r, gid, m, cfg=GateConfig(reference="initial"))
    with pytest.raises(ValueError, match="ref_logp"):
        sign_gate(t, o, r, gid, m, ref_logp=ref)
    with pytest.raises(ValueError, match="at least 2 rollouts"):
        sign_gate(t, o, r, torch.arange(6), m)
    with pytest.raises(ValueError, match="one entry per rollout"):
        sign_gate(t, o, r[:3], gid, m)


# ---------------------------------------------------------------- properties

@st.composite
def gate_inputs(draw):
    n_groups = draw(st.integers(1, 4))
    G = draw(st.integers(2, 5))
    T = draw(st.integers(1, 6))
    B = n_groups * G
    a2_vals = st.sampled_from([-2.0, -0.5, -0.05, 0.0, 0.05, 0.5, 2.0])
    a2 = torch.tensor(draw(st.lists(a2_vals, min_size=B * T, max_size=B * T))).view(B, T)
    rewards = torch.tensor(draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=B, max_size=B)))
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T))).view(B, T)
    mode = draw(st.sampled_from(["group", "sign"]))
    tau = draw(st.sampled_from([0.0, 0.1, 1.0]))
    old = -torch.ones(B, T)
    return old + a2, old, rewards, torch.arange(B) // G, mask, GateConfig(a1_mode=mode, tau=tau)


@settings(max_examples=200, deadline=None)
@given(gate_inputs())
def test_every_token_gets_exactly_one_class(inputs):
    t, o, r, gid, m, cfg = inputs
    out = sign_gate(t, o, r, gid, m, cfg=cfg)
    classes = torch.stack([out.token_class == c for c in TokenClass])   # (4, B, T)
    assert (classes.sum(0) == 1).all()
    fractions = sum(out.metrics[k] for k in ("frac_consensus", "frac_conflict_i",
                                              "frac_conflict_ii", "frac_neutral"))
    assert fractions == pytest.approx(1.0 if m.any() else 0.0)


@settings(max_examples=200, deadline=None)
@given(gate_inputs())
def test_flipping_rewards_swaps_consensus_and_conflict(inputs):
    t, o, r, gid, m, cfg = inputs
    out = sign_gate(t, o, r, gid, m, cfg=cfg)
    flipped = sign_gate(t, o, 1.0 - r, gid, m, cfg=cfg)
    consensus = out.token_class == C
    conflict = (out.token_class == I) | (out.token_class == II)
    assert torch.equal(flipped.token_class == C, conflict)
    assert torch.equal((flipped.token_class == I) | (flipped.token_class == II), consensus)
    assert torch.equal(flipped.token_class == N, out.token_class == N)
    # and the conflict types swap with them: type I (correct, pushed down) becomes consensus on
    # a wrong rollout, and consensus pushed-up tokens of correct rollouts become type II
    assert torch.equal(flipped.token_class == II, consensus & (out.a2 > 0))
