"""Chunked vs naive sampled-token log-probs at Qwen's vocabulary (V = 151,936), on CPU.

    python benchmarks/bench_logprob.py                 # B=2, T=1024, float32 logits
    python benchmarks/bench_logprob.py --T 256 --repeats 3

Each measurement runs in a fresh subprocess, so one method's allocations cannot hide the
other's. Peak memory is the growth of the process's peak resident set (ru_maxrss) while the
method runs, measured *beyond the input logits*, which are allocated (and touched) first.
Time is the median of --repeats calls after one warm-up call.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def _measure(method: str, B: int, T: int, V: int, repeats: int, chunk_size: int | None) -> dict:
    import torch
    from sgopd_lite.losses import token_logprobs

    torch.manual_seed(0)
    logits = torch.empty(B, T, V).normal_()          # filled in place: no temporary copy
    tokens = torch.randint(0, V, (B, T))
    if method == "naive":
        def fn():
            return logits.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
    else:
        def fn():
            return token_logprobs(logits, tokens, chunk_size=chunk_size)
    with torch.no_grad():
        before = _rss_kib()
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()                                             # first call: the memory measurement
        peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    extra_kib = max(peak_after, peak_before) - before
    return {"method": method, "extra_mib": extra_kib / 1024, "median_s": statistics.median(times),
            "logits_mib": logits.numel() * 4 / 2**20}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--B", type=int, default=2)
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--V", type=int, default=151_936)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunk-size", type=int, default=None, help="positions per chunk (default: ~64 MiB)")
    ap.add_argument("--worker", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(_measure(args.worker, args.B, args.T, args.V, args.repeats, args.chunk_size)))
        return

    results = {}
    for method in ("naive", "chunked"):
        cmd = [sys.executable, __file__, "--worker", method, "--B", str(args.B), "--T", str(args.T),
               "--V", str(args.V), "--repeats", str(args.repeats)]
        if args.chunk_size:
            cmd += ["--chunk-size", str(args.chunk_size)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[method] = json.loads(out.strip().splitlines()[-1])

    import torch
    n, c = results["naive"], results["chunked"]
    print(f"token_logprobs, float32 logits B={args.B} T={args.T} V={args.V} "
          f"({n['logits_mib']:.0f} MiB of input logits), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'method':<10}{'peak extra MiB':>16}{'median s':>12}")
    for r in (n, c):
        print(f"{r['method']:<10}{r['extra_mib']:>16.1f}{r['median_s']:>12.4f}")
    print(f"memory ratio chunked/naive: {c['extra_mib'] / max(n['extra_mib'], 1e-9):.3f}  (target <= 0.25)")
    print(f"time ratio   chunked/naive: {c['median_s'] / n['median_s']:.3f}")


if __name__ == "__main__":
    main()
