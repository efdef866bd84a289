"""Training configuration: one dataclass tree, a YAML file, and `key=value` overrides.

    cfg = load_config("configs/tiny.yaml", ["gate.lambda_e=1.5", "steps=100"])   # CLI
    cfg = TrainConfig(method="opd", steps=100)                                   # notebook

Presets (`method`) set the gate and the phased-teacher-sampling knobs of docs/method.md §4-6:

    opd        plain on-policy distillation: lambdas all 1, no teacher rollouts
    exopd      ExOPD / G-OPD: all lambdas = exopd_lambda, reference = initial student
    gate_only  the sign gate (lambda_e, lambda_i), no teacher rollouts
    pts_only   plain OPD plus phased teacher sampling
    sgopd      the sign gate plus phased teacher sampling (the full method)
    grpo       verifier-only RL baseline: no teacher, group-normalised reward advantage
    opdvr      OPDVR's correctness gate: a1 = 2r - 1, conflict tokens zeroed (GateConfig.opdvr)
    reversed_gate  negative control: gate_only with consensus 1.0 and conflict 1.8 (GateConfig.reversed)
    soft_gate  lambda_t = 2 sigmoid(k sign(a1) a2) on evidence tokens, k = 4 (GateConfig.soft)

Where else a verifier can act (advantage.py has them side by side):

    teacher_probe     M verified teacher samples per prompt (probe.*): prompts the teacher
                      passes get OPD (or gate.*), the others GRPO (probe.fallback=grpo) or nothing
    step_gate         OPDVR's cells with each token's verdict from the world's step checker
    first_error_gate  the same cells, "correct" before the first wrong step, "wrong" from it on
    hybrid            A = teacher advantage (OPD, or gate.*) + hybrid_c x the GRPO advantage
    staged            OPD for the first staged_switch of the steps, then GRPO (one signal at a time)
    oracle_gate       a bound (tiny world only): OPD with the push dropped where the teacher's
                      top token is not the known correct one

Every gate is one point of the four-cell table of gate.py (`gate.correct_up=...` etc. set a
cell directly). Gates shape tokens by the sampled token's class, which only the sampled loss
can express: a gate with `loss_type=dense` is refused (`validate` says why).

A preset only fills in what the user did not set: explicit `gate.*` / `pts.*` values win. An
override of a field that defines the preset (`PRESET_DEFINES`: a gate coefficient under `opd`,
a cell or `a1_mode` under `opdvr`, `pts.enabled` anywhere) still runs, with a one-line warning
naming the method and the override: the run is then another method under that method's name.
Every field is checked before any model is loaded; errors name the field.

Rollout engines (`rollout_engine`, engines.py): "hf" (HF generate, the default, CPU and GPU)
or "vllm" (GPU, the optional extra `pip install '.[vllm]'`, LoRA students, knobs in `vllm.*`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .engines import ENGINES, VLLM_INSTALL_HINT, vllm_importable
from .gate import CELLS, GateConfig
from .scheduler import PTSConfig

METHODS = ("opd", "exopd", "gate_only", "pts_only", "sgopd", "grpo", "opdvr", "reversed_gate", "soft_gate",
           "teacher_probe", "step_gate", "first_error_gate", "hybrid", "oracle_gate", "staged")
VERIFIER_ROLE_METHODS = ("teacher_probe", "step_gate", "first_error_gate", "hybrid", "oracle_gate")

# What defines each preset: the gate.* / pts.* fields whose preset value *is* the method. Changing
# one trains another method under this one's name, so it gets a warning (`_warn_redefined`); the
# other fields are the method's own knobs (lambda_e / lambda_i / tau of a sign gate, soft_k of the
# soft gate, the PTS constants). A new preset lists its fields here, nowhere else (a test checks
# that every method has its line). grpo reads no gate.* or pts.* field (`_warn_ignored` says so).
_COEFFICIENTS = ("gate.lambda_e", "gate.lambda_i", "gate.lambda_n", "gate.correct_up", "gate.correct_down",
                 "gate.wrong_up", "gate.wrong_down", "gate.soft_k", "gate.swapped")   # every token's weight
_GATE_KIND = ("gate.soft_k", "gate.swapped")          # hard or soft gate, the sign gate or its reversal
PRESET_DEFINES = {
    "opd": ("pts.enabled", *_COEFFICIENTS),
    "exopd": ("pts.enabled", *_COEFFICIENTS, "gate.reference"),   # the scale is exopd_lambda
    "gate_only": ("pts.enabled", *_GATE_KIND),
    "pts_only": ("pts.enabled", *_COEFFICIENTS),
    "sgopd": ("pts.enabled", *_GATE_KIND),
    "grpo": (),
    "opdvr": ("pts.enabled", *_COEFFICIENTS, "gate.a1_mode", "gate.tau"),
    "reversed_gate": ("pts.enabled", *_GATE_KIND),
    "soft_gate": ("pts.enabled", "gate.correct_up", "gate.correct_down", "gate.wrong_up", "gate.wrong_down",
                  "gate.swapped"),
    # where else the verifier acts (advantage.py): their teacher term is OPD or the gate.* you set,
    # so gate.* is their own knob, except what turns a step gate into another kind of gate
    "teacher_probe": ("pts.enabled",),
    "step_gate": ("pts.enabled", *_GATE_KIND, "gate.a1_mode"),
    "first_error_gate": ("pts.enabled", *_GATE_KIND, "gate.a1_mode"),
    "hybrid": ("pts.enabled",),
    "oracle_gate": ("pts.enabled",),
    "staged": ("pts.enabled", *_COEFFICIENTS),     # plain OPD, then GRPO
}
LOSS_TYPES = ("sampled", "dense")
EVAL_RNG = ("isolated", "shared")   # where evaluation draws its random numbers (TrainConfig.eval_rng)
SIZES = ("tiny", "smol", "qwen")
# Experiment trackers (through accelerate) and the package each one needs.
TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the field."""


@dataclass
class WorldConfig:
    """Which models and data to train on."""

    size: str = "tiny"               # "tiny" (CPU, minutes), "smol" (CPU, SmolLM2), "qwen" (GPU)
    style_gap: float = 0.0           # tiny world: breaks A1 (student solution style differs)
    teacher_noise: float = 0.0       # tiny and smol worlds: breaks A2 (teacher forgets carries)
    teacher_slip_kind: str = "carry" # tiny and smol: what the noisy teacher forgets, "carry" (A2 shared
                                     # error) or "borrow" (A2 complementary error)
    student_slip_kind: str = "both"  # tiny and smol: what the sloppy student forgets, "both" (carries and
                                     # borrows) or "carry" (the A2 complementary student)
    teacher: str | None = None       # path or hub id overriding the size's default teacher
    student: str | None = None       # path or hub id overriding the size's default student
    train_data: str | None = None    # JSONL of training prompts; None = the size's default
    eval_data: str | None = None     # JSONL of held-out problems, or a committed split by name
                                     # ("eval_skills": 64 per skill); None = the size's default
    eval_unseen: str | None = "auto" # a second held-out set, scored beside eval_data at every
                                     # evaluation (metrics eval_unseen_*): problems the world's
                                     # models never saw while they were built. "auto" = the
                                     # committed split "eval_unseen" for the tiny world, none for
                                     # the others; a split name or JSONL; null = off
    lora: bool | None = None         # LoRA student; None = the size's default (off for tiny)
    student_quant: str = "none"      # "none" | "4bit" (QLoRA) | "8bit"
    teacher_finetune_steps: int | None = None  # smol: SFT steps of the default teacher's task
                                     # fine-tune (worlds/smol.py); None = its default, 0 = as shipped
    student_finetune_steps: int | None = None  # smol: SFT steps of the default student on sloppy
                                     # solutions (worlds/smol.py); None = its default, 0 = as shipped
    gradient_checkpointing: bool = False  # student: recompute activations in backward (less GPU
                                     # memory for long responses, about a third more time)
    lora_dropout: float = 0.0        # LoRA students: dropout on the adapter's input. Must stay 0
                                     # with ppo_epochs > 1 (the ratio pi_theta / pi_old would not
                                     # start at 1: old log-probs are scored with dropout off)


@dataclass
class VLLMConfig:
    """The vLLM rollout engine's knobs; read only when rollout_engine = "vllm" (engines.py)."""

    gpu_memory_utilization: float = 0.3  # share of the GPU vLLM may take (weights + KV cache);
                                         # the trainer's own models live in the rest
    dtype: str = "auto"                  # vLLM's weight dtype; "auto" = the checkpoint's (bf16 for Qwen2.5)
    max_model_len: int | None = None     # prompt + response tokens; None = the model's (32k for
                                         # Qwen2.5: set it to save KV-cache memory)
    enforce_eager: bool = False          # True skips CUDA-graph capture: faster start, slower decoding
    model: str | None = None             # base checkpoint vLLM loads; None = the LoRA student's base
    max_lora_rank: int | None = None     # None = the student's LoRA rank
    adapter_dir: str | None = None       # where each step's adapter is saved; None = a temporary folder


PROBE_SCOPES = ("all", "seen")


@dataclass(frozen=True)
class ProbeConfig:
    """Knobs of `method=teacher_probe`: which prompts the teacher is trusted on (advantage.py)."""

    m: int = 4                 # verified teacher samples per training prompt
    threshold: float = 0.5     # a prompt is trusted when the teacher's pass rate is at least this
    fallback: str = "grpo"     # untrusted prompts: "grpo" (the verifier's reward) or "drop" (no update)
    batch_prompts: int = 256   # prompts per teacher `generate` call while probing
    reward_c: float = 0.0      # the GRPO advantage x reward_c added on trusted prompts too (0: the
                               # teacher alone there)
    scope: str = "all"         # "all": every training prompt probed at the first step; "seen": each
                               # prompt probed when a batch first draws it (a big teacher, few steps)

    def __post_init__(self):
        if not (isinstance(self.m, int) and not isinstance(self.m, bool) and self.m >= 1):
            raise ValueError(f"ProbeConfig.m must be an integer >= 1, got {self.m!r}")
        if not (isinstance(self.threshold, (int, float)) and 0.0 <= self.threshold <= 1.0):
            raise ValueError(f"ProbeConfig.threshold must be in [0, 1], got {self.threshold!r}")
        if self.fallback not in ("grpo", "drop"):
            raise ValueError(f"ProbeConfig.fallback must be 'grpo' or 'drop', got {self.fallback!r}")
        if not (isinstance(self.batch_prompts, int) and self.batch_prompts >= 1):
            raise ValueError(f"ProbeConfig.batch_prompts must be an integer >= 1, got {self.batch_prompts!r}")
        if not (isinstance(self.reward_c, (int, float)) and 0.0 <= self.reward_c < float("inf")):
            raise ValueError(f"ProbeConfig.reward_c must be a finite number >= 0, got {self.reward_c!r}")
        if self.scope not in PROBE_SCOPES:
            raise ValueError(f"ProbeConfig.scope must be one of {PROBE_SCOPES}, got {self.scope!r}")


MIX_NORMALISE = ("step", "route")
MIX_BUDGETS = ("none", "share")


@dataclass(frozen=True)
class MixConfig:
    """How a method that mixes two signals balances them (teacher_probe with the grpo fallback or
    probe.reward_c > 0, hybrid): its advantage is split into a teacher route and a reward route
    (advantage.py), and these knobs decide each route's weight in the update (docs/method.md §14).
    The teacher's own scale is gate.a2_scale ("sign") or gate.adv_clip."""

    normalise: str = "step"          # "step": one loss over every token, divided by the step's token
                                     # count; "route": a loss term per route, each divided by the
                                     # token count of its own rollouts, the reward's x reward_weight
    reward_weight: float = 1.0       # normalise="route": weight of the reward route's term
    budget: str = "none"             # "none": the summed gradient, one global clip (grad_clip);
                                     # "share": each route's gradient rescaled to a target share
                                     # of the total norm, which is capped at grad_clip (no other clip)
    reward_share: float | None = None  # budget="share": the reward route's share of the gradient
                                     # norm; None = its share of the rollouts the routes own (a
                                     # rollout both own counts twice: hybrid gets 0.5, the probe
                                     # the share of prompts the teacher fails)

    def __post_init__(self):
        if self.normalise not in MIX_NORMALISE:
            raise ValueError(f"MixConfig.normalise must be one of {MIX_NORMALISE}, got {self.normalise!r}")
        if self.budget not in MIX_BUDGETS:
            raise ValueError(f"MixConfig.budget must be one of {MIX_BUDGETS}, got {self.budget!r}")
        if not (isinstance(self.reward_weight, (int, float)) and 0.0 <= self.reward_weight < float("inf")):
            raise ValueError(f"MixConfig.reward_weight must be a finite number >= 0, got {self.reward_weight!r}")
        if self.reward_share is not None and not (isinstance(self.reward_share, (int, float))
                                                  and 0.0 <= self.reward_share <= 1.0):
            raise ValueError(f"MixConfig.reward_share must be in [0, 1] or null, got {self.reward_share!r}")


@dataclass
class TrainConfig:
    """One on-policy distillation run (docs/method.md §7). Defaults: the tiny world on CPU."""

    method: str = "sgopd"              # preset of the gate.* and pts.* knobs (METHODS; each one is
                                       # described in this module's docstring and docs/usage.md)
    world: WorldConfig = field(default_factory=WorldConfig)
    gate: GateConfig | None = None     # None = the preset's; set fields to override
    pts: PTSConfig | None = None       # None = the preset's
    exopd_lambda: float = 1.25         # reward scale of the exopd preset
    probe: ProbeConfig = field(default_factory=ProbeConfig)  # method=teacher_probe's knobs
    hybrid_c: float = 1.0              # method=hybrid: A = teacher advantage + hybrid_c x GRPO advantage
    mix: MixConfig = field(default_factory=MixConfig)  # how a mixed method balances its two routes
    staged_switch: float = 0.5         # method=staged: the fraction of the steps trained as OPD before
                                       # GRPO takes over (a fixed rule, written before any run)
    oracle_reach: str = "first_mistake"  # oracle_gate: where the oracle knows the correct token, up to a
                                       # rollout's first mistake, or "local": also every result digit a
                                       # line's own operands fix (a wider bound; the tiny world has it)
    step_unit: str = "line"            # step_gate / first_error_gate: "line" (a token takes its line's
                                       # verdict) or "prefix" (in a wrong line, the characters before
                                       # its first wrong one count as correct: a checker that points
                                       # inside a line; the tiny world has one)
    loss_type: str = "sampled"         # "sampled" (the paper's REINFORCE form) or "dense" (full-vocab KL)
    dense_beta: float = 1.0            # dense loss divergence: 1 reverse KL (docs/method.md §5), 0 forward KL
    steps: int = 300                   # optimizer steps
    prompts_per_step: int = 16         # B prompts per step
    group_size: int = 8                # G rollouts per prompt (G = 8 learns; G = 4 barely moved)
    max_new_tokens: int = 40           # response budget (tiny solutions need about 30 tokens)
    temperature: float = 1.0           # sampling temperature of training rollouts (student and
                                       # teacher). Only 1 is allowed: log-probs are scored at T = 1
    eval_temperature: float = 1.0      # sampling temperature of held-out evaluation (avg@n, pass@k)
    rollout_engine: str = "hf"         # student rollouts: "hf" (HF generate, CPU/GPU) or "vllm"
                                       # (GPU, `pip install '.[vllm]'`, LoRA student; knobs in vllm.*)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    engine_check_every: int = 50       # compare the engine's log-probs with the trainer's at the first
                                       # step and every N steps (0 = never; the hf engine has none)
    engine_logp_tol: float = 0.05      # max mean |log-prob gap| per token, nats, before the run stops;
                                       # 0.05 is for matching precision, a bf16 or 4-bit-base gap is larger
    lr: float = 3e-4                   # AdamW learning rate (1e-3 drifted away from the teacher)
    warmup_steps: int = 10             # linear learning-rate warm-up
    weight_decay: float = 0.0          # AdamW weight decay
    grad_clip: float | None = 1.0      # max gradient norm; None = off
    ppo_epochs: int = 1                # updates per batch; > 1 uses the PPO-clip loss
    clip_eps: float = 0.2              # PPO ratio clip
    micro_batch_size: int | None = None  # rollouts per forward/backward; None = all at once
    eval_every: int = 100              # held-out evaluation period in steps (0 = only at the end)
    eval_problems: int = 256           # held-out problems used (the first ones of the split)
    eval_n: int = 8                    # samples per problem: avg@n and pass@k with k = n
    eval_rng: str = "isolated"         # "isolated": evaluation samples from a copy of the training
                                       # random state, so training never depends on when or how it
                                       # evaluates; "shared": it draws from the training stream itself,
                                       # the rule before this knob, kept only so runs that evaluated
                                       # mid-run (the horizon study) can be re-run exactly
    log_rollouts: int = 2              # rollouts saved per step with per-token gate details
    save_every: int = 50               # checkpoint period in steps (0 = only at the end)
    seed: int = 0                      # seeds data order, sampling and initialisation
    out_dir: str = "runs/default"      # logs, checkpoints, final model; {method} and {seed} are filled in
    report_to: list[str] = field(default_factory=list)  # extra trackers besides metrics.jsonl:
                                       # "tensorboard" (events in out_dir/sgopd_lite/), "wandb"

    def __post_init__(self):
        if isinstance(self.report_to, str):          # `report_to=tensorboard` on the command line
            self.report_to = [self.report_to]
        if isinstance(self.out_dir, str) and "{" in self.out_dir:   # runs/tiny/{method}: a folder per method
            try:
                self.out_dir = self.out_dir.format(method=self.method, seed=self.seed)
            except (KeyError, IndexError, ValueError) as err:
                raise ConfigError(f"out_dir: {self.out_dir!r} may name {{method}} and {{seed}} only ({err!r})") from None
        resolve_preset(self)
        validate(self)


def resolve_preset(cfg: TrainConfig) -> None:
    """Fill `gate` and `pts` from the method preset where the user left them unset."""
    if cfg.method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {cfg.method!r}")
    if isinstance(cfg.gate, dict):
        if cfg.method == "soft_gate" and ({"lambda_e", "lambda_i"} & set(cfg.gate)):
            warnings.warn("method=soft_gate: gate.lambda_e / gate.lambda_i are ignored (the soft gate's "
                          "weight is 2 sigmoid(soft_k sign(a1) a2)); set gate.soft_k", UserWarning, stacklevel=3)
        # OPDVR's gate checks its overrides itself (GateConfig.opdvr refuses those that change it)
        cfg.gate = (GateConfig.opdvr(**cfg.gate) if cfg.method == "opdvr"
                    else _preset_gate(cfg).replace(**cfg.gate))
    elif cfg.gate is None:
        cfg.gate = _preset_gate(cfg)
    if isinstance(cfg.pts, dict):
        cfg.pts = dataclasses.replace(_preset_pts(cfg), **cfg.pts)
    elif cfg.pts is None:
        cfg.pts = _preset_pts(cfg)
    if isinstance(cfg.world, dict):
        cfg.world = WorldConfig(**cfg.world)
    if isinstance(cfg.vllm, dict):
        cfg.vllm = VLLMConfig(**cfg.vllm)
    if isinstance(cfg.probe, dict):
        cfg.probe = ProbeConfig(**cfg.probe)
    if isinstance(cfg.mix, dict):
        cfg.mix = MixConfig(**cfg.mix)


def _preset_gate(cfg: TrainConfig) -> GateConfig:
    if cfg.method in ("opd", "pts_only", "grpo", "teacher_probe", "hybrid", "oracle_gate", "staged"):
        return GateConfig.opd()
    if cfg.method in ("step_gate", "first_error_gate"):
        return GateConfig.opdvr()     # OPDVR's cells, the verdict per step (advantage.py)
    if cfg.method == "exopd":
        return GateConfig.exopd(cfg.exopd_lambda)
    if cfg.method == "opdvr":
        return GateConfig.opdvr()
    if cfg.method == "reversed_gate":
        return GateConfig.reversed()
    if cfg.method == "soft_gate":
        return GateConfig.soft()
    return GateConfig.sgopd()


def _preset_pts(cfg: TrainConfig) -> PTSConfig:
    return PTSConfig(enabled=cfg.method in ("sgopd", "pts_only"))


def validate(cfg: TrainConfig) -> None:
    def need(ok: bool, name: str, msg: str):
        if not ok:
            raise ConfigError(f"{name}: {msg}")

    need(cfg.loss_type in LOSS_TYPES, "loss_type", f"must be one of {LOSS_TYPES}, got {cfg.loss_type!r}")
    need(cfg.world.size in SIZES, "world.size", f"must be one of {SIZES}, got {cfg.world.size!r}")
    for name in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "ppo_epochs", "eval_n"):
        v = getattr(cfg, name)
        need(isinstance(v, int) and v >= 1, name, f"must be an integer >= 1, got {v!r}")
    for name in ("eval_every", "save_every", "warmup_steps", "log_rollouts", "eval_problems"):
        v = getattr(cfg, name)
        need(isinstance(v, int) and v >= 0, name, f"must be an integer >= 0, got {v!r}")
    need(cfg.lr > 0, "lr", f"must be > 0, got {cfg.lr}")
    need(0.0 <= cfg.dense_beta <= 1.0, "dense_beta", f"must be in [0, 1], got {cfg.dense_beta}")
    # Samples drawn at T != 1 but scored at T = 1 would make a2 and the gradient off-policy;
    # scoring at logits / T (verl's convention) is not implemented, so T != 1 is refused.
    need(cfg.temperature == 1.0, "temperature",
         f"training rollouts must be sampled at temperature 1.0, got {cfg.temperature}: the teacher, the "
         "old policy and the student are scored at T = 1, so any other T makes the gate and the policy "
         "gradient off-policy (set eval_temperature to evaluate at another temperature)")
    need(isinstance(cfg.eval_temperature, (int, float)) and cfg.eval_temperature >= 0, "eval_temperature",
         f"must be >= 0 (0 = greedy), got {cfg.eval_temperature!r}")
    need(cfg.eval_rng in EVAL_RNG, "eval_rng", f"must be one of {EVAL_RNG}, got {cfg.eval_rng!r}")
    need(not (cfg.method == "grpo" and cfg.loss_type == "dense"), "loss_type",
         "method=grpo has no teacher, and the dense loss is a distillation loss towards the teacher "
         "(it would silently train dense OPD); use loss_type=sampled")
    need(not (cfg.method in VERIFIER_ROLE_METHODS and cfg.loss_type == "dense"), "loss_type",
         f"method={cfg.method} forms a per-token advantage for the sampled loss; the dense loss cannot "
         "express it; use loss_type=sampled")
    need(isinstance(cfg.hybrid_c, (int, float)) and cfg.hybrid_c >= 0 and cfg.hybrid_c != float("inf"),
         "hybrid_c", f"must be a finite number >= 0, got {cfg.hybrid_c!r}")
    need(cfg.step_unit in ("line", "prefix"), "step_unit", f"must be 'line' or 'prefix', got {cfg.step_unit!r}")
    need(cfg.oracle_reach in ("first_mistake", "local"), "oracle_reach",
         f"must be 'first_mistake' or 'local', got {cfg.oracle_reach!r}")
    need(not (cfg.mix.budget == "share" and cfg.ppo_epochs > 1), "mix.budget",
         "'share' rescales the routes of one gradient; with ppo_epochs > 1 only the first epoch's is "
         "split into routes: use budget='none' or ppo_epochs=1")
    need(isinstance(cfg.staged_switch, (int, float)) and 0.0 <= cfg.staged_switch <= 1.0, "staged_switch",
         f"must be in [0, 1], got {cfg.staged_switch!r}")
    need(not ((cfg.method in ("hybrid", "staged") or (cfg.method == "teacher_probe" and cfg.probe.fallback == "grpo"))
              and cfg.group_size < 2),
         "group_size", f"method={cfg.method} uses the GRPO advantage, which needs group_size >= 2")
    _validate_world_provides(cfg, need)
    need(isinstance(cfg.world.lora_dropout, (int, float)) and 0.0 <= cfg.world.lora_dropout < 1.0,
         "world.lora_dropout", f"must be in [0, 1), got {cfg.world.lora_dropout!r}")
    need(not (cfg.world.lora_dropout > 0 and cfg.ppo_epochs > 1), "world.lora_dropout",
         f"must be 0 with ppo_epochs > 1 (got {cfg.world.lora_dropout}): old log-probs are scored with "
         "dropout off, the update with dropout on, so the PPO ratio would not start at 1")
    need(cfg.micro_batch_size is None or cfg.micro_batch_size >= 1, "micro_batch_size",
         f"must be >= 1 or null, got {cfg.micro_batch_size!r}")
    need(not (cfg.gate.a1_mode == "group" and cfg.group_size < 2), "group_size",
         f"gate.a1_mode='group' compares rollouts of one prompt and needs group_size >= 2, got {cfg.group_size}")
    need(not (cfg.method == "grpo" and cfg.group_size < 2), "group_size",
         "the grpo baseline normalises rewards within a group and needs group_size >= 2")
    # The dense loss weights each position's whole KL by the sampled token's lambda_t: it cannot
    # say "up on this token, down on that one", so lambda_e only enlarges the step towards the
    # teacher and lambda_i = 0 drops the teacher's whole distribution at that position.
    need(not (cfg.loss_type == "dense" and cfg.gate.shapes_tokens), "loss_type",
         f"method={cfg.method} gates tokens by the sampled token's class, which the dense loss cannot "
         "express (it scales the whole position's KL: lambda_e only enlarges the step towards the teacher, "
         "lambda_i = 0 drops the teacher's whole distribution there); use loss_type=sampled")
    need(not cfg.gate.masks_against_initial, "gate.reference",
         "a gate with a coefficient 0 zeroes tokens only against the old policy; with reference='initial' "
         "a 0 gives A = log pi_ref - log pi_old, not 0 (gate.py); use gate.reference=old")
    need(not (cfg.loss_type == "dense" and cfg.gate.reference != "old"), "loss_type",
         "the dense loss supports gate.reference='old' only (docs/method.md §5)")
    need(not (cfg.loss_type == "dense" and cfg.ppo_epochs > 1), "ppo_epochs",
         "the dense loss is not a policy-gradient loss; use ppo_epochs = 1")
    for name in ("style_gap", "teacher_noise"):
        v = getattr(cfg.world, name)
        need(0.0 <= v <= 1.0, f"world.{name}", f"must be in [0, 1], got {v}")
    need(cfg.world.teacher_slip_kind in ("carry", "borrow"), "world.teacher_slip_kind",
         f"must be 'carry' or 'borrow', got {cfg.world.teacher_slip_kind!r}")
    need(cfg.world.student_slip_kind in ("both", "carry"), "world.student_slip_kind",
         f"must be 'both' or 'carry', got {cfg.world.student_slip_kind!r}")
    need(cfg.world.student_quant in ("none", "4bit", "8bit"), "world.student_quant",
         f"must be 'none', '4bit' or '8bit', got {cfg.world.student_quant!r}")
    for role in ("teacher", "student"):
        name, steps = f"world.{role}_finetune_steps", getattr(cfg.world, f"{role}_finetune_steps")
        need(steps is None or (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0),
             name, f"must be an integer >= 0 or null, got {steps!r}")
        need(steps is None or (cfg.world.size == "smol" and getattr(cfg.world, role) is None), name,
             f"only the default smol {role} is fine-tuned here (world.size=smol, no world.{role})")
    need(isinstance(cfg.report_to, (list, tuple)) and all(t in TRACKERS for t in cfg.report_to),
         "report_to", f"must be a list of {sorted(TRACKERS)}, got {cfg.report_to!r}")
    for tracker in cfg.report_to:
        # accelerate silently skips a tracker whose package is missing; say so up front instead
        need(any(importlib.util.find_spec(pkg) for pkg in TRACKERS[tracker]), "report_to",
             f"{tracker!r} needs the {TRACKERS[tracker][0]!r} package: pip install {TRACKERS[tracker][0]}")
    for name in ("teacher", "student", "train_data", "eval_data", "eval_unseen"):
        v = getattr(cfg.world, name)
        # a local-looking path must exist; anything else may be a hub id (checked at load time)
        if isinstance(v, str) and (v.startswith((".", "/", "~")) or v.endswith(".jsonl")):
            need(Path(v).expanduser().exists(), f"world.{name}", f"path {v!r} does not exist")
    _validate_engine(cfg, need)
    _warn_ignored(cfg)
    _warn_redefined(cfg)


def _yaml_text(value) -> str:
    """A value as it is written in a key=value override (true, null, 1.5)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return f"{value:g}" if isinstance(value, float) else str(value)


def _warn_redefined(cfg: TrainConfig) -> None:
    """One warning when gate.* / pts.* values change a field that defines the preset (PRESET_DEFINES)."""
    preset = {"gate": _preset_gate(cfg), "pts": _preset_pts(cfg)}
    changed = []
    for key in PRESET_DEFINES.get(cfg.method, ()):
        group, name = key.split(".")
        now, was = getattr(getattr(cfg, group), name), getattr(preset[group], name)
        if name in CELLS:             # an unset cell follows lambda_e / lambda_i (checked themselves);
            if now is None:           # a set one is compared with the coefficient the preset gives it
                continue
            was = preset[group].cells()[name]
        if now != was:
            changed.append((key, now, was))
    if changed:
        said = ", ".join(f"{k}={_yaml_text(now)}" for k, now, _ in changed)
        was = ", ".join(f"{k}={_yaml_text(w)}" for k, _, w in changed)
        verb = "changes" if len(changed) == 1 else "change"
        warnings.warn(f"method={cfg.method}: the override {said} {verb} what defines this preset ({was} in "
                      f"{cfg.method}), so the run trains another method under {cfg.method}'s name; choose the "
                      "method that means it (docs/usage.md, Methods) or drop the override", UserWarning, stacklevel=4)


def _validate_world_provides(cfg: TrainConfig, need) -> None:
    """A method that reads a world's step checker or oracle of correct tokens is refused, before
    any model loads, on a world that has none (worlds.WORLD_PROVIDES says which have them)."""
    from .advantage import NEEDS_WORLD
    from .worlds import WORLD_PROVIDES, WORLD_OF_SIZE

    what = NEEDS_WORLD.get(cfg.method)
    if what is None:
        return
    have = WORLD_PROVIDES.get(WORLD_OF_SIZE.get(cfg.world.size, ""), ())
    need(what in have, "method", f"method={cfg.method} needs a world with a {what.replace('_', ' ')} "
         f"(world.size={cfg.world.size} has none; the tiny world has one)")


def _warn_ignored(cfg: TrainConfig) -> None:
    """Settings the chosen method never reads: a warning, not an error (the run is still valid)."""
    ignored = []
    if cfg.method == "grpo":
        if cfg.pts.enabled:
            ignored.append("pts.* (grpo has no teacher, so no teacher rollouts)")
        if cfg.gate != GateConfig.opd():
            ignored.append("gate.* (grpo's advantage is the group-normalised reward, no gate)")
    if cfg.loss_type == "sampled" and cfg.dense_beta != 1.0:
        ignored.append("dense_beta (read by loss_type=dense only)")
    if cfg.ppo_epochs == 1 and cfg.clip_eps != 0.2:
        ignored.append("clip_eps (read by the PPO-clip loss, ppo_epochs > 1, only)")
    for what in ignored:
        warnings.warn(f"method={cfg.method}, loss_type={cfg.loss_type}: {what} is ignored", UserWarning,
                      stacklevel=4)


def _validate_engine(cfg: TrainConfig, need) -> None:
    """The rollout engine's fields (whether vllm is installed: `check_engine_installed`)."""
    need(cfg.rollout_engine in ENGINES, "rollout_engine", f"must be one of {ENGINES}, got {cfg.rollout_engine!r}")
    v = cfg.engine_check_every
    need(isinstance(v, int) and not isinstance(v, bool) and v >= 0, "engine_check_every",
         f"must be an integer >= 0, got {v!r}")
    need(isinstance(cfg.engine_logp_tol, (int, float)) and cfg.engine_logp_tol > 0, "engine_logp_tol",
         f"must be > 0 (nats), got {cfg.engine_logp_tol!r}")
    vc = cfg.vllm
    need(0.0 < vc.gpu_memory_utilization <= 1.0, "vllm.gpu_memory_utilization",
         f"must be in (0, 1], got {vc.gpu_memory_utilization}")
    for name in ("max_model_len", "max_lora_rank"):
        x = getattr(vc, name)
        need(x is None or (isinstance(x, int) and x >= 1), f"vllm.{name}", f"must be an integer >= 1 or null, got {x!r}")
    need(vc.max_model_len is None or vc.max_model_len > cfg.max_new_tokens, "vllm.max_model_len",
         f"must exceed max_new_tokens ({cfg.max_new_tokens}) to leave room for the prompt, got {vc.max_model_len}")
    if cfg.rollout_engine == "vllm":
        lora = cfg.world.lora if cfg.world.lora is not None else cfg.world.size != "tiny"
        need(lora, "rollout_engine", "'vllm' receives the student as a LoRA adapter each step and needs "
             "a LoRA student (world.lora=true); full-weight delivery is not implemented, use 'hf'")


def check_engine_installed(cfg: TrainConfig) -> None:
    """ConfigError unless this machine can run cfg's rollout engine (vllm importable, found without
    importing it). Not part of `validate`: a GPU config stays loadable (and testable) on a machine
    without vLLM; `Trainer` calls this first, before any model is loaded."""
    if cfg.rollout_engine == "vllm" and not vllm_importable():
        raise ConfigError(f"rollout_engine: {VLLM_INSTALL_HINT}")


# --------------------------------------------------------------------------------------------
# YAML and key=value overrides
# --------------------------------------------------------------------------------------------

_NESTED = {"world": WorldConfig, "gate": GateConfig, "pts": PTSConfig, "vllm": VLLMConfig, "probe": ProbeConfig,
           "mix": MixConfig}


class _Loader(yaml.SafeLoader):
    """YAML as a config file means it: PyYAML's YAML 1.1 rules with two numbers fixed.

    * `1e-4` is a float (YAML 1.1 wants a dot, `1.0e-4`, and reads `1e-4` as a string);
    * `1:30` stays the string "1:30" (YAML 1.1 reads it as the base-60 number 90), so a range
      written for `sweep` is never silently turned into one number.
    """


_FLOAT_NO_DOT = re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")
_BASE_60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-9_]*)+(?:\.[0-9_]*)?$")
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in "-+0123456789.":   # first characters these forms can start with; checked before YAML's own
    _Loader.yaml_implicit_resolvers.setdefault(_first, [])
    _Loader.yaml_implicit_resolvers[_first][:0] = [("tag:yaml.org,2002:float", _FLOAT_NO_DOT),
                                                  ("tag:yaml.org,2002:str", _BASE_60)]


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def _coerce(text: str, key: str = "value"):
    """A command-line value as a YAML file reads it: 1.5 and 1e-4 -> float, true -> bool,
    null -> None, [a, b] -> list, 1:30 -> the string "1:30" (never base 60)."""
    try:
        return _yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{key}={text}: not a value YAML can read ({str(err).splitlines()[0]})") from None


# A range: two integers around a colon, `0:5` = 0, 1, 2, 3, 4 (Python's range, the end left out).
_RANGE = re.compile(r"^\s*([-+]?[0-9]+)\s*:\s*([-+]?[0-9]+)\s*$")
_RANGE_LIKE = re.compile(r"^[-+0-9.\s]*:[-+0-9.:\s]*$")     # what a (possibly malformed) range looks like


def _top_level_split(text: str) -> list[str]:
    """`text` cut at the commas outside brackets and quotes (`[a, b]` stays one value)."""
    parts, depth, quote, cur = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    return parts + [cur]


def split_values(key: str, text: str) -> list[str]:
    """The values a `key=text` override names, as strings, before any is coerced.

    `a,b,c` is a list, `0:5` the range 0..4, and a list may hold ranges (`0:3,7`). One plain
    value gives a list of one. ConfigError for a malformed list (an empty item: `a,,b`, `a,`), a
    malformed or empty range (`0:`, `1.5:3`, `5:0`) or a value given twice (`1,1.0`).
    """
    items = _top_level_split(text)
    out = []
    for item in items:
        if not item.strip():
            if len(items) == 1:                      # `key=`: one empty value (YAML null)
                return [item]
            raise ConfigError(f"{key}={text}: malformed list, an empty item (write a,b,c)")
        if _RANGE_LIKE.match(item) and any(c.isdigit() for c in item):
            m = _RANGE.match(item)
            if not m:
                raise ConfigError(f"{key}={text}: malformed range {item.strip()!r} (write start:end with "
                                  "integers, e.g. 0:5 for 0, 1, 2, 3, 4)")
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi <= lo:
                raise ConfigError(f"{key}={text}: empty range {item.strip()!r} (the end is left out: "
                                  f"{lo}:{lo + 1} is {lo} alone)")
            out += [str(i) for i in range(lo, hi)]
        else:
            out.append(item.strip())
    seen = {}
    for v in out:
        c = _coerce(v, key)
        k = repr(c) if not isinstance(c, (int, float)) or isinstance(c, bool) else repr(float(c))
        if k in seen:
            raise ConfigError(f"{key}={text}: the value {v!r} is given twice (as {seen[k]!r})")
        seen[k] = v
    return out


def is_axis(text: str) -> bool:
    """Whether a value is a list or a range (a grid axis of `sweep`), not one value."""
    items = _top_level_split(text)
    return len(items) > 1 or bool(_RANGE_LIKE.match(items[0]) and any(c.isdigit() for c in items[0]))


def _field_annotation(key: str) -> str | None:
    """The declared type of a dotted TrainConfig key as written in the source ('float', 'int | None')."""
    parts = key.split(".")
    cls = TrainConfig if len(parts) == 1 else _NESTED.get(parts[0])
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
    f = fields.get(parts[-1])
    return f.type if f is not None and isinstance(f.type, str) else None


def _check_type(key: str, value) -> None:
    """A number field given a word (`lr=fast`), or an integer field a fraction (`steps=2.5`):
    ConfigError naming the key, instead of a TypeError deep inside validation."""
    ann = (_field_annotation(key) or "").replace(" ", "")
    base, optional = ann.removesuffix("|None"), ann.endswith("|None")
    if base not in ("int", "float") or (value is None and optional):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: expected {'an integer' if base == 'int' else 'a number'}"
                          f"{' or null' if optional else ''}, got {value!r}")
    if base == "int" and not float(value).is_integer():
        raise ConfigError(f"{key}: expected an integer, got {value!r}")


def _check_keys(cls, data: dict, where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")


def config_from_dict(data: dict, where: str = "config") -> TrainConfig:
    """A TrainConfig from nested dicts (YAML), rejecting unknown keys with their path."""
    data = dict(data or {})
    _check_keys(TrainConfig, data, where)
    for name, cls in _NESTED.items():
        if name in data and data[name] is not None:
            if not isinstance(data[name], dict):
                raise ConfigError(f"{where}: '{name}' must be a mapping, got {data[name]!r}")
            _check_keys(cls, data[name], f"{where}: {name}")
    if isinstance(data.get("world"), dict):
        data["world"] = WorldConfig(**data["world"])
    try:
        return TrainConfig(**data)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def split_override(item: str) -> tuple[str, str]:
    """`key=value` -> (key, value text); ConfigError for anything else or a key no config has."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value (e.g. gate.lambda_e=1.5)")
    key, value = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] not in _NESTED):
        raise ConfigError(f"override {item!r}: nested keys are one of {sorted(_NESTED)} (e.g. gate.tau=0.1)")
    cls = TrainConfig if len(parts) == 1 else _NESTED[parts[0]]
    known = {f.name for f in dataclasses.fields(cls)}
    if parts[-1] not in known:
        where = "config" if len(parts) == 1 else f"config: {parts[0]}"
        raise ConfigError(f"{where}: unknown key(s) {[parts[-1]]}; known keys: {sorted(known)}")
    return key, value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b=value` strings to a nested dict (values parsed as YAML, see `_coerce`).

    One value per key: a list (`a,b`) or a range (`0:5`) is a grid axis, which `sweep` runs,
    so here it is a ConfigError, as is a number field given a word."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (data or {}).items()}
    for item in overrides:
        key, text = split_override(item)
        if is_axis(text):
            split_values(key, text)                  # a malformed list or range says so first
            raise ConfigError(f"override {item!r}: a list or range makes a grid axis, which "
                              "`python -m sgopd_lite sweep` runs; `train` takes one value")
        value = _coerce(text, key)
        _check_type(key, value)
        parts = key.split(".")
        if len(parts) == 2:
            data.setdefault(parts[0], {})
            if data[parts[0]] is None:
                data[parts[0]] = {}
            data[parts[0]][parts[1]] = value
        else:
            data[parts[0]] = value
    return data


def load_config(path=None, overrides: list[str] | None = None, **kwargs) -> TrainConfig:
    """YAML file (optional) + `key=value` overrides + keyword overrides, in that order."""
    data = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        data = _yaml(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    data = apply_overrides(data, list(overrides or []))
    for key, value in kwargs.items():
        if key in _NESTED and isinstance(value, dict):
            data.setdefault(key, {})
            data[key] = {**(data[key] or {}), **value}
        else:
            data[key] = value
    return config_from_dict(data, str(path) if path else "config")


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def flat_config(cfg: TrainConfig) -> dict:
    """The config as one level of `a.b` keys with scalar values (what trackers store as
    hyper-parameters): lists become strings, nested dataclasses become dotted keys."""
    return flat_dict(config_to_dict(cfg))


def flat_dict(data: dict) -> dict:
    """A nested config dict (`config_to_dict`, or a run's config.json read back) as one level of
    `a.b` keys with scalar values; any other value (a list) becomes its string."""
    out = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            key = prefix[:-1]
            out[key] = value if value is None or isinstance(value, (bool, int, float, str)) else str(value)

    walk("", data)
    return out
