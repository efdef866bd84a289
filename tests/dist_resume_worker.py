"""Two-process resume check, run by tests/test_resume.py as

    python -m torch.distributed.run --nproc_per_node 2 tests/dist_resume_worker.py OUT_DIR

Both processes train the same tiny run twice: straight through (OUT_DIR/straight), and stopped
after 2 steps and resumed from that checkpoint by a new Trainer (OUT_DIR/resumed). Each process
writes OUT_DIR/rank{r}.json with what the test compares: its weights and step metrics in both
runs, and the torch random state it saved at step 2.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]     # conftest, and this checkout's sgopd_lite (not an installed one)

import torch
from accelerate import Accelerator

from conftest import make_tiny_world
from sgopd_lite.config import TrainConfig
from sgopd_lite.train import Trainer
from sgopd_lite.worlds.tiny import build_tokenizer

RUN = dict(method="gate_only", steps=3, prompts_per_step=2, group_size=4, max_new_tokens=12, eval_every=0,
           eval_problems=2, eval_n=2, save_every=0, log_rollouts=0)


def weights(trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trainer.policy.parameters()])


def without_times(log: list[dict]) -> list[dict]:
    """Step metrics without the wall-clock ones (which differ between any two runs)."""
    return [{k: v for k, v in m.items() if not k.startswith(("time_", "eval_seconds", "eval_unseen_seconds"))} for m in log]


def main(out_dir: Path):
    acc = Accelerator(cpu=True)
    rank, tok = acc.process_index, build_tokenizer()

    def trainer(name):          # a fresh world each time: same seeds, so the same initial weights
        cfg = TrainConfig(**RUN, out_dir=str(out_dir / name))
        return Trainer(cfg, world=make_tiny_world(tok), accelerator=acc, verbose=False)

    straight = trainer("straight")
    straight_log = straight.run()
    trainer("resumed").run(stop_after=2)
    saved = torch.load(out_dir / "resumed" / "checkpoint" / f"rng_rank{rank}.pt", weights_only=False)
    resumed = trainer("resumed")
    resumed_log = resumed.run()

    result = {"rank": rank, "world_size": acc.num_processes,
              "weights_max_abs_diff": float((weights(straight) - weights(resumed)).abs().max()),
              "straight": without_times(straight_log)[2:], "resumed": without_times(resumed_log),
              "saved_torch_rng": saved["torch"].tolist()}
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    acc.wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
