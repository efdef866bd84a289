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
#     min_images_without_shared_data: 1
# ---

# %% [markdown]
# # 02 · The verifier: extracting, grading and rewarding final answers
#
# **What you will learn**
#
# * the verifier is a chain of four small functions (`sgopd_lite.verifier`):
#   `extract_answer` -> `normalize_answer` -> `grade` -> `reward`, each testable on a string;
# * which answer counts (the *last* `\boxed{}`, nested braces balanced; else GSM8K's `#### n`;
#   an unclosed box is no answer) and why the "last number in the text" fallback is opt-in;
# * why grading never raises and never hangs, even on `\boxed{10^{10^{10^{10}}}}`: math-verify
#   runs in a worker process with a hard time bound;
# * how it behaves on real benchmark text: MATH-500 and GSM8K gold solutions (from the optional
#   real-data folder, when present), against their own answers and against shuffled ones.
#
# In SG-OPD the verifier's binary verdict `r` is the *trust signal*: its sign decides, token by
# token, whether the teacher's push is extrapolated or damped (notebook 03), and it decides
# which teacher rollouts are kept for phased teacher sampling (notebook 04).
#
# **Time:** about 10 seconds on a 2-core laptop CPU (default mode); no GPU, no model.

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

REAL_ROWS = 40 if SMOKE else 500     # MATH-500 / GSM8K rows graded (500 = all of MATH-500)
TIMEOUT = 1.0                        # seconds math-verify may spend on one answer here
DATA_DIR = None                      # None: sgopd_lite.data.real_data_dir() (SGOPD_DATA_DIR); or a folder

# %%
import time
from pathlib import Path

from IPython.display import Markdown, display

from sgopd_lite import viz
from sgopd_lite.data import load_jsonl, real_data_dir
from sgopd_lite.verifier import Verifier, extract_answer, normalize_answer, reward

# %% [markdown]
# ## 1. Extraction: which string is the answer?
#
# `extract_answer(text)` returns the content of the **last** `\boxed{...}` (or `\fbox{...}`),
# with nested braces balanced by a linear scan; if there is none, the number after the last
# GSM8K `####`; otherwise `None`. A last box that is never closed (a rollout cut off by the
# token budget) gives `None`: the verifier does not fall back to an earlier box, because the
# model had not committed to that one. The last-number fallback is opt-in.

# %%
cases = [
    ("plain", r"15-4=11, 11+16=27, so \boxed{27}", False),
    ("nested braces", r"so $x = \boxed{\frac{1}{2}}$.", False),
    ("box in a box", r"\boxed{\boxed{7}}", False),
    ("last box wins", r"first \boxed{1}, then I corrected it: \boxed{2}", False),
    ("\\fbox", r"answer: \fbox{3}", False),
    ("\\boxed without braces", r"The answer is \boxed 5.", False),
    ("escaped braces: a set", r"\boxed{\{1,2\}}", False),
    ("GSM8K style", "She pays 2*617 = 1234.\n#### 1,234", False),
    ("box beats ####", "#### 5\n" + r"\boxed{6}", False),
    ("unbalanced last box", r"\boxed{1} and then \boxed{2", False),
    ("unbalanced, then ####", "\\boxed{3\n#### 4", False),
    ("no answer", "so it is 17 apples", False),
    ("no answer, fallback on", "so it is 17 apples", True),
    ("not a command", r"\boxedx{3}", False),
]
rows = ["| case | text | fallback | extract_answer |", "|---|---|---|---|"]
for name, text, fallback in cases:
    shown = text.replace("\n", "⏎").replace("|", "\\|")
    rows.append(f"| {name} | `{shown}` | {fallback} | `{extract_answer(text, fallback_last_number=fallback)!r}` |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## 2. Normalisation: only rewrites that cannot turn a wrong answer into a right one
#
# `normalize_answer` strips whitespace, `$...$` / `\(...\)` delimiters and a final period,
# LaTeX spacing (`\,` `\!`), maps `\dfrac` to `\frac`, and removes thousands separators only
# when the whole answer is one number (`1,234` -> `1234`, but `1,2` is a set or an interval).

# %%
for raw in [" $7$. ", "1,234,567", "1{,}000", r"1\,000", "1,2", "(1,234)", r"\dfrac{1}{2}", r"x\!=\!3"]:
    print(f"{raw!r:>18} -> {normalize_answer(raw)!r}")

# %% [markdown]
# ## 3. Grading and reward
#
# `grade(completion, gold)`: equal strings after normalisation are correct at once (no sympy);
# anything else goes to math-verify, `verify(parse($gold$), parse($pred$))`, in a worker
# process. `reward` turns the verdict into a number: binary 1 / 0 by default (the paper's
# setting), or any pair such as +1 / -1.
#
# One `Verifier` is created here with a short time budget, and used as a context manager so its
# worker process is stopped at the end.

# %%
ver = Verifier(timeout=TIMEOUT)
grading = [
    (r"\boxed{27}", "27"),
    (r"\boxed{0.5}", r"\frac{1}{2}"),        # needs math-verify
    (r"\boxed{x=3}", "3"),                   # an equation's right-hand side
    (r"\boxed{\frac{2}{4}}", r"\frac{1}{2}"),
    (r"\boxed{26}", "27"),
    ("#### 1,234", "1234"),
    (r"\boxed{1,2}", "12"),                   # a set is not twelve
]
for completion, gold in grading:
    print(f"{completion!r:>26} vs gold {gold!r:<14} -> {ver.grade(completion, gold)}")
print("reward, binary:   ", reward(r"\boxed{26}", "27"), reward(r"\boxed{27}", "27"))
print("reward, +1 / -1:  ", reward(r"\boxed{26}", "27", wrong=-1.0), reward(r"\boxed{27}", "27", wrong=-1.0))

# %% [markdown]
# ## 4. Hostile strings: a verdict for every input, in bounded time
#
# A student sampling at temperature 1 writes anything. sympy can spend unbounded time on
# `10^{10^{10^{10}}}`, and big-integer work inside C cannot be interrupted by a signal, so the
# verifier waits at most `timeout` seconds per answer, then kills the worker, grades the answer
# False and starts a fresh worker. Each bar below is one call's wall time; none may exceed the
# budget by more than the worker's restart.

# %%
hostile = [
    ("empty", "", "1"),
    ("None", None, "1"),
    ("1 MB of text", "blah 7 " * 150_000, "7"),
    ("1 MB, then answer", "blah 7 " * 150_000 + r"\boxed{7}", "7"),
    ("10k nested braces", r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}", "1"),
    ("power tower", r"\boxed{10^{10^{10^{10}}}}", "1"),
    ("huge factorial", r"\boxed{100000000!}", "1"),
    ("100k-digit integer", r"\boxed{" + "9" * 100_000 + "}", "1"),
    ("unicode", "答案是 \\boxed{\\frac{1}{2}} 🙂", "0.5"),
    ("control chars", "\x1b[31m\\boxed{3}\x07\r\n", "3"),
]
seconds = {}
for name, text, gold in hostile:
    t = time.perf_counter()
    verdict = ver.grade(text, gold)
    seconds[name] = time.perf_counter() - t
    print(f"{name:>20}: {verdict!s:<5} in {seconds[name]:.2f} s")
print(f"worker restarts so far: {ver.restarts}")
viz.plot_labelled_bars(seconds, ylabel="seconds", fmt="{:.2f}",
                       title=f"one grade() call per hostile string (time budget {TIMEOUT} s per answer)");

# %% [markdown]
# ## 5. Real benchmark text: MATH-500 and GSM8K
#
# The optional real-data folder holds the MATH-500 and GSM8K test sets with their gold answers
# (`math500_test.jsonl`, `gsm8k_test.jsonl`; they are not shipped). Point the environment
# variable `SGOPD_DATA_DIR` at it, or set `DATA_DIR` above (docs/usage.md, "Optional real
# data"); without it this section is skipped. Three checks per set:
#
# * **gold solution vs its own answer**: should be accepted (a verifier that rejects correct
#   worked solutions would punish correct rollouts);
# * **gold solution vs the next problem's answer** ("shuffled"): should be rejected (a lax
#   verifier would reward wrong rollouts);
# * GSM8K's stored solutions end in a number, with no `\boxed{}` and no `####`: without the
#   opt-in fallback they have *no* answer, with it the last number is taken.

# %%
data_dir = Path(DATA_DIR) if DATA_DIR else real_data_dir()
math_path, gsm_path = data_dir / "math500_test.jsonl", data_dir / "gsm8k_test.jsonl"
HAVE_REAL_DATA = math_path.is_file() and gsm_path.is_file()
if not HAVE_REAL_DATA:
    print(f"Skipping section 5: {data_dir} does not hold math500_test.jsonl and gsm8k_test.jsonl "
          "(the real-data folder is optional: SGOPD_DATA_DIR, docs/usage.md).")

# %%
if HAVE_REAL_DATA:
    math500 = load_jsonl(math_path, limit=REAL_ROWS)     # Problem(question, answer, solution)
    gsm8k = load_jsonl(gsm_path, limit=REAL_ROWS)
    sols, answers = [p.solution for p in math500], [p.answer for p in math500]
    shuffled = answers[1:] + answers[:1]
    t = time.perf_counter()
    acceptance = {
        "MATH-500: own answer": sum(ver.grade_batch(sols, answers)) / len(sols),
        "MATH-500: shuffled": sum(ver.grade_batch(sols, shuffled)) / len(sols),
    }
    g_sols, g_ans = [p.solution for p in gsm8k], [p.answer for p in gsm8k]
    g_shuffled = g_ans[1:] + g_ans[:1]
    acceptance["GSM8K: own, no fallback"] = sum(ver.grade_batch(g_sols, g_ans)) / len(g_sols)
    acceptance["GSM8K: own, last number"] = sum(ver.grade_batch(g_sols, g_ans, fallback_last_number=True)) / len(g_sols)
    acceptance["GSM8K: shuffled, last number"] = sum(
        ver.grade_batch(g_sols, g_shuffled, fallback_last_number=True)) / len(g_sols)
    elapsed = time.perf_counter() - t
    for k, v in acceptance.items():
        print(f"{k:>30}: {v:.1%}")
    print(f"{len(math500)} MATH-500 and {len(gsm8k)} GSM8K rows graded in {elapsed:.1f} s")
    misses = [(p.answer, extract_answer(p.solution)) for p, ok in zip(math500, ver.grade_batch(sols, answers)) if not ok]
    print("MATH-500 gold solutions rejected (gold, extracted):", misses[:5] or "none")
    viz.plot_labelled_bars(acceptance, ylabel="fraction graded correct", fmt="{:.1%}",
                           title="verifier acceptance on real benchmark text");

# %% [markdown]
# A few answers from MATH-500 that are *not* plain numbers, as the verifier sees them:

# %%
if HAVE_REAL_DATA:
    for p in [p for p in math500 if not p.answer.lstrip("-").isdigit()][:6]:
        extracted = extract_answer(p.solution)
        print(f"gold {p.answer!r:<28} extracted {extracted!r:<28} -> {ver.grade(p.solution, p.answer)}")

# %%
ver.close()   # stop the worker process (an atexit hook would also do it)

# %% [markdown]
# **Take-aways.** The reward of every rollout is `reward(grade(extract(text), gold))`; it is
# binary, it never raises, and it is bounded in time. On real text it accepts the gold
# solutions and rejects shuffled ones; the opt-in last-number fallback is what GSM8K's bare
# solutions need, and the shuffled row shows what it costs.
