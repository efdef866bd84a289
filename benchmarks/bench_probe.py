"""What the teacher probe of `method=teacher_probe` costs, beside the steps it serves.

    python benchmarks/bench_probe.py                 # A2 complementary error, the study protocol
    python benchmarks/bench_probe.py --steps 20

The probe samples the teacher probe.m = 4 times on every training prompt once, at the first
step (the teacher is frozen, so the table is reused: train.Trainer._probe). This times, in one
process: the probe table (`probes` repeats, the median), then `steps` training steps of
teacher_probe at the study protocol (16 prompts x 8 rollouts, sampled loss) with the table
already built, and prints the probe's share of a 200-step run:
probe / (probe + 200 x median step).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="training steps timed after the probe")
    parser.add_argument("--probes", type=int, default=1, help="times the probe table is built")
    parser.add_argument("--run-steps", type=int, default=200, help="steps of the run the probe is spread over")
    args = parser.parse_args()

    import torch

    from sgopd_lite.config import TrainConfig
    from sgopd_lite.train import Trainer

    out = tempfile.mkdtemp()
    try:
        cfg = TrainConfig(method="teacher_probe", steps=args.steps, eval_every=0, eval_problems=0, save_every=0,
                          log_rollouts=0, out_dir=out,
                          world={"teacher_noise": 1.0, "teacher_slip_kind": "borrow", "student_slip_kind": "carry"})
        trainer = Trainer(cfg, verbose=False)
        probe_s = []
        for _ in range(args.probes):
            (trainer.out / "probe.json").unlink(missing_ok=True)
            t = time.perf_counter()
            trainer._probe_trusted = trainer._load_or_run_probe()
            probe_s.append(time.perf_counter() - t)
        step_s = []
        for k in range(args.steps):
            t = time.perf_counter()
            trainer.train_step(k)
            step_s.append(time.perf_counter() - t)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    probe, step = statistics.median(probe_s), statistics.median(step_s)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {len(trainer.prompts)} training prompts "
          f"x {cfg.probe.m} teacher samples")
    print(f"probe table: median {probe:.1f} s over {args.probes}; training step: median {step:.2f} s over {args.steps}")
    print(f"probe share of a {args.run_steps}-step run: {probe / (probe + args.run_steps * step):.1%} "
          f"(probe = {probe / step:.1f} steps)")


if __name__ == "__main__":
    main()
