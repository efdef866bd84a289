# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: sgopd_lite
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   sgopd_lite:
#     min_images: 2
# ---

# %% [markdown]
# # 06 · Where does the gate act? Its thresholds, swept with seeds
#
# **What you will learn**
#
# * how to run a grid of training runs with the library's sweep (`study.sweep`: one `key=value`
#   list per axis, seeds as replicates, one summary per run, resumable) and read it with
#   `study.sweep_report` (one row per cell, mean ± 95% interval over seeds, accuracy per skill);
# * which of the gate's knobs decide where it acts, on the world where it has work to do (A2
#   complementary error, notebooks 03 and 05): `lambda_i` (what a conflict keeps: 1 = OPD's push,
#   0 = nothing), `a1_mode` (`group`: a group whose rollouts all agree gives no evidence; `sign`:
#   every verdict counts) and `tau` (a dead zone on `|a2|`);
# * how to compare cells honestly: paired by seed against plain OPD and GRPO, per skill, with
#   the spread between seeds in view;
# * what the seeded study measured over the full grid `lambda_e` x `lambda_i` x `a1_mode` (the
#   last section, from the committed summaries in `results/runs/a2c_thresholds/`).
#
# `lambda_e = 1, lambda_i = 0` is conflict masking (close to OPDVR's gate in `sign` mode);
# `lambda_e = lambda_i = 1` is plain OPD in either mode; `1.8 / 1.0` is SG-OPD's reported best.
#
# **Time:** about 2.5 minutes on a 2-core laptop CPU (default mode: 20 short runs, estimated
# from the step counts, see notebooks/README.md); seconds for the last section. No GPU.

# %%
# Colab only: install the project with its `notebooks` extra (does nothing anywhere else; a CPU
# runtime is enough). The package carries its data and tiny models. REPO_URL is written in one
# place, notebooks/sync.py, and copied here by `make notebooks`.
import importlib
import os
import subprocess
import sys

REPO_URL = "https://github.com/OWNER/sgopd_lite"
if "google.colab" in sys.modules:
    if "/OWNER/" in REPO_URL:
        raise RuntimeError(f"REPO_URL is still the placeholder {REPO_URL}: set it, in this cell, to the "
                           "project's public repository (for every notebook: notebooks/sync.py, then "
                           "`make notebooks`) and run this cell again")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"sgopd_lite[notebooks] @ git+{REPO_URL}"],
                   check=True)
    importlib.invalidate_caches()   # the running kernel imports what was just installed
    # the study's committed summaries (results/runs/, read by the last section) come with a clone
    if not os.path.isdir("/content/sgopd_lite"):
        subprocess.run(["git", "clone", "-q", "--depth", "1", REPO_URL, "/content/sgopd_lite"], check=True)
    os.chdir("/content/sgopd_lite/notebooks")

# %% tags=["parameters"]
SMOKE = os.environ.get("SGOPD_SMOKE") == "1"   # CI smoke run: same cells, smaller sizes

LAMBDA_E = 1.8                                 # the consensus coefficient of every cell (SG-OPD's)
LAMBDA_I = [0.0, 1.0]                          # what a conflict keeps: 0 = nothing, 1 = OPD's push
A1_MODES = ["group", "sign"]                   # how the verdict a1 is read (notebook 03, section 3)
TAU = [0.0] if SMOKE else [0.0, 0.5]           # dead zones on |a2| (one heatmap per value)
SEEDS = 1 if SMOKE else 2                      # seeds 0 .. SEEDS-1 per cell
STEPS = 2 if SMOKE else 20                     # optimizer steps per run (the study: 200)
PROMPTS_PER_STEP = 4 if SMOKE else 8
GROUP_SIZE = 4 if SMOKE else 8
EVAL_PROBLEMS = 16 if SMOKE else 64            # of the skill-balanced split (the study: all 256)
EVAL_N = 2 if SMOKE else 4

# %%
import shutil
import time

from transformers.utils import logging as hf_logging

from sgopd_lite import viz
from sgopd_lite.assets import project_dir
from sgopd_lite.study import measured
from sgopd_lite.study.sweep import from_command_line, run_sweep
from sgopd_lite.study.sweep_report import sweep_table
from sgopd_lite.worlds.tiny import SETTINGS

REPO_ROOT = project_dir()   # the checkout holding the current folder, else the current folder

hf_logging.disable_progress_bar()
RUNS = REPO_ROOT / "runs" / "notebooks" / "06_gate_threshold_ablation"

# %% [markdown]
# ## 1. The grid as a sweep
#
# A sweep is a list of `key=value` overrides of `TrainConfig`, exactly as on the command line:
# a comma list makes an axis, a range `seed=0:2` the replicates (seeds 0 and 1), anything else is
# fixed for every run. The same grid from a terminal, two runs at a time, starting from the
# config of this world at the study's protocol (`configs/worlds/a2c.yaml`: the four `world.*`
# keys of A2 complementary error, the skill-balanced split) with this notebook's smaller sizes:
#
#     python -m sgopd_lite sweep --config configs/worlds/a2c.yaml --out runs/thresholds --jobs 2 \
#         method=gate_only gate.lambda_e=1.8 gate.lambda_i=0,1 gate.a1_mode=group,sign gate.tau=0,0.5 \
#         seed=0:2 steps=20 prompts_per_step=8 eval_problems=64 eval_n=4
#     python -m sgopd_lite sweep-report runs/thresholds --baseline gate.lambda_i=1
#
# Leave out the sizes of the third line (`steps=20 ... eval_n=4`) for the study's protocol.
#
# Every cell is `gate_only` (the sign gate without phased teacher sampling, so the cells differ
# in the gate alone) on the A2 complementary world, from the same starting student. A second,
# small sweep runs the two references on the same seeds: plain OPD and GRPO (which never reads
# the teacher). They cannot be cells of the first grid, because a `gate.*` override would apply
# to them too and OPD would no longer be OPD.

# %%
world = [f"world.{k}={v}" for k, v in SETTINGS["A2 complementary"].items()] + ["world.style_gap=0", "world.eval_data=eval_skills"]
protocol = [f"steps={STEPS}", f"prompts_per_step={PROMPTS_PER_STEP}", f"group_size={GROUP_SIZE}",
            f"eval_problems={EVAL_PROBLEMS}", f"eval_n={EVAL_N}", "eval_every=0", "save_every=0", "log_rollouts=0",
            f"seed=0:{SEEDS}"]
grid = from_command_line(None, world + protocol + [
    "method=gate_only", f"gate.lambda_e={LAMBDA_E}", "gate.lambda_i=" + ",".join(f"{v:g}" for v in LAMBDA_I),
    "gate.a1_mode=" + ",".join(A1_MODES), "gate.tau=" + ",".join(f"{v:g}" for v in TAU)], RUNS / "grid")
refs = from_command_line(None, world + protocol + ["method=opd,grpo"], RUNS / "references")
print("axes of the grid:", {a: [lv.label for lv in levels] for a, levels in grid.axes.items()})
print(f"{len(grid.plan())} + {len(refs.plan())} runs of {STEPS} steps x {PROMPTS_PER_STEP} prompts x G={GROUP_SIZE}")

# %% [markdown]
# `run_sweep` trains what is missing and writes one summary per run (final avg@n, pass@n, per
# skill, curves, the per-token evidence) in the sweep's folder. A sweep skips a run whose summary
# exists, so we delete the folders first: this notebook's numbers always come from this run.

# %%
shutil.rmtree(RUNS, ignore_errors=True)
t0 = time.perf_counter()
for sweep in (grid, refs):
    run_sweep(sweep)
print(f"{len(grid.plan()) + len(refs.plan())} runs in {time.perf_counter() - t0:.0f} s")

# %% [markdown]
# ## 2. The table and the paired differences
#
# `sweep_table` is what `sweep-report` prints: one row per cell, mean ± half-width of the 95%
# Student-t interval over the seeds (± 0.0 with one seed: no interval), overall and per skill.
# Then each cell minus OPD and minus GRPO, **paired by seed** (the same seed means the same
# prompts and the same start, so the difference removes what seeds share).

# %%
lines, numbers, metric = sweep_table(RUNS / "grid")
measured.show(lines)
cells, ref = measured.sweep_runs(RUNS / "grid"), measured.sweep_runs(RUNS / "references")
axes = [a for a in grid.axes if a != "seed"]
measured.show(measured.difference_rows(cells, axes, {"OPD": ref.seeds("opd"), "GRPO": ref.seeds("grpo")}))

# %%
for tau in sorted({c.get("gate.tau") for c in numbers}, key=str):
    viz.plot_sweep_heatmap([c for c in numbers if c.get("gate.tau") == tau], x="gate.lambda_i", y="gate.a1_mode",
                           metric=metric, title=f"{metric} after {STEPS} steps, tau = {tau or 0}: mean ± 95% half-width");

# %% [markdown]
# **Reading it honestly.** Look at the interval of each cell before the differences between
# cells: with a few seeds, a few dozen optimizer steps and a few dozen held-out problems, a seed
# moves the final accuracy by several points, as much as any effect a grid this size can show.
# A run this short is a demonstration of the procedure; the study's runs are ten times longer,
# and the next section reads them.
#
# ## What was measured
#
# The seeded study ran the full grid `lambda_e` {1, 1.8} x `lambda_i` {0, 0.5, 1} x `a1_mode`
# {group, sign} on this world with the study protocol (200 steps x 16 prompts x 8 rollouts, the
# whole skill-balanced split, n = 8), seeds 0-1, and compares every cell, paired by seed, with the
# main table's OPD and GRPO. The cell reads the committed run summaries (`results/runs/`), keeps
# those of this world and method, and prints the seeds each row holds (the study has finished:
# every cell has seeds 0 and 1).

# %%
RESULTS = REPO_ROOT / "results" / "runs"     # results/runs/<study>/*.json of the checkout (Colab: the clone)
st = measured.load_measured(RESULTS)          # FileNotFoundError, naming the folder, if the summaries are missing
measured.show(measured.threshold_rows(st))
committed = st["a2c_thresholds"]
for mode in sorted({cell[2] for cell in committed.cells}):
    viz.plot_sweep_heatmap([c for c in measured.heatmap_cells(committed, ["lambda_e", "lambda_i", "a1_mode"])
                            if c["a1_mode"] == mode], x="lambda_i", y="lambda_e", metric="avg@8",
                           title=f"the study: final avg@8, a1_mode = {mode} (gate only, A2 complementary)");

# %% [markdown]
# **Reading it.** In the study, no threshold of the gate protects the student's borrow: read the
# borrow column and its difference to OPD before the mean. `lambda_i = 1` leaves every conflict
# at OPD's push, so only `lambda_i < 1` can drop the teacher's push against a right borrow digit,
# and then only in the rollouts the verifier calls correct; in a rollout that failed elsewhere
# (for instance on a carry, which this student almost always gets wrong) the same push on the
# same right digit agrees with the verdict and passes, amplified by `lambda_e`. `group` mode adds the rollouts of
# all-equal groups, where the gate gives no evidence at all; `sign` mode reads every verdict and
# drops more of the teacher's wrong pushes, and more of its right ones with them. GRPO, which
# never reads the teacher, is the reference the gate would have to beat. docs/results.md holds
# the full report (every cell, the per-token evidence, the other worlds).
