"""`make reproduce`: does the sign gate help, when, and by how much, on the tiny world, with seeds.

The plan (`plan()`), every run a plain `Trainer` run of this library:

* main table: 4 world settings {both assumptions hold, A1 broken, A2 broken, both broken}
  x 5 methods {OPD, ExOPD lambda=1.25, gate only, PTS only, SG-OPD} x 5 seeds;
* gate ablation: lambda_e x lambda_i on the hardest setting (both broken), SG-OPD, 3 seeds;
* a pretrained pair: OPD vs SG-OPD on the smol size (SmolLM2, CPU, configs/smol_cpu.yaml),
  run by `python -m sgopd_lite reproduce --smol` (about half an hour on 2 cores).

Each finished run leaves one small JSON summary in `results/runs/` (final held-out avg@8 /
pass@8, curves sampled every few steps, wall time, machine). Those summaries are committed,
so a later `make reproduce`, on any machine, skips what is done and continues with the rest;
an interrupted run resumes from its own checkpoint under `runs/reproduce/`.

`python -m sgopd_lite report` turns the summaries into `docs/results.md` and its figures
(study/report.py). It refuses to write anything while a run of the plan is missing or partial
(`ReportError`): a table with holes would read as a result.

Where things go: results/, docs/, configs/ and runs/ of the repository checkout holding the
current folder, else of the current folder (`assets.project_dir`), never next to the package.

May import: assets, config, data, evaluate, train, worlds (inside functions, except assets and data).
Never study/report.py.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..assets import project_dir
from ..data import SKILLS

REPO_DIR = project_dir()                          # the checkout, else the current folder
RESULTS_DIR = REPO_DIR / "results" / "runs"
WORK_DIR = REPO_DIR / "runs" / "reproduce"
DOCS_DIR = REPO_DIR / "docs"

# world settings: name -> (style_gap, teacher_noise)
SETTINGS = {"hold": (0.0, 0.0), "a1": (1.0, 0.0), "a2": (0.0, 1.0), "both": (1.0, 1.0)}
SETTING_NAMES = {"hold": "both assumptions hold", "a1": "A1 broken (style_gap=1)",
                 "a2": "A2 broken (teacher_noise=1)", "both": "both broken"}
METHODS = ("opd", "exopd", "gate_only", "pts_only", "sgopd")
METHOD_NAMES = {"opd": "OPD", "exopd": "ExOPD (lambda=1.25)", "gate_only": "gate only",
                "pts_only": "PTS only", "sgopd": "SG-OPD"}
SEEDS = 5
GRID_SETTING = "both"
GRID_LAMBDA_E = (1.0, 1.4, 1.8)
GRID_LAMBDA_I = (0.0, 0.5, 1.0)
GRID_SEEDS = 3
SMOL_CONFIG = REPO_DIR / "configs" / "smol_cpu.yaml"
SMOL_METHODS = ("opd", "sgopd")
SMOL_SEEDS = 1

# the protocol of every run (the demo's budget; see docs/tiny_world.md "Does on-policy distillation learn here?")
STEPS = 200
EVAL_PROBLEMS = 256     # the whole held-out split
EVAL_N = 8
CURVE_EVERY = 5         # keep every 5th step's training metrics in the summary


@dataclass(frozen=True)
class RunSpec:
    """One training run of the plan."""

    setting: str
    method: str
    seed: int
    lambda_e: float | None = None    # set for the ablation grid only
    lambda_i: float | None = None

    @property
    def group(self) -> str:
        if self.setting == "smol":
            return "smol"
        return "grid" if self.lambda_e is not None else "main"

    @property
    def name(self) -> str:
        base = f"{self.setting}-{self.method}"
        if self.lambda_e is not None:
            base += f"-le{self.lambda_e:g}-li{self.lambda_i:g}"
        return f"{base}-s{self.seed}"

    def summary_path(self, results_dir: Path = RESULTS_DIR) -> Path:
        return Path(results_dir) / self.group / f"{self.name}.json"

    def train_config(self, work_dir: Path = WORK_DIR, steps: int = STEPS):
        from ..config import TrainConfig, load_config

        if self.setting == "smol":   # the pretrained pair: its own protocol, in a config file
            return load_config(SMOL_CONFIG, [f"method={self.method}", f"seed={self.seed}",
                                             f"out_dir={Path(work_dir) / self.name}"])
        style_gap, teacher_noise = SETTINGS[self.setting]
        gate = None
        if self.lambda_e is not None:
            gate = {"lambda_e": self.lambda_e, "lambda_i": self.lambda_i}
        return TrainConfig(method=self.method, seed=self.seed, steps=steps, gate=gate,
                           world={"style_gap": style_gap, "teacher_noise": teacher_noise},
                           eval_every=0, eval_problems=EVAL_PROBLEMS, eval_n=EVAL_N,
                           log_rollouts=0, save_every=50, out_dir=str(Path(work_dir) / self.name))


def plan(seeds: int = SEEDS, grid_seeds: int = GRID_SEEDS) -> list[RunSpec]:
    """Every run of `make reproduce`, main table first (seed-major, so that a partial run
    covers all cells with a few seeds before adding more), then the ablation grid."""
    runs = [RunSpec(s, m, seed) for seed in range(seeds) for s in SETTINGS for m in METHODS]
    runs += [RunSpec(GRID_SETTING, "sgopd", seed, le, li)
             for seed in range(grid_seeds) for le in GRID_LAMBDA_E for li in GRID_LAMBDA_I]
    return runs


def smol_plan(seeds: int = SMOL_SEEDS) -> list[RunSpec]:
    """The smol runs: OPD and SG-OPD from the same SmolLM2 student (configs/smol_cpu.yaml)."""
    return [RunSpec("smol", m, seed) for seed in range(seeds) for m in SMOL_METHODS]


def machine() -> str:
    import torch

    return (f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def _atomic_write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


CURVE_KEYS = ("reward_mean", "kl_k1", "a2_mean", "entropy", "frac_consensus", "frac_conflict_i",
              "frac_conflict_ii", "frac_neutral", "pts_w")


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


def run_one(spec: RunSpec, results_dir: Path = RESULTS_DIR, work_dir: Path = WORK_DIR,
            steps: int = STEPS, verbose: bool = False) -> dict:
    """Train one run of the plan (resuming its checkpoint if any) and write its summary."""
    from ..train import train

    cfg = spec.train_config(work_dir, steps)
    start = time.perf_counter()
    history = train(cfg, verbose=verbose)
    final = history[-1]
    key_avg, key_pass = f"eval_avg@{cfg.eval_n}", f"eval_pass@{cfg.eval_n}"
    if key_avg not in final:
        raise RuntimeError(f"run {spec.name} ended without a final evaluation")
    history = full_history(Path(cfg.out_dir), history)
    curves = {k: [[m["step"], m[k]] for m in history[::CURVE_EVERY] if isinstance(m.get(k), (int, float))]
              for k in CURVE_KEYS}
    summary = {"name": spec.name, "group": spec.group, "setting": spec.setting, "method": spec.method,
               "seed": spec.seed, "lambda_e": cfg.gate.lambda_e, "lambda_i": cfg.gate.lambda_i,
               "steps": cfg.steps, "lr": cfg.lr, "loss_type": cfg.loss_type, "avg": final[key_avg], "pass": final[key_pass], "n": cfg.eval_n,
               "eval_problems": cfg.eval_problems, "skipped_steps": sum("skipped" in m for m in history),
               "per_skill": {s: {"avg": final[f"{key_avg}_{s}"], "problems": final[f"eval_problems_{s}"]}
                             for s in SKILLS if f"{key_avg}_{s}" in final},
               "curves": {k: v for k, v in curves.items() if v},
               "seconds": round(time.perf_counter() - start, 1), "machine": machine(),
               "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    _atomic_write(spec.summary_path(results_dir), summary)
    return summary


def start_points(results_dir: Path = RESULTS_DIR) -> dict:
    """Held-out avg@8 / pass@8 of each setting's teacher and starting student (cached in
    results/runs/start.json; computed once, seed 0)."""
    import torch

    from ..data import arithmetic_split
    from ..evaluate import evaluate
    from ..worlds.tiny import TinyWorldConfig, load_tiny_pair

    path = Path(results_dir) / "start.json"
    if path.is_file():
        return json.loads(path.read_text())
    out = {}
    problems = arithmetic_split("eval")[:EVAL_PROBLEMS]
    for setting, (style_gap, teacher_noise) in SETTINGS.items():
        wcfg = TinyWorldConfig(style_gap=style_gap, teacher_noise=teacher_noise)
        tok, teacher, student = load_tiny_pair(cfg=wcfg, verbose=False)
        out[setting] = {}
        for role, model in (("teacher", teacher), ("student", student)):
            torch.manual_seed(0)
            res = evaluate(model, tok, problems, n=EVAL_N, max_new_tokens=40, instruction=wcfg.instruction)
            out[setting][role] = {"avg": res.avg_at_n, "pass": res.pass_at_k}
    _atomic_write(path, out)
    return out


def pending(runs: list[RunSpec], results_dir: Path = RESULTS_DIR) -> list[RunSpec]:
    return [r for r in runs if not r.summary_path(results_dir).is_file()]


def smol_start_points(results_dir: Path = RESULTS_DIR) -> dict:
    """Held-out avg@n / pass@n of the smol teacher and starting student, on the smol protocol's
    problems (cached in results/runs/smol/start.json; seed 0)."""
    import torch

    from ..evaluate import evaluate
    from ..worlds import load_world

    path = Path(results_dir) / "smol" / "start.json"
    if path.is_file():
        return json.loads(path.read_text())
    cfg = smol_plan()[0].train_config()
    world = load_world(cfg)
    out = {"eval_problems": cfg.eval_problems, "n": cfg.eval_n, "machine": machine()}
    for role, model in (("teacher", world.teacher), ("student", world.student)):
        torch.manual_seed(0)
        res = evaluate(model, world.tokenizer, world.eval_problems[:cfg.eval_problems], n=cfg.eval_n,
                       temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                       instruction=world.instruction, vocab_size=world.vocab_size)
        out[role] = {"avg": res.avg_at_n, "pass": res.pass_at_k, "seconds": round(res.seconds, 1)}
    _atomic_write(path, out)
    return out


def reproduce_smol(results_dir: Path = RESULTS_DIR, work_dir: Path = WORK_DIR, seeds: int = SMOL_SEEDS) -> int:
    """The smol runs that are missing, one after the other (all torch threads). Returns how many ran."""
    runs = smol_plan(seeds)
    todo = pending(runs, results_dir)
    print(f"[reproduce smol] {len(todo)} of {len(runs)} runs to go; summaries in {results_dir / 'smol'}", flush=True)
    t = time.perf_counter()
    start = smol_start_points(results_dir)
    print(f"[reproduce smol] start: teacher avg@{start['n']} {start['teacher']['avg']:.3f}, student "
          f"{start['student']['avg']:.3f} ({time.perf_counter() - t:.0f} s)", flush=True)
    for spec in todo:
        t = time.perf_counter()
        s = run_one(spec, results_dir, work_dir, verbose=True)
        print(f"[reproduce smol] {spec.name}: avg@{s['n']} {s['avg']:.3f} pass@{s['n']} {s['pass']:.3f} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    return len(todo)


def reproduce(jobs: int = 1, worker: int | None = None, limit: int | None = None,
              results_dir: Path = RESULTS_DIR, work_dir: Path = WORK_DIR, steps: int = STEPS,
              seeds: int = SEEDS, grid_seeds: int = GRID_SEEDS) -> int:
    """Run what is missing. jobs > 1 starts that many worker processes (one torch thread
    each); worker i takes every jobs-th pending run. limit: stop after that many runs (per
    worker), so the plan can be advanced in slices. Returns the number of runs finished."""
    todo = pending(plan(seeds, grid_seeds), results_dir)
    if worker is None:
        print(f"[reproduce] {len(todo)} of {len(plan(seeds, grid_seeds))} runs to go; summaries in "
              f"{results_dir}", flush=True)
        start_points(results_dir)
        if jobs > 1:
            procs = [subprocess.Popen([sys.executable, "-m", "sgopd_lite", "reproduce", "--jobs", str(jobs),
                                       "--worker", str(i), "--steps", str(steps), "--seeds", str(seeds),
                                       "--grid-seeds", str(grid_seeds), "--results-dir", str(results_dir),
                                       "--work-dir", str(work_dir)]
                                      + (["--limit", str(limit)] if limit else []),
                                      env={**os.environ, "OMP_NUM_THREADS": "1"})
                     for i in range(jobs)]
            codes = [p.wait() for p in procs]
            if any(codes):
                raise RuntimeError(f"a reproduce worker failed (exit codes {codes})")
            return len(todo) - len(pending(plan(seeds, grid_seeds), results_dir))
        worker, jobs = 0, 1
    mine = todo[worker::jobs][:limit]
    for i, spec in enumerate(mine):
        t = time.perf_counter()
        s = run_one(spec, results_dir, work_dir, steps)
        print(f"[reproduce w{worker}] {i + 1}/{len(mine)} {spec.name}: avg@{EVAL_N} {s['avg']:.3f} "
              f"pass@{EVAL_N} {s['pass']:.3f} ({time.perf_counter() - t:.0f} s)", flush=True)
    return len(mine)
