"""Where the verifier acts: every method's per-token advantage, formed in one place.

The trainer scores the rollouts, gathers what the method reads into `Signals`, and calls
`method_advantage`; the policy-gradient loss then multiplies the advantage A (R, T) with
log pi_theta. Methods differ only here, so a reader finds all of them side by side:

    method            where the verifier acts                A_{i,t}
    grpo              as the only reward                     g_i = (r_i - mean_G r) / std_G r
    opd, gate_only,   on the whole rollout, as a gate        sign_gate: lambda_t a2_{i,t}
    opdvr, sgopd ...  (docs/method.md, "The gate")
    teacher_probe     on the teacher, per prompt             trusted prompt: the gate's A (+ c g_i
                                                             with probe.reward_c = c); untrusted:
                                                             g_i (fallback grpo) or 0 (drop)
    step_gate         on each step (a step checker)          OPDVR's cells with the verdict of the
                                                             token's own step instead of the rollout's
    first_error_gate  on the first wrong step                the same cells; "correct" before the
                                                             rollout's first wrong step, "wrong" after
    hybrid            as a reward beside the teacher         the gate's A + c g_i
    staged            in time: teacher first, then reward    opd's A before the switch step, g_i after
    oracle_gate       nowhere real (a bound, tiny world)     the gate's A, 0 where the teacher's top
                                                             token is not the known correct one

What each reproduces, and where the reading is this project's:
* teacher_probe follows TGOPD ("Verify before you distill", arXiv 2609.02998): a few verified
  teacher samples per prompt decide whether the prompt is distilled or trained by GRPO. The
  probe count M = 4 and the pass-rate threshold 0.5 are our defaults; `fallback="drop"` (no
  update at all on an untrusted prompt) is our control, separating "keep the teacher away" from
  "reward the student where the teacher fails".
* step_gate applies OPDVR's cells (correct & teacher down, wrong & teacher up: coefficient 0)
  per step; tokens outside any checkable step (EOS, a cut-off line) keep the rollout's verdict.
* first_error_gate reads VPPO ("Save the good prefix", arXiv 2601.18984) as a gate: the prefix
  before the first wrong step is trusted as correct, everything from it on as wrong. A rollout
  with no wrong step keeps its step verdicts (and the rollout's where there is none).
* hybrid is the additive form of slime / prime-rl / AReaL (teacher term + c x GRPO advantage)
  and, with the OPD teacher term, close to KDRL's joint KD + RL (arXiv 2506.02208), which also
  switches the KD term off on correct rollouts; we keep it on.
* staged follows "Sequential beats joint" (arXiv 2609.04108): OPD, then GRPO, one signal at a
  time; the switch is a fixed fraction of the run (`staged_switch`), our rule.
* probe.reward_c (the reward on trusted prompts too) is the hybrid restricted to the prompts the
  teacher passes: teacher term + c g_i there, g_i where it fails.

Two routes. A method that mixes the teacher's push with the reward's (teacher_probe with the grpo
fallback, hybrid) returns its advantage split in two, `Advantage.routes` = {"teacher": ...,
"reward": ...}, which sum to A. The trainer measures each route's gradient and can balance them
(`MixConfig`, docs/method.md §14): one loss and one clip let the route whose pushes are large on
a few tokens (the teacher's) take most of the update, whatever the share of prompts it owns.

* oracle_gate is not a method: it uses the tiny world's knowledge of the correct next token
  (up to a rollout's first mistake) to drop exactly the teacher's pushes at positions where the
  teacher's top token is wrong. It bounds what a per-position gate with perfect knowledge of
  those positions could do; the positions after a first mistake keep their push.

Shapes: R rollouts (B prompts x G samples), T response positions; masks are 1 on response
tokens. Every function here is pure: tensors in, tensors and a metrics dict out.

The equations, with what each reproduces: docs/method.md §13.

May import: gate, losses, torch. Never train, worlds or study.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .gate import GateConfig, GateOutput, sign_gate
from .losses import masked_mean

# Methods whose advantage reads more than log-probs and rewards, and what the world must give.
STEP_METHODS = ("step_gate", "first_error_gate")
NEEDS_WORLD = {"step_gate": "step_checker", "first_error_gate": "step_checker", "oracle_gate": "token_oracle"}
FALLBACKS = ("grpo", "drop")


@dataclass
class Signals:
    """What a method may read to form its advantage (R rollouts, T positions)."""

    old_logp: torch.Tensor                        # (R, T) log pi_old of the sampled tokens
    rewards: torch.Tensor                         # (R,) verifier rewards in {0, 1}
    group_ids: torch.Tensor                       # (R,) rollouts of one prompt share an id
    mask: torch.Tensor                            # (R, T) response-token mask
    teacher_logp: torch.Tensor | None = None      # (R, T) log pi_T; None under grpo (no teacher)
    ref_logp: torch.Tensor | None = None          # (R, T) log pi_ref (gate.reference = "initial")
    truncated: torch.Tensor | None = None         # (R,) bool, cut at max_new_tokens
    step_verdict: torch.Tensor | None = None      # (R, T) int: +1 correct step, -1 wrong, 0 none
    teacher_top: torch.Tensor | None = None       # (R, T) the teacher's argmax next token
    correct_next: torch.Tensor | None = None      # (R, T) the correct next token, -1 unknown
    prompt_trusted: torch.Tensor | None = None    # (R,) bool: the teacher passed its probe


@dataclass
class Advantage:
    """What `method_advantage` returns."""

    advantage: torch.Tensor              # (R, T) A, 0 outside the mask
    lambda_t: torch.Tensor               # (R, T) coefficient on the teacher's push (1 under grpo)
    gate: GateOutput | None = None       # the gate's output (classes, a1, a2), None under grpo
    metrics: dict = field(default_factory=dict)
    teacher_term: torch.Tensor | None = None  # (R, T) the part of A that comes from the teacher's
                                              # push (what the evidence compares with a2); None under grpo
    routes: dict | None = None           # mixed methods: {"teacher": (R, T), "reward": (R, T)}, summing
                                         # to A; None for a method with one signal
    route_rows: dict | None = None       # {"teacher": (R,) bool, "reward": (R,) bool}: the rollouts each
                                         # route owns (its token count under mix.normalise="route")


def grpo_advantage(rewards: torch.Tensor, group_ids: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Verifier-only baseline (docs/method.md §3): (r - mean_G r) / (std_G r + eps) per rollout, (R,)."""
    out = torch.zeros_like(rewards, dtype=torch.float32)
    r_all = rewards.float()
    for g in group_ids.unique():
        sel = group_ids == g
        r = r_all[sel]
        out[sel] = (r - r.mean()) / (r.std(unbiased=False) + eps)
    return out


def first_error_verdict(step_verdict: torch.Tensor) -> torch.Tensor:
    """+1 before a rollout's first wrong step, -1 from it on; a rollout without a wrong step
    keeps its step verdicts. step_verdict (R, T) int in {-1, 0, 1} -> (R, T) int."""
    wrong = step_verdict < 0                                                      # (R, T)
    seen = torch.cumsum(wrong.long(), dim=1) > 0                                  # (R, T) at/after
    has_error = wrong.any(dim=1, keepdim=True)                                    # (R, 1)
    prefix = torch.where(seen, torch.full_like(step_verdict, -1), torch.ones_like(step_verdict))
    return torch.where(has_error, prefix, step_verdict)


def oracle_wrong_positions(teacher_top: torch.Tensor, correct_next: torch.Tensor,
                           mask: torch.Tensor) -> torch.Tensor:
    """(R, T) bool: response positions where the correct next token is known and the teacher's
    most likely token is not it."""
    return mask.bool() & (correct_next >= 0) & (teacher_top != correct_next)


def method_advantage(method: str, gate: GateConfig, s: Signals, *, hybrid_c: float = 1.0,
                     fallback: str = "grpo", reward_c: float = 0.0) -> Advantage:
    """The per-token advantage A (R, T) of `method` (the table of the module docstring).

    gate: the run's gate config; it is the teacher term of every teacher method (OPD under
    teacher_probe, hybrid and oracle_gate by default, OPDVR's cells under the step methods).
    hybrid_c: the GRPO coefficient c of `hybrid`. fallback: what an untrusted prompt gets
    under `teacher_probe` ("grpo" or "drop"); reward_c: the GRPO coefficient on its trusted
    prompts (0: the teacher alone there). `staged` is not formed here: the trainer asks for
    "opd" or "grpo" by the step (`staged_method`).
    """
    mask = s.mask.bool()
    zero = torch.zeros((), device=s.old_logp.device)
    if method == "staged":
        raise ValueError("method=staged is OPD before its switch step and GRPO after: ask for "
                         "staged_method(step, steps, switch) instead")
    if method == "grpo":
        g = grpo_advantage(s.rewards, s.group_ids)
        adv = torch.where(mask, g[:, None].expand_as(s.old_logp), zero)
        return Advantage(adv, torch.ones_like(s.old_logp), None,
                         {"adv_abs_mean": masked_mean(adv.abs(), mask).item()})
    if s.teacher_logp is None:
        raise ValueError(f"method={method} needs the teacher's log-probs (Signals.teacher_logp)")

    verdict, routes, route_rows = None, None, None
    if method in STEP_METHODS:
        if s.step_verdict is None:
            raise ValueError(f"method={method} needs per-token step verdicts (a world with a step checker)")
        verdict = s.step_verdict if method == "step_gate" else first_error_verdict(s.step_verdict)
    out = sign_gate(s.teacher_logp, s.old_logp, s.rewards, s.group_ids, s.mask, s.ref_logp, gate,
                    truncated=s.truncated, token_verdict=verdict)
    adv, lam, metrics = out.advantage, out.lambda_t, dict(out.metrics)
    teacher_term = adv                                                            # (R, T)

    if method == "oracle_gate":
        if s.teacher_top is None or s.correct_next is None:
            raise ValueError("method=oracle_gate needs the teacher's top tokens and the world's correct next tokens")
        drop = oracle_wrong_positions(s.teacher_top, s.correct_next, mask)        # (R, T)
        adv, lam = torch.where(drop, zero, adv), torch.where(drop, zero, lam)
        metrics["frac_oracle_dropped"] = masked_mean(drop.float(), mask).item()
        teacher_term = adv
    elif method == "teacher_probe":
        if s.prompt_trusted is None:
            raise ValueError("method=teacher_probe needs each rollout's probe result (Signals.prompt_trusted)")
        if fallback not in FALLBACKS:
            raise ValueError(f"probe fallback must be one of {FALLBACKS}, got {fallback!r}")
        trusted = s.prompt_trusted.bool().to(adv.device)[:, None]                 # (R, 1)
        g_full = grpo_advantage(s.rewards, s.group_ids)[:, None] * torch.ones_like(adv)   # (R, T)
        g = g_full if fallback == "grpo" else torch.zeros_like(adv)
        teacher_term = torch.where(trusted & mask, adv, zero)                   # no teacher where it failed
        reward = torch.where(mask, torch.where(trusted, reward_c * g_full, g), zero)   # (R, T)
        adv = teacher_term + reward
        lam = torch.where(trusted, lam, zero)
        metrics["probe_frac_fallback"] = 1.0 - s.prompt_trusted.float().mean().item()
        if fallback == "grpo" or reward_c > 0:
            routes = {"teacher": teacher_term, "reward": reward}
            t_rows = s.prompt_trusted.bool().to(adv.device)                       # (R,)
            r_rows = (~t_rows & (fallback == "grpo")) | (t_rows & (reward_c > 0))
            route_rows = {"teacher": t_rows, "reward": r_rows}
    elif method == "hybrid":
        g = grpo_advantage(s.rewards, s.group_ids)[:, None]                       # (R, 1)
        metrics["teacher_adv_abs_mean"] = masked_mean(adv.abs(), mask).item()
        metrics["grpo_adv_abs_mean"] = masked_mean((g * torch.ones_like(adv)).abs(), mask).item()
        reward = torch.where(mask, hybrid_c * g * torch.ones_like(adv), zero)   # (R, T)
        routes = {"teacher": torch.where(mask, adv, zero), "reward": reward}
        every = torch.ones(adv.shape[0], dtype=torch.bool, device=adv.device)
        route_rows = {"teacher": every, "reward": every}
        adv = torch.where(mask, adv + hybrid_c * g, zero)
    metrics["adv_abs_mean"] = masked_mean(adv.abs(), mask).item()
    metrics["frac_zero_push"] = masked_mean((lam == 0).float(), mask).item()   # teacher's push dropped
    return Advantage(adv, lam, out, metrics, teacher_term, routes, route_rows)


def staged_method(step: int, steps: int, switch: float) -> str:
    """`staged`'s method at `step` of a `steps`-step run: "opd" before round(switch x steps), "grpo" from it on."""
    return "opd" if step < round(switch * steps) else "grpo"
