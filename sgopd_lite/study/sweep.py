"""`python -m sgopd_lite sweep`: a grid of training runs from one command, resumable, in parallel.

    python -m sgopd_lite sweep --config configs/tiny.yaml --out runs/li --jobs 2 \
        steps=50 gate.lambda_i=0,0.5,1 gate.a1_mode=group,sign seed=0:3

Every `key=value` of `train` works. A comma list makes an axis (`gate.lambda_i=0,0.5,1`), and so
does a range (`seed=0:3` = 0, 1, 2; the end left out, as in Python). `seed` is the replicate axis:
a *cell* is one combination of the other axes, its seeds are its replicates. A study can also be
a YAML file (`--study configs/studies/NAME.yaml`, `load_study`): a base config, fixed overrides
and a `grid:`, where an axis may also be *named*, each level setting several keys at once.

What lands under DIR (`--out`):

    DIR/sweep.json              the definition: base config, fixed overrides, axes, every run's name
    DIR/<cell>-s<seed>.json     one summary per finished run (final avg@n / pass@n, per-skill
                                accuracy, curves, seconds, machine), written atomically;
                                <cell> is the run's axis overrides, `gate.lambda_i=0.5,seed...`
    DIR/work/<cell>-s<seed>/    the run's out_dir: metrics.jsonl, checkpoint/ (resumes), final/
    DIR/failed/<name>.json      the error of a run that failed (deleted once it succeeds)

Before any run starts, every run's TrainConfig is built and validated: an unknown key, a
malformed list or range, an empty grid, an impossible value in any cell is one ConfigError (one
line, exit 2). A finished summary is skipped (so the same command again loads no model), unless
it was written with other overrides (then the command refuses: another sweep owns DIR). A run
that raises is recorded in DIR/failed/ and the others go on; Ctrl-C leaves no half-written
summary (checkpoints and summaries are written to a temporary name and renamed), and the next
invocation resumes each unfinished run from its own checkpoint.

Parallel and on several machines, with no scheduler of our own:

* `--jobs N` starts N worker processes (one torch thread each); a worker claims a run with an
  advisory file lock (DIR/work/<name>.lock, released by the OS if the worker dies), so workers
  never train the same run and a faster worker takes more runs;
* `--shard i/n` keeps the i-th of n disjoint slices of the run list (every n-th run from the
  i-th, over the whole list, so the slices do not depend on what is done): the same command
  with i = 0..n-1 on n machines, or as an array job, over a shared folder (docs/usage.md).

Run order is seed-major: every cell gets its first seed before any cell gets its second, so a
sweep stopped early still covers the grid.

May import: config, data, assets; train inside functions. Never study/report.py or study/plan.py
(plan.py builds on this module).
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, TrainConfig, _coerce, is_axis, load_config, split_override, split_values
from ..data import SKILLS

CURVE_EVERY = 5         # keep every 5th step's training metrics in a summary
# The training metrics a summary keeps as curves. grad_norm shows whether a run stayed stable;
# probe_frac_fallback is the share of a teacher_probe batch's rollouts whose prompt fell back
# (advantage.py), beside probe_fallback, the share of the batch's prompts (train.py).
CURVE_KEYS = ("reward_mean", "kl_k1", "a2_mean", "entropy", "frac_consensus", "frac_conflict_i",
              "frac_conflict_ii", "frac_neutral", "pts_w", "frac_gated", "frac_rollouts_no_evidence",
              "frac_zero_push", "probe_fallback", "probe_fallback_carry", "probe_fallback_borrow",
              "probe_fallback_both", "probe_fallback_none", "probe_frac_fallback", "adv_abs_mean",
              "grad_norm", "grad_norm_teacher", "grad_norm_reward", "reward_grad_share", "clip_factor",
              "route_rollouts_reward", "route_tokens_reward", "staged_grpo")   # the last seven: mixed methods
EFFECTS = ("zeroed", "shrunk", "unchanged", "amplified", "flipped")   # gate.gate_evidence's names
SEED = "seed"           # the replicate axis


# --------------------------------------------------------------------------------------------
# Run summaries (also written by study/plan.py)
# --------------------------------------------------------------------------------------------

def machine() -> str:
    import torch

    return (f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def atomic_write(path: Path, data: dict) -> None:
    """Write JSON to a temporary name, then rename: a reader (or a Ctrl-C) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def full_history(out_dir: Path, history: list[dict]) -> list[dict]:
    """Every step's metrics of a run from its metrics.jsonl, one entry per step (the last one
    written wins). `train()` returns only the steps of its own invocation, so a run resumed from
    a checkpoint would otherwise keep only the curve after the resume."""
    path = Path(out_dir) / "metrics.jsonl"
    if not path.is_file():
        return history
    by_step = {}
    for line in path.read_text().splitlines():
        if line.strip():
            m = json.loads(line)
            by_step[m["step"]] = m
    for m in history:                       # the returned steps are the newest
        by_step[m["step"]] = m
    return [by_step[k] for k in sorted(by_step)]


def curves_of(history: list[dict]) -> dict:
    """CURVE_KEYS sampled every CURVE_EVERY steps, [[step, value], ...]; keys the run never logged are left out."""
    curves = {k: [[m["step"], m[k]] for m in history[::CURVE_EVERY] if isinstance(m.get(k), (int, float))]
              for k in CURVE_KEYS}
    return {k: v for k, v in curves.items() if v}


def evals_of(history: list[dict], n: int) -> list:
    """Every held-out evaluation of a run, [[step, {eval_* metrics}], ...], with `step` the number
    of steps trained before it (a run with eval_every=200 and 1000 steps has five)."""
    return [[m["step"] + 1, {k: v for k, v in m.items() if k.startswith("eval_")}]
            for m in history if f"eval_avg@{n}" in m]


def evidence_totals(history: list[dict]) -> dict:
    """The run's per-token evidence (gate.gate_evidence, logged per step) pooled over all its
    steps, each step weighted by its number of positions: the share of known positions where the
    teacher's top token is wrong, and, where it is wrong and where it is right, the share the gate
    zeroed / shrunk / kept / amplified / flipped and the mean a2 and A there. Also the mean of
    frac_gated and frac_rollouts_no_evidence over steps. {} for a run that logged no evidence."""
    steps = [m for m in history if m.get("evidence_positions")]
    if not steps:
        return {}
    out = {"positions": sum(m["evidence_positions"] for m in steps)}
    n_wrong = [m["evidence_positions"] * m["evidence_teacher_wrong"] for m in steps]
    out["teacher_wrong"] = sum(n_wrong) / out["positions"]
    for who, weights in (("wrong", n_wrong), ("right", [m["evidence_positions"] - w for m, w in zip(steps, n_wrong)])):
        total = sum(weights)
        for name in (*EFFECTS, "a2_mean", "adv_mean"):
            key = f"evidence_{who}_{name}"
            out[f"{who}_{name}"] = sum(w * m[key] for w, m in zip(weights, steps)) / total if total else 0.0
    for key in ("frac_gated", "frac_rollouts_no_evidence", "frac_zero_push"):
        vals = [m[key] for m in history if isinstance(m.get(key), (int, float))]
        if vals:
            out[key] = sum(vals) / len(vals)
    for src in PUSH_SOURCES:
        out.update(push_totals(history, src))
    return out


PUSH_SOURCES = ("push_oracle", "push_step")   # gate.push_evidence's prefixes, logged per step


def push_totals(history: list[dict], prefix: str) -> dict:
    """gate.push_evidence of one source (`prefix`) pooled over a run's steps: each step's shares
    weighted by its number of harmful / helpful positions. {} for a run that never logged it."""
    steps = [m for m in history if m.get(f"{prefix}_positions")]
    if not steps:
        return {}
    positions = sum(m[f"{prefix}_positions"] for m in steps)
    out = {f"{prefix}_positions": positions}
    for kind in ("harm", "help"):
        weights = [m[f"{prefix}_{kind}_n"] for m in steps]
        total = sum(weights)
        out[f"{prefix}_{kind}_n"] = total
        out[f"{prefix}_{kind}_share"] = total / positions if positions else 0.0
        for name in (*EFFECTS, "a2_abs_mean", "adv_abs_mean"):
            key = f"{prefix}_{kind}_{name}"
            out[key] = sum(w * m[key] for w, m in zip(weights, steps)) / total if total else 0.0
    return out


def summarize(cfg: TrainConfig, history: list[dict], seconds: float, **fields) -> dict:
    """A finished run's summary: its final held-out metrics (overall and per skill), curves
    sampled every CURVE_EVERY steps, wall time and machine; `fields` go in first (name, ...).
    `history` is the run's whole history (`full_history`); its last step holds the final eval."""
    final = history[-1] if history else {}
    key_avg, key_pass = f"eval_avg@{cfg.eval_n}", f"eval_pass@{cfg.eval_n}"
    if key_avg not in final:
        raise RuntimeError(f"run {fields.get('name', cfg.out_dir)} ended without a final evaluation")
    return {**fields, "method": cfg.method, "seed": cfg.seed, "lambda_e": cfg.gate.lambda_e,
            "lambda_i": cfg.gate.lambda_i, "steps": cfg.steps, "lr": cfg.lr, "loss_type": cfg.loss_type,
            "avg": final[key_avg], "pass": final[key_pass], "n": cfg.eval_n,
            "eval_problems": cfg.eval_problems, "skipped_steps": sum("skipped" in m for m in history),
            "per_skill": {s: {"avg": final[f"{key_avg}_{s}"], "problems": final[f"eval_problems_{s}"]}
                          for s in SKILLS if f"{key_avg}_{s}" in final},
            **({"per_skill_unseen": {s: {"avg": final[f"eval_unseen_avg@{cfg.eval_n}_{s}"],
                                         "problems": final[f"eval_unseen_problems_{s}"]}
                                     for s in SKILLS if f"eval_unseen_avg@{cfg.eval_n}_{s}" in final},
                "avg_unseen": final[f"eval_unseen_avg@{cfg.eval_n}"]}
               if f"eval_unseen_avg@{cfg.eval_n}" in final else {}),
            "final": {k: v for k, v in final.items() if k.startswith("eval_")},
            "curves": curves_of(history), "evidence": evidence_totals(history),
            "evals": evals_of(history, cfg.eval_n), "seconds": round(seconds, 1), "machine": machine(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}


def train_and_summarize(cfg: TrainConfig, verbose: bool = False, **fields) -> dict:
    """Train one run (resuming its checkpoint if any) and return its summary."""
    from ..train import train

    start = time.perf_counter()
    history = train(cfg, verbose=verbose)
    return summarize(cfg, full_history(Path(cfg.out_dir), history), time.perf_counter() - start, **fields)


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------

def label(text: str) -> str:
    """A value as it appears in a run's name: numbers as `:g` writes them (1e-4 -> 0.0001, 1.0 -> 1)."""
    v = _coerce(text)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v) if not isinstance(v, (list, dict)) else text.strip()


@dataclass(frozen=True)
class Level:
    """One value of an axis: its label (in names and tables) and the overrides it applies."""

    label: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Run:
    """One (cell, seed) of a sweep."""

    name: str                        # file stem of its summary and its out_dir
    cell: tuple[tuple[str, str], ...]  # (axis, level label) for every axis but seed, in axis order
    seed: int
    overrides: tuple[str, ...]       # every key=value of the run, fixed ones first (no out_dir)

    @property
    def cell_name(self) -> str:
        return ",".join(f"{a}={v}" for a, v in self.cell) or "base"


def _safe(text: str) -> str:
    """A file-name-safe version of a run name (paths and spaces become _)."""
    return re.sub(r"[^A-Za-z0-9._=,+@-]", "_", text)


@dataclass
class Sweep:
    """A grid of runs: a base config, fixed overrides, axes (seed among them), where it goes."""

    config: str | None                     # base YAML config (None = TrainConfig's defaults)
    fixed: list[str]                       # key=value, one value each
    axes: dict[str, list[Level]]           # axis name -> its levels, in order; may include "seed"
    out: Path                              # summaries
    work: Path | None = None               # out_dirs of the runs (default out/work)
    name: str | None = None                # run-name template, e.g. "{setting}-{method}-s{seed}"
    fields: dict = field(default_factory=dict)   # copied into every summary (a study's group, ...)
    source: str = "command line"           # where the definition came from, for messages

    def __post_init__(self):
        self.out = Path(self.out)
        self.work = Path(self.work) if self.work is not None else self.out / "work"
        if not self.axes:
            raise ConfigError(f"{self.source}: empty grid; give at least one axis, a comma list or a range "
                              "(e.g. gate.lambda_i=0,0.5,1 or seed=0:3)")
        for axis, levels in self.axes.items():
            if not levels:
                raise ConfigError(f"{self.source}: axis {axis!r} has no values")
        fixed_keys = [split_override(o)[0] for o in self.fixed]
        axis_keys = [split_override(o)[0] for levels in self.axes.values() for o in levels[0].overrides]
        for key in fixed_keys + axis_keys:
            if key == "out_dir":
                raise ConfigError(f"{self.source}: out_dir is set by the sweep (one folder per run under "
                                  f"{self.work}); use --out")
        twice = sorted({k for k in axis_keys if axis_keys.count(k) > 1} | (set(fixed_keys) & set(axis_keys)))
        if twice:
            raise ConfigError(f"{self.source}: {twice} set both as an axis and elsewhere; give each key once")

    @property
    def named_axes(self) -> set[str]:
        """Axes whose levels are labels for other settings (a study's `setting: {hold: {...}}`)."""
        return {a for a, levels in self.axes.items()
                if any(lv.overrides != (lv.overrides[0],) or split_override(lv.overrides[0])[0] != a
                       for lv in levels)}

    def runs(self) -> list[Run]:
        """Every run, seed-major: each cell's first seed before any cell's second."""
        cell_axes = [a for a in self.axes if a != SEED]
        seeds = self.axes.get(SEED) or [None]
        out = []
        for seed in seeds:
            for combo in itertools.product(*(self.axes[a] for a in cell_axes)):
                overrides = tuple(self.fixed) + tuple(o for lv in combo for o in lv.overrides)
                if seed is not None:
                    overrides += seed.overrides
                cell = tuple((a, lv.label) for a, lv in zip(cell_axes, combo))
                out.append(Run(name="", cell=cell, seed=-1, overrides=overrides))
        return out

    def plan(self) -> list[tuple[Run, TrainConfig]]:
        """Every run with its validated TrainConfig and its name; ConfigError naming the first
        run whose config is impossible, before anything runs."""
        out, names = [], {}
        for run in self.runs():
            where = f"cell {run.cell_name}" if run.cell else "the base cell"
            try:
                cfg = load_config(self.config, list(run.overrides))
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None
            values = {**dict(run.cell), SEED: str(cfg.seed)}
            if self.name:
                try:
                    name = re.sub(r"\{([^{}]+)\}", lambda m: values[m.group(1)], self.name)
                except KeyError as err:
                    raise ConfigError(f"{self.source}: the name template {self.name!r} names {err}, which is "
                                      f"not an axis ({sorted(values)})") from None
            else:
                name = f"{run.cell_name}-s{cfg.seed}"
            name = _safe(name)
            if name in names:
                raise ConfigError(f"{self.source}: two runs are both named {name!r} ({where}, seed {cfg.seed}); "
                                  "every (cell, seed) needs its own name")
            names[name] = run
            run = Run(name=name, cell=run.cell, seed=cfg.seed, overrides=run.overrides)
            cfg.out_dir = str(self.work / name)
            out.append((run, cfg))
        return out

    def summary_path(self, run: Run) -> Path:
        return self.out / f"{run.name}.json"

    def failed_path(self, run: Run) -> Path:
        return self.out / "failed" / f"{run.name}.json"

    def definition(self, runs: list[Run]) -> dict:
        """What DIR/sweep.json holds: enough for `sweep-report` to lay out the table."""
        return {"config": self.config, "fixed": list(self.fixed), "source": self.source,
                "axes": {a: [lv.label for lv in levels] for a, levels in self.axes.items()},
                "runs": [{"name": r.name, "cell": dict(r.cell), "seed": r.seed} for r in runs]}


def axis_from_text(key: str, text: str) -> list[Level]:
    """`gate.lambda_i=0,0.5,1` -> three levels (one value: a one-level axis)."""
    return [Level(label(v), (f"{key}={v}",)) for v in split_values(key, text)]


def from_command_line(config: str | None, overrides: list[str], out, source: str = "command line",
                      base: "Sweep | None" = None, work=None) -> Sweep:
    """A Sweep from `key=value` arguments: a list or a range is an axis, anything else fixed.
    base: a study whose fixed overrides and axes the arguments replace key by key (and whose
    out and work folders `out` and `work` replace)."""
    fixed, axes, seen = [], {}, set()
    for item in overrides:
        key, text = split_override(item)
        if key in seen:
            raise ConfigError(f"{key} is given twice on the command line")
        seen.add(key)
        if is_axis(text):
            axes[key] = axis_from_text(key, text)
        else:
            _coerce(text, key)
            fixed.append(f"{key}={text}")
    if base is None:
        return Sweep(config=config, fixed=fixed, axes=axes, out=out, work=work, source=source)
    # the command line wins over the study file, key by key
    keep_fixed = [o for o in base.fixed if split_override(o)[0] not in seen]
    keep_axes = {a: lv for a, lv in base.axes.items()
                 if a not in seen and not any(split_override(o)[0] in seen for x in lv for o in x.overrides)}
    return Sweep(config=base.config, fixed=keep_fixed + fixed, axes={**keep_axes, **axes},
                 out=out if out is not None else base.out,
                 work=work if work is not None else (None if out is not None else base.work),
                 name=base.name, fields=base.fields, source=base.source)


def _override_text(value) -> str:
    """A YAML value of a study file as the text of a key=value override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def load_study(path, root: Path | None = None) -> Sweep:
    """A Sweep from a study file (configs/studies/*.yaml). Relative paths in it (config, out,
    work) are relative to `root`, the checkout (assets.project_dir) by default.

        config: configs/tiny.yaml      # optional base config
        out: results/runs/grid         # summaries (the --out of the command line wins)
        work: runs/reproduce           # optional: the runs' out_dirs (default out/work)
        name: "both-sgopd-le{gate.lambda_e}-li{gate.lambda_i}-s{seed}"   # optional
        fields: {group: grid}          # optional: copied into every summary
        overrides: {method: sgopd, world.style_gap: 1.0}                  # one value each
        grid:
          gate.lambda_e: [1.0, 1.4, 1.8]        # a list
          seed: "0:3"                           # a range (quoted: YAML reads 0:3 as a time)
          setting:                              # a named axis: each level sets several keys
            hold: {world.style_gap: 0.0, world.teacher_noise: 0.0}
            a1: {world.style_gap: 1.0, world.teacher_noise: 0.0}

    A named axis's level labels go into every summary under the axis name (`setting: hold`).
    """
    from ..assets import project_dir
    from ..config import _yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study file {path} does not exist")
    root = Path(root) if root is not None else project_dir()
    data = _yaml(path.read_text()) or {}
    src = str(path)
    known = {"config", "out", "work", "name", "fields", "overrides", "grid"}
    if not isinstance(data, dict) or set(data) - known:
        raise ConfigError(f"{src}: expected a mapping with keys {sorted(known)}"
                          + (f"; unknown: {sorted(set(data) - known)}" if isinstance(data, dict) else ""))

    def rel(p):
        return None if p is None else str(p if Path(p).is_absolute() else root / p)

    fixed = [f"{k}={_override_text(v)}" for k, v in (data.get("overrides") or {}).items()]
    for o in fixed:
        key, text = split_override(o)
        if is_axis(text):
            raise ConfigError(f"{src}: overrides: {o!r} is a list or range; put it under grid:")
    grid = data.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{src}: grid: expected a mapping of axes")
    axes = {}
    for axis, spec in grid.items():
        if isinstance(spec, dict):                         # a named axis
            levels = []
            for lab, sets in spec.items():
                if not isinstance(sets, dict) or not sets:
                    raise ConfigError(f"{src}: grid: {axis}: level {lab!r} must map keys to values")
                levels.append(Level(str(lab), tuple(f"{k}={_override_text(v)}" for k, v in sets.items())))
                for o in levels[-1].overrides:
                    split_override(o)
            axes[axis] = levels
        elif isinstance(spec, list):
            split_override(f"{axis}=")
            axes[axis] = [Level(label(_override_text(v)), (f"{axis}={_override_text(v)}",)) for v in spec]
            if len({lv.label for lv in axes[axis]}) < len(axes[axis]):
                raise ConfigError(f"{src}: grid: {axis}: a value is given twice")
        else:
            split_override(f"{axis}=")
            axes[axis] = axis_from_text(axis, _override_text(spec))
    if data.get("out") is None:
        raise ConfigError(f"{src}: out: where the summaries go is missing")
    return Sweep(config=rel(data.get("config")), fixed=fixed, axes=axes, out=rel(data["out"]),
                 work=rel(data.get("work")), name=data.get("name"), fields=dict(data.get("fields") or {}),
                 source=src)


def parse_shard(text: str | None) -> tuple[int, int]:
    """`i/n` -> (i, n), 0 <= i < n; None -> (0, 1)."""
    if text is None:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise ConfigError(f"--shard {text}: expected i/n with 0 <= i < n (e.g. 0/4 ... 3/4)")
    return int(m.group(1)), int(m.group(2))


def shard(items: list, i: int, n: int) -> list:
    """The i-th of n disjoint slices that together cover `items` (every n-th from the i-th)."""
    return items[i::n]


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_done(sweep: Sweep, run: Run) -> bool:
    """A readable summary with a final avg@n exists. ConfigError if it holds another run's overrides
    (DIR belongs to another sweep); summaries without recorded overrides (study/plan.py's) count."""
    s = _read_json(sweep.summary_path(run))
    if s is None or not isinstance(s.get("avg"), (int, float)):
        return False
    recorded = s.get("overrides")
    if recorded is not None and recorded != list(run.overrides):
        raise ConfigError(f"{sweep.summary_path(run)} was written with other overrides ({recorded} there, "
                          f"{list(run.overrides)} here): another sweep owns {sweep.out}; choose another --out")
    return True


class _Claim:
    """An advisory lock on one run (fcntl.flock on DIR/work/<name>.lock): held while the run
    trains, released when the process ends however it ends. Where flock does not exist the
    claim always succeeds (then use --shard, not two invocations, to split the work)."""

    def __init__(self, path: Path):
        self.path, self.fd = Path(path), None

    def acquire(self) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            os.close(self.fd)
            self.fd = None
            return False

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def run_one(sweep: Sweep, run: Run, cfg: TrainConfig, verbose: bool = False) -> dict:
    """Train one run of the sweep and write its summary (the failed record goes once it succeeds)."""
    labels = {a: v for a, v in run.cell if a in sweep.named_axes}     # e.g. setting: hold
    summary = train_and_summarize(cfg, verbose=verbose, name=run.name, **sweep.fields, **labels,
                                  cell=dict(run.cell), cell_name=run.cell_name, overrides=list(run.overrides),
                                  config=sweep.config)
    atomic_write(sweep.summary_path(run), summary)
    sweep.failed_path(run).unlink(missing_ok=True)
    return summary


def refresh_summaries(sweep: Sweep) -> tuple[int, list[str]]:
    """Recompute the derived parts of each finished summary (its curves, pooled per-token
    evidence and held-out evaluations) from its run folder's metrics.jsonl, without training: for summaries written before
    a field existed. Accuracy and everything else the summary holds are left as they are.
    Returns (summaries rewritten, names whose run folder is gone)."""
    rewritten, missing = 0, []
    for run, cfg in sweep.plan():
        summary = _read_json(sweep.summary_path(run)) if is_done(sweep, run) else None
        if summary is None:
            continue
        history = full_history(Path(cfg.out_dir), [])
        if not history:
            missing.append(run.name)
            continue
        summary["curves"] = curves_of(history)
        summary["evidence"] = evidence_totals(history)
        summary["evals"] = evals_of(history, cfg.eval_n)
        atomic_write(sweep.summary_path(run), summary)
        rewritten += 1
    return rewritten, missing


def work_through(sweep: Sweep, todo: list[tuple[Run, TrainConfig]], tag: str = "sweep",
                 verbose: bool = False, limit: int | None = None) -> tuple[int, list[str]]:
    """Run every run of `todo` that no other worker holds and nobody finished meanwhile (at most
    `limit` of them). Returns (runs finished here, names of runs that failed here)."""
    done, failed = 0, []
    for k, (run, cfg) in enumerate(todo):
        if limit is not None and done + len(failed) >= limit:
            break
        claim = _Claim(sweep.work / f"{run.name}.lock")
        if not claim.acquire():
            continue                                       # another worker trains it
        try:
            if is_done(sweep, run):                        # finished meanwhile by another worker
                claim.path.unlink(missing_ok=True)
                continue
            t = time.perf_counter()
            try:
                s = run_one(sweep, run, cfg, verbose=verbose)
            except Exception as err:                       # the others go on; Ctrl-C does not land here
                failed.append(run.name)
                atomic_write(sweep.failed_path(run), {
                    "name": run.name, "cell": dict(run.cell), "overrides": list(run.overrides),
                    "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(),
                    "failed": time.strftime("%Y-%m-%d %H:%M:%S")})
                print(f"[{tag}] {run.name}: FAILED ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                      f"see {sweep.failed_path(run)}", flush=True)
                continue
            done += 1
            claim.path.unlink(missing_ok=True)             # tidy: whoever locks next sees the summary
            print(f"[{tag}] {k + 1}/{len(todo)} {run.name}: avg@{s['n']} {s['avg']:.3f} pass@{s['n']} "
                  f"{s['pass']:.3f} ({time.perf_counter() - t:.0f} s)", flush=True)
        finally:
            claim.release()
    return done, failed


def prepare(sweep: Sweep, shard_of: tuple[int, int] = (0, 1)) -> tuple[list, list]:
    """(every run with its config, the pending ones of this shard); writes DIR/sweep.json when
    something is left to run (a no-op writes nothing). Everything that can be wrong with the
    input is a ConfigError here, before any run."""
    planned = sweep.plan()
    mine = shard(planned, *shard_of)
    todo = [(r, c) for r, c in mine if not is_done(sweep, r)]
    if todo:
        atomic_write(sweep.out / "sweep.json", sweep.definition([r for r, _ in planned]))
    return planned, todo


def run_sweep(sweep: Sweep, jobs: int = 1, shard_of: tuple[int, int] = (0, 1), worker: int | None = None,
              worker_argv: list[str] | None = None, verbose: bool = False, limit: int | None = None) -> int:
    """Run what is missing of the sweep (this shard). Returns the exit status: 0 when every run
    of the shard is finished, 1 when some failed (their errors in DIR/failed/) or are left
    (limit: at most that many runs per process, to advance a sweep in slices).

    jobs > 1 starts that many worker processes, each `python -m sgopd_lite <worker_argv> --worker i`
    (the same command line, so each worker rebuilds the same plan), one torch thread each."""
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: expected at least 1")
    planned, todo = prepare(sweep, shard_of)
    if worker is not None:                                  # one of the parent's worker processes
        _, failed = work_through(sweep, todo, tag=f"sweep w{worker}", verbose=verbose, limit=limit)
        return 1 if failed else 0
    i, n = shard_of
    print(f"[sweep] {len(todo)} of {len(shard(planned, i, n))} runs to go"
          + (f" in shard {i}/{n}" if n > 1 else "") + f"; summaries in {sweep.out}", flush=True)
    if not todo:
        return 0
    if jobs == 1 or len(todo) == 1:
        work_through(sweep, todo, verbose=verbose, limit=limit)
    else:
        if worker_argv is None:
            raise ValueError("run_sweep(jobs > 1) needs worker_argv, the command line each worker runs")
        procs = [subprocess.Popen([sys.executable, "-m", "sgopd_lite", *worker_argv, "--worker", str(w)]
                                  + (["--limit", str(limit)] if limit else []),
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
                 for w in range(min(jobs, len(todo)))]
        try:
            for p in procs:
                p.wait()
        except KeyboardInterrupt:                           # the workers got the same Ctrl-C
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.terminate()
            raise
    return status(sweep, shard(planned, i, n))


def status(sweep: Sweep, runs: list[tuple[Run, TrainConfig]]) -> int:
    """Print what is finished, failed and missing of `runs`; 0 if all are finished, else 1."""
    missing = [r.name for r, _ in runs if not is_done(sweep, r)]
    failed = [name for name in missing if (sweep.out / "failed" / f"{name}.json").is_file()]
    if not missing:
        print(f"[sweep] all {len(runs)} runs finished; `python -m sgopd_lite sweep-report {sweep.out}` "
              "writes the table", flush=True)
        return 0
    print(f"[sweep] {len(runs) - len(missing)} of {len(runs)} runs finished; {len(failed)} failed"
          + (f" ({', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}; errors in {sweep.out / 'failed'})"
             if failed else "")
          + "; the same command again retries what is not finished", flush=True)
    return 1
