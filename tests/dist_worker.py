"""Two-process check, run by tests/test_distributed.py as

    python -m torch.distributed.run --nproc_per_node 2 tests/dist_worker.py OUT_DIR

Each process writes OUT_DIR/rank{r}.json with what it measured; the test compares them.
(`accelerate launch --cpu --num_processes 2` was measured to start a single process on these
machines; torchrun with `Accelerator(cpu=True)` starts two.)
"""

import copy
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
import torch.distributed as dist
from accelerate import Accelerator

from conftest import make_tiny_world
from sgopd_lite.advantage import grpo_advantage
from sgopd_lite.config import TrainConfig
from sgopd_lite.gate import sign_gate
from sgopd_lite.losses import policy_gradient_loss
from sgopd_lite.rollout import sample, sequence_logprobs
from sgopd_lite.worlds.tiny import build_tokenizer
from sgopd_lite.train import Trainer


def flat_grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])


def main(out_dir: Path):
    acc = Accelerator(cpu=True)
    rank, world_size = acc.process_index, acc.num_processes
    tok = build_tokenizer()
    world = make_tiny_world(tok)                       # same seeds: identical weights on both ranks
    cfg = TrainConfig(method="gate_only", steps=3, prompts_per_step=2, group_size=4, max_new_tokens=12,
                      eval_every=0, eval_problems=2, eval_n=2, save_every=0, log_rollouts=0,
                      out_dir=str(out_dir / "run"))
    trainer = Trainer(cfg, world=world, accelerator=acc, verbose=False)
    reference = copy.deepcopy(trainer.policy)          # a plain single-process copy

    # One batch that both processes know in full (same seed), split by groups across processes.
    torch.manual_seed(123)
    ro = sample(trainer.policy, tok, trainer.prompts[:4], 4, 12, 1.0)
    r = torch.tensor([float((i // 2) % 2) for i in range(len(ro))])
    with torch.no_grad():
        old = sequence_logprobs(trainer.policy, ro)
        teacher = sequence_logprobs(trainer.teacher, ro)
    gate = sign_gate(teacher, old, r, ro.group_ids, ro.response_mask, cfg=cfg.gate)
    half = len(ro) // world_size
    mine = slice(rank * half, (rank + 1) * half)       # groups 0-1 on rank 0, 2-3 on rank 1
    trainer.optimizer.zero_grad()
    trainer.backward(ro.select(mine), old[mine], gate.advantage[mine], gate.lambda_t[mine])
    ddp_grad = flat_grads(trainer.policy)

    N = ro.response_mask.sum().item()                  # the whole batch's normaliser
    logp = sequence_logprobs(reference, ro)
    policy_gradient_loss(logp, gate.advantage, ro.response_mask, N).backward()
    single_grad = flat_grads(reference)

    # A mixed method's route split (the reward route's gradient taken alone, both all-reduced by
    # hand): the same batch split across processes gives the single-process sums.
    reward_adv = 2.0 * grpo_advantage(r, ro.group_ids)[:, None] * ro.response_mask       # (R, T)
    total_adv = gate.advantage + reward_adv
    trainer.optimizer.zero_grad(set_to_none=True)
    route = []
    trainer.backward(ro.select(mine), old[mine], total_adv[mine], gate.lambda_t[mine],
                     reward_adv=reward_adv[mine], reward_grads=route)
    split_total = flat_grads(trainer.policy)
    split_reward = torch.cat([g.flatten() for g in route])
    singles = []
    for adv in (total_adv, reward_adv):
        reference.zero_grad(set_to_none=True)
        policy_gradient_loss(sequence_logprobs(reference, ro), adv, ro.response_mask, N).backward()
        singles.append(flat_grads(reference))
    trainer.optimizer.zero_grad(set_to_none=True)

    # A few real training steps, then compare parameters across processes. At step 1 only
    # rank 1's teacher log-probs hold a NaN: both ranks must skip that step (nothing hangs).
    score = trainer._score

    def score_with_a_nan_on_rank_1(model, ro):
        out = score(model, ro)
        if model is trainer.teacher and rank == 1 and trainer.step == 1:
            out[0, 0] = float("nan")
        return out

    trainer._score = score_with_a_nan_on_rank_1
    trainer.optimizer.zero_grad()
    history = trainer.run()
    params = torch.cat([p.detach().flatten() for p in trainer.policy.parameters()])
    gathered = [torch.zeros_like(params) for _ in range(world_size)]
    dist.all_gather(gathered, params)
    result = {
        "rank": rank, "world_size": world_size, "pid": os.getpid(),
        "grad_max_abs_diff": float((ddp_grad - single_grad).abs().max()),
        "grad_norm": float(single_grad.norm()),
        "route_total_diff": float((split_total - singles[0]).abs().max()),
        "route_reward_diff": float((split_reward - singles[1]).abs().max()),
        "route_reward_norm": float(singles[1].norm()),
        "params_max_abs_diff_across_ranks": float(max((g - gathered[0]).abs().max() for g in gathered)),
        "steps": [m["step"] for m in history],
        "rewards_seen": [m["reward_mean"] for m in history if "reward_mean" in m],
        "skipped": [m.get("skipped") for m in history],
        "frac_consensus": [m.get("frac_consensus") for m in history],
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    acc.wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
