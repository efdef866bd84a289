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
# # 04 · Phased teacher sampling: fixing the cold start
#
# **What you will learn**
#
# * why OPD's first assumption (A1: the student's trajectories stay where the teacher's
#   preferences mean something) breaks at cold start, shown on a tiny world where the student
#   writes most of its solutions in a style the teacher never saw (the study's A1 graded world);
# * why OPD then collapses the student, measured on real rollouts: `a2` is large and negative on
#   nearly every token the student writes, so REINFORCE with `A = a2` pushes them all down,
#   whatever the verifier says;
# * the phased-teacher-sampling (PTS) schedule `w(k)` of [docs/method.md §6](../docs/method.md#6-phased-teacher-sampling) (`scheduler.pts_weight`)
#   and how many prompts get teacher rollouts (`scheduler.teacher_prompt_count`);
# * teacher rollouts, filtered by the verifier (acceptance rate), and the auxiliary
#   cross-entropy `L_CE` on the accepted ones (`losses.aux_ce_loss`);
# * a short cold-start comparison, the same gated OPD with and without PTS, on that world;
# * whether phased teacher sampling rescued the student in the seeded study (the last section,
#   from the committed summaries in `results/runs/`).
#
# **Time:** about 1.5 minutes on a 2-core laptop CPU (default mode); no GPU.

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

NUM_PROMPTS = 4 if SMOKE else 16     # prompts for the pictures of sections 1-3
GROUP_SIZE = 4 if SMOKE else 8       # G student rollouts per prompt
STEPS = 3 if SMOKE else 60           # optimizer steps of each cold-start run
PROMPTS_PER_STEP = 4 if SMOKE else 16
PTS_K1, PTS_K2 = (1, 2) if SMOKE else (20, 45)   # warm phase, then cosine decay (scaled to the short run)
EVAL_PROBLEMS = 16 if SMOKE else 128 # held-out problems for the final avg@n
EVAL_N = 2 if SMOKE else 4           # samples per held-out problem
MAX_NEW_TOKENS = 40
STYLE_GAP = 0.75                     # the study's A1 graded world: 3/4 of the student's SFT solutions in prose
SEED = 0

# %%
import math
import shutil
import time

import torch
from IPython.display import Markdown, display
from transformers.utils import logging as hf_logging

from sgopd_lite import losses, rollout, viz
from sgopd_lite.config import TrainConfig
from sgopd_lite.assets import project_dir
from sgopd_lite.data import SKILLS, arithmetic_split, format_prompt
from sgopd_lite.evaluate import skill_table, skills_from_metrics
from sgopd_lite.losses import masked_mean
from sgopd_lite.scheduler import PTSConfig, pts_weight, teacher_prompt_count
from sgopd_lite.study import measured
from sgopd_lite.worlds.tiny import TinyWorldConfig, load_tiny_pair
from sgopd_lite.train import Trainer, World
from sgopd_lite.verifier import rewards as verifier_rewards

REPO_ROOT = project_dir()   # the checkout holding the current folder, else the current folder

hf_logging.disable_progress_bar()
torch.manual_seed(SEED)
RUNS = REPO_ROOT / "runs" / "notebooks" / "04_phased_teacher_sampling"

# %% [markdown]
# ## 1. The schedule
#
#     w(k) = w0                                               k <  K1   (warm: teacher mixing on)
#     w(k) = w0 * 0.5 * (1 + cos(pi * (k - K1) / (K2 - K1)))  K1 <= k < K2   (cosine decay)
#     w(k) = 0                                                k >= K2   (pure gated OPD)
#
# The paper gives no values for `w0, K1, K2, rho, M`; `PTSConfig()`'s defaults are this
# project's choice for a 300-step tiny run (README, "Readings of the paper"). With `K1 = K2`
# the weight drops straight from `w0` to 0.

# %%
cfg = PTSConfig()
print(cfg)
for k in (0, 49, 50, 100, 149, 150):
    print(f"k={k:>3}: w(k) = {pts_weight(k, cfg):.4f}, prompts of a 16-prompt batch with teacher rollouts: "
          f"{teacher_prompt_count(k, 16, cfg)}")
viz.plot_pts_schedule(cfg, 200);
viz.plot_pts_schedule(PTSConfig(k1=80, k2=80), 200);

# %% [markdown]
# ## 2. Why a cold start needs it: a student off the teacher's distribution
#
# `TinyWorldConfig(style_gap=0.75)` trains the student on solutions three quarters of which are
# written in *prose* (`4+1 is 5 / 5+3 is 8 / so \boxed{8}`), a style the teacher never saw
# (`4+1=5 / 5+3=8 / \boxed{8}`): the study's **A1 graded** world. Its answers can still be right,
# but on its own trajectories the teacher's per-token opinions are about a text it cannot read:
# assumption A1 fails. The same prompts, in the world where both assumptions hold (same style)
# and in the A1 graded world, with `a2 = log pi_T - log pi_old` on every token the student wrote:

# %%
problems = arithmetic_split("eval")[:NUM_PROMPTS]
a2_by_world, per_rollout, worlds = {}, {}, {}
rows = ["| world | rollouts | reward | mean a2 per token | tokens with a2 < 0 | tokens with a2 < -1 | "
        "mean a2 per rollout: correct / wrong | rollouts with mean a2 < 0 |", "|---|---|---|---|---|---|---|---|"]
for name, wcfg in [("both hold (style_gap=0)", TinyWorldConfig()),
                   (f"A1 graded (style_gap={STYLE_GAP:g})", TinyWorldConfig(style_gap=STYLE_GAP))]:
    tok, teacher, student = load_tiny_pair(cfg=wcfg, verbose=False)
    worlds[name] = (wcfg, tok, teacher, student)
    prompts = [format_prompt(tok, p.question, instruction=wcfg.instruction) for p in problems]
    torch.manual_seed(SEED)
    ro = rollout.sample(student, tok, prompts, GROUP_SIZE, max_new_tokens=MAX_NEW_TOKENS)
    with torch.no_grad():
        a2 = rollout.sequence_logprobs(teacher, ro) - rollout.sequence_logprobs(student, ro)   # (R, T)
    mask = ro.response_mask.bool()                                                               # (R, T)
    r = torch.tensor(verifier_rewards(ro.texts, [p.answer for p in problems for _ in range(GROUP_SIZE)]))  # (R,)
    a2_by_world[name] = a2[mask].numpy()
    per_rollout[name] = masked_mean(a2, mask, dim=-1)                                           # (R,) per sequence
    right, wrong = per_rollout[name][r > 0], per_rollout[name][r == 0]
    by_verdict = " / ".join(f"{v.mean():+.2f}" if len(v) else "-" for v in (right, wrong))
    rows.append(f"| {name} | {len(ro)} | {r.mean():.0%} | {a2[mask].mean():+.2f} | {(a2[mask] < 0).float().mean():.0%} | "
                f"{(a2[mask] < -1).float().mean():.0%} | "
                f"{by_verdict} | {(per_rollout[name] < 0).float().mean():.0%} |")
    print(f"{name}, e.g. {ro.texts[0]!r}")
display(Markdown("\n".join(rows)))
viz.plot_value_histograms(a2_by_world, title="a2 on the student's own tokens: the teacher cannot read prose");
viz.plot_value_histograms({k: v.numpy() for k, v in per_rollout.items()}, bins=30, xlabel="mean a2 of a rollout",
                          title="a2 per rollout (mean over its tokens)");

# %% [markdown]
# **Why OPD collapses this student.** OPD is REINFORCE with the per-token advantage `A = a2`:
# each token's log-probability is pushed up by `A` where `A > 0` and down where `A < 0`. In the
# world where both assumptions hold, `a2` is small on most tokens: the teacher disagrees here
# and there, and the student moves towards it token by token. In the A1 graded world the mean
# `a2` of a rollout is large and negative in nearly every rollout, correct or wrong alike
# (compare the two columns of the table): the words of the prose style the teacher never saw get
# strongly negative `a2`, far larger than the small pushes up on the digits they share. So the
# first updates push the student's own format down in every rollout, its correct answers
# included, and the student loses its format before it has learnt the teacher's. A verifier
# gate cannot help here: it scales `A` by a positive `lambda_t` (or zeroes it) but never turns a
# push down into a push up, and the verdict of a correct prose rollout does not make its tokens
# any more likely to the teacher. What can help is showing the student the teacher's own format,
# which is what phased teacher sampling does.

# %% [markdown]
# ## 3. Teacher rollouts, filtered by the verifier
#
# While `w(k) > 0`, `ceil(rho * B)` prompts of the batch (at least one) also get `M` teacher
# rollouts at the student's temperature; the verifier keeps the correct ones
# ("verifier-endorsed"). With a teacher that is mostly right the acceptance rate is high; with
# the carry-forgetting teacher of notebook 03 (`teacher_noise=1`) it drops, and the filter is
# what keeps its wrong solutions out of `L_CE`.

# %%
wcfg, tok, teacher, student = worlds[f"A1 graded (style_gap={STYLE_GAP:g})"]
# In training only ceil(rho * B) prompts of a batch get teacher rollouts; here all NUM_PROMPTS
# do, so that the acceptance rates below rest on more than a handful of samples.
print(f"a {NUM_PROMPTS}-prompt batch at step 0 would send {teacher_prompt_count(0, NUM_PROMPTS, cfg)} "
      f"prompts to the teacher")
t_problems = problems
t_prompts = [format_prompt(tok, p.question, instruction=wcfg.instruction) for p in t_problems]
acceptance = {}
for name, t_model in [("teacher (clean)", teacher),
                      ("teacher_noise=1", load_tiny_pair(cfg=TinyWorldConfig(teacher_noise=1.0), verbose=False)[1])]:
    torch.manual_seed(SEED)
    t_ro = rollout.sample(t_model, tok, t_prompts, cfg.m, max_new_tokens=MAX_NEW_TOKENS)
    ok = verifier_rewards(t_ro.texts, [p.answer for p in t_problems for _ in range(cfg.m)])
    acceptance[name] = sum(ok) / len(ok)
    print(f"{name}: {len(t_problems)} prompts x M={cfg.m} rollouts, accepted {sum(ok):.0f}/{len(ok)}")
    if name == "teacher (clean)":
        accepted = t_ro.select([i for i, v in enumerate(ok) if v > 0])
        for text, v in list(zip(t_ro.texts, ok))[:3]:
            print(f"   {'kept   ' if v else 'dropped'} {text!r}")
viz.plot_labelled_bars(acceptance, ylabel="accepted fraction", fmt="{:.0%}",
                       title="verifier acceptance of teacher rollouts");

# %% [markdown]
# ## 4. The auxiliary loss on accepted teacher rollouts
#
#     L = L_SG + w(k) * L_CE,    L_CE = -(1 / N_T) * sum_t m^T_t * log pi_theta(y^T_t | h^T_t)
#
# a token-mean cross-entropy of the *student* on the teacher's accepted tokens: supervised
# fine-tuning on verifier-endorsed teacher text, which pulls the student's trajectories back to
# where the teacher's preferences mean something. With no accepted rollout, `L_CE = 0` (still
# connected to the graph, so backward works unchanged).

# %%
logp = rollout.sequence_logprobs(student, accepted)                   # (R_T, T), with grad
ce = losses.aux_ce_loss(logp, accepted.response_mask)
ce.backward()
grad_norm = math.sqrt(sum(float(p.grad.norm()) ** 2 for p in student.parameters() if p.grad is not None))
print(f"L_CE on {len(accepted)} accepted teacher rollouts ({int(accepted.response_mask.sum())} tokens): "
      f"{ce.item():.3f} nats/token, gradient norm {grad_norm:.2f}")
empty = losses.aux_ce_loss(logp, torch.zeros_like(accepted.response_mask))
print(f"no accepted rollout: L_CE = {empty.item()}, requires_grad = {empty.requires_grad}")
student.zero_grad(set_to_none=True)

# %% [markdown]
# ## 5. Cold start with and without PTS
#
# Both runs use the sign gate with the default coefficients (1.8 / 1.0) on the A1 graded
# world, from the same starting student, same seed and same prompts; only PTS differs:
# `gate_only` (no teacher rollouts) vs `sgopd` (gate + PTS with `K1`, `K2` scaled down to
# this short run). Each run is `STEPS` optimizer steps of `PROMPTS_PER_STEP` prompts x G
# rollouts, then an evaluation on `EVAL_PROBLEMS` held-out problems with `EVAL_N` samples each.
#
# A run folder that already holds a checkpoint would be *resumed* by the trainer, so each run
# starts by deleting its folder.

# %%
style_world = TinyWorldConfig(style_gap=STYLE_GAP)
pts = {"k1": PTS_K1, "k2": PTS_K2}
histories, seconds = {}, {}
for method in ("gate_only", "sgopd"):
    out_dir = RUNS / method
    shutil.rmtree(out_dir, ignore_errors=True)
    tok, teacher, student = load_tiny_pair(cfg=style_world, verbose=False)   # the same start for both
    world = World(tok, teacher, student, arithmetic_split("train"), arithmetic_split("eval")[:EVAL_PROBLEMS],
                  instruction=style_world.instruction)
    run_cfg = TrainConfig(method=method, steps=STEPS, prompts_per_step=PROMPTS_PER_STEP, group_size=GROUP_SIZE,
                          pts=pts, eval_every=0, eval_problems=EVAL_PROBLEMS, eval_n=EVAL_N, save_every=0,
                          seed=SEED, world={"style_gap": STYLE_GAP}, out_dir=str(out_dir))
    name = f"{method} ({'PTS' if run_cfg.pts.enabled else 'no PTS'})"
    t = time.perf_counter()
    histories[name] = Trainer(run_cfg, world=world, verbose=False).run()
    seconds[name] = time.perf_counter() - t

for name, h in histories.items():
    last = h[-1]
    print(f"{name:>20}: held-out avg@{EVAL_N} {last[f'eval_avg@{EVAL_N}']:.3f}, pass@{EVAL_N} "
          f"{last[f'eval_pass@{EVAL_N}']:.3f}; last-step k1 KL {last['kl_k1']:.2f}; {seconds[name]:.0f} s")
counts = {s: last[f"eval_problems_{s}"] for s in SKILLS if f"eval_problems_{s}" in last}
display(Markdown(skill_table({name: skills_from_metrics(h[-1], EVAL_N) for name, h in histories.items()},
                             counts, EVAL_N)))

# %%
viz.plot_learning_curves(histories, "kl_k1", smooth=1, title="k1 estimate of KL(student || teacher) on student rollouts");
viz.plot_learning_curves(histories, "reward_mean", smooth=5, title="training reward (student rollouts)");

# %% [markdown]
# What the PTS run did step by step: its weight `w(k)` and the teacher rollouts' acceptance rate.

# %%
pts_run = {k: v for k, v in histories.items() if "(PTS)" in k}
viz.plot_learning_curves(pts_run, "pts_w", smooth=1, title="w(k) in the PTS run");
viz.plot_learning_curves(pts_run, "teacher_accept_rate", smooth=1, title="teacher-rollout acceptance rate");

# %%
for name, h in histories.items():
    first = sum(m["reward_mean"] for m in h[:5]) / len(h[:5])
    last = sum(m["reward_mean"] for m in h[-5:]) / len(h[-5:])
    print(f"{name:>20}: training reward {first:.3f} (first 5 steps) -> {last:.3f} (last 5), "
          f"k1 KL {h[0]['kl_k1']:.2f} -> {h[-1]['kl_k1']:.2f}")

# %% [markdown]
# **Reading it.** PTS is meant to pull the student's trajectories back to the teacher's
# distribution, so watch the KL on the student's own rollouts: with PTS it should fall faster.
# Watch the reward too: in the A1 graded world the student's prose is far from anything the
# teacher has seen (section 2's table), so plain OPD first pulls the student out of its own
# style, and the reward can drop before it recovers; PTS adds correct teacher-style solutions
# while that happens. (In an earlier design of this
# world, with a student that was merely stopped early, every variant lost most of its accuracy
# in the first 20-40 steps, PTS included; docs/tiny_world.md records that search.) With one
# seed and a few dozen steps, treat the numbers above as a demonstration of the machinery, not
# evidence; notebook 06 and `make reproduce` are the place for seeds and spread.

# %% [markdown]
# ## What was measured
#
# Did phased teacher sampling rescue the student in the seeded study? The study ran PTS alone
# (no gate) on the A1 graded world in three settings (the default schedule, a longer warm phase
# with more teacher prompts, a teacher never phased out; configs/studies/pts_a1g.yaml) with the
# study protocol (200 steps x 16 prompts x 8 rollouts, the whole skill-balanced split, n = 8),
# beside the main table's OPD on the same world and seeds. A setting **rescued** the student when
# the 95% interval of its final avg@8 lies above the start (a mean just above it is not enough)
# *and* it is higher than OPD after Holm's correction over the three settings (the rule of
# docs/results.md, `worlds_report.pts_rescued`). The cell reads the committed run summaries and prints the seeds each row holds
# (the study has finished: three seeds per setting). A checkout without these summaries gets a
# line saying so, and OPD's row is still printed (the one readout that tolerates a missing study).

# %%
RESULTS = REPO_ROOT / "results" / "runs"     # results/runs/<study>/*.json of the checkout (Colab: the clone)
st = measured.load_measured(RESULTS)          # FileNotFoundError, naming the folder, if the summaries are missing
lines, rescued = measured.pts_rows(st)
measured.show(lines)
if st["pts_a1g"].cells:
    print("settings that rescued the student:", ", ".join(rescued) or "none")
else:
    print("pts_a1g: no summary yet in", RESULTS / "pts_a1g", "- the study has not reached it; no verdict on PTS")

# %% [markdown]
# **Reading it.** In the study, every method ends near or below the start on this world, OPD
# included: the table's first row shows by how much for OPD. Phased teacher sampling is the one
# lever that lifts the student a little, and the rows above say whether any setting lifted it
# enough to count as a rescue. A rescue needs both conditions: a setting that only loses less
# than OPD has not rescued anything. docs/results.md holds the full report.
