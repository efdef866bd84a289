"""The verifier on real problems: MATH-500 and GSM8K test sets from the optional real-data folder
(`sgopd_lite.data.real_data_dir()`: the SGOPD_DATA_DIR environment variable, docs/usage.md).

(a) every MATH-500 gold solution, graded against its own answer, must pass (>= 99.5%), also
    when the answer is written so that only math-verify (not string equality) can accept it;
(b) solutions paired with the NEXT problem's answer must agree with plain math-verify,
    ``verify(parse(gold), parse(solution))`` on the main thread, on >= 99% of pairs;
(c) every GSM8K answer written as ``\\boxed{n}`` (and as ``\\boxed{1,234.00}``-style
    variants that need the normaliser or math-verify) grades True.
Skipped when that folder is absent.
"""

import json

import pytest

from sgopd_lite.data import REAL_DATA_ENV, real_data_dir
from sgopd_lite.verifier import Verifier, extract_answer, normalize_answer

DATA = real_data_dir()
pytestmark = pytest.mark.shared_data


def _load(name: str) -> list[dict]:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"{path} not found (the real-data folder is optional; set {REAL_DATA_ENV} to use one)")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def ver():
    with Verifier(timeout=5.0) as v:  # generous: real answers, and a shared 2-core machine
        yield v


@pytest.fixture(scope="module")
def math500():
    rows = _load("math500_test.jsonl")
    assert len(rows) == 500
    return rows


def test_math500_gold_solutions_grade_correct(ver, math500):
    verdicts = ver.grade_batch([r["solution"] for r in math500], [r["answer"] for r in math500])
    n_ok = sum(verdicts)
    misses = [r["answer"] for r, ok in zip(math500, verdicts) if not ok]
    print(f"\nMATH-500 gold solutions graded correct: {n_ok}/500; misses: {misses[:10]}")
    assert n_ok >= 0.995 * 500


def test_math500_answers_through_math_verify(ver, math500):
    # Every gold solution above ends in exactly its answer, so the exact-match shortcut settles
    # all of them. Here `\displaystyle` defeats the shortcut: each pair must go through
    # math-verify (with our $..$ wrapping), which must still accept them.
    answers = [r["answer"] for r in math500]
    comps = [rf"Therefore the answer is $\boxed{{\displaystyle {a}}}$." for a in answers]
    assert all(normalize_answer(extract_answer(c)) != a for c, a in zip(comps, answers))
    verdicts = ver.grade_batch(comps, answers)
    misses = [a for a, ok in zip(answers, verdicts) if not ok]
    print(f"\nMATH-500 answers via math-verify: {sum(verdicts)}/500; misses: {misses[:10]}")
    assert sum(verdicts) >= 0.995 * 500


def test_math500_shuffled_pairs_agree_with_plain_math_verify(ver, math500):
    from math_verify import parse, verify  # main thread: math-verify's own timeouts work here

    n = len(math500)
    golds = [math500[(i + 1) % n]["answer"] for i in range(n)]
    preds = [r["solution"] for r in math500]
    ours = ver.grade_batch(preds, golds)
    plain = [bool(verify(parse(g), parse(p))) for g, p in zip(golds, preds)]
    agree = sum(a == b for a, b in zip(ours, plain))
    diffs = [(g, p[-60:], a, b) for g, p, a, b in zip(golds, preds, ours, plain) if a != b]
    print(f"\nshuffled pairs: ours pass {sum(ours)}/{n}, plain math-verify pass {sum(plain)}/{n}, "
          f"agree {agree}/{n}; disagreements (gold, solution tail, ours, plain): {diffs[:5]}")
    assert sum(ours) <= 10  # a mismatched answer is (almost) never right
    assert agree >= 0.99 * n


def test_gsm8k_boxed_answers_grade_correct(ver):
    rows = _load("gsm8k_test.jsonl")
    assert len(rows) == 1319
    golds = [r["answer"] for r in rows]
    plain = ver.grade_batch([rf"\boxed{{{g}}}" for g in golds], golds)
    print(f"\nGSM8K \\boxed{{n}} vs n: {sum(plain)}/{len(rows)}")
    assert all(plain)
    # The same answers as a model might write them: thousands commas and a trailing ".00"
    # go through normalize_answer and then math-verify (no exact string match is possible).
    styled = [rf"The total is \boxed{{{int(g):,}.00}}." for g in golds]
    verdicts = ver.grade_batch(styled, golds)
    print(f"GSM8K \\boxed{{n:,.00}} vs n: {sum(verdicts)}/{len(rows)}")
    assert all(verdicts)
    # ...and an off-by-one answer is never accepted.
    wrong = ver.grade_batch([rf"\boxed{{{int(g) + 1}}}" for g in golds], golds)
    assert not any(wrong)
