"""Two routes, one update (mix.py, MixConfig, the trainer's route gradients): on hand-made batches
and a toy policy whose gradient can be read off, then the new arms on the tiny world."""

import math

import pytest
import torch

from conftest import make_tiny_world
from sgopd_lite.advantage import Signals, method_advantage, staged_method
from sgopd_lite.config import ConfigError, MixConfig, TrainConfig
from sgopd_lite.gate import GateConfig, sign_gate
from sgopd_lite.losses import policy_gradient_loss
from sgopd_lite.mix import adam_step_ratio, budget, norm, route_scales, route_token_counts

T, V, G = 4, 5, 8


def _probe_batch():
    """One trusted prompt whose teacher pushes one token with a2 = -20 (a heavy tail), and one
    untrusted prompt whose group has 1 right rollout of 8. Tokens: every rollout writes
    0, 1, 2, 3, except the untrusted group's wrong rollouts, which write 4 at the last position."""
    tokens = torch.tensor([[0, 1, 2, 3]] * G + [[0, 1, 2, 3]] + [[0, 1, 2, 4]] * (G - 1))        # (R, T)
    old_logp = torch.full((2 * G, T), -0.5)
    a2 = torch.zeros(2 * G, T)
    a2[0, 2] = -20.0
    rewards = torch.tensor([1.0] * G + [1.0] + [0.0] * (G - 1))
    s = Signals(old_logp=old_logp, rewards=rewards, group_ids=torch.tensor([0] * G + [1] * G),
                mask=torch.ones(2 * G, T), teacher_logp=old_logp + a2,
                prompt_trusted=torch.tensor([True] * G + [False] * G))
    return tokens, s


def _route_grads(tokens, routes, scales, theta):
    """The toy policy's gradient of each route's term: logits theta (T, V) at every position."""
    out = {}
    for name, adv in routes.items():
        logp = torch.log_softmax(theta, -1)[torch.arange(T), tokens]                # (R, T)
        loss = policy_gradient_loss(logp, scales[name] * adv, torch.ones_like(adv), adv.numel())
        out[name] = list(torch.autograd.grad(loss, [theta]))
    return out


def test_the_reward_route_gets_less_than_its_share_of_prompts_today_and_its_share_balanced():
    tokens, s = _probe_batch()
    out = method_advantage("teacher_probe", GateConfig.opd(), s)
    assert torch.equal(out.routes["teacher"] + out.routes["reward"], out.advantage)
    assert out.route_rows["reward"].tolist() == [False] * G + [True] * G
    theta = torch.zeros(T, V, requires_grad=True)

    # today: one loss over every token (normalise="step"), one global clip (scales both alike)
    today = _route_grads(tokens, out.routes, route_scales(out.route_rows, s.mask, "step"), theta)
    n_t, n_r = norm(today["teacher"]), norm(today["reward"])
    prompt_share = 0.5
    assert n_r / (n_t + n_r) < prompt_share / 2            # the heavy tail takes most of the gradient

    # (b) a term per route, each over its own tokens: here both own half the tokens, so no help alone
    scales = route_scales(out.route_rows, s.mask, "route")
    assert scales == {"teacher": 2.0, "reward": 2.0}
    per_route = _route_grads(tokens, out.routes, scales, theta)
    share_b = norm(per_route["reward"]) / (norm(per_route["teacher"]) + norm(per_route["reward"]))
    assert share_b == pytest.approx(n_r / (n_t + n_r))
    # (b) + (c): the budget gives the reward route its share of the prompts
    combined, info = budget(per_route["teacher"], per_route["reward"], prompt_share, cap=1.0)
    assert info["reward_grad_share"] >= prompt_share
    t_part, r_part = _parts(per_route, combined)
    assert norm(r_part) / (norm(t_part) + norm(r_part)) == pytest.approx(prompt_share)
    assert norm(combined) <= 1.0 + 1e-9


def _parts(grads, combined):
    """The two rescaled parts of `combined` (it is a_t g_t + a_r g_r: solve for a_t, a_r on the
    toy's coordinates, where the routes' gradients are not parallel)."""
    gt, gr, c = (torch.cat([x.flatten() for x in v]) for v in (grads["teacher"], grads["reward"], combined))
    a = torch.linalg.lstsq(torch.stack([gt, gr], 1).double(), c.double()[:, None]).solution.flatten()
    return [a[0] * gt], [a[1] * gr]


def test_budget_caps_the_norm_keeps_directions_and_gives_a_silent_route_s_share_away():
    g_t, g_r = [torch.tensor([3.0, 4.0])], [torch.tensor([0.0, 0.5])]
    combined, info = budget(g_t, g_r, 0.5, cap=1.0)
    assert info["clip_factor"] == pytest.approx(1.0 / norm([g_t[0] + g_r[0]]))
    assert norm(combined) <= 1.0 + 1e-9
    expected = 0.5 * g_t[0] / 5.0 + 0.5 * g_r[0] / 0.5
    assert torch.allclose(combined[0], expected)
    small = [torch.tensor([0.3, 0.4])]          # under the cap: the total norm is kept, not raised
    combined, info = budget(small, g_r, 0.5, cap=1.0)
    assert norm(combined) <= norm([small[0] + g_r[0]]) + 1e-9 and info["clip_factor"] == 1.0
    combined, info = budget(g_t, [torch.zeros(2)], 0.5, cap=None)
    assert info["reward_grad_share"] == 0.0 and torch.allclose(combined[0], g_t[0])
    with pytest.raises(ValueError, match="reward_share"):
        budget(g_t, g_r, 1.5, cap=None)


def test_route_scales_and_counts():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]])
    rows = {"teacher": torch.tensor([True, True, False]), "reward": torch.tensor([False, False, True])}
    assert route_token_counts(rows, mask) == {"all": 6.0, "teacher": 5.0, "reward": 1.0}
    assert route_scales(rows, mask, "step") == {"teacher": 1.0, "reward": 1.0}
    assert route_scales(rows, mask, "route", reward_weight=0.5) == {"teacher": 6 / 5, "reward": 0.5 * 6}
    empty = {"teacher": rows["teacher"], "reward": torch.zeros(3, dtype=torch.bool)}
    assert route_scales(empty, mask, "route")["reward"] == 0.0


def test_adam_step_ratio_reads_the_clip_and_the_second_moment():
    g = [torch.tensor([1.0, 1.0])]
    ones = [torch.tensor([1.0, 1.0])]
    assert adam_step_ratio(g, g, [torch.tensor([4.0, 4.0])], g, ones) == pytest.approx(0.5, rel=1e-6)
    assert adam_step_ratio(g, g, ones, g, ones) == pytest.approx(1.0)
    half = [0.5 * g[0]]                                   # a clip that halves the route's part
    assert adam_step_ratio(g, half, ones, g, ones) == pytest.approx(0.5)
    # a coordinate the route does not touch cannot blow the ratio up, however small its moment
    g0 = [torch.tensor([1.0, 0.0])]
    assert adam_step_ratio(g0, g0, [torch.tensor([1.0, 1e-20])], g0, ones) == pytest.approx(1.0)


def test_sign_of_a2_bounds_every_push():
    old = torch.zeros(1, 3)
    out = sign_gate(old + torch.tensor([[-20.0, 0.3, 0.0]]), old, torch.tensor([1.0]), torch.tensor([0]),
                    torch.ones(1, 3), None, GateConfig.opd(a2_scale="sign", a1_mode="sign"))
    assert out.advantage.tolist() == [[-1.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="a2_scale"):
        GateConfig(a2_scale="log")
    with pytest.raises(ValueError, match="reference='old'"):
        GateConfig.exopd(1.25).replace(a2_scale="sign")


def test_hybrid_and_probe_with_reward_split_into_routes():
    _, s = _probe_batch()
    hyb = method_advantage("hybrid", GateConfig.opd(), s, hybrid_c=2.0)
    assert torch.allclose(hyb.routes["teacher"] + hyb.routes["reward"], hyb.advantage)
    assert hyb.route_rows["teacher"].all() and hyb.route_rows["reward"].all()
    both = method_advantage("teacher_probe", GateConfig.opd(), s, reward_c=0.5)
    assert both.route_rows["reward"].all() and both.route_rows["teacher"].tolist() == [True] * G + [False] * G
    plain = method_advantage("teacher_probe", GateConfig.opd(), s)
    trusted = slice(0, G)
    assert torch.allclose(both.advantage[trusted] - plain.advantage[trusted], both.routes["reward"][trusted])
    drop = method_advantage("teacher_probe", GateConfig.opd(), s, fallback="drop")
    assert drop.routes is None                       # one signal only: nothing to balance
    with pytest.raises(ValueError, match="staged_method"):
        method_advantage("staged", GateConfig.opd(), s)


def test_staged_switches_once_at_its_fraction():
    assert [staged_method(k, 10, 0.3) for k in range(10)] == ["opd"] * 3 + ["grpo"] * 7
    assert set(staged_method(k, 10, 0.0) for k in range(10)) == {"grpo"}
    assert set(staged_method(k, 10, 1.0) for k in range(10)) == {"opd"}


def test_mix_config_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="normalise"):
        MixConfig(normalise="token")
    with pytest.raises(ValueError, match="reward_share"):
        MixConfig(reward_share=2.0)
    with pytest.raises(ConfigError, match="mix.budget"):
        TrainConfig(method="teacher_probe", ppo_epochs=2, mix={"budget": "share"})
    with pytest.raises(ConfigError, match="staged_switch"):
        TrainConfig(method="staged", staged_switch=1.5)


def _cfg(tmp_path, **kw):
    base = dict(steps=2, prompts_per_step=3, group_size=4, max_new_tokens=12, eval_every=0, eval_problems=2,
                eval_n=2, save_every=0, log_rollouts=0, out_dir=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("arm", [
    {"method": "teacher_probe", "mix": {"normalise": "route", "budget": "share"}},
    {"method": "teacher_probe", "gate": {"a2_scale": "sign"}},
    {"method": "teacher_probe", "probe": {"reward_c": 2.0}, "mix": {"budget": "share"}},
    {"method": "hybrid", "hybrid_c": 5.0},
    {"method": "staged", "staged_switch": 0.5},
])
def test_each_new_arm_runs_two_steps_and_logs_its_routes(tmp_path, char_tokenizer, arm):
    from sgopd_lite.train import Trainer

    history = Trainer(_cfg(tmp_path, **arm), world=make_tiny_world(char_tokenizer), verbose=False).run()
    assert [m["step"] for m in history] == [0, 1] and all("skipped" not in m for m in history)
    last = history[-1]
    if arm["method"] == "staged":
        assert [m["staged_grpo"] for m in history] == [0.0, 1.0] and "pts_w" not in last
        return
    for key in ("grad_norm_teacher", "grad_norm_reward", "reward_grad_share", "clip_factor",
                "route_rollouts_reward", "route_tokens_reward"):
        assert math.isfinite(last[key]), key
    if arm.get("mix", {}).get("budget") == "share":
        assert last["grad_norm"] <= 1.0 + 1e-6          # the budget's cap is grad_clip


def test_route_gradients_add_up_and_do_not_depend_on_micro_batches(tmp_path, char_tokenizer):
    """The reward route's gradient (taken alone during backward) plus the teacher route's is the
    summed gradient, and splitting the batch into micro-batches changes neither."""
    from sgopd_lite.train import Trainer

    found = {}
    for mb in (None, 4):
        tr = Trainer(_cfg(tmp_path / str(mb), method="hybrid", micro_batch_size=mb),
                     world=make_tiny_world(char_tokenizer), verbose=False)
        batch = tr.collect(0)
        batch.rewards = torch.tensor([1.0, 0.0, 0.0, 0.0] * 3)   # random-init models solve nothing: plant a mix
        _, g_t, g_r = tr.measure_routes(0, batch)
        total = [p.grad for p in tr._trainable()]
        assert all(torch.allclose(t + r, s, atol=1e-6) for t, r, s in zip(g_t, g_r, total))
        found[mb] = (norm(g_t), norm(g_r))
    assert found[None] == pytest.approx(found[4], rel=1e-4)
    assert found[None][1] > 0


def test_balance_measures_both_routes_on_the_starting_student(tmp_path):
    """study/balance.py on two small batches of the committed A2 complementary pair (hybrid: no
    probe table to build): sane shares, a clip factor of at most 1, and a budget that sends the
    reward route its target share."""
    from sgopd_lite.assets import project_dir
    from sgopd_lite.config import load_config
    from sgopd_lite.study import balance

    base = ["prompts_per_step=4", "group_size=4", "seed=0", "log_rollouts=0"]
    config = str(project_dir() / balance.WORLD_CONFIGS["a2c"])
    plain = balance.measure_arm(load_config(config, ["method=hybrid", f"out_dir={tmp_path}/a", *base]), batches=2)
    assert plain["teacher"] > 0 and 0 <= plain["reward_share"] <= 1 and plain["rollout_share"] == 1.0
    assert 0 < plain["clip_factor"] <= 1 and plain["after"] == pytest.approx(plain["reward_share"], abs=1e-6)
    shared = balance.measure_arm(load_config(config, ["method=hybrid", "mix.budget=share", "mix.reward_share=0.5",
                                                      f"out_dir={tmp_path}/b", *base]), batches=2)
    if shared["reward"] > 0:
        assert shared["after"] == pytest.approx(0.5, abs=1e-6)
    assert "| A2 complementary error | x |" in balance.table({"worlds": {"a2c": {"x": plain}}})
