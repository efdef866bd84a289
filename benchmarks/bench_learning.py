"""Does on-policy distillation learn? Held-out avg@8 of the tiny student before and after OPD.

    python benchmarks/bench_learning.py                          # plain OPD, sampled loss, demo budget
    python benchmarks/bench_learning.py --loss-type dense --steps 100
    python benchmarks/bench_learning.py --method sgopd --style-gap 1 --teacher-noise 1

Prints the starting and final avg@8 / pass@8 on the held-out split, the gain in points, the
wall time, and the training settings, so each row of the README's learning table is one command.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch


def main():
    from sgopd_lite.config import TrainConfig
    from sgopd_lite.data import arithmetic_split
    from sgopd_lite.demo import DEMO_STEPS
    from sgopd_lite.evaluate import evaluate
    from sgopd_lite.worlds.tiny import TinyWorldConfig, load_tiny_pair
    from sgopd_lite.train import Trainer, World

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="opd")
    ap.add_argument("--loss-type", default="sampled")
    ap.add_argument("--steps", type=int, default=DEMO_STEPS)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--style-gap", type=float, default=0.0)
    ap.add_argument("--teacher-noise", type=float, default=0.0)
    ap.add_argument("--student-steps", type=int, default=None, help="SFT steps of the student (world design)")
    ap.add_argument("--student-slip", type=float, default=None,
                    help="fraction of the student's SFT solutions that forget carries and borrows (world design)")
    ap.add_argument("--student-mlp", type=int, default=None, help="MLP width of the student (world design)")
    ap.add_argument("--teacher-dir", default=None, help="use this saved teacher instead of the world's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--dense-beta", type=float, default=1.0, help="dense loss: 1 reverse KL, 0 forward KL")
    ap.add_argument("--adv-clip", type=float, default=None)
    ap.add_argument("--eval-problems", type=int, default=256)
    ap.add_argument("--eval-every", type=int, default=0, help="also evaluate during training")
    ap.add_argument("--out-dir", default="runs/bench_learning")
    args = ap.parse_args()

    extra = {} if args.student_steps is None else {"student_steps": args.student_steps}
    if args.student_slip is not None:
        extra["student_slip"] = args.student_slip
    if args.student_mlp is not None:
        from sgopd_lite.worlds.tiny import NetConfig
        extra["student"] = NetConfig(hidden=96, layers=2, heads=4, mlp=args.student_mlp)
    wcfg = TinyWorldConfig(style_gap=args.style_gap, teacher_noise=args.teacher_noise, **extra)
    tok, teacher, student = load_tiny_pair(cfg=wcfg)
    if args.teacher_dir:
        from transformers import AutoModelForCausalLM
        teacher = AutoModelForCausalLM.from_pretrained(args.teacher_dir, attn_implementation="eager")
        teacher.eval().requires_grad_(False)
    held_out = arithmetic_split("eval")[:args.eval_problems]
    torch.manual_seed(1000 + args.seed)
    before = evaluate(student, tok, held_out, n=8, max_new_tokens=40, instruction=wcfg.instruction)
    gate = {"adv_clip": args.adv_clip} if args.adv_clip else None
    cfg = TrainConfig(method=args.method, loss_type=args.loss_type, steps=args.steps, lr=args.lr,
                      warmup_steps=args.warmup, gate=gate, dense_beta=args.dense_beta,
                      group_size=args.group_size, prompts_per_step=args.prompts, seed=args.seed,
                      eval_every=args.eval_every, save_every=0, log_rollouts=0, eval_problems=args.eval_problems,
                      world={"style_gap": args.style_gap, "teacher_noise": args.teacher_noise},
                      out_dir=f"{args.out_dir}/{args.method}-{args.loss_type}-lr{args.lr:g}-g{args.group_size}"
                              f"-n{args.steps}-w{args.warmup}-b{args.dense_beta:g}-ss{args.student_steps}-sl{args.student_slip}-sm{args.student_mlp}-t{bool(args.teacher_dir)}-s{args.seed}")
    world = World(tok, teacher, student, arithmetic_split("train"), held_out, instruction=wcfg.instruction)
    t = time.perf_counter()
    Trainer(cfg, world=world, verbose=True).run()
    train_s = time.perf_counter() - t
    torch.manual_seed(1000 + args.seed)
    after = evaluate(world.student, tok, held_out, n=8, max_new_tokens=40, instruction=wcfg.instruction)
    print(f"\nmethod={args.method} loss={args.loss_type} steps={args.steps} lr={args.lr} "
          f"B={args.prompts} G={args.group_size} seed={args.seed} style_gap={args.style_gap} "
          f"teacher_noise={args.teacher_noise} ({torch.get_num_threads()} threads)")
    print(f"held-out avg@8: {before.avg_at_n:.3f} -> {after.avg_at_n:.3f} "
          f"({100 * (after.avg_at_n - before.avg_at_n):+.1f} points); pass@8 {before.pass_at_k:.3f} -> "
          f"{after.pass_at_k:.3f}; training {train_s:.0f} s")


if __name__ == "__main__":
    main()
