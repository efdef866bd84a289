"""What the sweep machinery costs, and what `--jobs 2` buys.

    python benchmarks/bench_sweep.py                          # full size: 50 steps, the whole held-out split
    python benchmarks/bench_sweep.py --steps 5 --eval-problems 32   # the reduced size (minutes)

The same 9 runs (a 3 x 1 grid, gate.lambda_i = 0, 0.5, 1, x 3 seeds, on the committed tiny
world with configs/tiny.yaml) are made four ways, each into a fresh folder, one after the other:

    loop      9 `python -m sgopd_lite train` commands one after the other (what a shell loop does)
    in-proc   9 `train()` calls in one Python process (no sweep machinery, no interpreter starts)
    jobs1     `python -m sgopd_lite sweep --jobs 1` (the machinery: every config built and checked
              first, summaries, claims; the runs in the sweep's own process)
    jobs2     `python -m sgopd_lite sweep --jobs 2` (two worker processes, one torch thread each)

The machinery's overhead is jobs1 against in-proc (the same training in one process, so what is
left is the sweep's own work); jobs1 against loop is what a user saves by not writing the loop.
The speed-up of --jobs 2 is loop / jobs2 and jobs1 / jobs2. Every variant runs with
OMP_NUM_THREADS=1 so that they compare like with like (a busy machine adds noise: run it idle).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["OMP_NUM_THREADS"] = "1"

REPO = Path(__file__).resolve().parents[1]
LEVELS = ("0", "0.5", "1")
SEEDS = (0, 1, 2)


def _fixed(args) -> list[str]:
    return [f"steps={args.steps}", f"eval_problems={args.eval_problems}", f"eval_n={args.eval_n}",
            "eval_every=0", "log_rollouts=0", f"save_every={args.steps}"]


def _cmd(*a) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sgopd_lite", *a], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def loop(args, out: Path) -> float:
    t = time.perf_counter()
    for seed in SEEDS:
        for li in LEVELS:
            _cmd("train", "--config", str(REPO / "configs" / "tiny.yaml"), "--quiet", *_fixed(args),
                 f"gate.lambda_i={li}", f"seed={seed}", f"out_dir={out / f'li{li}-s{seed}'}")
    return time.perf_counter() - t


def in_process(args, out: Path) -> float:
    """The 9 train() calls in one fresh Python process (this script with --in-process OUT), timed
    from outside like the sweep, so both pay one interpreter start and one import of torch."""
    t = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--in-process", str(out), "--steps", str(args.steps),
                    "--eval-problems", str(args.eval_problems), "--eval-n", str(args.eval_n)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def _train_all(args, out: Path) -> None:
    from sgopd_lite.config import load_config
    from sgopd_lite.train import train

    for seed in SEEDS:
        for li in LEVELS:
            cfg = load_config(REPO / "configs" / "tiny.yaml", [*_fixed(args), f"gate.lambda_i={li}", f"seed={seed}",
                                                                f"out_dir={out / f'li{li}-s{seed}'}"])
            train(cfg, verbose=False)


def sweep(args, out: Path, jobs: int) -> float:
    return _cmd("sweep", "--config", str(REPO / "configs" / "tiny.yaml"), "--out", str(out), "--jobs", str(jobs),
                *_fixed(args), f"gate.lambda_i={','.join(LEVELS)}", f"seed=0:{len(SEEDS)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--eval-problems", type=int, default=256)
    ap.add_argument("--eval-n", type=int, default=8)
    ap.add_argument("--skip-loop", action="store_true", help="leave out the 9 train commands")
    ap.add_argument("--in-process", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_process:
        return _train_all(args, Path(args.in_process))
    root = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    times = {}
    try:
        if not args.skip_loop:
            times["loop"] = loop(args, root / "loop")
        times["in-proc"] = in_process(args, root / "inproc")
        times["jobs1"] = sweep(args, root / "jobs1", 1)
        times["jobs2"] = sweep(args, root / "jobs2", 2)
        t = time.perf_counter()
        sweep(args, root / "jobs1", 1)
        times["no-op"] = time.perf_counter() - t
        per_run = [json.loads(p.read_text())["seconds"] for p in (root / "jobs1").glob("*-s*.json")]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"9 runs (3 x 1 grid x 3 seeds), steps={args.steps}, eval_problems={args.eval_problems}, "
          f"eval_n={args.eval_n}, OMP_NUM_THREADS=1, {os.cpu_count()} CPUs")
    print("| variant | seconds |\n|---|---|")
    for k, v in times.items():
        print(f"| {k} | {v:.1f} |")
    print(f"\nmean seconds per run inside the sweep (train + final eval): {sum(per_run) / len(per_run):.1f}")
    print(f"machinery overhead, sweep --jobs 1 vs 9 train() calls in one process: "
          f"{100 * (times['jobs1'] / times['in-proc'] - 1):+.1f}%")
    if "loop" in times:
        print(f"sweep --jobs 1 vs 9 train commands: {100 * (times['jobs1'] / times['loop'] - 1):+.1f}%")
        print(f"speed-up of --jobs 2: {times['loop'] / times['jobs2']:.2f}x over the 9 train commands, "
              f"{times['jobs1'] / times['jobs2']:.2f}x over --jobs 1")
    else:
        print(f"speed-up of --jobs 2 over --jobs 1: {times['jobs1'] / times['jobs2']:.2f}x")
    print(f"the same sweep again (nothing to do): {times['no-op']:.1f} s")


if __name__ == "__main__":
    main()
