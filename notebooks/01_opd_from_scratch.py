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
# # 01 · On-policy distillation from scratch: the sampled-token reverse KL
#
# **What you will learn**
#
# * what the teacher signal of on-policy distillation (OPD) is: for every token the student
#   sampled, `a2 = log pi_T(y_t | h_t) - log pi_old(y_t | h_t)` (METHOD.md §3);
# * why its average is minus the reverse KL, `E_{y ~ pi_old}[a2] = -KL(pi_old || pi_T)`,
#   checked numerically on a hand-made two-token distribution with the k1 and k3 estimators of
#   `sgopd_lite.losses`;
# * that using `a2` as a per-token advantage in a REINFORCE loss pulls the student onto the
#   teacher;
# * what `a2` looks like on real rollouts of the tiny world: which tokens the teacher pushes
#   up (blue) and which it pushes down (red).
#
# **Time:** about 10 seconds on a 2-core laptop CPU (default mode); no GPU.
#
# All math lives in the library (`sgopd_lite.losses`, `rollout`, `gate`); this notebook only
# calls it, prints numbers and shows pictures from `sgopd_lite.viz`.

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

MC_SAMPLES = 2_000 if SMOKE else 20_000        # sampled tokens per two-token distribution
TOY_STEPS = 60 if SMOKE else 300               # REINFORCE steps on the two-token student
NUM_PROMPTS = 4 if SMOKE else 8                # tiny-world prompts
GROUP_SIZE = 2 if SMOKE else 4                 # rollouts per prompt
MAX_NEW_TOKENS = 40                            # response budget (tiny solutions need ~30 tokens)
SEED = 0

# %%
import numpy as np
import torch

from sgopd_lite import losses, rollout, viz
from sgopd_lite.data import arithmetic_split, format_prompt
from sgopd_lite.gate import GateConfig
from sgopd_lite.worlds.tiny import TinyWorldConfig, load_tiny_pair
from sgopd_lite.verifier import rewards as verifier_rewards

torch.manual_seed(SEED)
print(f"SMOKE={SMOKE}, torch {torch.__version__}, {torch.get_num_threads()} threads")

# %% [markdown]
# ## 1. The teacher signal on a two-token distribution
#
# A student `pi_old` samples a token `y`; the teacher `pi_T` scores the same token. OPD's
# per-token signal is the log-ratio
#
#     a2(y) = log pi_T(y) - log pi_old(y)
#
# Positive `a2`: the teacher likes the token more than the student does, so training should
# push it **up**; negative: push it **down**. Averaged over the student's own samples,
#
#     E_{y ~ pi_old}[a2] = sum_y pi_old(y) (log pi_T(y) - log pi_old(y)) = -KL(pi_old || pi_T),
#
# the *reverse* KL (student first): it is estimated from samples of the student alone, which is
# what makes OPD on-policy. `losses.k1_kl(logp_old, logp_T)` is `-a2` per token (unbiased,
# noisy, can be negative); `losses.k3_kl` is `(r - 1) - log r` with `r = pi_T / pi_old`
# (unbiased, never negative per token, usually lower variance).
#
# First one distribution, by hand: the vocabulary is `{A, B}`.

# %%
p_teacher = torch.tensor([0.8, 0.2])     # pi_T(A), pi_T(B)
p_old = torch.tensor([0.4, 0.6])         # the student prefers B

y = torch.multinomial(p_old, MC_SAMPLES, replacement=True)   # tokens sampled by the student
logp_old = p_old.log()[y]                                    # (MC_SAMPLES,) log pi_old(y)
logp_teacher = p_teacher.log()[y]                            # (MC_SAMPLES,) log pi_T(y)
a2 = logp_teacher - logp_old

# exact KL(pi_old || pi_T) with the library's full-vocabulary reverse KL: "student" = pi_old
exact = losses.reverse_kl(p_old.log().view(1, 1, 2), p_teacher.log().view(1, 1, 2)).item()
k1 = losses.k1_kl(logp_old, logp_teacher)
k3 = losses.k3_kl(logp_old, logp_teacher)

print(f"a2 on token A: {(p_teacher.log() - p_old.log())[0]:+.3f} (teacher pushes A up)")
print(f"a2 on token B: {(p_teacher.log() - p_old.log())[1]:+.3f} (teacher pushes B down)")
print(f"exact KL(pi_old || pi_T)   = {exact:.4f}")
print(f"-mean(a2) = mean k1         = {k1.mean():.4f}  (per-token std {k1.std():.3f}, min {k1.min():+.3f})")
print(f"mean k3                     = {k3.mean():.4f}  (per-token std {k3.std():.3f}, min {k3.min():+.3f})")

# %% [markdown]
# Now a whole family: keep the teacher at `(0.8, 0.2)` and move the student's `pi_old(A)` from
# 0.05 to 0.95. At every point the Monte-Carlo means of k1 and k3 (with two standard errors)
# should sit on the exact curve, and the curve touches 0 where the student equals the teacher.

# %%
grid = np.linspace(0.05, 0.95, 19)
stats = {"exact": [], "k1": [], "k1_sem": [], "k3": [], "k3_sem": []}
for p_a in grid:
    q = torch.tensor([p_a, 1.0 - p_a], dtype=torch.float32)
    y = torch.multinomial(q, MC_SAMPLES, replacement=True)
    lo, lt = q.log()[y], p_teacher.log()[y]
    est1, est3 = losses.k1_kl(lo, lt), losses.k3_kl(lo, lt)
    stats["exact"].append(losses.reverse_kl(q.log().view(1, 1, 2), p_teacher.log().view(1, 1, 2)).item())
    stats["k1"].append(est1.mean().item())
    stats["k1_sem"].append(est1.std().item() / MC_SAMPLES ** 0.5)
    stats["k3"].append(est3.mean().item())
    stats["k3_sem"].append(est3.std().item() / MC_SAMPLES ** 0.5)

worst = max(abs(a - b) / (2 * s + 1e-12) for a, b, s in zip(stats["k1"], stats["exact"], stats["k1_sem"]))
print(f"largest |mean k1 - exact| in units of 2 standard errors: {worst:.2f} (about 1 or less is expected)")
viz.plot_kl_estimators(grid, stats["exact"], stats["k1"], stats["k1_sem"], stats["k3"], stats["k3_sem"],
                       xlabel="pi_old(A)   (teacher: pi_T(A) = 0.8)");

# %% [markdown]
# ## 2. a2 as a per-token advantage pulls the student onto the teacher
#
# OPD plugs `A = a2` into the REINFORCE loss of METHOD §5,
# `L = -(1/N) sum_t m_t * stopgrad(A_t) * log pi_theta(y_t)` (`losses.policy_gradient_loss`).
# Its expected gradient is the gradient of `KL(pi_theta || pi_T)`, so plain gradient descent on
# sampled tokens should walk the student's two logits to the teacher's distribution. Below:
# a two-logit "student" trained with exactly that loss, 64 samples per step.

# %%
student_logits = torch.nn.Parameter(torch.tensor([-1.0, 1.0]))   # starts at pi(A) = 0.12
opt = torch.optim.SGD([student_logits], lr=0.5)
history = []
for step in range(TOY_STEPS):
    with torch.no_grad():
        q = student_logits.softmax(-1)
        y = torch.multinomial(q, 64, replacement=True).view(1, -1)        # (1, 64) on-policy samples
        advantage = (p_teacher.log() - q.log())[y]                        # (1, 64) a2 per token
        kl = losses.reverse_kl(student_logits.view(1, 1, 2), p_teacher.log().view(1, 1, 2)).item()
    history.append({"step": step, "kl": kl, "p_A": q[0].item()})
    logp = losses.token_logprobs(student_logits.view(1, 1, 2).expand(1, 64, 2), y)   # (1, 64)
    loss = losses.policy_gradient_loss(logp, advantage, torch.ones_like(logp), num_tokens=64)
    opt.zero_grad()
    loss.backward()
    opt.step()

print(f"pi_old(A): {history[0]['p_A']:.3f} -> {history[-1]['p_A']:.3f} (teacher 0.800); "
      f"KL: {history[0]['kl']:.3f} -> {history[-1]['kl']:.4f}")
viz.plot_learning_curves({"REINFORCE with A = a2": history}, metric="kl", smooth=1,
                         title="KL(pi_theta || pi_T) of the two-token student");

# %% [markdown]
# ## 3. The same signal on real rollouts of the tiny world
#
# The tiny world (`sgopd_lite.worlds.tiny`) is a ~0.7M-parameter teacher and a ~0.3M-parameter
# student, both Qwen2 architectures with a character vocabulary, trained here on multi-step
# arithmetic (`15-4+16` -> `15-4=11`, `11+16=27`, `\boxed{27}`). The default pair has both
# OPD assumptions intact. The student learned from sloppy solutions (most of them forget
# carries and borrows), so it has a habit the teacher can correct token by token: look for
# strongly negative a2 exactly on the digit where a carry or a borrow was forgotten.
#
# Steps, each one library call:
# 1. `rollout.sample`: GROUP_SIZE student rollouts per prompt at temperature 1;
# 2. `rollout.sequence_logprobs`: `log pi_T` and `log pi_old` of every sampled token (no grad);
# 3. `a2 = log pi_T - log pi_old` on the response mask; its mean is `-k1`.

# %%
wcfg = TinyWorldConfig()
tok, teacher, student = load_tiny_pair(cfg=wcfg)
problems = arithmetic_split("eval")[:NUM_PROMPTS]
prompts = [format_prompt(tok, p.question, instruction=wcfg.instruction) for p in problems]
print("a prompt, exactly as the models see it:", repr(prompts[0]))

torch.manual_seed(SEED)
ro = rollout.sample(student, tok, prompts, GROUP_SIZE, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0)
golds = [p.answer for p in problems for _ in range(GROUP_SIZE)]
r = torch.tensor(verifier_rewards(ro.texts, golds))
with torch.no_grad():
    teacher_logp = rollout.sequence_logprobs(teacher, ro)   # (R, T)
    old_logp = rollout.sequence_logprobs(student, ro)       # (R, T)
    self_logp = rollout.sequence_logprobs(student, ro)      # sanity check: student vs itself

mask = ro.response_mask.bool()
a2 = (teacher_logp - old_logp)[mask]
print(f"{len(ro)} rollouts, {int(mask.sum())} response tokens, {r.mean():.0%} correct")
print(f"mean a2 = {a2.mean():+.3f}  ->  k1 estimate of KL(pi_old || pi_T) = "
      f"{losses.masked_mean(losses.k1_kl(old_logp, teacher_logp), mask):.3f}, "
      f"k3 estimate = {losses.masked_mean(losses.k3_kl(old_logp, teacher_logp), mask):.3f}")
print(f"student scored against itself: max |a2| = {(self_logp - old_logp)[mask].abs().max():.1e} (should be 0)")
for text, reward in list(zip(ro.texts, r.tolist()))[:3]:
    print(f"  reward {reward:.0f}: {text!r}")

# %% [markdown]
# Where does the teacher disagree? Tokens of correct and of wrong rollouts, separately. A long
# left tail means a few tokens the teacher finds very unlikely: typically a wrong digit.

# %%
correct_rows = r.bool()[:, None].expand_as(mask)
viz.plot_value_histograms({"correct rollouts": (teacher_logp - old_logp)[mask & correct_rows].numpy(),
                           "wrong rollouts": (teacher_logp - old_logp)[mask & ~correct_rows].numpy()},
                          title="a2 per response token, tiny world");

# %% [markdown]
# One rollout, token by token, coloured by `a2` on a diverging scale: **blue** = the teacher
# pushes the token up, **red** = down, white = teacher and student agree. In plain OPD this
# *is* the per-token advantage (`GateConfig.opd()`: every lambda is 1), so the picture is
# literally what the student is trained on. Notebook 03 adds the verifier's verdict on top.

# %%
inputs = viz.GateInputs.from_rollouts(tok, ro, teacher_logp, old_logp, r)
records, metrics = viz.gate_records(inputs, GateConfig.opd())
wrong = [rec for rec in records if rec["reward"] == 0]
shown = min(wrong or records, key=lambda rec: min(rec["a2"]))   # the rollout with the strongest push-down
viz.plot_token_gate(shown, color_by="a2");

# %% [markdown]
# The same rollout as HTML: hover a token to read its a1, a2, class, lambda_t and advantage.

# %%
from IPython.display import HTML

HTML(viz.token_gate_html(shown, color_by="a2"))

# %% [markdown]
# **Take-aways.** `a2` is a free, dense, per-token signal (one teacher forward pass on the
# student's tokens); its mean is `-KL(pi_old || pi_T)`, and REINFORCE with it minimises that
# reverse KL. It trusts the teacher on every token. Notebook 03 asks when it should not.
