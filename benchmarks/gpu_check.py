"""`make gpu-check`: the paper-scale path on one GPU, in at most about 8 minutes (docs/gpu_plan.md).

    python benchmarks/gpu_check.py            # what `make gpu-check` runs (not part of CI)

On a machine without a CUDA GPU it prints one line and exits 0. On one GPU:

1. the QLoRA run of benchmarks/bench_qlora_gpu.py: a Qwen2.5-0.5B-shaped student in 4-bit nf4
   with LoRA r = 16 and a Qwen2.5-1.5B-shaped teacher in bf16, random-init weights of the real
   shapes (the hub is not needed), 3 SG-OPD steps of 4 prompts x 8 rollouts x 256 new tokens:
   peak GPU memory after loading and while training, and the median seconds per step by phase;
2. where vLLM is installed (`pip install '.[vllm]'`): the same random student in bf16 with LoRA,
   2 OPD steps with student rollouts from HF `generate` and then from vLLM on the same prompts
   (same seed): the rollout time of each, and the engine's log-prob gap to the trainer's
   (`engine_logp_gap`, checked at the first step), which says whether vLLM samples the policy
   being trained.

Each part runs in its own process with a time limit, so one that hangs cannot eat the budget of
the other; the JSON of each part is printed at the end. Written before a GPU was lent to this
project's later sessions: part 1 ran on an H100 in an earlier session (bench_qlora_gpu.py), part 2
has only run against a fake vLLM (tests/test_engines.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUDGET_S = {"qlora": 300, "vllm": 180}      # seconds per part; about 8 minutes in all


VLLM_PART = r'''
import json, statistics, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import torch
from bench_qlora_gpu import QWEN_05B, save_random, synthetic_tokenizer
from sgopd_lite.config import TrainConfig
from sgopd_lite.data import arithmetic_split
from sgopd_lite.models import ModelConfig, load_models
from sgopd_lite.train import Trainer, World

tok = synthetic_tokenizer()
root = Path(tempfile.mkdtemp())
save_random(QWEN_05B, tok, root / "student")
out = {}
for engine in ("hf", "vllm"):
    pair = load_models(ModelConfig(size="custom", teacher=str(root / "student"), student=str(root / "student"),
                                   lora=True, dtype="bfloat16"))
    world = World(pair.tokenizer, pair.teacher, pair.student, arithmetic_split("train"),
                  arithmetic_split("eval")[:2], vocab_size=pair.vocab_size)
    cfg = TrainConfig(method="opd", steps=2, prompts_per_step=4, group_size=8, max_new_tokens=128, eval_every=0,
                      eval_problems=1, eval_n=1, save_every=0, log_rollouts=0, seed=0, rollout_engine=engine,
                      out_dir=str(root / f"run-{engine}"))
    history = Trainer(cfg, world=world, verbose=False).run()
    out[engine] = {"rollout_s": statistics.median(m["time_rollout"] for m in history),
                   "engine_logp_gap": next((m["engine_logp_gap"] for m in history if "engine_logp_gap" in m), None),
                   "mean_response_len": statistics.mean(m["response_len"] for m in history)}
    del pair, world
    torch.cuda.empty_cache()
print("RESULT " + json.dumps(out))
'''


def run_part(name: str, cmd: list[str]) -> dict:
    """Run one part in its own process under its time limit; its JSON, or why there is none."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUDGET_S[name], cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return {"error": f"over its {BUDGET_S[name]} s budget"}
    seconds = round(time.perf_counter() - start, 1)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}", "tail": (proc.stdout + proc.stderr)[-1500:], "seconds": seconds}
    text = proc.stdout
    if name == "vllm":
        line = next((l for l in text.splitlines() if l.startswith("RESULT ")), None)
        return {**json.loads(line[len("RESULT "):]), "seconds": seconds} if line else {"error": "no result", "tail": text[-1500:]}
    return {**json.loads(Path(cmd[-1]).read_text()), "seconds": seconds}


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA GPU on this machine (torch {torch.__version__}); nothing to check")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    results = {"gpu": torch.cuda.get_device_name()}
    with tempfile.TemporaryDirectory() as tmp:
        qlora_json = str(Path(tmp) / "qlora.json")
        results["qlora"] = run_part("qlora", [sys.executable, str(HERE / "bench_qlora_gpu.py"), "--steps", "3",
                                              "--prompts", "4", "--group", "8", "--max-new-tokens", "256",
                                              "--json", qlora_json])
    from sgopd_lite.engines import vllm_importable

    if vllm_importable():
        results["vllm_vs_hf"] = run_part("vllm", [sys.executable, "-c", VLLM_PART, str(HERE)])
    else:
        results["vllm_vs_hf"] = {"skipped": "vLLM is not installed (pip install '.[vllm]')"}
    print(json.dumps(results, indent=2))
    return 0 if not any("error" in v for v in results.values() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
