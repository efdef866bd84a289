"""How long does building the default tiny pair take, and is the rebuilt pair as good?

    python benchmarks/bench_tiny_build.py                 # teacher and student side by side
    python benchmarks/bench_tiny_build.py --sequential    # one after the other, all threads each

Builds the default teacher and student (worlds.tiny.TinyWorldConfig()) into a temporary folder,
never into the cache or sgopd_lite/assets/tiny, and prints the wall time of the whole build, each model's
own SFT time and thread count (from its meta.json), and both models' held-out avg@8 / pass@8
next to the committed pair's. Run it on a quiet machine: the target set for the build is at
most three minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch


def main():
    from transformers import Qwen2ForCausalLM

    from sgopd_lite.data import arithmetic_split
    from sgopd_lite.evaluate import evaluate
    from sgopd_lite.worlds.tiny import TinyWorldConfig, build_models, load_tokenizer, model_dir, role_key

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequential", action="store_true", help="build one model after the other")
    ap.add_argument("--problems", type=int, default=256, help="held-out problems for the check")
    ap.add_argument("--n", type=int, default=8)
    args = ap.parse_args()

    cfg = TinyWorldConfig()
    problems = arithmetic_split("eval")[:args.problems]
    with tempfile.TemporaryDirectory() as tmp:
        todo = {role: Path(tmp) / role_key(cfg, role) for role in ("teacher", "student")}
        start = time.perf_counter()
        build_models(cfg, todo, parallel=not args.sequential, verbose=False)
        wall = time.perf_counter() - start
        print(f"default tiny pair built in {wall:.0f} s wall ({'sequential' if args.sequential else 'side by side'}, "
              f"{os.cpu_count()} CPUs, torch {torch.__version__})")
        print(f"\n| model | SFT s | threads | avg@{args.n} rebuilt | pass@{args.n} rebuilt | avg@{args.n} committed |")
        print("|---|---|---|---|---|---|")
        for role, path in todo.items():
            meta = json.loads((path / "meta.json").read_text())
            row = []
            for where in (path, model_dir(cfg, role)):
                model = Qwen2ForCausalLM.from_pretrained(where, attn_implementation="eager").eval()
                torch.manual_seed(0)
                row.append(evaluate(model, load_tokenizer(where), problems, n=args.n, max_new_tokens=40,
                                    instruction=cfg.instruction))
            print(f"| {role} | {meta['seconds']} | {meta['threads']} | {row[0].avg_at_n:.3f} | "
                  f"{row[0].pass_at_k:.3f} | {row[1].avg_at_n:.3f} |", flush=True)


if __name__ == "__main__":
    main()
