"""The sign-consistency gate of SG-OPD (docs/method.md §3-5).

One pure function, `sign_gate`, turns per-token log-probs and per-rollout verifier rewards into
the per-token advantage that the policy-gradient loss multiplies with log pi_theta:

    a2_{i,t} = log pi_T(y_{i,t}) - log pi_old(y_{i,t})          teacher signal, per token
    a1_i     = r_i - mean_group(r)      (a1_mode="group")        verifier signal, per rollout
             = 2 r_i - 1                (a1_mode="sign")

    class:  consensus  sign(a1) == sign(a2), |a2| > tau, a1 != 0    -> lambda_t = lambda_e (>= 1)
            conflict   sign(a1) == -sign(a2), |a2| > tau, a1 != 0   -> lambda_t = lambda_i (in [0, 1])
                       type I: a1 > 0 (correct rollout), teacher pushes the token down (a2 < 0)
                       type II: a1 < 0 (wrong rollout), teacher pushes the token up (a2 > 0)
            neutral    otherwise                                     -> lambda_t = lambda_n

    A_{i,t} = a2_{i,t} + (lambda_t - 1) * (log pi_T - log pi_ref)    (G-OPD form)
            = lambda_t * a2_{i,t}                                     when reference = "old"

The gate as four numbers. The verdict (correct / wrong) times the teacher's direction (up,
a2 > 0 / down, a2 < 0) makes four cells, and each may carry its own coefficient:

                     teacher pushes up (a2 > 0)     teacher pushes down (a2 < 0)
    correct (a1 > 0)  correct_up   (consensus)       correct_down (conflict I)
    wrong   (a1 < 0)  wrong_up     (conflict II)     wrong_down   (consensus)

lambda_e fills the two consensus cells and lambda_i the two conflict cells (the other way round
with `swapped`) unless a cell is set explicitly. Every method compared here is one point of that table (`GateConfig.cells()`):

    method           correct_up  correct_down  wrong_up  wrong_down  a1_mode  reference
    opd              1           1             1         1           group    old
    exopd(1.25)      1.25        1.25          1.25      1.25        group    initial
    sgopd            1.8         1             1         1.8         group    old
    opdvr            1           0             0         1           sign     old
    reversed         1           1.8           1.8       1           group    old
    correct_only     1           1             0         0           sign     old

Why the cells matter: a correct carry inside a wrong rollout that the teacher pushes down is
"consensus" (wrong & down) and the default gate pushes it down 1.8x harder than OPD. A verdict
is per rollout, so it cannot say which token was wrong; the cells let a sweep ask which one
carries the harm.

A soft gate (`soft_k`, the form of later reweighting papers) replaces the hard classes on
evidence tokens by a smooth weight lambda_t = 2 * sigmoid(soft_k * sign(a1) * a2): 1 where
a2 = 0, towards 2 for strong consensus and towards 0 for strong conflict. Like the hard gate it
reads only the sign of a1 (the verdict), never its size: under a1_mode="group" the size of
r - mean_G r depends on how many rollouts of the group passed, which says nothing about a token.
The factor 2 is this project's choice, so that a token without evidence keeps plain OPD's
weight (a bare sigmoid would halve it); as soft_k grows it tends to the hard gate with
lambda_e = 2, lambda_i = 0.

`a2_scale="sign"` replaces a2 by its sign in A = lambda_t a2: every push of the teacher has the
same size, so the few tokens where the student and the teacher disagree by 10-20 nats cannot
carry most of the update (TV-OPD, arXiv 2609.08341, reports sign(a2) at least as good as a2).
`adv_clip` is the softer form: A clamped to [-c, c].

Readings this project chose where the paper is not explicit (docs/method.md §11 lists them all):
* a1 uses only the sign of the verifier's group advantage; "group" mode makes all-correct and
  all-wrong groups neutral (no evidence); "sign" mode treats every verdict as evidence.
* Classes are decided from a1 and a2 whatever the reference; with reference = "initial" a
  consensus token can still get A < 0 (the class comes from a2, the size from the G-OPD reward).
* The conflict type is read from the sign of a1 (type I: a1 > 0), which for binary rewards is
  the same as r = 1 (type I) / r = 0 (type II) and extends to shaped rewards.
* Positions outside the mask get class NEUTRAL, lambda_t = lambda_n and A = 0; the metrics
  count only masked (response) tokens.
* A rollout cut at max_new_tokens is usually graded wrong because it never reached an answer,
  so the tokens its teacher endorses become conflicts because of length, not error.
  `truncated` chooses what its verdict is: "graded" (the verifier's, the default), "wrong"
  (r = 0 whatever the text says) or "neutral" (a1 = 0: its tokens carry no verifier evidence;
  the group mean of the other rollouts still counts its graded reward).
* lambda_i = 0 means masking only with reference = "old" (A = lambda_t * a2). With reference =
  "initial" a conflict token gets A = a2 - (log pi_T - log pi_ref) = log pi_ref - log pi_old:
  about 0 at the first step, but the pull back towards the initial student afterwards. That
  is G-OPD's reward at scale 0, not masking; `GateConfig.conflict_masking()` therefore
  always uses reference = "old".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

import torch

from .losses import k3_kl, masked_mean


class TokenClass(enum.IntEnum):
    """The gate's verdict on one response token (values are stable: saved rollouts use them)."""

    NEUTRAL = 0
    CONSENSUS = 1
    CONFLICT_I = 2    # correct rollout (a1 > 0), teacher pushes the sampled token down (a2 < 0)
    CONFLICT_II = 3   # wrong rollout (a1 < 0), teacher pushes the sampled token up (a2 > 0)


A1_MODES = ("group", "sign")
REFERENCES = ("old", "initial")
TRUNCATED_MODES = ("graded", "wrong", "neutral")
A2_SCALES = ("value", "sign")
CELLS = ("correct_up", "correct_down", "wrong_up", "wrong_down")


@dataclass(frozen=True)
class GateConfig:
    """Knobs of the sign-consistency gate (docs/method.md §4-5). Defaults: the paper's best setting."""

    lambda_e: float = 1.8          # consensus coefficient: extrapolate, must be >= 1 when gating
    lambda_i: float = 1.0          # conflict coefficient: interpolate, in [0, 1] when gating
    lambda_n: float = 1.0          # neutral coefficient: 1 = plain OPD where there is no evidence
    tau: float = 0.0               # dead zone on |a2|: tokens with |a2| <= tau are neutral
    a1_mode: str = "group"         # "group": a1 = r - mean_G r; "sign": a1 = 2r - 1
    reference: str = "old"         # pi_ref in the G-OPD advantage: "old" (free) or "initial"
    adv_clip: float | None = None  # clamp A to [-c, c]; None = off
    a2_scale: str = "value"        # the teacher's push per token: "value" (lambda_t a2) or "sign"
                                   # (lambda_t sign(a2): every push the same size, so a few tokens
                                   # with |a2| of 10-20 cannot dominate the update)
    truncated: str = "graded"      # verdict of a rollout cut at max_new_tokens: "graded" (the
                                   # verifier's), "wrong" (r = 0) or "neutral" (a1 = 0, no evidence)
    # The four cells (module docstring); None = lambda_e (consensus cells) / lambda_i (conflict cells)
    correct_up: float | None = None    # a1 > 0, a2 > 0: consensus on a correct rollout
    correct_down: float | None = None  # a1 > 0, a2 < 0: conflict type I
    wrong_up: float | None = None      # a1 < 0, a2 > 0: conflict type II
    wrong_down: float | None = None    # a1 < 0, a2 < 0: consensus on a wrong rollout
    soft_k: float | None = None        # soft gate: lambda_t = 2 sigmoid(soft_k sign(a1) a2) on evidence
                                       # tokens instead of the cells; None = the hard gate
    swapped: bool = False              # the reversed gate: consensus cells take lambda_i and conflict
                                       # cells lambda_e (a negative control, `GateConfig.reversed`)

    def __post_init__(self):
        cells = [c for c in CELLS if getattr(self, c) is not None]
        for name in ("lambda_e", "lambda_i", "lambda_n", "tau", *cells) + (("soft_k",) if self.soft_k is not None else ()):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
                raise ValueError(f"GateConfig.{name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"GateConfig.{name} must be >= 0, got {value}")
        if self.gating:
            # docs/method.md §4: with distinct coefficients the gate extrapolates consensus tokens and
            # interpolates conflict tokens; anything else is not SG-OPD and is almost surely a typo.
            if self.lambda_e < 1:
                raise ValueError(f"GateConfig.lambda_e = {self.lambda_e}: the consensus coefficient "
                                 "extrapolates and must be >= 1 while gating (lambda_i != lambda_e)")
            if not 0 <= self.lambda_i <= 1:
                raise ValueError(f"GateConfig.lambda_i = {self.lambda_i}: the conflict coefficient "
                                 "interpolates and must be in [0, 1] while gating")
        if self.a1_mode not in A1_MODES:
            raise ValueError(f"GateConfig.a1_mode must be one of {A1_MODES}, got {self.a1_mode!r}")
        if self.reference not in REFERENCES:
            raise ValueError(f"GateConfig.reference must be one of {REFERENCES}, got {self.reference!r}")
        if self.soft_k is not None and (cells or self.swapped):
            raise ValueError(f"GateConfig.soft_k replaces the four cells; set one or the other, not both "
                             f"(cells set: {cells or 'swapped'})")
        if self.truncated not in TRUNCATED_MODES:
            raise ValueError(f"GateConfig.truncated must be one of {TRUNCATED_MODES}, got {self.truncated!r}")
        if self.adv_clip is not None and not self.adv_clip > 0:
            raise ValueError(f"GateConfig.adv_clip must be > 0 or None, got {self.adv_clip!r}")
        if self.a2_scale not in A2_SCALES:
            raise ValueError(f"GateConfig.a2_scale must be one of {A2_SCALES}, got {self.a2_scale!r}")
        if self.a2_scale == "sign" and self.reference != "old":
            raise ValueError("GateConfig.a2_scale='sign' replaces a2 by its sign, which only the reference='old' "
                             "advantage (lambda_t a2) has; reference='initial' mixes a2 with another log-ratio")

    @property
    def gating(self) -> bool:
        """True when lambda_e and lambda_i differ (then lambda_e >= 1 and lambda_i <= 1 are enforced;
        explicit cells and `swapped` are free: the reversed gate uses the swap)."""
        return self.lambda_e != self.lambda_i

    def cells(self) -> dict[str, float]:
        """The coefficient of each of the four cells (module docstring), defaults filled in."""
        consensus, conflict = ((self.lambda_i, self.lambda_e) if self.swapped
                               else (self.lambda_e, self.lambda_i))
        fill = {"correct_up": consensus, "correct_down": conflict, "wrong_up": conflict, "wrong_down": consensus}
        return {c: (getattr(self, c) if getattr(self, c) is not None else fill[c]) for c in CELLS}

    @property
    def masks_against_initial(self) -> bool:
        """True for a gate that means to zero some tokens (a coefficient 0) while measuring the
        advantage against the initial student, where a coefficient 0 does not zero A (module
        docstring): refused by `config.validate`."""
        return self.reference == "initial" and self.shapes_tokens and (
            0.0 in self.cells().values() or self.lambda_n == 0.0)

    @property
    def shapes_tokens(self) -> bool:
        """True when tokens get different coefficients depending on the gate's evidence (any gate,
        soft or hard); False for OPD and ExOPD, which scale every token alike."""
        return self.soft_k is not None or len({*self.cells().values(), self.lambda_n}) > 1

    # Named settings: every method of the paper's comparison is one point of this config.
    @classmethod
    def opd(cls, **kw) -> "GateConfig":
        """Plain on-policy distillation: A = a2 for every token."""
        return cls(lambda_e=1.0, lambda_i=1.0, lambda_n=1.0, **kw)

    @classmethod
    def exopd(cls, lam: float = 1.25, **kw) -> "GateConfig":
        """ExOPD / G-OPD with reward scale `lam`, against the initial student (its default)."""
        kw.setdefault("reference", "initial")
        return cls(lambda_e=lam, lambda_i=lam, lambda_n=lam, **kw)

    @classmethod
    def conflict_masking(cls, **kw) -> "GateConfig":
        """Drop conflict tokens (A = 0), plain OPD elsewhere (close to OPDVR's ReLU gate).

        Always reference = "old": against the initial student lambda_i = 0 does not zero a
        conflict token's advantage (module docstring), so asking for it is an error.
        """
        if kw.get("reference", "old") != "old":
            raise ValueError("GateConfig.conflict_masking() zeroes conflict tokens only with reference='old'; "
                             "with reference='initial', lambda_i = 0 gives A = log pi_ref - log pi_old, not 0")
        kw["reference"] = "old"
        return cls(lambda_e=1.0, lambda_i=0.0, lambda_n=1.0, **kw)

    @classmethod
    def sgopd(cls, **kw) -> "GateConfig":
        """SG-OPD's sign gate at the paper's best setting (the defaults): consensus 1.8, conflict 1."""
        return cls(**kw)

    @classmethod
    def opdvr(cls, **kw) -> "GateConfig":
        """OPDVR's correctness gate (arXiv 2608.24696, as its reading note describes it): every
        verdict counts (a1 = 2r - 1), conflict tokens are zeroed and consensus is unscaled, so
        A = ReLU(a2) on correct rollouts and -ReLU(-a2) on wrong ones.

        Only adv_clip and truncated="graded" / "wrong" may be changed: any other override would
        quietly make it another gate, so it is refused (ValueError) instead. For a variant,
        build it with GateConfig(...) and give it its own name.
        """
        if kw.get("reference", "old") != "old":
            raise ValueError("GateConfig.opdvr() zeroes conflict tokens only with reference='old' "
                             "(module docstring: lambda_i = 0 is not masking against the initial student)")
        why = {"lambda_e": "consensus is unscaled (1)", "lambda_i": "conflict tokens are zeroed (0)",
               "lambda_n": "it has no neutral token to scale (1)", "tau": "every token with a2 != 0 counts (tau 0)",
               "a1_mode": "every verdict counts (a1_mode 'sign'; 'group' makes all-equal groups neutral)",
               "swapped": "it is not reversed", "soft_k": "it is a hard gate",
               **{c: "its cells come from lambda_e / lambda_i" for c in CELLS}}
        fixed = cls(lambda_e=1.0, lambda_i=0.0, lambda_n=1.0, a1_mode="sign")
        for name, value in kw.items():
            own = fixed.cells()[name] if name in CELLS else getattr(fixed, name, None)
            if name in why and value != own:
                raise ValueError(f"GateConfig.opdvr(): {name}={value!r} would make it another gate ({why[name]}); "
                                 "build the variant with GateConfig(...) instead")
        if kw.get("truncated") == "neutral":
            raise ValueError("GateConfig.opdvr(): truncated='neutral' would make it another gate (a1 = 0 takes "
                             "a truncated rollout's verdict away, while OPDVR's gate uses every verdict); "
                             "use 'graded' or 'wrong'")
        return fixed.replace(**{**kw, "reference": "old"})

    @classmethod
    def reversed(cls, lambda_e: float = 1.8, lambda_i: float = 1.0, **kw) -> "GateConfig":
        """A negative control: the sign gate with its coefficients swapped (consensus lambda_i,
        conflict lambda_e: 1.0 and 1.8 by default), same a1_mode, tau and lambda_n. It trusts the
        teacher most exactly where the verifier disagrees, so it should hurt."""
        return cls(lambda_e=lambda_e, lambda_i=lambda_i, swapped=True, **kw)

    @classmethod
    def correct_only(cls, **kw) -> "GateConfig":
        """Learn from correct rollouts only: plain OPD on them, nothing from wrong ones."""
        kw = {"a1_mode": "sign", **kw}
        return cls(lambda_e=1.0, lambda_i=1.0, correct_up=1.0, correct_down=1.0, wrong_up=0.0,
                   wrong_down=0.0, **kw)

    @classmethod
    def soft(cls, k: float = 4.0, **kw) -> "GateConfig":
        """The soft gate: lambda_t = 2 sigmoid(k sign(a1) a2) on evidence tokens (module docstring).
        k = 4 is this project's default: where the teacher's push is 0.5 nat (|a2| = 0.5) the
        weight is 1.76 on consensus and 0.24 on conflict; at 1 nat, 1.96 and 0.04."""
        return cls(soft_k=k, **kw)

    def replace(self, **changes) -> "GateConfig":
        return replace(self, **changes)


@dataclass
class GateOutput:
    """What `sign_gate` returns. Tensors are detached; shapes for B rollouts of T positions."""

    advantage: torch.Tensor     # (B, T) float32, A_{i,t}; 0 outside the mask
    token_class: torch.Tensor   # (B, T) int64, TokenClass values; NEUTRAL outside the mask
    lambda_t: torch.Tensor      # (B, T) float32, the per-token coefficient
    a1: torch.Tensor            # (B,)   float32, verifier signal per rollout
    a2: torch.Tensor            # (B, T) float32, teacher signal per token; 0 outside the mask
    metrics: dict = field(default_factory=dict)  # floats, docs/method.md §8


def group_advantage(rewards: torch.Tensor, group_ids: torch.Tensor, mode: str = "group"
                    ) -> torch.Tensor:
    """The verifier signal a1 per rollout (docs/method.md §3). rewards (B,), group_ids (B,) -> (B,).

    mode "group": r_i - mean of r over the rollouts that share i's group id; a group whose
    rewards are all equal gets exactly 0 (no evidence), even for shaped float rewards.
    mode "sign": 2 r_i - 1 for binary rewards (the verdict alone, never 0).
    """
    rewards = rewards.detach().float().reshape(-1)                               # (B,)
    if mode == "sign":
        return 2.0 * rewards - 1.0
    if mode != "group":
        raise ValueError(f"a1 mode must be one of {A1_MODES}, got {mode!r}")
    _, inverse, counts = torch.unique(group_ids.reshape(-1), return_inverse=True, return_counts=True)
    if bool((counts < 2).any()):
        lonely = group_ids.reshape(-1)[(counts[inverse] < 2)].tolist()
        raise ValueError(f"a1_mode='group' needs at least 2 rollouts per group; groups {sorted(set(lonely))} "
                         "have one (use a1_mode='sign' or sample G >= 2)")
    n_groups = counts.numel()
    sums = torch.zeros(n_groups, dtype=rewards.dtype, device=rewards.device).index_add_(0, inverse, rewards)
    mean = (sums / counts.to(rewards.dtype))[inverse]                             # (B,)
    fill_lo = torch.full((n_groups,), float("inf"), device=rewards.device)
    lo = fill_lo.scatter_reduce(0, inverse, rewards, reduce="amin")[inverse]      # (B,)
    hi = (-fill_lo).scatter_reduce(0, inverse, rewards, reduce="amax")[inverse]   # (B,)
    return torch.where(hi > lo, rewards - mean, torch.zeros_like(rewards))


def sign_gate(teacher_logp: torch.Tensor, old_logp: torch.Tensor, rewards: torch.Tensor,
              group_ids: torch.Tensor, mask: torch.Tensor, ref_logp: torch.Tensor | None = None,
              cfg: GateConfig = GateConfig(), truncated: torch.Tensor | None = None,
              token_verdict: torch.Tensor | None = None) -> GateOutput:
    """Classify every response token and build the SG-OPD advantage (docs/method.md §3-5).

    Args:
        teacher_logp: (B, T) log pi_T of the sampled tokens.
        old_logp:     (B, T) log pi_old of the sampled tokens (the policy that sampled them).
        rewards:      (B,)   verifier reward per rollout, in {0, 1}.
        group_ids:    (B,)   int; rollouts of the same prompt share an id (for a1_mode="group").
        mask:         (B, T) response-token mask (bool or 0/1).
        ref_logp:     (B, T) log pi_ref, required iff cfg.reference == "initial".
        cfg:          GateConfig.
        truncated:    (B,)   bool, rollouts cut at max_new_tokens (None: none is). Read by
                      cfg.truncated ("wrong": r = 0; "neutral": a1 = 0) and by the metrics.
        token_verdict: (B, T) int in {-1, 0, 1} or None: a verdict per token (a step checker's,
                      advantage.py) that replaces the rollout's sign(a1) wherever it is not 0;
                      tokens with 0 keep the rollout's verdict.

    Returns a GateOutput; its metrics are token fractions over the masked tokens
    (frac_consensus, frac_conflict_i, frac_conflict_ii, frac_neutral, and frac_gated: the share
    of tokens whose coefficient lambda_t differs from the method's own base coefficient
    lambda_n, the one a token without evidence gets; so a method that scales every token
    alike has frac_gated = 0: OPD, and ExOPD, whose lambda_t is 1.25 everywhere),
    a2_mean (= -k1 KL), kl_k1, kl_k3 (estimates of KL(pi_old || pi_T)), adv_abs_mean,
    lambda_mean, frac_rollouts_no_evidence (a1 = 0) and frac_conflict_truncated (the share of
    conflict tokens that sit in truncated rollouts; 0 when there is no conflict).
    """
    if teacher_logp.shape != old_logp.shape or teacher_logp.shape != mask.shape:
        raise ValueError(f"teacher_logp, old_logp and mask must share a (B, T) shape; got "
                         f"{tuple(teacher_logp.shape)}, {tuple(old_logp.shape)}, {tuple(mask.shape)}")
    B = teacher_logp.shape[0]
    if rewards.reshape(-1).shape[0] != B or group_ids.reshape(-1).shape[0] != B:
        raise ValueError(f"rewards and group_ids need one entry per rollout (B = {B}); got "
                         f"{rewards.numel()} and {group_ids.numel()}")
    if cfg.reference == "initial" and ref_logp is None:
        raise ValueError("GateConfig.reference='initial' needs ref_logp (log-probs of the initial student)")
    if truncated is not None and truncated.reshape(-1).shape[0] != B:
        raise ValueError(f"truncated needs one entry per rollout (B = {B}); got {truncated.numel()}")
    if cfg.reference == "old" and ref_logp is not None:
        raise ValueError("ref_logp was given but GateConfig.reference='old' would ignore it; "
                         "set reference='initial' or drop ref_logp")

    with torch.no_grad():
        m = mask.bool()                                                          # (B, T)
        zero = torch.zeros((), device=teacher_logp.device)
        teacher_logp = teacher_logp.detach().float()
        old_logp = old_logp.detach().float()
        a2 = torch.where(m, teacher_logp - old_logp, zero)                        # (B, T)
        cut = (torch.zeros(B, dtype=torch.bool, device=a2.device) if truncated is None
               else truncated.reshape(-1).to(a2.device).bool())                   # (B,)
        r = rewards.detach().float().reshape(-1).to(a2.device)                    # (B,)
        if cfg.truncated == "wrong":
            r = torch.where(cut, torch.zeros_like(r), r)
        a1 = group_advantage(r, group_ids.to(a2.device), cfg.a1_mode)             # (B,)
        if cfg.truncated == "neutral":
            a1 = torch.where(cut, torch.zeros_like(a1), a1)

        a1_tok = a1[:, None].expand_as(a2)                                        # (B, T)
        if token_verdict is not None:
            if token_verdict.shape != a2.shape:
                raise ValueError(f"token_verdict must have the (B, T) shape {tuple(a2.shape)}, "
                                 f"got {tuple(token_verdict.shape)}")
            v = token_verdict.to(a2.device).float()
            a1_tok = torch.where(v != 0, v, a1_tok)
        s1 = torch.sign(a1_tok)                                                   # (B, T)
        s2 = torch.sign(a2)                                                       # (B, T)
        evidence = m & (s1 != 0) & (a2.abs() > cfg.tau)                           # (B, T)
        consensus = evidence & (s1 == s2)
        conflict = evidence & (s1 == -s2)
        conflict_i = conflict & (s1 > 0)
        conflict_ii = conflict & (s1 < 0)

        token_class = torch.full_like(a2, int(TokenClass.NEUTRAL), dtype=torch.long)  # (B, T)
        token_class[consensus] = int(TokenClass.CONSENSUS)
        token_class[conflict_i] = int(TokenClass.CONFLICT_I)
        token_class[conflict_ii] = int(TokenClass.CONFLICT_II)

        lambda_t = torch.full_like(a2, cfg.lambda_n)                              # (B, T)
        if cfg.soft_k is not None:
            soft = 2.0 * torch.sigmoid(cfg.soft_k * s1 * a2)                      # (B, T)
            lambda_t = torch.where(evidence, soft, lambda_t)
        else:
            cell = cfg.cells()
            lambda_t[consensus & (s1 > 0)] = cell["correct_up"]
            lambda_t[conflict_i] = cell["correct_down"]
            lambda_t[conflict_ii] = cell["wrong_up"]
            lambda_t[consensus & (s1 < 0)] = cell["wrong_down"]

        if cfg.reference == "old":
            push = torch.sign(a2) if cfg.a2_scale == "sign" else a2               # (B, T)
            advantage = lambda_t * push                                           # (B, T)
        else:
            reward_vs_ref = teacher_logp - ref_logp.detach().float()              # (B, T)
            advantage = a2 + (lambda_t - 1.0) * reward_vs_ref
        if cfg.adv_clip is not None:
            advantage = advantage.clamp(-cfg.adv_clip, cfg.adv_clip)
        advantage = torch.where(m, advantage, zero)

        metrics = {
            "frac_consensus": masked_mean(consensus.float(), m).item(),
            "frac_conflict_i": masked_mean(conflict_i.float(), m).item(),
            "frac_conflict_ii": masked_mean(conflict_ii.float(), m).item(),
            "frac_neutral": masked_mean((m & ~consensus & ~conflict).float(), m).item(),
            "frac_gated": masked_mean((lambda_t != cfg.lambda_n).float(), m).item(),
            "frac_conflict_truncated": (float((conflict & cut[:, None]).sum()) / int(conflict.sum())
                                        if bool(conflict.any()) else 0.0),
            "a2_mean": masked_mean(a2, m).item(),
            "kl_k1": -masked_mean(a2, m).item(),
            "kl_k3": masked_mean(k3_kl(old_logp, teacher_logp), m).item(),
            "adv_abs_mean": masked_mean(advantage.abs(), m).item(),
            "lambda_mean": masked_mean(lambda_t, m).item(),
            "frac_rollouts_no_evidence": (a1 == 0).float().mean().item() if B else 0.0,
        }
    return GateOutput(advantage=advantage, token_class=token_class, lambda_t=lambda_t,
                      a1=a1, a2=a2, metrics=metrics)


# --------------------------------------------------------------------------------------------
# Per-token evidence of harm: what a gate does where the teacher is wrong
# --------------------------------------------------------------------------------------------

EFFECTS = ("zeroed", "shrunk", "unchanged", "amplified", "flipped")


def gate_evidence(a2: torch.Tensor, advantage: torch.Tensor, teacher_top: torch.Tensor,
                  correct_next: torch.Tensor, mask: torch.Tensor) -> dict:
    """What a gate did to the advantage where the teacher is wrong, against where it is right.

    Where a world knows the correct next token of a rollout (the tiny task does, up to and
    including the rollout's first mistake; later positions have no correct continuation), the
    teacher is *wrong* at a position when its most likely next token (`teacher_top`) is not the
    correct one. Plain OPD would use A = a2 there; each position's gated advantage is compared
    with it: zeroed (A = 0, a2 != 0), shrunk (same sign, smaller), unchanged, amplified (same
    sign, larger) or flipped (opposite sign).

    Args:
        a2, advantage: (B, T) float, the teacher signal and the gate's advantage A.
        teacher_top:   (B, T) int64, the teacher's argmax next token at each position.
        correct_next:  (B, T) int64, the correct next token; -1 where it is not known.
        mask:          (B, T) response-token mask.

    Returns floats: evidence_positions (count), evidence_teacher_wrong (share of the known
    positions), and for who in {wrong, right}: evidence_{who}_{effect} (share of that kind of
    position), evidence_{who}_adv_mean and evidence_{who}_a2_mean (mean A and mean a2 there).
    """
    with torch.no_grad():
        known = mask.bool() & (correct_next >= 0)                                # (B, T)
        wrong = known & (teacher_top != correct_next)
        right = known & (teacher_top == correct_next)
        a2, adv = a2.float(), advantage.float()
        same = torch.sign(adv) == torch.sign(a2)
        effect = {
            "zeroed": (adv == 0) & (a2 != 0),
            "shrunk": same & (adv != 0) & (adv.abs() < a2.abs()),
            "unchanged": adv == a2,
            "amplified": same & (adv.abs() > a2.abs()),
            "flipped": (torch.sign(adv) * torch.sign(a2)) < 0,
        }
        n_known = int(known.sum())
        out = {"evidence_positions": float(n_known),
               "evidence_teacher_wrong": float(wrong.sum()) / n_known if n_known else 0.0}
        for who, sel in (("wrong", wrong), ("right", right)):
            n = int(sel.sum())
            for name, hit in effect.items():
                out[f"evidence_{who}_{name}"] = float((hit & sel).sum()) / n if n else 0.0
            out[f"evidence_{who}_adv_mean"] = float(adv[sel].mean()) if n else 0.0
            out[f"evidence_{who}_a2_mean"] = float(a2[sel].mean()) if n else 0.0
    return out


def _effects(a2: torch.Tensor, adv: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the advantage A did to plain OPD's A = a2 at each position, (B, T) bool each."""
    same = torch.sign(adv) == torch.sign(a2)
    return {
        "zeroed": (adv == 0) & (a2 != 0),
        "shrunk": same & (adv != 0) & (adv.abs() < a2.abs()),
        "unchanged": adv == a2,
        "amplified": same & (adv.abs() > a2.abs()),
        "flipped": (torch.sign(adv) * torch.sign(a2)) < 0,
    }


PUSHES = ("harm", "help")


def push_evidence(a2: torch.Tensor, advantage: torch.Tensor, token_ok: torch.Tensor,
                  mask: torch.Tensor, prefix: str) -> dict:
    """What a method did to the teacher's pushes, sorted by what each push does to the sampled token.

    The teacher's push on a sampled token is a2 (up when a2 > 0, down when a2 < 0). Where it is
    known whether the sampled token is correct (`token_ok`), a push is
        harmful: down on a correct token or up on a wrong one,
        helpful: up on a correct token or down on a wrong one.
    (This is the direction of the push, not whether the teacher's top token is right: before a
    rollout's first mistake the sampled token is correct, so a2 < 0 there is a harmful push even
    where the teacher's favourite token is the same correct one.) Each method's A is compared
    with plain OPD's A = a2 at those positions (zeroed / shrunk / unchanged / amplified / flipped).

    Args:
        a2, advantage: (B, T) float, the teacher's push and the method's advantage A.
        token_ok:      (B, T) int, +1 the sampled token is correct, -1 wrong, 0 not known. From
                       the oracle of correct next tokens (positions up to and including the
                       first mistake) or from a step checker (every token of a checkable step:
                       correct = the token's step is correct on its own operands).
        mask:          (B, T) response-token mask.
        prefix:        the metrics' name prefix ("push_oracle", "push_step").

    Returns floats: {prefix}_positions (known positions), {prefix}_harm_share (share of them with
    a harmful push), and for kind in (harm, help): {prefix}_{kind}_n (count),
    {prefix}_{kind}_{effect} (share of that kind's positions), {prefix}_{kind}_a2_abs_mean and
    {prefix}_{kind}_adv_abs_mean (mean sizes |a2| and |A|: a harmful push may point either way,
    so a signed mean would cancel).
    """
    with torch.no_grad():
        a2, adv = a2.float(), advantage.float()
        known = mask.bool() & (token_ok != 0)                                   # (B, T)
        ok, bad = known & (token_ok > 0), known & (token_ok < 0)
        kinds = {"harm": (ok & (a2 < 0)) | (bad & (a2 > 0)),
                 "help": (ok & (a2 > 0)) | (bad & (a2 < 0))}
        effect = _effects(a2, adv)
        n_known = int(known.sum())
        out = {f"{prefix}_positions": float(n_known),
               f"{prefix}_harm_share": float(kinds["harm"].sum()) / n_known if n_known else 0.0}
        for kind, sel in kinds.items():
            n = int(sel.sum())
            out[f"{prefix}_{kind}_n"] = float(n)
            for name, hit in effect.items():
                out[f"{prefix}_{kind}_{name}"] = float((hit & sel).sum()) / n if n else 0.0
            out[f"{prefix}_{kind}_a2_abs_mean"] = float(a2[sel].abs().mean()) if n else 0.0
            out[f"{prefix}_{kind}_adv_abs_mean"] = float(adv[sel].abs().mean()) if n else 0.0
    return out
