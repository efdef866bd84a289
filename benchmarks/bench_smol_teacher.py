"""The smol world: held-out accuracy of SmolLM2 as shipped, the fine-tuned teacher, the pruned copy
and the default student (worlds.smol.SmolStudentConfig, fine-tuned on sloppy solutions).

    OMP_NUM_THREADS=1 python benchmarks/bench_smol_teacher.py                 # default teacher, avg@4 on 64
    OMP_NUM_THREADS=1 python benchmarks/bench_smol_teacher.py --steps 80 --lr 1e-4 --n 8

Builds the fine-tuned teacher if it is not cached (worlds.smol.smol_teacher_dir: the SFT time and
thread count are in its meta.json, printed here), then samples n responses per problem at
temperature 1 from each model on the first --problems problems of the held-out split, with the
smol size's prompt (data.DEFAULT_INSTRUCTION). Prints one row per model.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch


def main():
    from transformers import AutoModelForCausalLM

    from sgopd_lite.data import arithmetic_split
    from sgopd_lite.evaluate import evaluate
    from sgopd_lite.models import load_tokenizer
    from sgopd_lite.worlds.smol import smollm2_dir, smollm2_student_dir
    from sgopd_lite.worlds.smol import SmolStudentConfig, SmolTeacherConfig, smol_student_dir, smol_teacher_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = SmolTeacherConfig()
    ap.add_argument("--steps", type=int, default=defaults.steps, help="SFT steps of the teacher")
    ap.add_argument("--lr", type=float, default=defaults.lr)
    ap.add_argument("--batch-size", type=int, default=defaults.batch_size)
    ap.add_argument("--problems", type=int, default=64, help="held-out problems")
    ap.add_argument("--n", type=int, default=4, help="samples per problem (avg@n, pass@n)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--models", default="original,teacher,pruned,student")
    args = ap.parse_args()

    cfg = SmolTeacherConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size)
    paths = {"original": smollm2_dir(), "teacher": smol_teacher_dir(cfg), "pruned": smollm2_student_dir(),
             "student": smol_student_dir(SmolStudentConfig())}
    meta = json.loads((paths["teacher"] / "meta.json").read_text())
    print(f"teacher: {cfg.steps} SFT steps of {cfg.batch_size}, lr {cfg.lr}: {meta['seconds']} s on "
          f"{meta['threads']} thread(s), loss {meta['first_loss']} -> {meta['final_loss']}; build-time "
          f"held-out {json.dumps(meta.get('held_out', {}))}", flush=True)
    problems = arithmetic_split("eval")[:args.problems]
    rows = []
    for name in args.models.split(","):
        tok = load_tokenizer(paths[name])
        model = AutoModelForCausalLM.from_pretrained(paths[name], dtype=torch.float32).eval()
        torch.manual_seed(0)
        res = evaluate(model, tok, problems, n=args.n, max_new_tokens=args.max_new_tokens)
        rows.append((name, res))
        print(f"  {name}: avg@{args.n} {res.avg_at_n:.3f} ({res.seconds:.0f} s)", flush=True)
    print(f"\nheld-out split, {len(problems)} problems, n = {args.n} at temperature 1, max_new_tokens "
          f"{args.max_new_tokens}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)\n")
    print(f"| model | avg@{args.n} | pass@{args.n} | mean response tokens | truncated | eval s |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} ({paths[name].name}) | {r.avg_at_n:.3f} | {r.pass_at_k:.3f} | "
              f"{r.mean_response_tokens:.1f} | {r.truncation_rate:.2f} | {r.seconds:.0f} |")


if __name__ == "__main__":
    main()
