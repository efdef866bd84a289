"""`make reproduce`: does the sign gate help, when, and by how much, on the tiny world, with seeds.

The plan (`plan()`), every run a plain `Trainer` run of this library:

* main table: 4 world settings {both assumptions hold, A1 broken, A2 broken, both broken}
  x 5 methods {OPD, ExOPD lambda=1.25, gate only, PTS only, SG-OPD} x 5 seeds;
* gate ablation: lambda_e x lambda_i on the hardest setting (both broken), SG-OPD, 3 seeds;
* a pretrained pair: OPD vs SG-OPD on the smol size (SmolLM2, CPU, configs/smol_cpu.yaml),
  run by `python -m sgopd_lite reproduce --smol` (about half an hour on 2 cores).

The runs are three study files, configs/studies/{main,grid,smol}.yaml, run by the sweep
machinery (study/sweep.py: `python -m sgopd_lite sweep --study ...`, which `make reproduce`
calls); `plan()` and `RunSpec` name the same runs for the report, and tests/test_sweep.py checks
that both give every run the same name, summary path and TrainConfig. Each finished run leaves
one small JSON summary in `results/runs/` (final held-out avg@8 / pass@8, curves sampled every
few steps, wall time, machine). Those summaries are committed, so a later `make reproduce`, on
any machine, skips what is done and continues with the rest; an interrupted run resumes from its
own checkpoint under `runs/reproduce/`.

`python -m sgopd_lite report` turns the summaries into `docs/results.md` and its figures
(study/report.py). It refuses to write anything while a run of the plan is missing or partial
(`ReportError`): a table with holes would read as a result.

Where things go: results/, docs/, configs/ and runs/ of the repository checkout holding the
current folder, else of the current folder (`assets.project_dir`), never next to the package.

May import: assets, study.sweep, config, data, evaluate, train, worlds (inside functions, except
assets and study.sweep). Never study/report.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..assets import project_dir
from .sweep import CURVE_EVERY, CURVE_KEYS, full_history, machine, train_and_summarize  # noqa: F401 (re-exported)
from .sweep import atomic_write as _atomic_write

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
STUDY_DIR = REPO_DIR / "configs" / "studies"   # the plan as study files, run by study/sweep.py
STUDIES = ("main", "grid", "smol")

# the protocol of every run (the demo's budget; see docs/tiny_world.md "Does on-policy distillation learn here?")
STEPS = 200
EVAL_PROBLEMS = 256     # the whole held-out split
EVAL_N = 8


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


def run_one(spec: RunSpec, results_dir: Path = RESULTS_DIR, work_dir: Path = WORK_DIR,
            steps: int = STEPS, verbose: bool = False) -> dict:
    """Train one run of the plan outside any study (resuming its checkpoint if any) and write its
    summary where the study would (`make reproduce` runs the study files instead)."""
    cfg = spec.train_config(work_dir, steps)
    summary = train_and_summarize(cfg, verbose=verbose, name=spec.name, group=spec.group, setting=spec.setting)
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


def worlds_start_points(results_dir: Path = RESULTS_DIR, name: str = "worlds_main") -> dict:
    """Held-out avg@n / pass@n and accuracy per skill of each world setting's teacher and starting
    student in a worlds study (configs/studies/NAME.yaml: worlds_main, verifier_roles), measured
    exactly as its runs' final evaluation (the same split, n, temperature and length; torch
    seed 0), with error adoption where the world checks steps: "slip" {carry, borrow}, the share
    of sampled steps needing a carry / borrow that forget it. Cached in results/runs/NAME/start.json
    (worlds_main's file predates the slips and keeps its numbers)."""
    import torch

    from ..evaluate import evaluate
    from ..worlds import load_world

    path = Path(results_dir) / name / "start.json"
    if path.is_file():
        return json.loads(path.read_text())
    out = {}
    for run, cfg in study(name, results_dir).plan():
        setting = dict(run.cell)["setting"]
        if setting in out:
            continue
        world = load_world(cfg, verbose=False)
        out[setting] = {}
        for role, model in (("teacher", world.teacher), ("student", world.student)):
            torch.manual_seed(0)
            res = evaluate(model, world.tokenizer, world.eval_problems[:cfg.eval_problems], n=cfg.eval_n,
                           temperature=cfg.eval_temperature, max_new_tokens=cfg.max_new_tokens,
                           instruction=world.instruction, vocab_size=world.vocab_size,
                           step_checker=world.step_checker)
            out[setting][role] = {"avg": res.avg_at_n, "pass": res.pass_at_k,
                                  "per_skill": {k: v["avg"] for k, v in res.per_skill.items()}}
            if res.steps:
                out[setting][role]["slip"] = {k: res.slip_rate(k) for k in ("carry", "borrow")}
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


def study(name: str, results_dir: Path = RESULTS_DIR, work_dir: Path = WORK_DIR, overrides=()):
    """The study file configs/studies/<name>.yaml as a Sweep, its summaries in
    results_dir/<its folder> and its runs' folders in work_dir; `overrides` replace its keys."""
    from .sweep import from_command_line, load_study

    base = load_study(STUDY_DIR / f"{name}.yaml")
    return from_command_line(None, list(overrides), Path(results_dir) / base.out.name, base=base, work=work_dir)


def _run_study(name: str, jobs: int, limit: int | None, results_dir: Path, work_dir: Path, overrides) -> int:
    """Run what is missing of one study with the sweep machinery; returns how many runs finished."""
    from .sweep import is_done, run_sweep

    sw = study(name, results_dir, work_dir, overrides)
    planned = sw.plan()
    before = sum(is_done(sw, r) for r, _ in planned)
    argv = ["sweep", "--study", str(STUDY_DIR / f"{name}.yaml"), "--out", str(sw.out), "--work", str(work_dir),
            "--jobs", str(jobs), *overrides]
    code = run_sweep(sw, jobs=jobs, worker_argv=argv, limit=limit)
    if code and limit is None:
        raise RuntimeError(f"study {name}: some runs failed (errors in {sw.out / 'failed'})")
    return sum(is_done(sw, r) for r, _ in planned) - before


def reproduce_smol(results_dir: Path = RESULTS_DIR, work_dir: Path = WORK_DIR, seeds: int = SMOL_SEEDS) -> int:
    """The smol study (configs/studies/smol.yaml): its start points, then its missing runs, one
    after the other (all torch threads). Returns how many ran."""
    t = time.perf_counter()
    start = smol_start_points(results_dir)
    print(f"[reproduce smol] start: teacher avg@{start['n']} {start['teacher']['avg']:.3f}, student "
          f"{start['student']['avg']:.3f} ({time.perf_counter() - t:.0f} s)", flush=True)
    overrides = [f"seed=0:{seeds}"] if seeds != SMOL_SEEDS else []
    return _run_study("smol", 1, None, Path(results_dir), Path(work_dir), overrides)


def reproduce(jobs: int = 1, limit: int | None = None, results_dir: Path = RESULTS_DIR,
              work_dir: Path = WORK_DIR, steps: int = STEPS, seeds: int = SEEDS, grid_seeds: int = GRID_SEEDS,
              overrides=()) -> int:
    """The start points, then what is missing of the study files STUDIES, run by the sweep
    machinery (`jobs` worker processes, one torch thread each). limit: stop after that many runs
    in all, so the plan can be advanced in slices. steps / seeds / grid_seeds / overrides replace
    the study files' values (smoke runs and tests). Returns the number of runs finished."""
    start_points(results_dir)
    done = 0
    for name, n_seeds, default in (("main", seeds, SEEDS), ("grid", grid_seeds, GRID_SEEDS)):
        extra = list(overrides) + ([f"steps={steps}"] if steps != STEPS else []) \
            + ([f"seed=0:{n_seeds}"] if n_seeds != default else [])
        left = None if limit is None else limit - done
        if left is not None and left <= 0:
            break
        done += _run_study(name, jobs, left, Path(results_dir), Path(work_dir), extra)
    return done
