"""Seconds per training step split by phase, and what the gate costs.

    python benchmarks/bench_step.py                  # the committed tiny world, 16 prompts x 8
    python benchmarks/bench_step.py --repeats 5 --random-models

One batch of rollouts is sampled once; then the learning part of a step (teacher / old-policy
scoring, gate, update) is timed on that same batch for plain OPD and for the sign gate
(`gate_only`: SG-OPD with phased teacher sampling off), alternating, and the medians are
compared. A step with teacher sampling (SG-OPD while w(k) > 0) is timed separately.

When trl is installed (skipped with a message otherwise, or with `--no-trl`), the update of
this loop is also timed beside trl's `DistillationTrainer` update, on the same student, teacher
and token batch (see `trl_update_comparison` for exactly what each side times).
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
    from sgopd_lite.worlds.tiny import NetConfig, build_tokenizer, load_tiny_pair, make_model
    from sgopd_lite.train import World

    from sgopd_lite.worlds.tiny import TINY_INSTRUCTION

    if random_models:
        tok = build_tokenizer()
        teacher = make_model(NetConfig(128, 4, 4, 256), tok, 0).eval().requires_grad_(False)
        student = make_model(NetConfig(96, 2, 4, 192), tok, 1)
    else:
        tok, teacher, student = load_tiny_pair(build=True, verbose=True)
    return World(tok, teacher, student, arithmetic_split("train"), arithmetic_split("eval"),
                 instruction=TINY_INSTRUCTION)


def _trainer(method, world, args, **kw):
    """A Trainer on a fresh copy of the student (the teacher is shared)."""
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


def trl_update_comparison(world, batch, args) -> None:
    """This loop's update vs trl's `DistillationTrainer` update, same models and token batch.

    trl's trainer generates its own completions inside `_prepare_inputs`; here that method is
    replaced by the identity so that `training_step` receives this batch as its completions
    (prompt_ids / prompt_mask = our left-padded prompts, completion_ids / completion_mask = our
    responses and response mask, num_items_in_batch = the response-token count). What is timed:

      trl:  trainer.training_step(model, batch)  (student backbone forward, no-grad teacher backbone
            forward, chunked generalized JSD with beta = 1, i.e. reverse KL, backward)
            + accelerator.clip_grad_norm_ + optimizer.step() + model.zero_grad(): the body of the
            HF Trainer's inner loop for one optimizer step (the lr-scheduler step is left out).
      ours: Trainer._update as timed by learn() (zero_grad, backward over the batch, clip, AdamW step,
            scheduler step). The dense loss includes its no-grad teacher forward there; the sampled
            loss does not (its teacher forward belongs to the scoring phase, printed for reference).

    Both sides: torch AdamW (trl with optim="adamw_torch"), float32, lr 3e-4, clip 1.0, one process,
    no activation checkpointing (trl's default turns it on; this loop has none).
    """
    try:
        import trl
        from datasets import Dataset
        from trl import DistillationConfig, DistillationTrainer
    except ImportError as err:
        print(f"trl side-by-side skipped: trl is not importable ({err})")
        return

    ro = batch.rollouts
    mask = ro.response_mask
    inputs = {"prompt_ids": ro.prompt_ids, "prompt_mask": ro.prompt_mask, "completion_ids": ro.response_ids,
              "completion_mask": mask, "num_items_in_batch": mask.sum()}
    tok = world.tokenizer
    tok.padding_side = "left"
    cfg = DistillationConfig(output_dir="/tmp/sgopd_bench_trl", beta=1.0, temperature=1.0, learning_rate=3e-4,
                             max_grad_norm=1.0, optim="adamw_torch", bf16=False, use_cpu=True, report_to="none",
                             per_device_train_batch_size=len(ro), gradient_accumulation_steps=1,
                             max_completion_length=ro.response_ids.shape[1], disable_dropout=True,
                             save_strategy="no", logging_strategy="no", seed=0,
                             activation_checkpointing=False)   # trl's default is on; this loop has none
    trainer = DistillationTrainer(model=copy.deepcopy(world.student), teacher_model=world.teacher, args=cfg,
                                  train_dataset=Dataset.from_dict({"prompt": batch.prompts}),
                                  processing_class=tok)
    trainer._prepare_inputs = lambda generation_batch: generation_batch   # our batch is the completions
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1     # set by Trainer.train(), read by training_step
    model = trainer.model

    def trl_step() -> tuple[float, float]:
        t = time.perf_counter()
        loss = trainer.training_step(model, inputs, inputs["num_items_in_batch"])
        trainer.accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        trainer.optimizer.step()
        model.zero_grad()
        return time.perf_counter() - t, float(loss)

    trl_first_loss = trl_step()[1]                              # AdamW state exists from here on
    state = copy.deepcopy(model.state_dict())
    opt = copy.deepcopy(trainer.optimizer.state_dict())

    ours = {lt: _trainer("opd", world, args, loss_type=lt) for lt in ("sampled", "dense")}
    first_loss = {lt: tr.learn(10_000, batch)["loss_pg"] for lt, tr in ours.items()}   # warm-up step too

    # interleaved repeats, so that load from other jobs on the machine hits every side alike
    times = {"trl": [], "sampled": [], "dense": [], "scoring": []}
    for _ in range(args.repeats):
        times["trl"].append(trl_step()[0])
        model.load_state_dict(state)
        trainer.optimizer.load_state_dict(opt)
        for lt, tr in ours.items():
            m = _learn_seconds(tr, batch)[1]                    # restores weights and optimizer state
            times[lt].append(m["time_update"])
            if lt == "sampled":
                times["scoring"].append(m["time_teacher"])
    med = {key: statistics.median(v) for key, v in times.items()}
    print(f"\nupdate on the same batch ({len(ro)} rollouts, {int(mask.sum())} response tokens), "
          f"this loop vs trl {trl.__version__} DistillationTrainer, medians of {args.repeats} (interleaved):")
    print(f"{'':<34}{'seconds':>10}{'ratio to trl':>14}")
    rows = [("trl DistillationTrainer (JSD b=1)", "trl"), ("sgopd_lite sampled loss", "sampled"),
            ("sgopd_lite dense loss", "dense"), ("(sgopd_lite teacher+old scoring)", "scoring")]
    for label, key in rows:
        print(f"{label:<34}{med[key]:>10.3f}{med[key] / med['trl']:>14.2f}")
    # same batch, same starting weights: trl's JSD(beta=1) and the dense loss are both the mean
    # per-token reverse KL, so their first-step values must agree
    print(f"same-batch check, first-step loss: trl {trl_first_loss:.6f}, sgopd_lite dense {first_loss['dense']:.6f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--random-models", action="store_true", help="random-init models of the tiny sizes")
    ap.add_argument("--no-trl", action="store_true", help="skip the side-by-side with trl's DistillationTrainer")
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
    if not args.no_trl:
        trl_update_comparison(world, batch, args)


if __name__ == "__main__":
    main()
