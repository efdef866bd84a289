"""Seconds per training step split by phase, and what the gate costs.

    python benchmarks/bench_step.py                  # the committed tiny world, 16 prompts x 8
    python benchmarks/bench_step.py --repeats 5 --random-models

One batch of rollouts is sampled once; then the learning part of a step (teacher / old-policy
scoring, gate, update) is timed on that same batch for plain OPD and for the sign gate
(`gate_only`: SG-OPD with phased teacher sampling off), alternating, and the medians are
compared. A step with teacher sampling (SG-OPD while w(k) > 0) is timed separately.
(A side-by-side with trl's DistillationTrainer is not implemented yet.)
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch


def _world(random_models: bool):
    from sgopd_lite.data import arithmetic_split
    from sgopd_lite.tiny_world import NetConfig, build_tokenizer, load_tiny_pair, make_model
    from sgopd_lite.train import World

    from sgopd_lite.tiny_world import TINY_INSTRUCTION

    if random_models:
        tok = build_tokenizer()
        teacher = make_model(NetConfig(128, 4, 4, 256), tok, 0).eval().requires_grad_(False)
        student = make_model(NetConfig(96, 2, 4, 192), tok, 1)
    else:
        tok, teacher, student = load_tiny_pair(build=True, verbose=True)
    return World(tok, teacher, student, arithmetic_split("train"), arithmetic_split("eval"),
                 instruction=TINY_INSTRUCTION)


def _trainer(method, world, args, **kw):
    from sgopd_lite.config import TrainConfig
    from sgopd_lite.train import Trainer, World

    w = World(world.tokenizer, world.teacher, copy.deepcopy(world.student), world.train_problems,
              world.eval_problems, instruction=world.instruction)
    cfg = TrainConfig(method=method, steps=10_000, prompts_per_step=args.prompts, group_size=args.group,
                      eval_every=0, save_every=0, log_rollouts=0, out_dir="/tmp/sgopd_bench_step", **kw)
    return Trainer(cfg, world=w, verbose=False)


def _learn_seconds(trainer, batch, k=10_000):
    """Phases 3-6 on a fixed batch; the weights are restored after each call."""
    state = copy.deepcopy(trainer.policy.state_dict())
    opt = copy.deepcopy(trainer.optimizer.state_dict())
    t = time.perf_counter()
    m = trainer.learn(k, batch)
    total = time.perf_counter() - t
    trainer.policy.load_state_dict(state)
    trainer.optimizer.load_state_dict(opt)
    return total, m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--random-models", action="store_true", help="random-init models of the tiny sizes")
    args = ap.parse_args()

    world = _world(args.random_models)
    opd = _trainer("opd", world, args)
    gate = _trainer("gate_only", world, args)
    sg = _trainer("sgopd", world, args)

    torch.manual_seed(0)
    batch = opd.collect(0)
    collect_times = batch.times
    times = {"opd": [], "gate_only": []}
    phases = {"opd": [], "gate_only": []}
    for _ in range(args.repeats):
        for name, tr in (("opd", opd), ("gate_only", gate)):
            total, m = _learn_seconds(tr, batch, k=10_000)
            times[name].append(total)
            phases[name].append(m)
    # SG-OPD at step 0: w(0) = w0 > 0, so teacher rollouts are sampled and graded too
    sg_times, sg_phase = [], []
    for _ in range(max(3, args.repeats // 2)):
        torch.manual_seed(1)
        total, m = _learn_seconds(sg, batch, k=0)
        sg_times.append(total)
        sg_phase.append(m)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"tiny world, {args.prompts} prompts x {args.group} rollouts = {len(batch.rollouts)} rollouts, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {args.repeats}")
    print(f"collect (once): rollout {collect_times['rollout']:.3f} s, verify {collect_times['verify']:.3f} s")
    print(f"{'learn phase (s)':<22}{'opd':>10}{'gate_only':>12}{'sgopd (PTS on)':>16}")
    for key in ("time_teacher", "time_teacher_sampling", "time_update"):
        row = [statistics.median([m.get(key, 0.0) for m in phases["opd"]]),
               statistics.median([m.get(key, 0.0) for m in phases["gate_only"]]),
               statistics.median([m.get(key, 0.0) for m in sg_phase])]
        print(f"{key[5:]:<22}{row[0]:>10.3f}{row[1]:>12.3f}{row[2]:>16.3f}")
    print(f"{'total learn':<22}{med['opd']:>10.3f}{med['gate_only']:>12.3f}{statistics.median(sg_times):>16.3f}")
    full_opd = med["opd"] + collect_times["rollout"] + collect_times["verify"]
    full_gate = med["gate_only"] + collect_times["rollout"] + collect_times["verify"]
    print(f"gate cost: step ratio gate_only / opd = {full_gate / full_opd:.3f} (learn part alone "
          f"{med['gate_only'] / med['opd']:.3f}; target <= 1.05)")
    print(f"teacher-sampling step: sgopd(w>0) learn / opd learn = {statistics.median(sg_times) / med['opd']:.2f}")


if __name__ == "__main__":
    main()
