"""`make reproduce`: every study behind docs/results.md and docs/results_first_study.md, with seeds.

`reproduce()` runs the study files of REPRODUCE (configs/studies/NAME.yaml), in that order, each
after the start points its report section reads (`study_start_points`: the teachers' and starting
students' scores, cached in results/runs/), with the sweep machinery (study/sweep.py: the same as
`python -m sgopd_lite sweep --study ...`). Every finished run leaves one small JSON summary in
`results/runs/<study>/` (final held-out avg@n / pass@n, per skill where the study asks, curves
sampled every few steps, wall time, machine). Those summaries are committed, so `make reproduce`,
on any machine, skips every run whose summary exists and continues with the rest (delete a
study's summaries to run it again); an interrupted run resumes from its own checkpoint under
`runs/`. On the 2-core CPU build machine the committed summaries add up to about 18 CPU-process
hours without the horizon study (about 2 more, estimated: 12 runs of 1000 steps): about 11 hours
of wall time with 2 workers, the two SmolLM2 runs (about 40 minutes each, one after the other) included.

The first study (docs/results_first_study.md, written by study/report.py) is also spelled out run
by run by `plan()` and `RunSpec`, from the constants below:

* main table: 4 world settings {both assumptions hold, A1 broken, A2 broken, both broken}
  x 5 methods {OPD, ExOPD lambda=1.25, gate only, PTS only, SG-OPD} x 5 seeds;
* gate ablation: lambda_e x lambda_i on the hardest setting (both broken), SG-OPD, 3 seeds;
* a pretrained pair: OPD vs SG-OPD on the smol size (SmolLM2, CPU, configs/smol_cpu.yaml),
  alone by `python -m sgopd_lite reproduce --smol`.

Its study files are STUDIES (configs/studies/{main,grid,smol}.yaml); tests/test_sweep.py checks
that they and `plan()` give every run the same name, summary path and TrainConfig. The worlds
study (docs/results.md, study/worlds_report.py and roles_report.py) has only its study files.

`python -m sgopd_lite report` turns the summaries into both reports and their figures. It
refuses to write anything while a run of the plan is missing or partial (`ReportError`): a table
with holes would read as a result.

Where things go: results/, docs/, configs/ and runs/ of the repository checkout holding the
current folder, else of the current folder (`assets.project_dir`), never next to the package.

May import: assets, study.sweep, config, data, evaluate, train, worlds, and the measurement
modules it runs where their JSON is missing (study.unseen, channels, error_kinds, smol_start,
smol_picture, smol_report), all inside functions except assets and study.sweep. Never
study/report.py.
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
STUDIES = ("main", "grid", "smol")              # the first study's files, the runs of plan() + smol_plan()

# `make reproduce`: every study file (configs/studies/NAME.yaml) the two reports read, in the
# order it runs them; the comment says which report section each one feeds.
REPRODUCE = (
    "main",            # results_first_study.md: final tables, paired differences, curves (tiny world)
    "grid",            # results_first_study.md: the lambda_e x lambda_i gate ablation
    "worlds_main",     # results.md: the worlds at the start, what was found, main table, differences, evidence
    "worlds_main_evidence",  # results.md: error adoption and push evidence of worlds_main's baselines
    "a2c_thresholds",  # results.md: the threshold ablation on A2 complementary error
    "a2c_confirm",     # results.md: the best threshold cell re-run on fresh seeds
    "stability",       # results.md: the stability claim (gate 1.8 / 1.0 vs ExOPD 1.8)
    "pts_a1g",         # results.md: phased teacher sampling on A1 graded
    "verifier_roles",  # results.md: "Where must the verifier act?"
    "step_prefix",     # results.md: "Where must the verifier act?", why the step gate loses the borrow
    "horizon",         # results.md (its section comes with its summaries): "Where must the verifier act?" at 1000 steps
    "smol",            # results_first_study.md: "A pretrained pair: SmolLM2" (one process, all threads)
    "mix_pilot",       # results.md, "Never worse ...?": the pilot that chose the balanced probe (seed 100)
    "mix",             # results.md: "Never worse than the better of OPD and GRPO?" (1000 steps, 5 seeds)
    "smol_pilot",      # results.md, "On a pretrained model": the pilot that sized the smol study (seed 100)
    "smol_a2c",        # results.md: "On a pretrained model" (SmolLM2, A2 complementary error, 4 seeds)
    "smol_qlora",      # results.md: "On a pretrained model", its OPD seed 0 with the student in 4-bit
)
# Studies whose runs are still being committed: `make reproduce` runs what is missing of them like
# any other, the report says how many are in, and the check that the committed summaries leave
# nothing to do lets them be partial (tests/test_reproduce.py). A study leaves this tuple the day
# its last run is committed.
IN_PROGRESS = ("mix", "smol_a2c", "smol_qlora")
ONE_PROCESS = ("smol", "smol_pilot")   # pretrained models: one run at a time in this process, whatever --jobs says
# the start points (teachers and starting students, cached) a study's report section reads
START_POINTS = {"main": "start.json", "grid": "start.json", "worlds_main": "worlds_main/start.json",
                "verifier_roles": "verifier_roles/start.json", "smol": "smol/start.json",
                "smol_pilot": "smol_a2c/start.json", "smol_a2c": "smol_a2c/start.json",
                "smol_qlora": "smol_a2c/start.json"}
SMOL_A2C_STUDIES = ("smol_pilot", "smol_a2c", "smol_qlora")   # the studies of the planted SmolLM2 world (configs/smol_a2c.yaml)

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


def study(name: str, results_dir: Path = RESULTS_DIR, work_dir: Path | None = None, overrides=()):
    """The study file configs/studies/<name>.yaml as a Sweep, its summaries in
    results_dir/<its folder> and its runs' folders in work_dir (None: the file's own `work:`);
    `overrides` replace its keys."""
    from .sweep import from_command_line, load_study

    base = load_study(STUDY_DIR / f"{name}.yaml")
    return from_command_line(None, list(overrides), Path(results_dir) / base.out.name, base=base,
                             work=base.work if work_dir is None else work_dir)


def _run_study(name: str, jobs: int, limit: int | None, results_dir: Path, work_dir: Path | None, overrides) -> int:
    """Run what is missing of one study with the sweep machinery; returns how many runs finished."""
    from .sweep import is_done, run_sweep

    sw = study(name, results_dir, work_dir, overrides)
    planned = sw.plan()
    before = sum(is_done(sw, r) for r, _ in planned)
    argv = ["sweep", "--study", str(STUDY_DIR / f"{name}.yaml"), "--out", str(sw.out), "--work", str(sw.work),
            "--jobs", str(jobs), *overrides]
    code = run_sweep(sw, jobs=jobs, worker_argv=argv, limit=limit)
    if code and limit is None:
        raise RuntimeError(f"study {name}: some runs failed (errors in {sw.out / 'failed'})")
    return sum(is_done(sw, r) for r, _ in planned) - before


def study_start_points(name: str, results_dir: Path = RESULTS_DIR) -> dict | None:
    """The start points study NAME's report section reads (START_POINTS), computed once and
    cached; None for a study whose section reads none."""
    if name not in START_POINTS:
        return None
    if name == "smol":
        return smol_start_points(results_dir)
    if name in SMOL_A2C_STUDIES:                    # the planted SmolLM2 world (study/smol_start.py)
        path = Path(results_dir) / START_POINTS[name]
        if not path.is_file():
            from . import smol_start
            smol_start.main(["--config", str(REPO_DIR / "configs" / "smol_a2c.yaml"), "--out", str(path)])
        return json.loads(path.read_text())
    if START_POINTS[name] == "start.json":          # the first study's tiny settings
        return start_points(results_dir)
    return worlds_start_points(results_dir, name)


def _study_overrides(name: str, steps: int | None, seeds: int | None, overrides=()) -> list[str]:
    """What `reproduce` passes to study NAME on top of its file: `overrides` as given, then
    steps=<steps> and `seeds` seeds from the study's own first seed (seed=100:102 for two of
    a2c_confirm's), each only where it differs from the study file's own value."""
    from ..config import load_config
    from .sweep import SEED, load_study

    base = load_study(STUDY_DIR / f"{name}.yaml")
    extra = list(overrides)
    if steps is not None and steps != load_config(base.config, list(base.runs()[0].overrides)).steps:
        extra.append(f"steps={steps}")
    own = [int(lv.label) for lv in base.axes.get(SEED, [])]
    if seeds is not None and seeds != len(own):
        first = own[0] if own else 0
        extra.append(f"seed={first}:{first + seeds}")
    return extra


def reproduce_smol(results_dir: Path = RESULTS_DIR, work_dir: Path | None = None, seeds: int | None = None) -> int:
    """Only the smol study (configs/studies/smol.yaml): its start points, then its missing runs,
    one after the other (all torch threads). Returns how many ran."""
    return reproduce(results_dir=results_dir, work_dir=work_dir, seeds=seeds, studies=("smol",))


def reproduce(jobs: int = 1, limit: int | None = None, results_dir: Path = RESULTS_DIR,
              work_dir: Path | None = None, steps: int | None = None, seeds: int | None = None,
              grid_seeds: int | None = None, overrides=(), studies=REPRODUCE) -> int:
    """`make reproduce`: for each study of `studies` (REPRODUCE: every study the two reports read),
    in order, its start points (`study_start_points`) and then what is missing of its runs, by the
    sweep machinery (`jobs` worker processes, one torch thread each; the studies of ONE_PROCESS one
    run at a time in this process). Runs whose summary exists are skipped, so on the committed
    summaries there is nothing to do. limit: stop after that many runs in all, so the plan can be
    advanced in slices. work_dir: the runs' folders go in work_dir/<study> (None: each study file's
    own `work:`, where an interrupted run's checkpoint waits). Returns the number of runs finished.

    For smoke runs and tests, into another results_dir (a summary written with other overrides
    is refused, ConfigError), the same overrides go to every study: steps replaces each study's
    own number of steps (200; horizon 1000; smol 40 from configs/smol_cpu.yaml); seeds keeps that
    many seeds from each study's own first seed (grid_seeds, where given, for the grid instead);
    overrides are key=value pairs for every study (eval_problems=4 ...). None keeps the file's value."""
    done = 0
    for name in studies:
        left = None if limit is None else limit - done
        if left is not None and left <= 0:
            break
        t = time.perf_counter()
        if study_start_points(name, results_dir) is not None:
            print(f"[reproduce] {name}: start points in {Path(results_dir) / START_POINTS[name]} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
        n_seeds = grid_seeds if name == "grid" and grid_seeds is not None else seeds
        extra = _study_overrides(name, steps, n_seeds, overrides)
        work = None if work_dir is None else Path(work_dir) / name
        done += _run_study(name, 1 if name in ONE_PROCESS else jobs, left, Path(results_dir), work, extra)
    if limit is None or done < limit:
        measure_saved_students(results_dir, work_dir, [n for n in MEASUREMENTS if n in studies])
        measure_start_models(results_dir)
        if any(n in studies for n in SMOL_A2C_STUDIES):
            measure_smol(results_dir, work_dir)
    return done


def measure_smol(results_dir: Path = RESULTS_DIR, work_dir: Path | None = None) -> None:
    """The planted SmolLM2 world's measurements that docs/results.md reads, where missing: one real
    group at the borrow digit (study/smol_picture.py) and the pilot's step times, read from its
    runs' metrics.jsonl (study/smol_report.py)."""
    from . import smol_picture, smol_report
    from .sweep import is_done

    picture = Path(results_dir) / "smol_a2c" / "picture.json"
    if not picture.is_file():
        print(f"[reproduce] measuring {picture}", flush=True)
        smol_picture.main(["--config", str(REPO_DIR / "configs" / "smol_a2c.yaml"), "--out", str(picture),
                           "--figure", str(DOCS_DIR / "figures" / "smol_a2c_borrow.png")])
    times = Path(results_dir) / "smol_pilot" / "step_times.json"
    pilot = study("smol_pilot", results_dir, None if work_dir is None else Path(work_dir) / "smol_pilot")
    if not times.is_file() and all(is_done(pilot, r) for r, _ in pilot.plan()):    # only from the whole pilot
        work = pilot.work
        print(f"[reproduce] measuring {times} from {work}", flush=True)
        smol_report.main(["times", "--work", str(work), "--out", str(times)])


def measure_start_models(results_dir: Path = RESULTS_DIR) -> None:
    """study/unseen.py's measurement of the starting models (seen and unseen problems) where its
    JSON is missing: docs/results.md reads it where the worlds are introduced."""
    from . import unseen

    out = Path(results_dir) / unseen.RESULT.relative_to("results/runs")
    if not out.is_file():
        print(f"[reproduce] measuring {out}", flush=True)
        unseen.main(["--out", str(out)])


# the measurements on saved students that docs/results.md reads: the study whose run folders they
# read -> (its module under study/, the JSON it writes, relative to the results folder)
MEASUREMENTS = {"step_prefix": ("channels", "verifier_roles/channels.json"),
                "horizon": ("error_kinds", "horizon/error_kinds.json")}


def measure_saved_students(results_dir: Path = RESULTS_DIR, work_dir: Path | None = None, names=tuple(MEASUREMENTS)):
    """The measurements of MEASUREMENTS whose JSON is missing, from the final students in the run
    folders of their studies (study/channels.py: the pushes at the borrow digit and their
    first-order influence; study/error_kinds.py: the kinds of mistake per skill)."""
    import importlib

    for name in names:
        module, rel = MEASUREMENTS[name]
        out = Path(results_dir) / rel
        if out.is_file():
            continue
        runs = {n: study(n, results_dir, None if work_dir is None else Path(work_dir) / n).work
                for n in ("verifier_roles", name)}
        if module == "channels":
            argv = ["--runs", str(runs["verifier_roles"]), "--prefix-runs", str(runs[name]), "--out", str(out)]
        else:
            argv = [str(p) for p in sorted(runs[name].glob("hold-*"))] + ["--out", str(out)]
        print(f"[reproduce] measuring {rel} from {runs[name]}", flush=True)
        importlib.import_module(f"sgopd_lite.study.{module}").main(argv)
