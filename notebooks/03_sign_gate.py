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
#     min_images: 8
# ---

# %% [markdown]
# # 03 · The sign-consistency gate: when to trust the teacher
#
# **What you will learn**
#
# * the two signals the gate compares: the verifier's `a1` (one number per rollout) and the
#   teacher's `a2` (one number per token), [docs/method.md §3](../docs/method.md#3-the-two-signals);
# * the four token classes (consensus, conflict type I, conflict type II, neutral) and the
#   per-token coefficient `lambda_t` they select, [docs/method.md §4](../docs/method.md#4-the-sign-consistency-gate), on a hand-made three-rollout
#   group, then on real rollouts of a tiny world whose teacher is confidently wrong on carries;
# * what one update does to a *correct* carry inside a *wrong* rollout under plain OPD, SG-OPD's
#   default gate, OPDVR, the four-cell gate and "correct rollouts only", and why a per-rollout
#   verdict cannot say which token was wrong;
# * why plain OPD, ExOPD and conflict masking are just *settings* of the same gate;
# * how `lambda_e`, `lambda_i`, `tau` and the `a1` mode change the picture, with sliders that
#   re-colour saved rollouts live (no model runs again);
# * what the gates did, token by token, in the seeded study's training runs on the world where the
#   teacher is wrong exactly where the student is right (the last section, from the committed
#   summaries in `results/runs/`);
# * why a method that mixes the teacher's push and the reward is decided by each signal's share of
#   the gradient, measured on four batches, before and after balancing, and what the mixing study
#   found.
#
# **Time:** about a minute on a 2-core laptop CPU (default mode; most of it the teacher probe's
# table); no GPU.

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
    from google.colab import output
    output.enable_custom_widget_manager()   # ipywidgets sliders in Colab

# %% tags=["parameters"]
SMOKE = os.environ.get("SGOPD_SMOKE") == "1"   # CI smoke run: same cells, smaller sizes

NUM_PROMPTS = 4 if SMOKE else 16     # tiny-world prompts for the real rollouts
GROUP_SIZE = 4 if SMOKE else 8       # G rollouts per prompt (the paper uses 8)
MAX_NEW_TOKENS = 40                  # response budget
TEACHER_NOISE = 1.0                  # 1.0: the teacher forgets every carry (assumption A2 broken)
SEED = 0

# %%
import torch
from IPython.display import Markdown, display
from transformers.utils import logging as hf_logging

from sgopd_lite import rollout, viz
from sgopd_lite.assets import project_dir
from sgopd_lite.data import arithmetic_split, format_prompt
from sgopd_lite.gate import GateConfig, TokenClass, group_advantage, sign_gate
from sgopd_lite.study import measured
from sgopd_lite.worlds.tiny import TinyWorldConfig, load_tiny_pair
from sgopd_lite.verifier import rewards as verifier_rewards

REPO_ROOT = project_dir()   # the checkout holding the current folder, else the current folder

hf_logging.disable_progress_bar()
torch.manual_seed(SEED)

# %% [markdown]
# ## 1. Two signals
#
# * **Teacher, per token:** `a2_{i,t} = log pi_T(y_{i,t}) - log pi_old(y_{i,t})` (notebook 01):
#   positive = the teacher pushes this token up, negative = down.
# * **Verifier, per rollout:** `a1_i = r_i - mean_G(r)` over the G rollouts of the same prompt
#   (`a1_mode="group"`, the default), or `a1_i = 2 r_i - 1` (`a1_mode="sign"`). Only its
#   **sign** matters: + means "this rollout should become more likely", - "less likely".
#   In group mode a group whose rollouts are all right (or all wrong) has `a1 = 0`: the verifier
#   gives no evidence there.
#
# ## 2. Four classes, one coefficient each
#
# | class | condition | lambda_t | default |
# |---|---|---|---|
# | consensus | sign(a1) = sign(a2), abs(a2) > tau, a1 != 0 | lambda_e (extrapolate, >= 1) | 1.8 |
# | conflict type I | a1 > 0 (correct rollout) but a2 < -tau: the teacher pushes a token of a *right* answer down | lambda_i (interpolate, in [0, 1]) | 1.0 |
# | conflict type II | a1 < 0 (wrong rollout) but a2 > tau: the teacher pushes a token of a *wrong* answer up | lambda_i | 1.0 |
# | neutral | a1 = 0, or abs(a2) <= tau | lambda_n | 1.0 |
#
# and the per-token advantage is `A = lambda_t * a2` (reference `"old"`, the default; see
# section 4 for the G-OPD form with another reference).
#
# ### A hand-made group of three rollouts
#
# Question `7+5`, gold answer `12`. The teacher below has the habit of our noisy tiny teacher:
# it forgets carries, so it prefers `7+5=2`. The student wrote three answers:
#
# * rollout 0: `7+5=12` (correct). The teacher dislikes the carried `1`: **conflict type I**.
# * rollout 1: `7+5=13` (wrong). The teacher dislikes `1` and `3` too, and the gate calls both
#   **consensus** (the verdict says "wrong", the teacher says "down"), so both get the
#   extrapolated `lambda_e = 1.8`. For the `3`, the wrong digit, that is right. The `1` is the
#   *correct* carry (12 and 13 share it): the teacher pushes it down only because it forgets
#   carries, and the gate pushes it down 1.8x harder than OPD. "Consensus" names an agreement
#   of two signs, not a correct push; section 2b measures what it does to that carry.
# * rollout 2: `7+5=2` (wrong). The teacher *likes* the `2`: **conflict type II**.
#
# Log-probs are written by hand (R = 3 rollouts, T = 7 positions; rollout 2 is one token
# shorter, so its last position is masked out).

# %%
tokens = [["7", "+", "5", "=", "1", "2", "<|end|>"],
          ["7", "+", "5", "=", "1", "3", "<|end|>"],
          ["7", "+", "5", "=", "2", "<|end|>"]]
old_logp = torch.tensor([[-0.10, -0.05, -0.10, -0.05, -0.90, -0.40, -0.10],
                         [-0.10, -0.05, -0.10, -0.05, -0.90, -1.20, -0.10],
                         [-0.10, -0.05, -0.10, -0.05, -1.60, -0.10, 0.00]])     # (3, 7) log pi_old
teacher_logp = torch.tensor([[-0.05, -0.02, -0.05, -0.02, -2.30, -0.20, -0.05],
                             [-0.05, -0.02, -0.05, -0.02, -2.30, -4.00, -0.05],
                             [-0.05, -0.02, -0.05, -0.02, -0.30, -0.05, 0.00]])  # (3, 7) log pi_T
mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1],
                     [1, 1, 1, 1, 1, 1, 1],
                     [1, 1, 1, 1, 1, 1, 0]])                                       # (3, 7)
rewards = torch.tensor([1.0, 0.0, 0.0])                                            # (3,) verifier
group_ids = torch.tensor([0, 0, 0])                                                # one prompt

print("a1 (group mode):", group_advantage(rewards, group_ids, "group").tolist())
print("a1 (sign mode): ", group_advantage(rewards, group_ids, "sign").tolist())
out = sign_gate(teacher_logp, old_logp, rewards, group_ids, mask, cfg=GateConfig())
rows = ["| rollout | r | a1 | token | a2 | class | lambda_t | A = lambda_t a2 |", "|---|---|---|---|---|---|---|---|"]
for i, toks in enumerate(tokens):
    for t, tok in enumerate(toks):
        rows.append(f"| {i} | {rewards[i]:.0f} | {out.a1[i]:+.2f} | `{tok}` | {out.a2[i, t]:+.2f} | "
                    f"{TokenClass(int(out.token_class[i, t])).name.lower()} | {out.lambda_t[i, t]:.1f} | "
                    f"{out.advantage[i, t]:+.3f} |")
display(Markdown("\n".join(rows)))
print({k: round(v, 3) for k, v in out.metrics.items()})

# %% [markdown]
# The same group as pictures (these helpers take the records the trainer writes to
# `rollouts.jsonl`; `viz.gate_records` builds them by calling `gate.sign_gate`):

# %%
hand = viz.GateInputs(teacher_logp, old_logp, rewards, group_ids, mask, tokens)
hand_records, _ = viz.gate_records(hand, GateConfig())
viz.plot_gate_records(hand_records, color_by="class", title="hand-made group: gate classes");
viz.plot_gate_records(hand_records, color_by="advantage", title="hand-made group: advantage A = lambda_t * a2");

# %% [markdown]
# ### 2b. What one step does to the correct carry
#
# The `1` right after `7+5=` is written by rollout 0 (correct, so conflict type I) and by
# rollout 1 (wrong, so consensus), and the teacher pushes it down in both. How much less likely
# does one update make it? `viz.one_step_change` takes one SGD step (learning rate 1) of the
# sampled loss `losses.policy_gradient_loss` with the gate's advantage, on the simplest model
# that shares what these rollouts share: one free softmax per prefix, started at the `log pi_old`
# above. Rollouts 0 and 1 (and rollout 2's `2`) sit in the same context `7+5=`, so all three
# tokens move the carry's probability. A real network also shares parameters across contexts;
# this toy isolates what the gate decides. The settings: plain OPD, SG-OPD's default gate, OPDVR's
# gate (every verdict counts, conflict tokens zeroed), the four-cell gate with `wrong_down = 1`
# (consensus on wrong rollouts left at OPD's weight), and "correct rollouts only".

# %%
from sgopd_lite.gate import CELLS

carry_settings = {
    "plain OPD": GateConfig.opd(),
    "SG-OPD default": GateConfig(),
    "OPDVR": GateConfig.opdvr(),
    "four cells, wrong_down = 1": GateConfig(wrong_down=1.0),
    "correct rollouts only": GateConfig.correct_only(),
}
carry = {}
rows = ["| setting | cells (correct_up, correct_down, wrong_up, wrong_down) | A of `1` in rollout 0 / 1, of `2` in rollout 2 | "
        "change of log pi(`1` after `7+5=`) | vs OPD |", "|---|---|---|---|---|"]
for name, cfg in carry_settings.items():
    gated = sign_gate(teacher_logp, old_logp, rewards, group_ids, mask, cfg=cfg)
    carry[name] = float(viz.one_step_change(hand, cfg)[1, 4])
    cells = ", ".join(f"{cfg.cells()[c]:g}" for c in CELLS)
    rows.append(f"| {name} | {cells} | {gated.advantage[0, 4] + 0:+.2f} / {gated.advantage[1, 4] + 0:+.2f} / "
                f"{gated.advantage[2, 4] + 0:+.2f} | {carry[name]:+.4f} | {carry[name] / carry['plain OPD']:.2f}x |")
display(Markdown("\n".join(rows)))
viz.plot_labelled_bars(carry, ylabel="change of log pi", fmt="{:+.3f}",
                       title="one SGD step: log pi of the correct carry `1` after `7+5=`");

# %% [markdown]
# Every setting makes the correct carry less likely, and SG-OPD's default does so the most: it
# amplifies rollout 1's push (wrong & down, 1.8x) and keeps rollout 0's (lambda_i = 1). Setting
# `wrong_down = 1` brings it back to OPD; OPDVR and "correct only" each drop one of the two
# pushes but keep the other. None can protect the `1` while still pushing the `3` down,
# because **the verdict is per rollout**: "rollout 1 is wrong" is true of `7+5=13` as a whole and
# says nothing about which of its tokens made it wrong. Its correct `1` and its wrong `3` get
# the same sign of `a1`, and the same teacher direction, so they land in the same cell. Telling
# them apart needs a per-token judge (the tiny world has one, the oracle behind
# `gate.gate_evidence`; real tasks do not), which is why this project exposes the four cells for a
# sweep to ask which one carries the harm, instead of choosing for you.
#
# The explorer below shows the same consequence for any setting you choose: the number under the
# sliders is this change for rollout 1's carry, and "colour = change" paints every token by its
# one-step change.

# %%
viz.gate_explorer(hand, cfg=GateConfig(), color_by="class", watch=(1, 4));

# %% [markdown]
# **Reading the two conflict types.**
#
# * *Type I* (red): the rollout is **correct**, yet the teacher pushes one of its tokens down.
#   Plain OPD follows the teacher and makes the right answer less likely. With the default
#   `lambda_i = 1` (SG-OPD's best reported setting) the gate does **not** damp that push at all:
#   conflict tokens keep OPD's advantage. Only `lambda_i < 1` damps it, and `0` removes it.
# * *Type II* (orange): the rollout is **wrong**, yet the teacher pushes one of its tokens up.
#   Sometimes that is the teacher being wrong (the `2` of `7+5=2`); often it is harmless: in a
#   wrong rollout most tokens (`7`, `+`, `5`, `=`) are fine and the teacher is simply a bit more
#   confident about them. That is why `tau`, a dead zone on `|a2|`, exists: tiny pushes carry no
#   evidence either way and become neutral.

# %%
with_tau = sign_gate(teacher_logp, old_logp, rewards, group_ids, mask, cfg=GateConfig(tau=0.1))
print("classes with tau = 0:  ", out.token_class.tolist())
print("classes with tau = 0.1:", with_tau.token_class.tolist())
print("fractions, tau = 0.1:", {k: round(v, 2) for k, v in with_tau.metrics.items() if k.startswith("frac_")})

# %% [markdown]
# ## 3. No evidence: all-right and all-wrong groups, and the a1 mode
#
# If every rollout of a prompt is correct, `r - mean(r) = 0`: in group mode the verifier says
# nothing about which rollout is better, so every token is neutral and gets plain OPD
# (`lambda_n = 1`). Sign mode reads each verdict alone and treats every correct rollout as
# positive evidence.

# %%
all_right = torch.ones(3)
for mode in ("group", "sign"):
    o = sign_gate(teacher_logp, old_logp, all_right, group_ids, mask, cfg=GateConfig(a1_mode=mode))
    print(f"all-correct group, a1_mode={mode!r}: a1 = {o.a1.tolist()}, "
          f"consensus {o.metrics['frac_consensus']:.0%}, conflict I {o.metrics['frac_conflict_i']:.0%}, "
          f"neutral {o.metrics['frac_neutral']:.0%}")

# %% [markdown]
# ## 4. Plain OPD, ExOPD and conflict masking are settings of the same gate
#
# The general advantage (G-OPD form, [docs/method.md §5](../docs/method.md#5-advantage-and-loss)) is
# `A = (log pi_T - log pi_old) + (lambda_t - 1) (log pi_T - log pi_ref)`:
#
# * `GateConfig.opd()`: every lambda = 1, so `A = a2` on every token (plain OPD);
# * `GateConfig.exopd(lam)`: every lambda = `lam` with `pi_ref` = the initial student
#   (ExOPD / G-OPD). With `reference="old"` the same setting is a uniform `A = lam * a2`;
# * `GateConfig.conflict_masking()`: `lambda_e = 1`, `lambda_i = 0`: drop conflict tokens,
#   plain OPD elsewhere (close to OPDVR's ReLU gate);
# * `GateConfig()`: SG-OPD's best reported setting, `lambda_e = 1.8`, `lambda_i = 1.0`.
#
# Checked exactly on the hand-made group:

# %%
a2 = teacher_logp - old_logp
m = mask.bool()
opd = sign_gate(teacher_logp, old_logp, rewards, group_ids, mask, cfg=GateConfig.opd())
print("plain OPD: A == a2 on every response token:", torch.allclose(opd.advantage[m], a2[m]))

ref_logp = old_logp - 0.2          # pretend the student has moved since its initial checkpoint
ex = sign_gate(teacher_logp, old_logp, rewards, group_ids, mask, ref_logp=ref_logp, cfg=GateConfig.exopd(1.25))
expected = a2 + 0.25 * (teacher_logp - ref_logp)
print("ExOPD(1.25), reference = initial: A == a2 + 0.25 (log pi_T - log pi_ref):",
      torch.allclose(ex.advantage[m], expected[m]))
ex_old = sign_gate(teacher_logp, old_logp, rewards, group_ids, mask, cfg=GateConfig.exopd(1.25, reference="old"))
print("ExOPD(1.25), reference = old: A == 1.25 a2:", torch.allclose(ex_old.advantage[m], 1.25 * a2[m]))

cm = sign_gate(teacher_logp, old_logp, rewards, group_ids, mask, cfg=GateConfig.conflict_masking())
conflict = (cm.token_class == TokenClass.CONFLICT_I) | (cm.token_class == TokenClass.CONFLICT_II)
print("conflict masking: A == 0 on the", int(conflict.sum()), "conflict tokens:", bool((cm.advantage[conflict] == 0).all()),
      "and A == a2 elsewhere:", torch.allclose(cm.advantage[m & ~conflict], a2[m & ~conflict]))

settings = {
    "plain OPD": GateConfig.opd(),
    "ExOPD 1.25 (reference old: uniform scaling)": GateConfig.exopd(1.25, reference="old"),
    "conflict masking (1.0 / 0.0)": GateConfig.conflict_masking(),
    "SG-OPD (1.8 / 1.0)": GateConfig(),
    "SG-OPD (1.8 / 0.5), tau 0.1": GateConfig(lambda_i=0.5, tau=0.1),
}
viz.plot_gate_settings(hand, settings, color_by="advantage");

# %% [markdown]
# ## 5. Real rollouts: a tiny world whose teacher forgets carries
#
# `TinyWorldConfig(teacher_noise=1)` trains the teacher on solutions that forget the carry of
# every carrying addition (`7+5=2`), so it is *confidently wrong* on exactly those digits,
# while the verifier still knows the right answer: OPD's assumption A2 ("every teacher token
# preference is trustworthy") is broken on purpose. Type I conflicts should gather on the digits
# right after a carrying `+`.

# %%
wcfg = TinyWorldConfig(teacher_noise=TEACHER_NOISE)
tok, teacher, student = load_tiny_pair(cfg=wcfg)
problems = arithmetic_split("eval")[:NUM_PROMPTS]
prompts = [format_prompt(tok, p.question, instruction=wcfg.instruction) for p in problems]

torch.manual_seed(SEED)
ro = rollout.sample(student, tok, prompts, GROUP_SIZE, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0)
r = torch.tensor(verifier_rewards(ro.texts, [p.answer for p in problems for _ in range(GROUP_SIZE)]))
with torch.no_grad():
    t_logp = rollout.sequence_logprobs(teacher, ro)    # (R, T)
    o_logp = rollout.sequence_logprobs(student, ro)    # (R, T)
inputs = viz.GateInputs.from_rollouts(tok, ro, t_logp, o_logp, r)   # saved: everything the gate needs
records, metrics = viz.gate_records(inputs, GateConfig())

print(f"{len(ro)} rollouts, {r.mean():.0%} correct; "
      f"{metrics['frac_rollouts_no_evidence']:.0%} of rollouts are in all-right/all-wrong groups (a1 = 0)")
viz.plot_labelled_bars({"consensus": metrics["frac_consensus"], "conflict I": metrics["frac_conflict_i"],
                        "conflict II": metrics["frac_conflict_ii"], "neutral": metrics["frac_neutral"]},
                       ylabel="fraction of response tokens", fmt="{:.1%}",
                       title=f"gate classes on {len(ro)} student rollouts (teacher_noise={TEACHER_NOISE})");

# %% [markdown]
# The groups with mixed verdicts (the only ones with evidence in group mode), rollout by rollout:

# %%
mixed = [g for g in range(len(problems)) if 0 < r[ro.group_ids == g].sum() < GROUP_SIZE]
shown_groups = mixed[:2] if mixed else [0]
shown = [i for i in range(len(ro)) if int(ro.group_ids[i]) in shown_groups]
print("questions:", [problems[g].question + " = " + problems[g].answer for g in shown_groups])
viz.plot_gate_records([records[i] for i in shown], color_by="class",
                      title=f"groups {shown_groups}: gate classes (SG-OPD defaults)");

# %% [markdown]
# Some type I conflicts in context (`[x]` marks the token): a rollout graded correct, and a
# token of it that the teacher pushes down. Two different things show up:
#
# * the teacher's own mistake: a carry digit it learned to forget (the `1` of `7+6=14`);
# * a correct *final* answer reached through a wrong step (`4+1=7 / 7+3=8 / \boxed{8}`) or
#   followed by junk after the box: the verifier grades only the final answer, so the whole
#   rollout gets `a1 > 0`, and here the teacher is *right* to push the wrong step down.
#
# The gate cannot tell these apart: `lambda_i < 1` damps both. That is the price of a
# rollout-level verifier. (Our observation on this toy task, not a claim of the paper.)

# %%
found = 0
for rec in records:
    for t, c in enumerate(rec["token_class"]):
        if c == TokenClass.CONFLICT_I and found < 6:
            text = "".join(rec["tokens"][:t]) + "[" + rec["tokens"][t] + "]" + "".join(rec["tokens"][t + 1:])
            print(f"a2 {rec['a2'][t]:+.2f}: {text!r}")
            found += 1
if not found:
    print("no type I conflict in this sample (try more prompts)")

# %% [markdown]
# ## 6. Explore the gate live
#
# The sliders re-run `gate.sign_gate` on the saved inputs of the groups above (milliseconds; no
# model runs) and redraw when you release a slider. Things to try: `lambda_i = 0` (conflict
# masking) and watch the red/orange tokens' advantage vanish in the "advantage" colouring; raise
# `tau` and watch the small type II pushes in wrong rollouts turn neutral; switch `a1 mode` to
# `sign` and see all-right groups gain evidence; "change" colours every token by its change of
# log pi after one SGD step under the chosen setting (`viz.one_step_change`). In a headless run
# (CI, GitHub's viewer, the executed copies in `docs/notebooks/`) you see the static starting
# picture.

# %%
viz.gate_explorer(inputs, indices=shown, cfg=GateConfig(), color_by="class");

# %% [markdown]
# **Take-aways.** The gate never changes *which direction* a token is pushed (the sign of `A`
# is the sign of `a2` with the default reference); it changes *how hard*: harder where the
# verifier's verdict on the rollout has the teacher's sign (`lambda_e`), and, only with
# `lambda_i < 1`, softer where they differ (the default `lambda_i = 1` leaves them at plain
# OPD). A verdict is per rollout, so "consensus" can push a correct token of a wrong rollout
# down harder than OPD (section 2b). Notebook 05 trains
# with it, notebook 06 sweeps its two coefficients.

# %% [markdown]
# ## What was measured
#
# Section 2b's question, asked of real training runs: where the teacher is wrong, what did each
# gate do to its push? The seeded study trained every method on the **A2 complementary** world
# (the teacher forgets every borrow, the student forgets carries but has the borrow) and logged,
# at every step, the tiny world's per-token evidence: at each position up to a rollout's first
# mistake the world knows the correct next token, so it knows where the teacher's top token is
# wrong, and what the gate did to the push there (zeroed, shrunk, left as OPD's, amplified), and
# what it zeroed where the top token was right. That last column is not a cost: before the first
# mistake the sampled token is the correct one, so a push down there (a2 < 0) is a push against a
# correct token even where the teacher's top token is right, and zeroing it helps; the columns
# say what the gate did where the top token is wrong or right, not whether it helped. Then the gate's thresholds
# (`lambda_e` x `lambda_i` x `a1_mode`) on the same world. The cell reads the committed run
# summaries and prints the seeds each row holds (the study has finished: five seeds per method,
# two per threshold cell).

# %%
RESULTS = REPO_ROOT / "results" / "runs"     # results/runs/<study>/*.json of the checkout (Colab: the clone)
st = measured.load_measured(RESULTS)          # FileNotFoundError, naming the folder, if the summaries are missing
measured.show(measured.evidence_rows(st, "a2c"))
measured.show(measured.threshold_rows(st, evidence=True))

# %% [markdown]
# **Reading it.** In the study, the default gate (1.8 / 1.0) zeroes none of the teacher's wrong
# pushes: with `lambda_i = 1` a conflict keeps OPD's push, and in `group` mode the rollouts of
# all-equal groups carry no evidence at all. OPDVR's gate (`sign` mode, `lambda_i = 0`) zeroes
# most of them, and a share of the pushes where the top token is right too. Neither protects the student's
# borrow, for section 2b's reason: the verdict is per rollout. In a correct rollout the teacher's
# push against the right borrow digit is a conflict and can be dropped; in a rollout that failed
# elsewhere (for instance on a carry, which this student almost always gets wrong) the same
# push on the same right digit agrees with the verdict and passes, amplified by `lambda_e`. `make demo` draws one
# such group token by token (`viz.plot_gate_change`); notebook 05 trains the gate against OPD on
# this world, notebook 06 sweeps its thresholds, and docs/results.md holds the full report.

# %% [markdown]
# ## 7. Four places a verifier can act, on one group
#
# A verdict per rollout cannot say which step was wrong, so the sign gate has nowhere better to
# put it. The verifier can act elsewhere, and `sgopd_lite/advantage.py` forms every such
# advantage in one place (`method_advantage`):
#
# * **on the teacher** (`teacher_probe`): before trusting the teacher on a prompt, sample it 4
#   times and verify; where fewer than 2 answers are right, train that prompt with GRPO's
#   advantage instead;
# * **on each step** (`step_gate`, `first_error_gate`): the tiny world checks every line
#   `a op b = c` on its own operands (`data.check_steps`), so each token can carry its own
#   step's verdict, or "correct" up to the first wrong step and "wrong" after it;
# * **as a reward** (`hybrid`): OPD's advantage plus c times GRPO's;
# * **with an oracle** (`oracle_gate`, a bound no real task has): drop the teacher's push
#   wherever its top token is not the known correct one.
#
# Below, one group of the starting student's rollouts on the A2 complementary world (the teacher
# forgets every borrow, the student has it), the same two rollouts as `make demo`'s, with the
# advantage each place gives to every token. Framed cells: the teacher's top token is wrong.

# %%
from sgopd_lite.config import TrainConfig
from sgopd_lite.demo import DEMO_WORLD, gate_change_example
from sgopd_lite.train import load_world

a2c_world = load_world(TrainConfig(method="opd", world=dict(DEMO_WORLD)), verbose=False)
pair = gate_change_example(a2c_world, GateConfig.opdvr(), roles=True)
viz.plot_gate_change(pair, roles=True);

# %% [markdown]
# **Reading it.** In the wrong rollout the first line (`10-5=5`) is right and the second is
# wrong. The rollout's verdict lets the teacher's pushes against the right borrow digit through
# (OPDVR's gate: "wrong rollout, pushed down" is consensus). The step checker knows that line is
# right, so the step and first-error gates drop those pushes and keep the one against the wrong
# digit of the second line. The teacher probe never lets this teacher near the prompt: it gets
# fewer than 2 of 4 samples right on a borrow, so the whole group gets GRPO's advantage. The
# hybrid keeps every teacher push and adds the reward's credit on top. Which of these keeps the
# student's borrow through training is the verifier-roles study's question (docs/results.md,
# "Where must the verifier act?"): on this world at 200 steps only the probe does, clearly above
# OPD; on A2 shared error it ends below GRPO, and at 1000 steps GRPO's borrow passes it.

# %% [markdown]
# ## 8. Two signals, one update
#
# The probe and the hybrid train on the teacher's push and the reward at once, through one loss,
# one gradient clip and one AdamW. Which one moves the weights is decided by each signal's share
# of the **gradient**, not by its share of prompts or its mean |A| per token: the teacher's push is
# large on a few tokens where student and teacher disagree, the reward is spread over every token,
# most of them nearly certain, where the gradient of log pi is close to 0
# ([docs/method.md §14](../docs/method.md#14-mixing-two-signals-routes-their-gradients-and-how-to-balance-them)).
# `study/balance.py` measures both on the first four batches of the starting student (a batch may
# hold no prompt the teacher fails), with no optimizer step:
# the hybrid at c = 1 as the roles study ran it, then with a gradient budget that gives each
# signal half of the norm (`mix.budget=share`, `mix.reward_share=0.5`); the teacher probe as the
# roles study ran it, then balanced as the mixing study's pilot chose (`gate.a2_scale=sign`: each
# trusted token gets the sign of the teacher's push, so its few large pushes no longer fill the
# gradient).

# %%
import tempfile

from sgopd_lite.config import load_config
from sgopd_lite.study import balance

MEASURED_ARMS = {"hybrid c = 1": ["method=hybrid", "hybrid_c=1"],
                 "hybrid c = 1, budget 50 / 50": ["method=hybrid", "hybrid_c=1", "mix.budget=share", "mix.reward_share=0.5"],
                 "teacher probe": ["method=teacher_probe"],
                 "teacher probe, sign of a2 (balanced)": ["method=teacher_probe", "gate.a2_scale=sign"]}
shares = {}
with tempfile.TemporaryDirectory() as tmp:
    for label, extra in MEASURED_ARMS.items():
        cfg = load_config(str(project_dir() / balance.WORLD_CONFIGS["a2c"]),
                          [f"prompts_per_step={NUM_PROMPTS}", f"group_size={GROUP_SIZE}",
                           f"out_dir={tmp}/{extra[0]}", "log_rollouts=0", *extra])   # the probes share one table
        shares[label] = balance.measure_arm(cfg, batches=4)
display(Markdown(balance.table({"worlds": {"a2c": shares}})))

# %% [markdown]
# **Reading it.** *reward share* is the reward's part of the two gradient norms before anything
# is done to them; *share sent* is its part of what the optimizer receives. At c = 1 the teacher
# carries most of the gradient though the reward touches every token; the budget rescales the two
# parts to half each (and caps their sum at the clip). The probe sends the reward only the prompts
# the teacher fails (*of rollouts*), and the teacher's large pushes on the rest leave the reward
# even less of the gradient than of the rollouts; with the sign of a2 the teacher route's norm
# shrinks several times and the reward's share of the gradient rises to its share of the
# rollouts or beyond (docs/results.md has the same table over eight batches and three worlds). The seeded study that asks whether such a
# balance makes a mixed method never worse than the better of OPD and GRPO, per world and skill, is
# docs/results.md, "Never worse than the better of OPD and GRPO?". The cell below reads its
# committed summaries (`results/runs/mix/`): every arm at 200 and 1000 steps with the seeds in so
# far, and, once every run is in, the never-worse table (an arm holds in a world and horizon when it
# is shown within 5 points of both OPD and GRPO on avg@8 and on every skill; it breaks where it is
# clearly more than 5 points below one of them).

# %%
RESULTS = REPO_ROOT / "results" / "runs"     # results/runs/<study>/*.json of the checkout (Colab: the clone)
measured.show(measured.mix_rows(RESULTS))
