"""The on-policy distillation loop of docs/method.md §7, for OPD, ExOPD, SG-OPD and their ablations.

One step, top to bottom (`train_step`):

    1. sample B prompts; G student rollouts each                    (engines: HF generate / vLLM)
    2. verify every rollout: r in {0, 1}                            (verifier.rewards)
    3. no-grad forwards: teacher, old policy, and the reference     (rollout.sequence_logprobs)
       when gate.reference = "initial"
    4. a1, a2, gate classes, lambda_t, advantage A                  (gate.sign_gate)
    5. while w(k) > 0: teacher rollouts, verify, keep the correct   (scheduler, verifier)
    6. L = L_SG + w(k) L_CE; backward over micro-batches; step      (losses)

Choices this project makes:
* The token normaliser N is the response-token count of the whole step, summed over all
  micro-batches and processes, so the gradient does not depend on how a batch is split.
  Under several processes, DDP *averages* gradients, so each process's loss is multiplied by
  the number of processes to turn that average back into the sum the normaliser expects.
* Each process samples its own prompts (groups never cross processes); evaluation runs on the
  main process, and by default (eval_rng="isolated") on a copy of the training random state, so
  that when and how a run evaluates never changes what it trains.
* Old-policy log-probs are recomputed with the training model, never taken from the sampler.
* A step whose teacher, old-policy or reference log-probs, loss or gradient norm are not
  finite is skipped (logged, no update), so one bad batch cannot corrupt the weights. The
  verdict is agreed by all processes (one all-reduce), so they all skip the same step and none
  waits in a collective that another never enters. A skipped step's record says why and holds
  no gate or loss metrics (nothing was learned from them), and the learning-rate schedule still
  advances: it is a function of the step number, so step k runs at the same rate whether or not
  an earlier step was skipped (and a resumed run agrees with an uninterrupted one).
* Step metrics are averaged over processes (each process sees its own prompts); the gate's
  activity `frac_gated` (tokens whose lambda_t is not the base lambda_n) is watched: a gating run that keeps it
  under 1% for 20 steps gets one warning naming the likely cause.
* A checkpoint (trainable weights, optimizer, scheduler, step, each process's own random
  states, and a run fingerprint) is written atomically every `save_every` steps and at the end;
  `train()` resumes from it and continues exactly: a resumed run, and a finished run extended
  to more `steps`, take the same steps as one uninterrupted run. So a resume is refused
  (`check_resumable`, one-line ConfigError) unless the config that wrote it is this one (steps
  and the output fields aside) and its fingerprint, what the config cannot see, matches: the
  process count, the device, and the sha256 of each data file the run read (committed splits
  included). Other package versions (sgopd_lite, torch, transformers) only warn. A run never
  silently continues another one; `restart=True` (`train --restart`) deletes it and starts over.

May import: config, data, gate, losses, models, rollout, engines, evaluate, scheduler,
verifier, worlds (for World and load_world); never study/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import random
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError, TrainConfig, config_to_dict, flat_config, flat_dict
from .advantage import NEEDS_WORLD, Advantage, Signals, grpo_advantage, method_advantage, staged_method
from .data import Problem, format_prompt, skill_of
from .gate import gate_evidence, push_evidence
from .mix import ROUTES, budget, norm, route_scales, route_token_counts
from .models import _is_peft, frozen_reference_copy, reference_context
from .losses import (aux_ce_loss, dense_distill_loss, entropy_from_logits, masked_mean,
                     policy_gradient_loss, ppo_clip_loss, token_logprobs)
from .rollout import Rollouts, response_logits, sample, sequence_logprobs
from .scheduler import pts_weight, teacher_prompt_count
from .verifier import rewards as verifier_rewards
from .worlds import World, load_world   # what a run trains on (kept importable from here)
from .worlds.base import data_files, token_verdicts


# --------------------------------------------------------------------------------------------
# Small pieces of the step
# --------------------------------------------------------------------------------------------

def step_prompt_indices(seed: int, step: int, rank: int, n_problems: int, batch: int) -> list[int]:
    """Which training prompts a process uses at a step: a pure function of (seed, step, rank),
    so a resumed run draws exactly the prompts the uninterrupted run would have drawn."""
    rng = np.random.default_rng([seed, step, rank])
    return rng.choice(n_problems, size=min(batch, n_problems), replace=False).tolist()


def per_token_values(ro: Rollouts, questions: list[str], fn, fill: int = 0) -> torch.Tensor:
    """(R, T) int: fn(question, response ids) -> one value per response token, for each rollout
    (a world's oracle of correct tokens, its step verdicts); `fill` outside the responses."""
    mask = ro.response_mask
    out = torch.full(mask.shape, fill, dtype=torch.long, device=mask.device)
    for i in range(len(ro)):
        n = int(mask[i].sum())
        out[i, :n] = torch.tensor(fn(questions[i], ro.response_ids[i, :n].tolist()), dtype=torch.long)
    return out


def teacher_pass_counts(teacher, tokenizer, prompts: list[str], answers: list[str], m: int, max_new_tokens: int,
                        temperature: float = 1.0, vocab_size: int | None = None,
                        batch_prompts: int | None = None) -> list[int]:
    """How many of m sampled teacher solutions of each prompt the verifier accepts (the teacher
    probe of method=teacher_probe); `batch_prompts` prompts per generate call (None: all)."""
    passes = []
    step = batch_prompts or max(len(prompts), 1)
    for lo in range(0, len(prompts), step):
        ro = sample(teacher, tokenizer, prompts[lo:lo + step], m, max_new_tokens, temperature, vocab_size=vocab_size)
        ok = verifier_rewards(ro.texts, [a for a in answers[lo:lo + step] for _ in range(m)])
        passes += [int(sum(ok[i * m:(i + 1) * m])) for i in range(len(ro) // m)]
    return passes


def write_json_atomically(path: Path, obj) -> None:
    """Write JSON through a temporary file and a rename: a killed write never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


def micro_batches(n: int, size: int | None) -> list[slice]:
    size = size or n
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def global_sum(accelerator, value: float) -> float:
    """Sum of a number over all processes (the token normaliser N)."""
    if accelerator is None or accelerator.num_processes == 1:
        return float(value)
    t = torch.tensor([float(value)], device=accelerator.device)
    return float(accelerator.reduce(t, reduction="sum").item())


def all_processes_agree(accelerator, ok: bool) -> bool:
    """True only if `ok` holds on every process (one all-reduce), so that every process takes
    the same branch, e.g. skips the same step, and none waits in a collective alone."""
    n = 1 if accelerator is None else accelerator.num_processes
    return global_sum(accelerator, 1.0 if ok else 0.0) == n


def mean_over_processes(accelerator, metrics: dict, keys) -> dict:
    """`metrics` with the numbers under `keys` replaced by their mean over processes (every
    process must hold the same keys: they come from the same code path on each)."""
    keys = sorted(k for k in keys if isinstance(metrics.get(k), (int, float)))
    if accelerator is None or accelerator.num_processes == 1 or not keys:
        return metrics
    t = torch.tensor([float(metrics[k]) for k in keys], device=accelerator.device)
    t = accelerator.reduce(t, reduction="mean")
    return {**metrics, **{k: float(v) for k, v in zip(keys, t.tolist())}}


def non_finite(logps: dict, mask: torch.Tensor) -> list[str]:
    """Names of the (R, T) log-prob tensors with a non-finite value on a response token."""
    return [name for name, x in logps.items() if x is not None and not bool(torch.isfinite(x[mask.bool()]).all())]


def student_dropout(model) -> float:
    """The largest dropout probability active in `model` when it trains (LoRA dropout, attention
    or hidden dropout): 0 means the training forward computes the same pi_theta as scoring."""
    ps = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    cfg = getattr(model, "config", None)
    ps += [float(getattr(cfg, name, 0.0) or 0.0) for name in ("attention_dropout", "hidden_dropout", "dropout")]
    return max(ps, default=0.0)


# Metrics that each process computes from its own rollouts; the logged value is their mean.
PER_PROCESS_METRICS = ("reward_mean", "response_len", "truncation_rate", "adv_abs_mean",
                       "teacher_accept_rate")
MIXED_METHODS = ("teacher_probe", "hybrid")   # methods that may mix two routes (advantage.Advantage.routes)
GATE_SILENT_FRAC, GATE_SILENT_STEPS = 0.01, 20   # warn when frac_gated stays below this that long


def backend_problem(cfg: TrainConfig, distributed_type: str, zero_stage: int = 0) -> str | None:
    """Why this loop cannot run under accelerate's backend (DeepSpeed / FSDP), or None if it can.

    * ZeRO-3 and FSDP shard the student's weights, but evaluation and checkpoints here run on the
      main process only; a sharded forward there would wait forever for the other processes.
    * Under DeepSpeed, every `accelerator.backward` call is also an optimizer step, so a step
      must make exactly one backward call: one micro-batch and no teacher-rollout CE pass.
    """
    dt = str(distributed_type).split(".")[-1]                    # DistributedType or plain name
    if dt == "FSDP" or (dt == "DEEPSPEED" and zero_stage == 3):
        return (f"{'FSDP' if dt == 'FSDP' else 'DeepSpeed ZeRO-3'} shards the student's weights, but this "
                "trainer evaluates and saves checkpoints on the main process only, which needs whole weights "
                "there; use configs/accelerate/deepspeed_zero2.yaml or multi_gpu.yaml (configs/accelerate/README.md)")
    if dt == "DEEPSPEED":
        rollouts = cfg.prompts_per_step * cfg.group_size
        if cfg.micro_batch_size is not None and cfg.micro_batch_size < rollouts:
            return (f"micro_batch_size: under DeepSpeed every backward call is an optimizer step; "
                    f"{cfg.micro_batch_size} < {rollouts} rollouts would make several per step; set it to null")
        if cfg.pts.enabled and cfg.method != "grpo":
            return ("pts.enabled: under DeepSpeed every backward call is an optimizer step, and phased teacher "
                    "sampling adds a second one; use a method without it (opd, exopd, gate_only) or pts.enabled=false")
        if cfg.method in MIXED_METHODS:
            return (f"method={cfg.method}: its two routes are measured with a second gradient of the same batch "
                    "(torch.autograd.grad) and summed by hand, which DeepSpeed's engine does not allow; use "
                    "configs/accelerate/multi_gpu.yaml")
    return None


def token_table(tokenizer, ro: Rollouts, gate_out, rewards, i: int) -> dict:
    """One rollout with per-token a1, a2, class, lambda_t and A, for the plotting code."""
    n = int(ro.response_mask[i].sum())
    ids = ro.response_ids[i, :n].tolist()
    rec = {"text": ro.texts[i], "reward": float(rewards[i]), "group": int(ro.group_ids[i]),
           "tokens": [tokenizer.decode([t]) for t in ids]}
    if gate_out is not None:
        rec.update(a1=float(gate_out.a1[i]), a2=gate_out.a2[i, :n].tolist(),
                   token_class=gate_out.token_class[i, :n].tolist(),
                   lambda_t=gate_out.lambda_t[i, :n].tolist(),
                   advantage=gate_out.advantage[i, :n].tolist())
    return rec


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

def _trainable_state(model) -> dict:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def rng_state(device: torch.device) -> dict:
    """This process's random states: torch CPU, torch CUDA of its own device (where it samples;
    the other visible devices are other processes' business), numpy, python."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore what `rng_state` returned, the CUDA state onto this process's own device (the run
    fingerprint has already checked that the device type is the same)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


@contextlib.contextmanager
def isolated_rng(device: torch.device):
    """Run the body on a copy of the random states and put the originals back afterwards: the body
    draws what the next training step would have drawn, but training never sees that it ran."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


def _rank_file(rank: int) -> str:
    return f"rng_rank{rank}.pt"


def save_checkpoint(path: Path, step: int, model, optimizer, scheduler, fingerprint: dict,
                    accelerator=None, evaluated: bool = False) -> None:
    """Trainable weights, optimizer, scheduler and step (state.pt), the run fingerprint (run.json)
    and each process's own random states (rng_rank{r}.pt), written atomically.

    Every process calls it. Processes draw from different random streams (each is seeded with its
    rank), so each one saves its own; the weights and optimizer state are the same on all of
    them and are saved once, by the main process, which then moves the finished folder into place.
    evaluated: an evaluation ran at this step (under eval_rng="shared" it drew from the states saved).
    """
    rank = 0 if accelerator is None else accelerator.process_index
    device = torch.device("cpu") if accelerator is None else accelerator.device
    main = accelerator is None or accelerator.is_main_process
    wait = (lambda: None) if accelerator is None else accelerator.wait_for_everyone
    tmp = path.with_name(path.name + ".tmp")
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    wait()                                   # the folder exists before anyone writes into it
    torch.save(rng_state(device), tmp / _rank_file(rank))
    wait()                                   # every rank's file is in before the folder moves
    if main:
        torch.save({"step": step, "model": _trainable_state(model), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "evaluated": evaluated}, tmp / "state.pt")
        (tmp / FINGERPRINT_FILE).write_text(json.dumps(fingerprint, indent=2))
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    wait()                                   # nobody goes on (or reads it) before it is in place


def load_checkpoint(path: Path, model, optimizer, scheduler, accelerator=None) -> dict:
    """Restore a checkpoint written by `save_checkpoint` (this process's random states from its own
    rank's file); returns what state.pt holds besides the tensors: {"step", "evaluated"}."""
    rank = 0 if accelerator is None else accelerator.process_index
    device = torch.device("cpu") if accelerator is None else accelerator.device
    state = torch.load(path / "state.pt", weights_only=False)
    missing = set(_trainable_state(model)) - set(state["model"])
    if missing:
        raise RuntimeError(f"checkpoint {path} does not match the model: missing {sorted(missing)[:3]}...")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["model"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(torch.load(path / _rank_file(rank), weights_only=False), device)
    return {"step": int(state["step"]), "evaluated": bool(state.get("evaluated", False))}


# --------------------------------------------------------------------------------------------
# What a checkpoint records besides the config: the run fingerprint
# --------------------------------------------------------------------------------------------

FINGERPRINT_FILE = "run.json"      # in the checkpoint folder, written with every checkpoint


def package_versions() -> dict[str, str]:
    """The versions of the packages whose code computes a step."""
    import transformers

    from . import __version__
    return {"sgopd_lite": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def data_hashes(cfg: TrainConfig) -> dict[str, dict]:
    """{"train" / "eval": {"path", "sha256"}} of the data files the config names (worlds.base.
    data_files: the committed splits when none is set). A file that does not exist gets no hash
    (loading the world reports it)."""
    out = {}
    for role, path in data_files(cfg.world).items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[role] = {"path": str(path), "sha256": digest}
    return out


def run_fingerprint(cfg: TrainConfig, processes: int = 1, device: torch.device | str = "cpu") -> dict:
    """What a run depends on that its config cannot see: how many processes train it (each has its
    own prompts and random stream), on what device type (cpu / cuda / mps: the same seed draws
    other numbers on another), the content of its data files, and the package versions."""
    return {"processes": int(processes), "device": torch.device(device).type, "data": data_hashes(cfg),
            "versions": package_versions()}


def _short_hash(entry: dict) -> str:
    return (entry.get("sha256") or "no file")[:12]


def fingerprint_differences(saved: dict, now: dict) -> tuple[list[str], list[str]]:
    """(what refuses a resume, what only warns), each as short phrases naming the entry, the value
    there (in the checkpoint) and now. A changed process count, device type or data file would
    make the resumed run drift from the uninterrupted one, so it refuses; other package versions
    only warn (a patch release usually changes nothing, and refusing would strand every
    checkpoint at each upgrade)."""
    refuse, warn = [], []
    for key in ("processes", "device"):
        if saved.get(key) != now[key]:
            refuse.append(f"{key} ({saved.get(key)!r} there, {now[key]!r} now)")
    then_data = saved.get("data") or {}
    for role in sorted(set(then_data) | set(now["data"])):
        a, b = then_data.get(role) or {}, now["data"].get(role) or {}
        if a.get("sha256") != b.get("sha256"):
            refuse.append(f"{role} data file {b.get('path') or a.get('path')} (sha256 {_short_hash(a)} there, "
                          f"{_short_hash(b)} now)")
    then_versions = saved.get("versions") or {}
    for name, version in now["versions"].items():
        if then_versions.get(name) != version:
            warn.append(f"{name} {then_versions.get(name)} there, {version} now")
    return refuse, warn


# --------------------------------------------------------------------------------------------
# Which checkpoint a run may resume
# --------------------------------------------------------------------------------------------

# Fields that decide where a run writes and how often it saves, never what it trains (saving a
# checkpoint or logging rollouts draws no random numbers), and `steps`, so that a finished run
# can be extended. Every other field must be equal for a checkpoint to be resumed; the eval_*
# fields too: they decide what the log's evaluations measure (and under eval_rng="shared",
# evaluation draws from the training stream, so they change the training itself).
RESUME_IGNORES = ("steps", "out_dir", "save_every", "log_rollouts", "report_to", "vllm.adapter_dir")


def _as_saved(cfg: TrainConfig) -> dict:
    """A config flattened the way its config.json reads back (tuples as lists, odd values as text)."""
    return flat_dict(json.loads(json.dumps(config_to_dict(cfg), default=str)))


def config_differences(saved: dict, cfg: TrainConfig) -> dict[str, tuple]:
    """{dotted key: (saved value, value now)} for every field where `cfg` differs from a run's
    saved config.json (a nested dict), RESUME_IGNORES aside. A key the saved file lacks (a field
    added to TrainConfig after that run) is compared with its default for the same method."""
    now, then = _as_saved(cfg), flat_dict(saved)
    default = _as_saved(TrainConfig(method=cfg.method)) if set(now) - set(then) else {}
    return {k: (then.get(k, default.get(k)), v) for k, v in now.items()
            if k not in RESUME_IGNORES and then.get(k, default.get(k)) != v}


def check_resumable(cfg: TrainConfig, fingerprint: dict, restart: bool = False, main_process: bool = True) -> None:
    """Make sure `cfg.out_dir` holds no checkpoint of another run; called before any model loads.

    The rule: a checkpoint is resumed only when its run's config.json equals `cfg` in every field
    but RESUME_IGNORES (`steps`, `out_dir`, `save_every`, `log_rollouts`, `report_to`,
    `vllm.adapter_dir`), and its run fingerprint (`run_fingerprint`, checkpoint/run.json) has the
    same process count, device and data file contents as `fingerprint`, this run's. Otherwise
    ConfigError, one line naming what differs and the two ways on: another out_dir, or `restart`.
    Other package versions only warn (on the main process). restart=True deletes the old
    checkpoint and final model (on the main process) so the run starts from step 0; run() then
    replaces the logs.
    """
    out = Path(cfg.out_dir)
    if not (out / "checkpoint" / "state.pt").is_file():
        return
    if restart:
        if main_process:
            for name in ("checkpoint", "checkpoint.tmp", "final"):
                shutil.rmtree(out / name, ignore_errors=True)
        return
    how = (f"resuming it would continue that run, not this one; give this run another out_dir, or start "
           f"over in {out} with `train --restart` (restart=True in Python), which deletes that checkpoint")
    saved = out / "config.json"
    if not saved.is_file():
        raise ConfigError(f"out_dir: {out} holds a checkpoint without the config.json that says which run wrote it; {how}")
    diffs = config_differences(json.loads(saved.read_text()), cfg)
    if diffs:
        said = ", ".join(f"{k} ({a!r} there, {b!r} now)" for k, (a, b) in list(diffs.items())[:6])
        more = f" and {len(diffs) - 6} more" if len(diffs) > 6 else ""
        raise ConfigError(f"out_dir: {out} holds the checkpoint of a run with another configuration, "
                          f"differing in {said}{more}: {how}")
    recorded = out / "checkpoint" / FINGERPRINT_FILE
    if not recorded.is_file():
        raise ConfigError(f"out_dir: {out} holds a checkpoint that does not record its process count, device, "
                          f"data files and package versions (an older sgopd_lite wrote it), so nothing says "
                          f"it would continue exactly; {how}")
    refuse, warn = fingerprint_differences(json.loads(recorded.read_text()), fingerprint)
    if refuse:
        raise ConfigError(f"out_dir: {out} holds the checkpoint of a run trained under other conditions, "
                          f"differing in {', '.join(refuse)}: {how}")
    if warn and main_process:
        warnings.warn(f"resuming {out} with other package versions ({'; '.join(warn)}): the steps from here "
                      "may differ slightly from those the old versions would have taken", UserWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------

@dataclass
class Batch:
    """What steps 1-2 of a training step produce."""

    problems: list[Problem]
    prompts: list[str]
    rollouts: Rollouts
    rewards: torch.Tensor      # (R,) verifier rewards
    times: dict                # seconds per phase so far
    metrics: dict | None = None  # other numbers of steps 1-2 (engine_logp_gap on check steps)
    indices: list[int] | None = None  # the prompts' indices in the world's training problems


@dataclass
class Formed:
    """What steps 3-4 produce (`Trainer.form_advantage`)."""

    method: str                # the method of this step (under staged: opd or grpo)
    old_logp: torch.Tensor     # (R, T) log pi_old of the sampled tokens
    signals: Signals           # what the method read
    advantage: Advantage       # its advantage, with the routes of a mixed method


@dataclass
class Routes:
    """A mixed method's two routes as the update uses them (`Trainer._routes`)."""

    advantage: torch.Tensor    # (R, T) the advantage to train on: the routes scaled by mix.normalise
    reward: torch.Tensor       # (R, T) its reward part (the teacher part is the rest)
    rollout_share: float       # the reward route's share of the step's rollouts (all processes)
    token_share: float         # ... and of its response tokens
    owned_share: float         # the reward route's share of the (rollout, route) pairs: a rollout both
                               # routes own counts for both (hybrid: 0.5); mix.budget's default target


class Trainer:
    """Holds the models, optimizer and logs of one run; `run()` executes docs/method.md §7."""

    def __init__(self, cfg: TrainConfig, world: World | None = None, accelerator=None,
                 verbose: bool = True, restart: bool = False):
        """restart: delete a checkpoint in cfg.out_dir and start from step 0 (`check_resumable`)."""
        from accelerate import Accelerator

        from .config import check_engine_installed

        check_engine_installed(cfg)      # a missing vllm extra fails here, before any model loads
        self.cfg = cfg
        self.verbose = verbose
        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available(),
                                                      log_with=cfg.report_to or None, project_dir=cfg.out_dir)
        acc = self.accelerator
        # what the config cannot see (processes, device, data files, versions), saved with every checkpoint
        self.fingerprint = run_fingerprint(cfg, acc.num_processes, acc.device)
        check_resumable(cfg, self.fingerprint, restart, acc.is_main_process)   # another run's checkpoint: refused here
        if restart:
            acc.wait_for_everyone()      # no process may find the checkpoint the main one deletes
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed + acc.process_index)
        random.seed(cfg.seed + acc.process_index)
        np.random.seed(cfg.seed + acc.process_index)
        self.world = world or load_world(cfg, verbose=verbose and acc.is_main_process)
        w = self.world
        needed = NEEDS_WORLD.get(cfg.method)
        if needed and getattr(w, needed) is None:
            raise ConfigError(f"method: method={cfg.method} needs a world with a {needed.replace('_', ' ')}, "
                              "and this World has none")
        if cfg.ppo_epochs > 1 and student_dropout(w.student) > 0:
            raise ConfigError(f"ppo_epochs: {cfg.ppo_epochs} updates per batch need a student without dropout "
                              f"(found p = {student_dropout(w.student)}; LoRA students: world.lora_dropout=0): "
                              "old log-probs are scored with dropout off, so the PPO ratio would not start at 1")
        self.tok = w.tokenizer
        self.teacher = w.teacher.to(acc.device).eval().requires_grad_(False)
        student = w.student.to(acc.device)
        # pi_ref for gate.reference = "initial": the adapter-free base under LoRA (under QLoRA
        # that is the 4-bit base), else a frozen copy of the initial student.
        self.ref_model = None
        if cfg.gate.reference == "initial" and not _is_peft(student):
            self.ref_model = frozen_reference_copy(student)
        params = [p for p in student.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        warm = max(cfg.warmup_steps, 0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda k: min(1.0, (k + 1) / warm) if warm else 1.0)
        self.student, self.optimizer = acc.prepare(student, optimizer)
        self.scheduler = scheduler
        self.step = 0
        self.prompts = [format_prompt(self.tok, p.question, w.instruction) for p in w.train_problems]
        # who samples the student's rollouts (engines.py); vllm is imported only when chosen
        from .engines import make_engine
        if cfg.rollout_engine != "hf" and acc.num_processes > 1:
            raise ConfigError(f"rollout_engine: {cfg.rollout_engine!r} runs one engine in one process; "
                              f"this run has {acc.num_processes} processes (use 'hf', or one process)")
        self.engine = make_engine(cfg)
        self._engine_checked = False
        self._gate_silent_steps = 0        # consecutive steps with frac_gated < GATE_SILENT_FRAC
        self._gate_warned = False
        self._probe_trusted: list[bool] | None = None   # teacher_probe: per training prompt
        self._probe_passes: dict[int, int] | None = None  # probe.scope="seen": passes per probed prompt

    # -- helpers -------------------------------------------------------------------------
    @property
    def policy(self):
        """The student without DDP wrapping (for sampling and saving)."""
        return self.accelerator.unwrap_model(self.student)

    def log(self, msg: str) -> None:
        if self.verbose and self.accelerator.is_main_process:
            print(msg, flush=True)

    def reference_model(self):
        """pi_ref = the initial student (adapter off under LoRA, else the frozen copy)."""
        return reference_context(self.policy, self.ref_model)

    # -- one step --------------------------------------------------------------------------
    def train_step(self, k: int) -> dict:
        """One optimizer step k: collect rollouts and rewards, then learn from them."""
        return self.learn(k, self.collect(k))

    def collect(self, k: int) -> "Batch":
        """Steps 1-2 of docs/method.md §7: B prompts, G rollouts each, verifier rewards."""
        cfg, acc = self.cfg, self.accelerator
        idx = step_prompt_indices(cfg.seed, k, acc.process_index, len(self.prompts), cfg.prompts_per_step)
        problems = [self.world.train_problems[i] for i in idx]
        prompts = [self.prompts[i] for i in idx]
        times = {}

        t = time.perf_counter()
        self.engine.sync(self.policy, k)             # deliver the current weights (vLLM: LoRA adapter)
        out = self.engine.sample(self.policy, self.tok, prompts, cfg.group_size, cfg.max_new_tokens,
                                 cfg.temperature, vocab_size=self.world.vocab_size)
        ro = out.rollouts
        times["rollout"] = time.perf_counter() - t

        # Is the engine sampling the current policy? Its own log-probs vs the training model's,
        # at the first step and every engine_check_every steps (engines without log-probs: never).
        # This scores the rollouts once more on check steps only; learn() recomputes old_logp.
        metrics = {}
        if out.logprobs is not None and cfg.engine_check_every and (
                not self._engine_checked or k % cfg.engine_check_every == 0):
            from .engines import check_engine_logp

            t = time.perf_counter()
            was_training = self.student.training
            self.student.eval()
            ro_dev = ro.to(acc.device)
            train_logp = self._score(self.student, ro_dev)
            self.student.train(was_training)
            metrics["engine_logp_gap"] = check_engine_logp(out.logprobs, train_logp, ro_dev.response_mask,
                                                           cfg.engine_logp_tol, self.engine.name)
            self._engine_checked = True
            times["engine_check"] = time.perf_counter() - t
            self.log(f"step {k}: engine_logp_gap {metrics['engine_logp_gap']:.2e} nats/token "
                     f"(tolerance {cfg.engine_logp_tol})")

        t = time.perf_counter()
        golds = [p.answer for p in problems for _ in range(cfg.group_size)]
        r = torch.tensor(verifier_rewards(ro.texts, golds), device=acc.device)
        times["verify"] = time.perf_counter() - t
        return Batch(problems, prompts, ro.to(acc.device), r, times, metrics, idx)

    def learn(self, k: int, batch: "Batch") -> dict:
        """Steps 3-6 of docs/method.md §7 on collected rollouts; returns the step's metrics."""
        cfg, acc, tok, vocab = self.cfg, self.accelerator, self.tok, self.world.vocab_size
        problems, prompts, ro, r = batch.problems, batch.prompts, batch.rollouts, batch.rewards
        times, m = dict(batch.times), {"step": k, "lr": self.scheduler.get_last_lr()[0], **(batch.metrics or {})}
        mask = ro.response_mask

        # 3-4. teacher / old / reference log-probs; the method's advantage (advantage.py)
        formed = self.form_advantage(k, batch, m, times)
        if isinstance(formed, str):
            self._advance_schedule()
            return {**m, "skipped": formed, **_time_metrics(times)}
        method, old_logp, out = formed.method, formed.old_logp, formed.advantage
        advantage, lambda_t, gate_out = out.advantage, out.lambda_t, out.gate

        # 5. phased teacher sampling: verifier-endorsed teacher rollouts (no teacher under grpo)
        w_k = float(pts_weight(k, cfg.pts)) if method != "grpo" else 0.0
        teacher_ro = None
        if method != "grpo":
            m["pts_w"] = w_k
        if w_k > 0:
            t = time.perf_counter()
            n_t = teacher_prompt_count(k, len(prompts), cfg.pts)
            t_ro = sample(self.teacher, tok, prompts[:n_t], cfg.pts.m, cfg.max_new_tokens, cfg.temperature,
                          vocab_size=vocab)
            t_golds = [p.answer for p in problems[:n_t] for _ in range(cfg.pts.m)]
            accepted = [i for i, ok in enumerate(verifier_rewards(t_ro.texts, t_golds)) if ok > 0]
            m["teacher_accept_rate"] = len(accepted) / len(t_ro)
            if accepted:
                teacher_ro = t_ro.select(accepted).to(acc.device)
            times["teacher_sampling"] = time.perf_counter() - t

        # 6. update (a mixed method's two routes measured and, if asked, balanced: mix.py)
        t = time.perf_counter()
        routes = self._routes(out, ro) if out.routes is not None else None
        update = self._update(ro, old_logp, advantage, lambda_t, teacher_ro, w_k, routes)
        times["update"] = time.perf_counter() - t
        if "skipped" in update:      # nothing learned: say why, without the gate's numbers of this batch
            first = {x: m[x] for x in ("step", "lr", *(batch.metrics or {}))}
            return {**first, **update, **_time_metrics(times)}
        m.update(update)

        lengths = mask.sum(1).float()
        m.update({"reward_mean": r.mean().item(), "response_len": lengths.mean().item(),
                  "truncation_rate": ro.truncated.float().mean().item()})
        if gate_out is None:
            m["adv_abs_mean"] = out.metrics["adv_abs_mean"]
        m = mean_over_processes(acc, m, PER_PROCESS_METRICS)
        m.update(_time_metrics(times))
        self._watch_gate(m, method)
        if cfg.log_rollouts and acc.is_main_process:
            self._save_rollouts(k, ro, gate_out, r)
        return m

    def step_method(self, k: int) -> str:
        """The method that forms step k's advantage: cfg.method, except under `staged` (OPD before
        its switch step, GRPO from it on)."""
        cfg = self.cfg
        return staged_method(k, cfg.steps, cfg.staged_switch) if cfg.method == "staged" else cfg.method

    def form_advantage(self, k: int, batch: "Batch", m: dict, times: dict) -> "Formed | str":
        """Steps 3-4 of one batch: the no-grad log-probs, then the method's advantage; the gate's
        metrics go into `m`, the time into `times`. A string (the reason) when a log-prob is not
        finite on some process: the step is then skipped. Also used by study/balance.py."""
        cfg, acc, w = self.cfg, self.accelerator, self.world
        problems, ro, r = batch.problems, batch.rollouts, batch.rewards
        mask, method = ro.response_mask, self.step_method(k)
        t = time.perf_counter()
        teacher_logp = ref_logp = teacher_top = None
        with_top = w.token_oracle is not None        # the evidence and oracle_gate read the teacher's top token
        self.student.eval()   # dropout off for scoring; identical to training mode without dropout
        with torch.no_grad():
            old_logp = self._score(self.student, ro)
            if method != "grpo":
                if with_top:
                    teacher_logp, teacher_top = self._score(self.teacher, ro, with_top=True)
                else:
                    teacher_logp = self._score(self.teacher, ro)
                if cfg.gate.reference == "initial":
                    with self.reference_model() as ref:
                        ref_logp = self._score(ref, ro)
        self.student.train()
        bad = non_finite({"old-policy": old_logp, "teacher": teacher_logp, "reference": ref_logp}, mask)
        if not all_processes_agree(acc, not bad):
            times["teacher"] = time.perf_counter() - t
            return f"non-finite {' and '.join(bad)} log-prob" if bad else "non-finite log-prob on another process"
        questions = [problems[int(g)].question for g in ro.group_ids]          # one per rollout
        signals = Signals(old_logp, r, ro.group_ids, mask, teacher_logp, ref_logp, ro.truncated,
                          teacher_top=teacher_top)
        if method != "grpo":
            if w.step_checker is not None:
                signals.step_verdict = per_token_values(ro, questions, self._step_verdicts)
            if w.token_oracle is not None:
                signals.correct_next = per_token_values(ro, questions, w.token_oracle, fill=-1)
            if method == "teacher_probe":
                trusted = self._probe(batch.indices)                             # (B,) per prompt
                signals.prompt_trusted = torch.tensor([trusted[int(g)] for g in ro.group_ids], device=acc.device)
                m.update(self._probe_metrics(problems, trusted))
        gate_signals = signals
        if method == "oracle_gate" and cfg.oracle_reach == "local":     # the evidence keeps the first-mistake oracle
            gate_signals = dataclasses.replace(signals, correct_next=per_token_values(
                ro, questions, lambda q, ids: w.token_oracle(q, ids, reach="local"), fill=-1))
        out = method_advantage(method, cfg.gate, gate_signals, hybrid_c=cfg.hybrid_c, fallback=cfg.probe.fallback,
                               reward_c=cfg.probe.reward_c)
        if out.gate is not None:
            metrics = dict(out.metrics)
            metrics.update(self._evidence(signals, out.gate, out.advantage, out.teacher_term, ro))
            m.update(mean_over_processes(acc, metrics, metrics))
        if cfg.method == "staged":
            m["staged_grpo"] = float(method == "grpo")
        times["teacher"] = time.perf_counter() - t
        return Formed(method, old_logp, signals, out)

    def _routes(self, out, ro) -> "Routes":
        """A mixed method's two routes, scaled as mix.normalise asks (mix.route_scales), and the
        reward route's share of this step's rollouts and tokens (summed over processes)."""
        cfg, acc = self.cfg, self.accelerator
        mask = ro.response_mask
        local = route_token_counts(out.route_rows, mask)
        counts = {k: global_sum(acc, v) for k, v in local.items()}
        rollouts = global_sum(acc, float(len(ro)))
        owned = {name: global_sum(acc, float(out.route_rows[name].sum())) for name in ROUTES}
        scales = route_scales(out.route_rows, mask, cfg.mix.normalise, cfg.mix.reward_weight, counts)
        if all(v == 1.0 for v in scales.values()):
            advantage = out.advantage                  # exactly the method's A (no rounding from a re-sum)
        else:
            advantage = sum(scales[name] * out.routes[name] for name in ROUTES)
        return Routes(advantage=advantage, reward=scales["reward"] * out.routes["reward"],
                      rollout_share=owned["reward"] / rollouts if rollouts else 0.0,
                      token_share=counts["reward"] / counts["all"] if counts["all"] else 0.0,
                      owned_share=owned["reward"] / sum(owned.values()) if sum(owned.values()) else 0.0)

    def _step_verdicts(self, question: str, ids: list[int]) -> list[int]:
        return token_verdicts(self.tok, self.world.step_checker, question, ids, unit=self.cfg.step_unit)

    def _evidence(self, s: Signals, gate_out, advantage: torch.Tensor, teacher_term: torch.Tensor,
                  ro: Rollouts) -> dict:
        """Per-token evidence, for worlds that know which tokens are correct:
        * gate.gate_evidence: where the teacher's top token is wrong / right (oracle positions),
          on the whole advantage A;
        * gate.push_evidence by the push's direction on the sampled token, on the method's teacher
          term (its A without a GRPO term: hybrid, teacher_probe's fallback), over the oracle's
          positions (push_oracle_*: up to and including the first mistake) and over every token
          of a checkable step (push_step_*: correct = the token's step is right on its own operands)."""
        out, mask, a2 = {}, ro.response_mask, gate_out.a2
        if s.correct_next is not None and s.teacher_top is not None:
            out.update(gate_evidence(a2, advantage, s.teacher_top, s.correct_next, mask))
            known = s.correct_next >= 0
            ok = torch.where(known, torch.where(ro.response_ids == s.correct_next, 1, -1), 0)   # (R, T)
            out.update(push_evidence(a2, teacher_term, ok, mask, "push_oracle"))
        if s.step_verdict is not None:
            out.update(push_evidence(a2, teacher_term, s.step_verdict, mask, "push_step"))
        return out

    def _probe(self, indices: list[int]) -> list[bool]:
        """teacher_probe: whether the teacher is trusted on each of these training prompts.

        probe.scope="all" (the default): every training prompt is probed once, at the first step:
        probe.m teacher samples, verified; trusted = pass rate >= probe.threshold. The teacher is
        frozen, so the table never changes; it is kept in out_dir/probe.json (a resumed run reads it
        back). probe.scope="seen": each prompt is probed when a batch first draws it
        (`_probe_seen`). Probing draws from its own seeded generator state (fork_rng), so it never
        shifts the student's sampling: the run's rollouts are the same whether the table was
        computed now or read from the file.
        """
        if self.cfg.probe.scope == "seen":
            return self._probe_seen(indices)
        if self._probe_trusted is None:
            self._probe_trusted = self._load_or_run_probe()
        return [self._probe_trusted[i] for i in indices]

    def _probe_key(self) -> dict:
        """What a probe table depends on: the teacher (its world), the prompts and how they are sampled."""
        cfg = self.cfg
        return {"seed": cfg.seed, "m": cfg.probe.m, "batch_prompts": cfg.probe.batch_prompts,
                "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature,
                "world": json.loads(json.dumps(dataclasses.asdict(cfg.world), default=str)),
                "prompts": hashlib.sha256("\n".join(self.prompts).encode()).hexdigest()[:16]}

    def _probe_seen(self, indices: list[int]) -> list[bool]:
        """probe.scope="seen": the prompts of this batch that no earlier batch drew are probed now,
        so a run pays only for the prompts it trains on (with a pretrained teacher on the CPU,
        probing all 2,048 training prompts takes longer than a short run). Each prompt is probed on
        its own (one generate call of probe.m samples) from a stream seeded by the run's seed and
        the prompt's index, so its pass count does not depend on which prompts share its batch,
        on the batch size or on the process that draws it. The table grows in out_dir/probe-seen.json
        (one file per process, rewritten after each probe), so a resumed run reads back what it
        had probed."""
        cfg, w = self.cfg, self.world
        rank = self.accelerator.process_index
        path = self.out / ("probe-seen.json" if rank == 0 else f"probe-seen-rank{rank}.json")
        if self._probe_passes is None:
            key = {**self._probe_key(), "scope": "seen"}
            saved = json.loads(path.read_text()) if path.is_file() else {}
            same = saved.get("key") == key
            self._probe_passes = {int(i): p for i, p in saved["passes"].items()} if same else {}
            self._probe_seconds = float(saved.get("seconds", 0.0)) if same else 0.0
            self._probe_file_key = key
        new = sorted(set(indices) - set(self._probe_passes))
        if new:
            t = time.perf_counter()
            for i in new:
                with self._probe_stream(cfg.seed + 7919 + 1_000_003 * (i + 1)):    # this prompt's own stream
                    self._probe_passes[i] = teacher_pass_counts(
                        self.teacher, self.tok, [self.prompts[i]], [w.train_problems[i].answer], cfg.probe.m,
                        cfg.max_new_tokens, cfg.temperature, w.vocab_size, 1)[0]
            self._probe_seconds += time.perf_counter() - t
            write_json_atomically(path, {"key": self._probe_file_key, "seconds": self._probe_seconds,
                                         "passes": {str(i): p for i, p in sorted(self._probe_passes.items())}})
        return self._trusted([self._probe_passes[i] for i in indices])

    def _trusted(self, passes: list[int]) -> list[bool]:
        """A prompt is trusted when the teacher's pass rate on it is at least probe.threshold."""
        return [p / self.cfg.probe.m >= self.cfg.probe.threshold for p in passes]

    @contextlib.contextmanager
    def _probe_stream(self, seed: int):
        """Probing draws from a seeded stream of its own, never from the student's (fork_rng)."""
        devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def _load_or_run_probe(self) -> list[bool]:
        cfg, w, path = self.cfg, self.world, self.out / "probe.json"
        key = self._probe_key()
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                return self._trusted(saved["passes"])
        t = time.perf_counter()
        with self._probe_stream(cfg.seed + 7919):     # the probe's own stream, the same on every process
            passes = teacher_pass_counts(self.teacher, self.tok, self.prompts, [p.answer for p in w.train_problems],
                                         cfg.probe.m, cfg.max_new_tokens, cfg.temperature, w.vocab_size,
                                         cfg.probe.batch_prompts)
        seconds = time.perf_counter() - t
        trusted = self._trusted(passes)
        by_skill: dict[str, list[bool]] = {}
        for prob, ok in zip(w.train_problems, trusted):
            by_skill.setdefault(skill_of(prob.question) or "all", []).append(ok)
        summary = {k: 1.0 - float(np.mean(v)) for k, v in by_skill.items()}
        if self.accelerator.is_main_process:
            write_json_atomically(path, {"key": key, "passes": passes, "seconds": seconds,
                                         "fallback_share_by_skill": summary})
        self.log(f"teacher probe: {len(passes)} prompts x {cfg.probe.m} samples in {seconds:.1f} s; "
                 f"share routed to the fallback: {1 - float(np.mean(trusted)):.1%} "
                 + " ".join(f"{k} {v:.1%}" for k, v in summary.items()))
        return trusted

    def _probe_metrics(self, problems, trusted: list[bool]) -> dict:
        """Share of this step's prompts routed to the fallback, overall and per skill."""
        out = {"probe_fallback": 1.0 - float(np.mean(trusted))}
        by_skill: dict[str, list[bool]] = {}
        for p, ok in zip(problems, trusted):
            label = skill_of(p.question)
            if label is not None:
                by_skill.setdefault(label, []).append(ok)
        out.update({f"probe_fallback_{k}": 1.0 - float(np.mean(v)) for k, v in by_skill.items()})
        return out

    def _watch_gate(self, m: dict, method: str | None = None) -> None:
        """Warn once when a gating run's gate stays silent (frac_gated < 1%) for 20 steps."""
        g = self.cfg.gate
        if (method or self.cfg.method) == "grpo" or not g.shapes_tokens or "frac_gated" not in m:
            return
        self._gate_silent_steps = self._gate_silent_steps + 1 if m["frac_gated"] < GATE_SILENT_FRAC else 0
        if self._gate_silent_steps >= GATE_SILENT_STEPS and not self._gate_warned:
            self._gate_warned = True
            warnings.warn(
                f"the gate changed under {GATE_SILENT_FRAC:.0%} of the tokens for {GATE_SILENT_STEPS} steps "
                f"(frac_gated {m['frac_gated']:.4f} at step {m['step']}): this run is plain OPD in all but "
                f"name. Likely causes: all-equal groups under gate.a1_mode='group' (rollouts without "
                f"evidence this step: {m.get('frac_rollouts_no_evidence', float('nan')):.0%}; try "
                f"a1_mode='sign'), gate.tau={g.tau} too high for |a2|, or coefficients that are 1 where the "
                f"tokens are (lambda_e={g.lambda_e}, lambda_i={g.lambda_i}, lambda_n={g.lambda_n})",
                UserWarning, stacklevel=2)

    def _score(self, model, ro: Rollouts, with_top: bool = False):
        """No-grad log-probs (R, T) of the rollouts' tokens under `model`, one micro-batch at a time;
        with_top: also the model's most likely token at each position (R, T), from the same forward."""
        logps, tops = [], []
        with torch.no_grad():
            for s in micro_batches(len(ro), self.cfg.micro_batch_size):
                mb = ro.select(s)
                logits = response_logits(model, mb, self.world.vocab_size)                 # (b, T, V)
                logps.append(token_logprobs(logits, mb.response_ids))
                if with_top:
                    tops.append(logits.argmax(-1))
        return (torch.cat(logps), torch.cat(tops)) if with_top else torch.cat(logps)

    def _update(self, ro, old_logp, advantage, lambda_t, teacher_ro, w_k, routes: "Routes | None" = None) -> dict:
        """One optimizer step (or ppo_epochs of them) on this batch; returns loss metrics.

        routes (a mixed method): train on routes.advantage, measure each route's gradient before
        any clip (`route_gradients`), and under mix.budget="share" rescale the two instead of the
        global clip (mix.budget)."""
        cfg, acc = self.cfg, self.accelerator
        out = {}
        if routes is not None:
            advantage = routes.advantage
        for epoch in range(cfg.ppo_epochs):
            self.optimizer.zero_grad(set_to_none=True)
            reward_grads = [] if routes is not None and epoch == 0 else None
            info = self.backward(ro, old_logp, advantage, lambda_t, teacher_ro, w_k,
                                 reward_adv=routes.reward if reward_grads is not None else None,
                                 reward_grads=reward_grads)
            mixed = {}
            if reward_grads is not None:
                mixed = self._balance(reward_grads, routes)
                grad_norm = mixed.pop("_grad_norm")
            else:
                grad_norm = (acc.clip_grad_norm_(self.student.parameters(), cfg.grad_clip)
                             if cfg.grad_clip else _grad_norm(self.student))
            # every process agrees before any of them steps (gradients are already all-reduced)
            finite = math.isfinite(info["loss_pg"]) and math.isfinite(info["loss_ce"]) and math.isfinite(float(grad_norm))
            if not all_processes_agree(acc, finite):
                self.optimizer.zero_grad(set_to_none=True)
                if epoch == 0:          # nothing changed: the whole step is skipped
                    self._advance_schedule()
                    return {"skipped": "non-finite loss or gradient"}
                # earlier epochs already stepped: keep them, stop here, and say so
                out["partial_update"] = f"non-finite loss or gradient at epoch {epoch + 1} of {cfg.ppo_epochs}"
                break
            self.optimizer.step()
            if epoch == 0:
                out.update(info, grad_norm=float(grad_norm), **mixed)
            elif "clip_frac" in info:
                out["clip_frac"] = info["clip_frac"]
        self.scheduler.step()
        return out

    def _trainable(self) -> list:
        return [p for p in self.student.parameters() if p.requires_grad]

    def route_gradients(self, reward_grads: list) -> tuple[list, list]:
        """(teacher route, reward route) gradients of the step, each a list over the trainable
        parameters: the reward route's was taken on its own during `backward`, the teacher's is
        the rest of the summed gradient (phased teacher sampling's term included)."""
        total = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._trainable()]
        reward = [g if g is not None else torch.zeros_like(t) for g, t in zip(reward_grads, total)]
        return [t - r for t, r in zip(total, reward)], reward

    def budget_share(self, routes: "Routes") -> float:
        """mix.budget="share"'s target for the reward route: mix.reward_share, else the share of
        the (rollout, route) pairs it owns."""
        share = self.cfg.mix.reward_share
        return share if share is not None else routes.owned_share

    def measure_routes(self, k: int, batch: "Batch | None" = None) -> tuple["Routes", list, list]:
        """Step k's batch (collected now unless given) through steps 3-4 and the backward pass, with
        no clip and no optimizer step: (its Routes, the teacher route's gradient, the reward
        route's), for a mixed method. What study/balance.py measures on the starting student."""
        batch = batch if batch is not None else self.collect(k)
        formed = self.form_advantage(k, batch, {}, {})
        if isinstance(formed, str):
            raise RuntimeError(f"batch {k}: {formed}")
        routes = self._routes(formed.advantage, batch.rollouts)
        self.optimizer.zero_grad(set_to_none=True)
        reward = []
        self.backward(batch.rollouts, formed.old_logp, routes.advantage, formed.advantage.lambda_t,
                      reward_adv=routes.reward, reward_grads=reward)
        return (routes, *self.route_gradients(reward))

    def _balance(self, reward_grads: list, routes: "Routes") -> dict:
        """Measure both routes' gradients, then clip the sum (mix.budget="none") or rescale each
        route to its share of the norm (mix.budget="share"); the result is left in p.grad."""
        cfg = self.cfg
        g_t, g_r = self.route_gradients(reward_grads)
        n_t, n_r = norm(g_t), norm(g_r)
        m = {"grad_norm_teacher": n_t, "grad_norm_reward": n_r,
             "reward_grad_share": n_r / (n_t + n_r) if n_t + n_r > 0 else 0.0,
             "route_rollouts_reward": routes.rollout_share, "route_tokens_reward": routes.token_share}
        if cfg.mix.budget == "share":
            combined, info = budget(g_t, g_r, self.budget_share(routes), cfg.grad_clip)
            with torch.no_grad():
                for p, g in zip(self._trainable(), combined):
                    p.grad = g
            m.update(clip_factor=info["clip_factor"], reward_grad_share_after=info["reward_grad_share"],
                     _grad_norm=norm(combined))
        else:                      # the norm as the clip computes it, so the log reads as before
            grad_norm = float(self.accelerator.clip_grad_norm_(self.student.parameters(), cfg.grad_clip)
                              if cfg.grad_clip else _grad_norm(self.student))
            m.update(clip_factor=min(1.0, cfg.grad_clip / (grad_norm + 1e-6)) if cfg.grad_clip else 1.0,
                     _grad_norm=grad_norm)
        return m

    def _advance_schedule(self) -> None:
        """Move the learning-rate schedule on by one step without an update (a skipped step,
        module docstring). torch warns when a schedule steps before the optimizer ever has,
        which is exactly what a skipped first step does, on purpose."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            self.scheduler.step()

    def backward(self, ro, old_logp, advantage, lambda_t, teacher_ro=None, w_k=0.0, reward_adv=None,
                 reward_grads: list | None = None) -> dict:
        """Accumulate the gradient of L = L_SG + w(k) L_CE over micro-batches (no step).

        Both parts are normalised by their token counts summed over the whole step and all
        processes (N and N_T), so the gradient is the same however the batch is split.

        reward_adv (R, T) with reward_grads (an empty list): also take the gradient of the
        policy-gradient term of `reward_adv` alone (a mixed method's reward route) and leave it in
        reward_grads, one tensor per trainable parameter. Under several processes every
        micro-batch then runs without DDP's all-reduce, which happens once at the end, by hand,
        for both gradients (DDP cannot take torch.autograd.grad)."""
        cfg, acc, vocab = self.cfg, self.accelerator, self.world.vocab_size
        world_size = acc.num_processes
        split = reward_grads is not None
        manual_sync = split and world_size > 1
        params = self._trainable() if split else []
        route_sum = [torch.zeros_like(p) for p in params]
        N = global_sum(acc, ro.response_mask.sum().item())
        N_T = global_sum(acc, teacher_ro.response_mask.sum().item() if teacher_ro is not None else 0)
        jobs = [("pg", s) for s in micro_batches(len(ro), cfg.micro_batch_size)]
        if teacher_ro is not None:
            jobs += [("ce", s) for s in micro_batches(len(teacher_ro), cfg.micro_batch_size)]
        pg_total, ce_total, ent_sum, clip_fracs = 0.0, 0.0, 0.0, []
        for j, (kind, s) in enumerate(jobs):
            # gradients are all-reduced once, on the last micro-batch
            last = j == len(jobs) - 1 and not manual_sync
            ctx = contextlib.nullcontext() if last else acc.no_sync(self.student)
            with ctx:
                if kind == "pg":
                    mb = ro.select(s)
                    logits = response_logits(self.student, mb, vocab)                  # (b, T, V)
                    if cfg.loss_type == "dense":
                        with torch.no_grad():
                            t_logits = response_logits(self.teacher, mb, vocab)
                        loss = dense_distill_loss(logits, t_logits, lambda_t[s], mb.response_mask, N,
                                                  beta=cfg.dense_beta)
                    else:
                        logp = token_logprobs(logits, mb.response_ids)                  # (b, T)
                        if split:       # the reward route alone (at ratio 1 the PPO loss has this gradient too)
                            part = policy_gradient_loss(logp, reward_adv[s], mb.response_mask, N) * world_size
                            grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
                            for acc_g, g in zip(route_sum, grads):
                                if g is not None:
                                    acc_g += g
                        if cfg.ppo_epochs > 1:
                            loss, info = ppo_clip_loss(logp, old_logp[s], advantage[s],
                                                       mb.response_mask, N, cfg.clip_eps)
                            clip_fracs.append(info["clip_frac"])
                        else:
                            loss = policy_gradient_loss(logp, advantage[s], mb.response_mask, N)
                    ent_sum += float((entropy_from_logits(logits.detach()) * mb.response_mask).sum())
                    pg_total += loss.item()
                else:
                    mb = teacher_ro.select(s)
                    ce = aux_ce_loss(sequence_logprobs(self.student, mb, vocab), mb.response_mask, N_T)
                    loss = w_k * ce
                    ce_total += ce.item()
                acc.backward(loss * world_size)   # DDP averages; the normaliser wants the sum
        if manual_sync:                           # what DDP would have done: the mean over processes
            import torch.distributed as dist

            for p, g in zip(params, route_sum):
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
                p.grad /= world_size
                dist.all_reduce(g)
                g /= world_size
        if split:
            reward_grads.extend(route_sum)
        out = {"loss_pg": pg_total, "loss_ce": ce_total, "entropy": global_sum(acc, ent_sum) / max(N, 1)}
        if clip_fracs:
            out["clip_frac"] = float(np.mean(clip_fracs))
        return out

    def _save_rollouts(self, k, ro, gate_out, r):
        path = self.out / "rollouts.jsonl"
        with path.open("a") as f:
            for i in range(min(self.cfg.log_rollouts, len(ro))):
                f.write(json.dumps({"step": k, **token_table(self.tok, ro, gate_out, r, i)}) + "\n")

    # -- evaluation, checkpoints, the loop ------------------------------------------------
    def evaluate(self) -> dict:
        """Score the student on the world's held-out problems (`eval_*` metrics) and, where the
        world has a second held-out set, on that one too (`eval_unseen_*`), after the first."""
        out = self._scores(self.world.eval_problems, "eval_")
        if self.world.unseen_problems:
            # its own stream, seeded by the run's seed and step: scoring the second set never
            # moves the training stream, so runs with and without it train alike
            with isolated_rng(self.accelerator.device):
                torch.manual_seed(self.cfg.seed + 104729 * self.step)
                out.update(self._scores(self.world.unseen_problems, "eval_unseen_"))
        return out

    def _scores(self, problems, prefix: str) -> dict:
        from .evaluate import evaluate

        res = evaluate(self.policy, self.tok, problems[:self.cfg.eval_problems], n=self.cfg.eval_n,
                       temperature=self.cfg.eval_temperature, max_new_tokens=self.cfg.max_new_tokens,
                       instruction=self.world.instruction, vocab_size=self.world.vocab_size,
                       step_checker=self.world.step_checker)
        skills = {}
        for kind in ("carry", "borrow"):          # error adoption: forgotten carries / borrows
            if res.steps.get(f"{kind}_steps"):
                skills[f"{prefix}slip_{kind}"] = res.slip_rate(kind)
                skills[f"{prefix}steps_{kind}"] = res.steps[f"{kind}_steps"]
        for skill, v in res.per_skill.items():
            skills[f"{prefix}avg@{res.n}_{skill}"] = v["avg"]
            skills[f"{prefix}problems_{skill}"] = v["problems"]
        return {f"{prefix}avg@{res.n}": res.avg_at_n, f"{prefix}pass@{res.k}": res.pass_at_k,
                f"{prefix}seconds": res.seconds, **skills}

    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoint"

    def _evaluates_at(self, step: int) -> bool:
        """Whether the run evaluates after `step` steps: every eval_every steps, and at the end."""
        return bool(self.cfg.eval_every and step % self.cfg.eval_every == 0) or step == self.cfg.steps

    def run(self, stop_after: int | None = None) -> list[dict]:
        """Train to cfg.steps (resuming from the checkpoint if there is one: `Trainer` has
        checked that it was written with this configuration, `check_resumable`).

        stop_after: return after this many steps of the run in total (used to test resumption).
        """
        cfg, acc = self.cfg, self.accelerator
        self.out.mkdir(parents=True, exist_ok=True)
        metrics_path = self.out / "metrics.jsonl"
        resumed = (self.checkpoint_dir() / "state.pt").is_file()
        if resumed:
            saved = load_checkpoint(self.checkpoint_dir(), self.policy, self.optimizer, self.scheduler, acc)
            self.step = saved["step"]
            if self.step > cfg.steps:
                raise ConfigError(f"steps: the checkpoint in {self.checkpoint_dir()} is at step {self.step}, past "
                                  f"steps={cfg.steps}; ask for at least {self.step} steps, or restart")
            if cfg.eval_rng == "shared" and saved["evaluated"] and not self._evaluates_at(self.step):
                warnings.warn(f"eval_rng='shared': the evaluation at step {self.step} drew from the training "
                              f"random stream before the checkpoint, and a run of steps={cfg.steps} would not "
                              "evaluate there, so the steps from here differ from that run's; eval_rng='isolated' "
                              "(the default) has no such drift", UserWarning, stacklevel=2)
            self.log(f"resumed from {self.checkpoint_dir()} at step {self.step}")
            _truncate_jsonl(metrics_path, self.step)
            _truncate_jsonl(self.out / "rollouts.jsonl", self.step)
        elif acc.is_main_process:
            metrics_path.unlink(missing_ok=True)
            (self.out / "rollouts.jsonl").unlink(missing_ok=True)
        if acc.is_main_process:          # on a resume too: `steps` (or the output fields) may be new
            (self.out / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2, default=str))
        ds = getattr(acc.state, "deepspeed_plugin", None)
        problem = backend_problem(cfg, acc.distributed_type, ds.zero_stage if ds is not None else 0)
        if problem:
            raise ConfigError(problem)
        self._start_trackers()
        try:
            return self._loop(metrics_path, stop_after)
        finally:
            self._end_trackers()

    def _loop(self, metrics_path: Path, stop_after: int | None) -> list[dict]:
        """The steps of `run()`: train, evaluate, log, checkpoint."""
        cfg, acc = self.cfg, self.accelerator
        history = []
        end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
        try:
            from tqdm.auto import tqdm
            bar = tqdm(range(self.step, end), initial=self.step, total=cfg.steps,
                       disable=not (self.verbose and acc.is_main_process), desc=cfg.method)
        except ImportError:  # pragma: no cover
            bar = range(self.step, end)
        for k in bar:
            m = self.train_step(k)
            self.step = k + 1
            evaluated = acc.is_main_process and self._evaluates_at(self.step)
            if evaluated:
                # isolated: from a copy of the training random state, so the next step draws what
                # it would have drawn without this evaluation (and so does a resume from here)
                rng = isolated_rng(acc.device) if cfg.eval_rng == "isolated" else contextlib.nullcontext()
                with rng:
                    m.update(self.evaluate())
            if acc.is_main_process:
                with metrics_path.open("a") as f:
                    f.write(json.dumps(m) + "\n")
                acc.log(numeric_metrics(m), step=k)   # TensorBoard / W&B, when report_to names them
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(reward=f"{m.get('reward_mean', float('nan')):.2f}",
                                    kl=f"{m.get('kl_k1', float('nan')):.3f}")
            history.append(m)
            if (cfg.save_every and self.step % cfg.save_every == 0) or self.step == end:
                acc.wait_for_everyone()
                save_checkpoint(self.checkpoint_dir(), self.step, self.policy, self.optimizer, self.scheduler,
                                self.fingerprint, acc, evaluated=evaluated)
        if self.step >= cfg.steps and acc.is_main_process:
            self.policy.save_pretrained(self.out / "final")
            self.tok.save_pretrained(self.out / "final")
        return history

    # -- experiment trackers (accelerate) --------------------------------------------------
    def _start_trackers(self) -> None:
        """Start the trackers of `cfg.report_to` (metrics.jsonl is always written besides).

        TensorBoard writes to out_dir/sgopd_lite/; W&B takes its usual environment variables
        (WANDB_MODE=offline keeps a run local). The config goes in as flat hyper-parameters.
        """
        acc = self.accelerator
        if self.cfg.report_to and not acc.log_with:
            raise ConfigError("report_to: the Accelerator given to Trainer has no trackers; build it with "
                              "Accelerator(log_with=cfg.report_to, project_dir=cfg.out_dir) or let Trainer build it")
        if acc.log_with and not acc.trackers:
            acc.init_trackers("sgopd_lite", config=flat_config(self.cfg))

    def _end_trackers(self) -> None:
        """Close the trackers (flushes TensorBoard, finishes the W&B run).

        This is the tracker half of `accelerator.end_training()`; the other half destroys the
        process group, which the caller (or a second Trainer in the same process) may still need.
        """
        acc = self.accelerator
        for tracker in acc.trackers:
            tracker.finish()
        acc.trackers = []


def numeric_metrics(m: dict) -> dict:
    """The numbers of a step's metrics (trackers plot scalars; skip-reason strings stay in the JSONL)."""
    return {k: float(v) for k, v in m.items() if isinstance(v, (int, float)) and k != "step"}


def train(cfg: TrainConfig, world: World | None = None, verbose: bool = True,
          stop_after: int | None = None, restart: bool = False) -> list[dict]:
    """Run (or resume) one training run; returns the per-step metrics of this invocation.

    A checkpoint in cfg.out_dir is resumed only if the same configuration wrote it (steps and
    the output fields of RESUME_IGNORES aside); another run's checkpoint is a ConfigError before
    any model loads, unless restart=True, which deletes it and starts over (`check_resumable`).
    """
    return Trainer(cfg, world=world, verbose=verbose, restart=restart).run(stop_after=stop_after)


# --------------------------------------------------------------------------------------------

def _time_metrics(times: dict) -> dict:
    return {f"time_{k}": v for k, v in times.items()}


def _grad_norm(model) -> float:
    norms = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def _truncate_jsonl(path: Path, step: int) -> None:
    """Drop records of steps >= `step` (written after the checkpoint a run resumes from)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", -1) < step]
    path.write_text("".join(line + "\n" for line in keep))
