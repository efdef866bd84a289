"""Two signals, one update: how a mixed method's teacher route and reward route share the gradient.

A method that mixes the teacher's push with the verifier's reward (teacher_probe with the GRPO
fallback, hybrid) forms one advantage A = A_teacher + A_reward (advantage.py, `Advantage.routes`),
one policy-gradient loss, one clip and one AdamW. The gradient of that loss is the sum of the two
routes' gradients, and the routes are on different scales: the teacher's push |a2| is large on the
few tokens where the student and the teacher disagree and near 0 elsewhere, while the reward's
g_i is spread over every token of a rollout, most of them nearly certain (their gradient is near
0). Their mean |A| per token says little about their share of the gradient; this module measures
the share itself and offers two ways to set it (`MixConfig`, docs/method.md §14):

* per-route normalisation (normalise="route"): each route's term is divided by the token count
  of its own rollouts instead of the whole step's, and the reward's is weighted by
  reward_weight. Since the loss is linear in A, that is the same as scaling each route's
  advantage by (N / N_route) x weight (`route_scales`);
* a gradient budget (budget="share"): each route's gradient is rescaled so that its norm is a
  target share of the total, and the total is capped at grad_clip (`budget`). This replaces the
  global clip, which would otherwise scale both routes by the factor the larger one calls for.

Measured quantities (logged every step by the trainer for a mixed method):
    grad_norm_teacher, grad_norm_reward   ||g_route||, before any clip or budget
    reward_grad_share                     ||g_reward|| / (||g_teacher|| + ||g_reward||)
    clip_factor                           what the clip (or the budget) multiplied the sum by
    route_rollouts_reward, route_tokens_reward   the reward route's share of rollouts / tokens

Every function here is pure: tensors in, tensors and numbers out.

May import: torch. Never train, config or worlds.
"""

from __future__ import annotations

import math

import torch

ROUTES = ("teacher", "reward")


def route_scales(rows: dict[str, torch.Tensor], mask: torch.Tensor, normalise: str,
                 reward_weight: float = 1.0, counts: dict[str, float] | None = None) -> dict[str, float]:
    """The factor each route's advantage is multiplied by, so that one loss divided by the
    step's token count N gives each route the normalisation `normalise` asks for.

    rows: {route: (R,) bool, the rollouts the route owns}; mask (R, T). counts: the token counts
    {"all": N, route: N_route} when they are summed over processes (else counted here).
    normalise="step": 1 for both (today's single loss). "route": N / N_route, times reward_weight
    for the reward route; a route that owns no token gets 0 (it has no term)."""
    if normalise == "step":
        return {name: 1.0 for name in rows}
    if normalise != "route":
        raise ValueError(f"normalise must be 'step' or 'route', got {normalise!r}")
    counts = counts or route_token_counts(rows, mask)
    out = {}
    for name in rows:
        weight = reward_weight if name == "reward" else 1.0
        out[name] = weight * counts["all"] / counts[name] if counts[name] > 0 else 0.0
    return out


def route_token_counts(rows: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, float]:
    """{"all": response tokens, route: response tokens of the route's rollouts} of one batch."""
    per_row = mask.float().sum(dim=1)                                             # (R,)
    return {"all": float(per_row.sum()), **{name: float(per_row[r.bool()].sum()) for name, r in rows.items()}}


def norm(grads: list[torch.Tensor]) -> float:
    """The L2 norm of a list of gradient tensors taken as one vector."""
    return math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads))


def budget(teacher: list[torch.Tensor], reward: list[torch.Tensor], reward_share: float,
           cap: float | None) -> tuple[list[torch.Tensor], dict]:
    """Rescale the two routes' gradients so that ||reward part|| / (||teacher part|| + ||reward
    part||) = reward_share and the parts' norms add up to C = min(cap, ||teacher + reward||).

    A route with a zero gradient gives its share to the other. Returns the combined gradient
    (a new list) and {"clip_factor": C / ||teacher + reward||, "reward_grad_share": the share
    after rescaling, "teacher_scale", "reward_scale": the factor each route was multiplied by}.
    The triangle inequality keeps the combined norm at or under C."""
    if not 0.0 <= reward_share <= 1.0:
        raise ValueError(f"reward_share must be in [0, 1], got {reward_share}")
    n_t, n_r = norm(teacher), norm(reward)
    total = norm([t + r for t, r in zip(teacher, reward)])
    if n_t == 0.0 and n_r == 0.0:
        return [t + r for t, r in zip(teacher, reward)], {"clip_factor": 1.0, "reward_grad_share": 0.0,
                                                          "teacher_scale": 1.0, "reward_scale": 1.0}
    share = reward_share if n_t > 0 and n_r > 0 else (1.0 if n_r > 0 else 0.0)
    c = total if cap is None else min(cap, total)
    a_t = (1.0 - share) * c / n_t if n_t > 0 else 0.0
    a_r = share * c / n_r if n_r > 0 else 0.0
    combined = [a_t * t + a_r * r for t, r in zip(teacher, reward)]
    return combined, {"clip_factor": c / total if total > 0 else 1.0, "reward_grad_share": share,
                      "teacher_scale": a_t, "reward_scale": a_r}


def adam_step_ratio(route: list[torch.Tensor], mixed_step: list[torch.Tensor], v_mixed: list[torch.Tensor],
                    alone_step: list[torch.Tensor], v_alone: list[torch.Tensor], eps: float = 1e-8) -> float:
    """How far AdamW's step moves one route's own objective in a mixed run, relative to a run where
    that route alone made the gradient: the first-order decrease of the route's loss,
    sum g m / (sqrt(v_mixed) + eps) over sum g a / (sqrt(v_alone) + eps), where g is the route's
    gradient, m the part of it the mixed run sends to the optimizer (after its clip or budget),
    a what the route alone would send (after its own clip), and v the bias-corrected second
    moments of each run. Weighting by g keeps coordinates where the route has no gradient out."""
    mixed = sum(float((g * m / (v.sqrt() + eps)).sum()) for g, m, v in zip(route, mixed_step, v_mixed))
    alone = sum(float((g * a / (v.sqrt() + eps)).sum()) for g, a, v in zip(route, alone_step, v_alone))
    return mixed / alone if alone > 0 else float("nan")
