"""Two CPU processes (gloo) through accelerate: same gradient as one process (a mixed method's
two routes too), same weights, and the same skipped step when only one process sees a
non-finite teacher log-prob."""

import json
import os
import subprocess
import sys
from pathlib import Path


HERE = Path(__file__).resolve().parent


def test_two_processes_match_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29517", str(HERE / "dist_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)  # a hang fails
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert {r["world_size"] for r in results} == {2}
    assert results[0]["pid"] != results[1]["pid"]          # two processes really ran
    for r in results:
        assert r["grad_norm"] > 0
        assert r["grad_max_abs_diff"] < 1e-6, r             # DDP gradient == single-process gradient
        assert r["route_reward_norm"] > 0                   # a mixed method's routes, summed by hand
        assert r["route_total_diff"] < 1e-6 and r["route_reward_diff"] < 1e-6, r
        assert r["params_max_abs_diff_across_ranks"] == 0.0  # replicas stay identical
        assert r["steps"] == [0, 1, 2]
    # rank 1's NaN at step 1: both skip it, each saying why, and no other step is skipped
    assert results[1]["skipped"] == [None, "non-finite teacher log-prob", None]
    assert results[0]["skipped"] == [None, "non-finite log-prob on another process", None]
    # gate metrics are averaged over processes, so both ranks log the same numbers
    assert results[0]["frac_consensus"] == results[1]["frac_consensus"]
    assert results[0]["frac_consensus"][0] is not None
