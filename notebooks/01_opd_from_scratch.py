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
#     min_images: 7
# ---

# %% [markdown]
# # 01 · On-policy distillation from scratch: the sampled-token reverse KL
#
# **What you will learn**
#
# * what the teacher signal of on-policy distillation (OPD) is: for every token the student
#   sampled, `a2 = log pi_T(y_t | h_t) - log pi_old(y_t | h_t)` ([docs/method.md §3](../docs/method.md#3-the-two-signals));
# * why its average is minus the reverse KL, `E_{y ~ pi_old}[a2] = -KL(pi_old || pi_T)`,
#   checked numerically on a hand-made two-token distribution with the k1 and k3 estimators of
#   `sgopd_lite.losses`;
# * that using `a2` as a per-token advantage in a REINFORCE loss pulls the student onto the
#   teacher;
# * what `a2` looks like on real rollouts of the tiny world: which tokens the teacher pushes
#   up (blue) and which it pushes down (red);
# * one real update written out with the library's functions, step by step: sample, verify,
#   score teacher and old policy, gate, loss, backward, optimizer step;
# * the sampled loss against the dense one on the same batch: what each pushes on, and why a
#   gate can only be expressed in the sampled loss;
# * the student's rollouts before and after a short OPD run.
#
# **Time:** about 1.5 minutes on a 2-core laptop CPU (default mode; the short OPD run is most
# of it); no GPU.
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
OPD_STEPS = 3 if SMOKE else 80                 # optimizer steps of the short OPD run (section 6)
OPD_PROMPTS = 4 if SMOKE else 16               # prompts per step of that run
OPD_GROUP = 2 if SMOKE else 8                  # rollouts per prompt of that run
EVAL_PROBLEMS = 16 if SMOKE else 128           # held-out problems, before and after the run
EVAL_N = 2 if SMOKE else 4                     # samples per held-out problem (avg@n)
SHOW = 4 if SMOKE else 6                       # rollouts shown before / after
SEED = 0

# %%
import numpy as np
import torch

from sgopd_lite import losses, rollout, viz
from sgopd_lite.data import arithmetic_split, format_prompt
from sgopd_lite.gate import GateConfig, sign_gate
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
# OPD plugs `A = a2` into the REINFORCE loss of [docs/method.md §5](../docs/method.md#5-advantage-and-loss),
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
# ## 4. One update, written out
#
# The trainer (`sgopd_lite.train.Trainer`, used in section 6 and notebook 05) repeats one
# update per optimizer step. Here it is by hand on the tiny world, every step one library call,
# on a copy of the student so that the cells above and below keep the starting model.
#
# **Step 1, sample.** The *old* policy `pi_old` (the student as it is now) writes G rollouts
# per prompt at temperature 1 (`rollout.sample`). Rollouts of one prompt share a `group_id`.

# %%
import copy

learner = copy.deepcopy(student).train()                       # the model this update changes
golds_u = [p.answer for p in problems for _ in range(GROUP_SIZE)]
torch.manual_seed(SEED + 1)
ro_u = rollout.sample(learner, tok, prompts, GROUP_SIZE, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0)
mask_u = ro_u.response_mask                                    # (R, T) 1 on response tokens, through EOS
print(f"R = {len(ro_u)} rollouts ({len(prompts)} prompts x G = {GROUP_SIZE}), T = {mask_u.shape[1]} positions")
print("response_ids", tuple(ro_u.response_ids.shape), "group_ids", ro_u.group_ids.tolist())

# %% [markdown]
# **Step 2, verify.** The verifier grades each rollout's final answer: `r_i` in {0, 1}
# (`verifier.rewards`; notebook 02 opens it up). OPD itself never reads `r`; the gate does.

# %%
r_u = torch.tensor(verifier_rewards(ro_u.texts, golds_u))     # (R,)
print("rewards", r_u.tolist())

# %% [markdown]
# **Step 3, score.** Teacher and old policy score the *same* sampled tokens, without gradient
# (`rollout.sequence_logprobs`: one forward pass each, `log softmax` at the sampled ids).

# %%
with torch.no_grad():
    teacher_logp_u = rollout.sequence_logprobs(teacher, ro_u)  # (R, T) log pi_T(y_t | h_t)
    old_logp_u = rollout.sequence_logprobs(learner, ro_u)      # (R, T) log pi_old(y_t | h_t)

# %% [markdown]
# **Step 4, gate.** `gate.sign_gate` turns the two log-probs and the rewards into the per-token
# advantage `A`. With `GateConfig.opd()` every coefficient is 1, so `A = a2` everywhere (plain
# OPD); SG-OPD changes only this one call (notebook 03).

# %%
g = sign_gate(teacher_logp_u, old_logp_u, r_u, ro_u.group_ids, mask_u, cfg=GateConfig.opd())
A = g.advantage                                                # (R, T), 0 outside the mask
print(f"A == a2 on every response token: {torch.equal(A, g.a2)}; mean A {g.metrics['a2_mean']:+.3f} = -k1 KL")

# %% [markdown]
# **Step 5, loss.** Now *with* gradient: the learner's log-probs of the same tokens, and the
# sampled-token loss `L = -(1/N) sum m A log pi_theta(y)` (`losses.policy_gradient_loss`), N the
# step's response-token count. Before the step `pi_theta = pi_old`, so the log-probs equal
# `old_logp_u`.

# %%
N = losses.count_tokens(mask_u)
logp_u = rollout.sequence_logprobs(learner, ro_u)             # (R, T), with grad
loss = losses.policy_gradient_loss(logp_u, A, mask_u, num_tokens=N)
print(f"N = {N} tokens, loss = {loss.item():+.4f}; "
      f"max |log pi_theta - log pi_old| = {(logp_u.detach() - old_logp_u)[mask_u.bool()].abs().max():.1e}")

# %% [markdown]
# **Steps 6 and 7, backward and optimizer step.** AdamW at the learning rate of the trainer's
# first step (`TrainConfig().lr` scaled by its warm-up, `1 / warmup_steps`), gradient clipped to
# norm 1 like the trainer. Then the same tokens are
# scored again: tokens with `A > 0` should have become more likely, tokens with `A < 0` less.
# The parameters are shared by every position, so a single step moves some tokens the "wrong"
# way; the *average* is what the loss controls. Expect few tokens with `A > 0` to rise: most are
# tokens the student already writes with probability near 1 (little room, small `A`), while a
# few tokens with a large negative `A` (a wrong digit the teacher finds very unlikely) dominate
# the gradient.

# %%
from sgopd_lite.config import TrainConfig

defaults = TrainConfig()
opt_u = torch.optim.AdamW(learner.parameters(), lr=defaults.lr / defaults.warmup_steps)
opt_u.zero_grad()
loss.backward()
grad_norm = torch.nn.utils.clip_grad_norm_(learner.parameters(), 1.0)
opt_u.step()
with torch.no_grad():
    new_logp_u = rollout.sequence_logprobs(learner, ro_u)      # (R, T) after one step
delta = (new_logp_u - old_logp_u)                              # (R, T) change of log pi per token
m_u = mask_u.bool()
up, down = m_u & (A > 0), m_u & (A < 0)
print(f"gradient norm {grad_norm:.3f}")
print(f"tokens with A > 0: mean change of log pi {delta[up].mean():+.2e} ({(delta[up] > 0).float().mean():.0%} rose)")
print(f"tokens with A < 0: mean change of log pi {delta[down].mean():+.2e} ({(delta[down] < 0).float().mean():.0%} fell)")
print(f"sum over tokens of A x change = {(A * delta)[m_u].sum():+.3e} (positive: on average log pi moved the way A says)")
viz.plot_value_histograms({"tokens with A > 0 (teacher: up)": delta[up].numpy(),
                           "tokens with A < 0 (teacher: down)": delta[down].numpy()},
                          xlabel="change of log pi_theta(y_t) after one update", bins=40,
                          title="one AdamW step of OPD on the tiny world");

# %% [markdown]
# ## 5. Sampled loss or dense loss: what each pushes on
#
# The sampled loss above sees, at each position, only the token the student wrote: its gradient
# with respect to that position's logits is `-(A/N) (onehot(y) - pi_theta)`, so a step raises
# (A > 0) or lowers (A < 0) **the sampled token** and moves every other token the opposite way
# in proportion to its probability. Its direction comes from `A`, one number per token, which
# is what a gate rescales.
#
# The dense loss (`losses.dense_distill_loss`, this project's extension) computes the whole
# reverse KL at every visited position, `KL(pi_theta(.|h) || pi_T(.|h))`, over the full
# vocabulary: a step moves **the whole distribution** towards the teacher's, whichever token was
# sampled. Below: both losses on the same batch (the starting student), and minus their
# gradients with respect to the logits of one position: the one where the teacher pushes
# hardest down on a token.

# %%
from sgopd_lite.config import ConfigError

with torch.no_grad():
    t_logits = rollout.response_logits(teacher, ro_u)                      # (R, T, V)
    s_logits0 = rollout.response_logits(student, ro_u)                    # (R, T, V), the starting student
s_logits = s_logits0.clone().requires_grad_(True)
sampled = losses.policy_gradient_loss(losses.token_logprobs(s_logits, ro_u.response_ids), A, mask_u, N)
dense = losses.dense_distill_loss(s_logits, t_logits, torch.ones_like(A), mask_u, N)
push_sampled = -torch.autograd.grad(sampled, s_logits)[0]                 # (R, T, V)
push_dense = -torch.autograd.grad(dense, s_logits)[0]                     # (R, T, V)

i, t = divmod(int(torch.where(m_u, A, torch.zeros_like(A)).argmin()), A.shape[1])
p_s, p_t = s_logits0[i, t].softmax(-1), t_logits[i, t].softmax(-1)       # (V,)
shown_ids = torch.unique(torch.cat([p_s.topk(4).indices, p_t.topk(4).indices, ro_u.response_ids[i, t:t + 1]]))
labels = [tok.decode([v]) for v in shown_ids.tolist()]
print(f"rollout {i}, position {t}: the student wrote {tok.decode([int(ro_u.response_ids[i, t])])!r}, "
      f"A = {A[i, t]:+.2f}; context {tok.decode(ro_u.response_ids[i, :t].tolist())!r}")
print(f"sampled loss {sampled.item():+.4f}, dense loss (mean reverse KL per token) {dense.item():.4f}")
for name, push in (("sampled", push_sampled), ("dense", push_dense)):
    print(f"{name:>7} loss raises {tok.decode([int(push[i, t].argmax())])!r} most and lowers "
          f"{tok.decode([int(push[i, t].argmin())])!r} most")
print(f"the student's favourite here is {tok.decode([int(p_s.argmax())])!r}, the teacher's "
      f"{tok.decode([int(p_t.argmax())])!r}: with A < 0 the sampled loss hands the freed mass to the other "
      "tokens in proportion to the student's own probabilities; the dense loss hands it to the teacher's choices")
teacher_top = t_logits.argmax(-1)                                          # (R, T)
for name, push in (("sampled", push_sampled), ("dense", push_dense)):
    agree = (push.argmax(-1) == teacher_top)[m_u].float().mean()
    print(f"over all {int(m_u.sum())} positions, the {name} loss raises the teacher's top token most at {agree:.0%}")
viz.plot_position_pushes(labels, p_s[shown_ids].numpy(), p_t[shown_ids].numpy(),
                         {"sampled: -(A/N)(onehot(y) - p)": push_sampled[i, t, shown_ids].numpy(),
                          "dense: towards pi_T everywhere": push_dense[i, t, shown_ids].numpy()},
                         title=f"one position of rollout {i}: what a step of each loss moves");

# %% [markdown]
# On this world the two losses mostly agree on *which* token to raise at a position (the last
# two lines): they differ in *what they read*. The sampled loss reads one sampled token and its
# `A` (an unbiased but noisy estimate of the reverse KL's gradient); the dense loss reads the
# teacher's whole distribution (exact, and V times the work per position).
#
# **Why a gate needs the sampled loss.** A gate says, per *sampled token*, "push this token
# harder" (consensus) or "softer" (conflict), using the verifier's verdict on the rollout. In
# the sampled loss that is one multiplication, `A = lambda_t a2`. The dense loss has no sampled
# token to push: `dense_distill_loss` can only scale the whole position's KL by `lambda_t`, so
# `lambda_e` would just take a bigger step towards the teacher's entire distribution, and
# `lambda_i = 0` would drop the teacher's distribution at that position altogether, including the
# tokens the teacher is right about. Neither is what the gate means, so the config refuses it:

# %%
try:
    TrainConfig(method="sgopd", loss_type="dense")
except ConfigError as err:
    print("refused:", err)
print("plain OPD with the dense loss is allowed:", TrainConfig(method="opd", loss_type="dense").loss_type)

# %% [markdown]
# ## 6. A short OPD run: the student before and after
#
# `Trainer(TrainConfig(method="opd", ...)).run()` repeats section 4's update `OPD_STEPS` times
# (with fresh prompts each step, learning-rate warm-up and gradient clipping) and evaluates on
# held-out problems at the end. Before it, the starting student's held-out avg@n and a few of its
# rollouts; after it, the same prompts, sampled with the same seed. A short run is a
# demonstration, not evidence: `make demo` trains 200 steps, and the gains of a few dozen steps
# are within the noise of one seed.

# %%
import shutil

from sgopd_lite.assets import project_dir
from sgopd_lite.evaluate import evaluate
from sgopd_lite.train import Trainer, load_world

run_cfg = TrainConfig(method="opd", steps=OPD_STEPS, prompts_per_step=OPD_PROMPTS, group_size=OPD_GROUP,
                      eval_every=0, eval_problems=EVAL_PROBLEMS, eval_n=EVAL_N, save_every=0, seed=SEED,
                      out_dir=str(project_dir() / "runs" / "notebooks" / "01_opd_from_scratch" / "opd"))
shutil.rmtree(run_cfg.out_dir, ignore_errors=True)     # a folder with a checkpoint would be resumed
world = load_world(run_cfg, verbose=False)               # the default tiny pair, a fresh student
held_out = world.eval_problems[:EVAL_PROBLEMS]
show_prompts = [format_prompt(tok, p.question, instruction=world.instruction) for p in held_out[:SHOW]]
torch.manual_seed(SEED)
before = evaluate(world.student, tok, held_out, n=EVAL_N, max_new_tokens=MAX_NEW_TOKENS, instruction=world.instruction)
torch.manual_seed(SEED + 2)        # the same seed before and after: one rollout per shown prompt
shown_before = rollout.sample(world.student, tok, show_prompts, 1, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0)

trainer = Trainer(run_cfg, world=world, verbose=False)   # trains world.student in place
history = trainer.run()

torch.manual_seed(SEED + 2)
shown_after = rollout.sample(trainer.policy, tok, show_prompts, 1, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0)
print(f"held-out avg@{EVAL_N} on {len(held_out)} problems: {before.avg_at_n:.3f} before, "
      f"{history[-1][f'eval_avg@{EVAL_N}']:.3f} after {OPD_STEPS} OPD steps")

# %% [markdown]
# The same prompts, one rollout each, before and after (✔ / ✘: the verifier's verdict):

# %%
from IPython.display import Markdown, display

golds_shown = [p.answer for p in held_out[:SHOW]]
marks = {name: verifier_rewards(ro_s.texts, golds_shown) for name, ro_s in (("before", shown_before), ("after", shown_after))}
rows = ["| question | gold | before | after |", "|---|---|---|---|"]
for k, p in enumerate(held_out[:SHOW]):
    cells = [f"{'✔' if marks[name][k] else '✘'} `{ro_s.texts[k].strip()}`".replace("\n", " ").replace("|", "/")
             for name, ro_s in (("before", shown_before), ("after", shown_after))]
    rows.append(f"| `{p.question}` | {p.answer} | {cells[0]} | {cells[1]} |")
display(Markdown("\n".join(rows)))
viz.plot_learning_curves({"OPD": history}, metric="kl_k1", smooth=1,
                         title="k1 estimate of KL(student || teacher) on the training rollouts");

# %% [markdown]
# **Take-aways.** `a2` is a free, dense, per-token signal (one teacher forward pass on the
# student's tokens); its mean is `-KL(pi_old || pi_T)`, and REINFORCE with it minimises that
# reverse KL. One update is seven library calls; the trainer only repeats them. The sampled loss
# pushes on the one token the student wrote, the dense loss on the whole distribution, and only
# the first can be gated. OPD trusts the teacher on every token: notebook 03 asks when it should
# not.
