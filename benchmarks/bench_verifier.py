"""How fast does the verifier grade? Single calls (``grade`` in a loop) vs one ``grade_batch``.

Data: MATH-500 gold solutions from the optional real-data folder when present (SGOPD_DATA_DIR,
`sgopd_lite.data.real_data_dir`), graded against their own answer and against the next
problem's answer so that every pair goes through math-verify; else a synthetic set of boxed
answers. Prints answers graded per second, the median over a
few repeats (each on a fresh worker, so math-verify's parse caches start cold), and the
batched / single ratio. "exact-match" counts pairs settled by string equality after
normalisation, which never reach the worker.

    python benchmarks/bench_verifier.py --n 500 --repeats 3
"""

import argparse
import json
import random
import statistics
import time

from sgopd_lite.data import real_data_dir
from sgopd_lite.verifier import Verifier, extract_answer, normalize_answer

DATA = real_data_dir() / "math500_test.jsonl"      # optional: SGOPD_DATA_DIR (docs/usage.md)


def load_sets(n: int) -> tuple[str, list[tuple[str, list[str], list[str]]]]:
    """(source description, [(name, completions, golds), ...]) with n items per set."""
    if DATA.is_file():
        rows = [json.loads(line) for line in DATA.open(encoding="utf-8")]
        rows = (rows * (n // len(rows) + 1))[:n]
        sols, answers = [r["solution"] for r in rows], [r["answer"] for r in rows]
        shifted = answers[1:] + answers[:1]
        return f"MATH-500 gold solutions ({DATA})", [
            ("gold solution vs own answer", sols, answers),
            ("gold solution vs next answer", sols, shifted),
        ]
    # Gold a/b; the completion boxes a/b or (a+1)/b as a decimal, so about half are correct
    # and every pair needs math-verify (no exact string match).
    rng = random.Random(0)
    pairs = [(rng.randint(1, 99), rng.randint(2, 99), rng.random() < 0.5) for _ in range(n)]
    golds = [f"\\frac{{{a}}}{{{b}}}" for a, b, _ in pairs]
    comps = [f"So the answer is $\\boxed{{{(a + (not ok)) / b:.8f}}}$." for a, b, ok in pairs]
    source = f"SYNTHETIC boxed answers ({DATA} not found)"
    return source, [("synthetic boxed vs fraction", comps, golds)]


def rate(v: Verifier, fn, n: int, repeats: int) -> float:
    """Median answers per second of fn() over `repeats` runs, each on a fresh worker.

    A fresh worker has empty math-verify parse caches (as for new rollouts in training);
    its start-up is done before the clock starts, as in real use.
    """
    times = []
    for _ in range(repeats):
        v.close()
        v.grade(r"\boxed{0.5}", r"\frac{1}{2}")  # start the new worker outside the timing
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500, help="completions per set")
    ap.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    ap.add_argument("--timeout", type=float, default=2.0, help="Verifier timeout (s)")
    args = ap.parse_args()

    source, sets = load_sets(args.n)
    print(f"data: {source}; n={args.n}, median of {args.repeats} runs, timeout={args.timeout}s")
    header = ("set", "exact-match", "correct", "single/s", "batch/s", "batch/single")
    print("{:32s} {:>11s} {:>8s} {:>9s} {:>9s} {:>12s}".format(*header))
    with Verifier(timeout=args.timeout) as v:
        for name, comps, golds in sets:
            exact = sum(normalize_answer(extract_answer(c) or "") == normalize_answer(g)
                        for c, g in zip(comps, golds))
            n_ok = sum(v.grade_batch(comps, golds))
            def loop():
                return [v.grade(c, g) for c, g in zip(comps, golds)]

            single = rate(v, loop, len(comps), args.repeats)
            batch = rate(v, lambda: v.grade_batch(comps, golds), len(comps), args.repeats)
            print(f"{name:32s} {exact:>11d} {n_ok:>8d} {single:>9.0f} {batch:>9.0f}"
                  f" {batch / single:>11.2f}x")
        print(f"worker restarts: {v.restarts}")


if __name__ == "__main__":
    main()
