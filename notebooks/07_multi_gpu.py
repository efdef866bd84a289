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
# # 07 · Several processes and GPUs: what changes, and what must not
#
# **What you will learn**
#
# * how a run is launched on several GPUs (`accelerate launch` with the configs in
#   `configs/accelerate/`, or `torchrun`), and on several CPU processes (`torchrun`);
# * what changes across processes: each process samples its own prompts, so **groups never
#   cross processes** (a1 compares rollouts of one prompt, all on one process);
# * what must not change: the gradient. The loss is normalised by the response-token count N of
#   the **whole** step (all micro-batches, all processes), and because DDP *averages* gradients
#   over processes, each process multiplies its loss by the number of processes (`train.py`);
# * a check of that arithmetic in one process, and a 2-step single-process run.
#
# **Time:** about 10 seconds on a 2-core laptop CPU (default mode); no GPU. The multi-process
# commands are shown, not run (`tests/test_distributed.py` runs two CPU processes).

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

# %% tags=["parameters"]
SMOKE = os.environ.get("SGOPD_SMOKE") == "1"   # CI smoke run: same cells, smaller sizes

PROMPTS = 4 if SMOKE else 8          # prompts in the gradient check (two simulated processes)
GROUP_SIZE = 4                       # rollouts per prompt
MAX_NEW_TOKENS = 40
DEMO_STEPS = 2                       # steps of the single-process demonstration run
SEED = 0

# %%
import shutil

import torch
from transformers.utils import logging as hf_logging

from sgopd_lite import viz
from sgopd_lite.config import TrainConfig
from sgopd_lite.assets import project_dir
from sgopd_lite.data import arithmetic_split, format_prompt
from sgopd_lite.gate import sign_gate
from sgopd_lite.losses import count_tokens, policy_gradient_loss
from sgopd_lite.rollout import sample, sequence_logprobs
from sgopd_lite.worlds.tiny import TinyWorldConfig, load_tiny_pair
from sgopd_lite.train import Trainer, World
from sgopd_lite.verifier import rewards as verifier_rewards

REPO_ROOT = project_dir()   # the checkout holding the current folder, else the current folder

hf_logging.disable_progress_bar()
RUNS = REPO_ROOT / "runs" / "notebooks" / "07_multi_gpu"

# %% [markdown]
# ## 1. Launching
#
# The trainer creates an `accelerate.Accelerator`, which reads the process layout from the
# environment that the launcher sets up, so the same command line runs on one or many devices:
#
# ```bash
# # one GPU (or CPU): plain python, or accelerate with the single-GPU config
# python -m sgopd_lite train --config configs/tiny.yaml
# accelerate launch --config_file configs/accelerate/single_gpu.yaml -m sgopd_lite train --config configs/tiny.yaml
#
# # N GPUs of one machine, data parallel (DDP)
# accelerate launch --config_file configs/accelerate/multi_gpu.yaml --num_processes N -m sgopd_lite train --config configs/tiny.yaml
# torchrun --nproc_per_node N -m sgopd_lite train --config configs/tiny.yaml
#
# # several CPU processes (gloo): torchrun; accelerate starts several CPU processes only through mpirun
# OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 -m sgopd_lite train --config configs/tiny.yaml steps=2
# ```
#
# The accelerate configs shipped with the project:

# %%
for path in sorted((REPO_ROOT / "configs" / "accelerate").glob("*.yaml")):
    print(f"===== {path.relative_to(REPO_ROOT)} =====")
    print(path.read_text())

# %% [markdown]
# ## 2. What each process does
#
# Every process draws its own `prompts_per_step` prompts (`train.step_prompt_indices(seed, step,
# rank, ...)`, a pure function, so a resumed run draws the same ones) and samples `G` rollouts
# for each. The global batch is `processes x prompts_per_step x G` rollouts. Because a whole
# group lives on one process, `a1 = r - mean_G(r)` needs no communication; the only numbers
# exchanged per step are the token counts (and DDP's gradient all-reduce). Evaluation runs on the
# main process.

# %%
viz.plot_process_layout(prompts_per_step=4, group_size=GROUP_SIZE, num_processes=2);

# %% [markdown]
# ## 3. The normaliser and DDP's average, checked in one process
#
# The policy loss is `L = -(1/N) sum_{i,t} m_{i,t} A_{i,t} log pi_theta(y_{i,t})` with N the
# response tokens of the *whole* step. Split the step's rollouts over two processes, P0 and P1
# (by groups). Each process computes its part of the sum, **divided by the global N** (the
# trainer all-reduces the token count first: `train.global_sum`). The two partial gradients
# then add up to the full-batch gradient exactly:
#
#     g_full = g_P0 + g_P1            (both with the global N)
#
# But DDP does not add gradients, it **averages** them: every process ends up with
# `(g_P0 + g_P1) / 2`. So each process multiplies its loss by the number of processes
# (`acc.backward(loss * world_size)` in `Trainer.backward`), and the average becomes the sum.
# Had each process divided by its *own* token count instead, long and short responses would be
# weighted differently depending on where they landed. Below, the same arithmetic on one batch
# of tiny-world rollouts, with the library's loss.

# %%
wcfg = TinyWorldConfig()
tok, teacher, student = load_tiny_pair(cfg=wcfg, verbose=False)
problems = arithmetic_split("train")[:PROMPTS]
prompts = [format_prompt(tok, p.question, instruction=wcfg.instruction) for p in problems]
torch.manual_seed(SEED)
ro = sample(student, tok, prompts, GROUP_SIZE, max_new_tokens=MAX_NEW_TOKENS)
r = torch.tensor(verifier_rewards(ro.texts, [p.answer for p in problems for _ in range(GROUP_SIZE)]))
with torch.no_grad():
    gate = sign_gate(sequence_logprobs(teacher, ro), sequence_logprobs(student, ro), r, ro.group_ids,
                     ro.response_mask)


def grad_of(rollouts, advantage, num_tokens, scale=1.0):
    """Flattened gradient of scale * policy_gradient_loss on some rollouts (plumbing only)."""
    student.zero_grad(set_to_none=True)
    loss = policy_gradient_loss(sequence_logprobs(student, rollouts), advantage, rollouts.response_mask, num_tokens)
    (loss * scale).backward()
    return torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None])


half = len(ro) // 2                      # whole groups: PROMPTS / 2 prompts on each "process"
p0, p1 = list(range(half)), list(range(half, len(ro)))
N = count_tokens(ro.response_mask)
N0, N1 = count_tokens(ro.response_mask[p0]), count_tokens(ro.response_mask[p1])
print(f"global N = {N} response tokens (P0: {N0}, P1: {N1})")

g_full = grad_of(ro, gate.advantage, N)
g0, g1 = grad_of(ro.select(p0), gate.advantage[p0], N), grad_of(ro.select(p1), gate.advantage[p1], N)
ddp_plain = (g0 + g1) / 2                                                    # DDP's average
ddp_scaled = (grad_of(ro.select(p0), gate.advantage[p0], N, scale=2) +
              grad_of(ro.select(p1), gate.advantage[p1], N, scale=2)) / 2    # loss x world_size, then average
local_n = (grad_of(ro.select(p0), gate.advantage[p0], N0) + grad_of(ro.select(p1), gate.advantage[p1], N1)) / 2
student.zero_grad(set_to_none=True)

errors = {
    "sum of parts, global N": (g0 + g1 - g_full).norm() / g_full.norm(),
    "DDP average, loss x 2": (ddp_scaled - g_full).norm() / g_full.norm(),
    "DDP average, no x 2": (ddp_plain - g_full).norm() / g_full.norm(),
    "DDP average, local N": (local_n - g_full).norm() / g_full.norm(),
}
for name, err in errors.items():
    print(f"{name:>24}: relative error vs the full-batch gradient {float(err):.2e}")
viz.plot_labelled_bars({k: float(v) for k, v in errors.items()}, ylabel="|g - g_full| / |g_full|", fmt="{:.1e}",
                       title="which multi-process gradient equals the single-process one?");

# %% [markdown]
# `grad_of` is plumbing for this check only (it calls `losses.policy_gradient_loss`); the trainer
# does the same inside `Trainer.backward`, where micro-batches follow the same rule: the
# normaliser is the step's N, whatever `micro_batch_size` is.
#
# ## 4. A 2-step run in this process
#
# The same trainer, one process: `num_processes = 1`, so the loss is multiplied by 1 and N is the
# local count. Launched with `torchrun` or `accelerate launch`, nothing in this code changes.

# %%
out_dir = RUNS / "demo"
shutil.rmtree(out_dir, ignore_errors=True)
tok, teacher, student = load_tiny_pair(cfg=wcfg, verbose=False)
world = World(tok, teacher, student, arithmetic_split("train"), arithmetic_split("eval")[:8],
              instruction=wcfg.instruction)
cfg = TrainConfig(method="sgopd", steps=DEMO_STEPS, prompts_per_step=4, group_size=GROUP_SIZE, eval_every=0,
                  eval_problems=8, eval_n=2, save_every=0, log_rollouts=1, seed=SEED, out_dir=str(out_dir))
trainer = Trainer(cfg, world=world, verbose=False)
acc = trainer.accelerator
print(f"processes: {acc.num_processes}, this one: {acc.process_index}, device: {acc.device}, "
      f"distributed type: {acc.distributed_type}")
history = trainer.run()
for m in history:
    print(f"step {m['step']}: reward {m['reward_mean']:.2f}, loss_pg {m['loss_pg']:+.4f}, loss_ce {m['loss_ce']:.3f}, "
          f"w(k) {m['pts_w']:.2f}, grad norm {m['grad_norm']:.3f}")
print("files written:", sorted(p.name for p in out_dir.iterdir()))
