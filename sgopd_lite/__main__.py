"""Command line: `python -m sgopd_lite <command> ...` (also installed as `sgopd-lite`).

    train   --config configs/tiny.yaml [key=value ...]   one training run (resumes if interrupted;
                                                         --restart starts over in its out_dir)
    eval    --model tiny-student --n 8                   avg@n / pass@k on a held-out set
    world   --size tiny --report                         build the tiny world and print its table
    data                                                 regenerate the arithmetic splits (sgopd_lite/assets/)
    demo                                                 the README's main job (make demo)
    reproduce --jobs 2                                   every study behind docs/results*.md (study.plan.REPRODUCE:
                                                         configs/studies/*.yaml, start points first; resumes)
    reproduce --smol                                     only its SmolLM2 part: configs/studies/smol.yaml
    report [--partial]                                   docs/results.md from the finished runs (`make reproduce`
                                                         re-runs the studies, skipping finished runs, then this)
    sweep   --config configs/tiny.yaml --out DIR --jobs 2 [key=value ...] key=a,b seed=0:3
                                                         a grid of runs (resumable, parallel, --shard i/n)
    sweep   --study configs/studies/NAME.yaml            the same, defined in a study file
    sweep-report DIR [--baseline key=value ...]          its table: mean ± 95% interval, paired differences
    knobs [--write docs/usage.md]                        every config knob with its default and meaning

May import: every module (the command line is the top floor), each inside its command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _cmd_train(args) -> int:
    from .config import load_config
    from .train import train

    cfg = load_config(args.config, args.overrides)
    history = train(cfg, verbose=not args.quiet, restart=args.restart)
    last = history[-1] if history else {}
    evals = {k: v for k, v in last.items() if k.startswith("eval_")}
    print(json.dumps({"out_dir": cfg.out_dir, "steps": cfg.steps, **evals}, indent=2))
    return 0


def _load_eval_model(name: str, world_args):
    """A model to evaluate: 'tiny-student', 'tiny-teacher' or a saved model directory."""
    if name in ("tiny-student", "tiny-teacher"):
        from .worlds.tiny import load_tiny_pair
        tok, teacher, student = load_tiny_pair(world_args.style_gap, world_args.teacher_noise)
        return tok, (teacher if name == "tiny-teacher" else student)
    from transformers import AutoModelForCausalLM

    from .models import load_tokenizer
    if not os.path.isdir(name):
        raise SystemExit(f"--model {name!r}: not 'tiny-student', 'tiny-teacher' or a model directory")
    return load_tokenizer(name), AutoModelForCausalLM.from_pretrained(name).eval()


def _cmd_eval(args) -> int:
    from .data import arithmetic_split, load_jsonl
    from .evaluate import evaluate

    from .data import SPLIT_SIZES
    problems = arithmetic_split(args.data) if args.data in SPLIT_SIZES else load_jsonl(args.data)
    if args.limit:
        problems = problems[:args.limit]
    from .data import DEFAULT_INSTRUCTION
    from .worlds.tiny import TinyWorldConfig

    tok, model = _load_eval_model(args.model, args)
    instruction = args.instruction
    if instruction is None:   # the tiny world's own prompt for tiny models and tiny-world data
        instruction = TinyWorldConfig().instruction if args.data in SPLIT_SIZES else DEFAULT_INSTRUCTION
    res = evaluate(model, tok, problems, n=args.n, k=args.k, temperature=args.temperature,
                   max_new_tokens=args.max_new_tokens, instruction=instruction)
    row = {"model": args.model, "data": args.data, **res.as_dict()}
    print(f"| model | data | problems | avg@{res.n} | pass@{res.k} | seconds |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.model} | {args.data} | {res.num_problems} | {res.avg_at_n:.3f} | {res.pass_at_k:.3f} | {res.seconds:.1f} |")
    if res.per_skill:
        print(f"\n| skill | problems | avg@{res.n} |")
        print("|---|---|---|")
        print("\n".join(res.skill_rows()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=2)
    return 0


def _cmd_world(args) -> int:
    from .worlds import WORLD_OF_SIZE, report

    if args.size not in WORLD_OF_SIZE:
        raise SystemExit(f"world --size {args.size!r}: expected one of {sorted(WORLD_OF_SIZE)}")
    if args.size != "tiny" and (args.rebuild or args.build_dir):
        raise SystemExit("world --rebuild / --build-dir: only the tiny world is rebuilt from here")
    if not args.report:
        raise SystemExit("world: add --report (the table of the size's world)")
    if args.size == "tiny":
        report("tiny", n=args.n, rebuild=args.rebuild, build_dir=args.build_dir, limit=args.limit)
    else:
        report(args.size)
    return 0


def _cmd_data(args) -> int:
    from .data import regenerate_splits
    from .worlds.tiny import write_unseen_split

    for name, path in regenerate_splits().items():
        print(f"wrote {name} split: {path}")
    print(f"wrote eval_unseen split: {write_unseen_split()}")   # after the others: it excludes them
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(out_dir=args.out_dir, steps=args.steps)
    return 0


def _cmd_reproduce(args) -> int:
    from pathlib import Path

    from .study.plan import REPRODUCE, RESULTS_DIR, START_POINTS, reproduce, study_start_points

    kw = {k: getattr(args, k) for k in ("steps", "seeds", "grid_seeds")}
    if args.results_dir:
        kw["results_dir"] = Path(args.results_dir)
    if args.work_dir:
        kw["work_dir"] = Path(args.work_dir)
    studies = ("smol",) if args.smol else REPRODUCE
    if args.start_points:
        results = kw.get("results_dir", RESULTS_DIR)
        for name in studies:
            study_start_points(name, results)
        files = dict.fromkeys(str(results / START_POINTS[n]) for n in studies if n in START_POINTS)
        print(f"[reproduce] start points in place ({', '.join(files)})")
        return 0
    done = reproduce(jobs=args.jobs, limit=args.limit, studies=studies, **kw)
    print(f"[reproduce] {done} runs finished in this invocation; `python -m sgopd_lite report` "
          "writes docs/results.md once every run is there")
    return 0


def _cmd_report(args) -> int:
    from pathlib import Path

    from .study import report, worlds_report

    kw = {"results_dir": Path(args.results_dir)} if args.results_dir else {}
    try:
        first = report.write_report(**kw)
        path = worlds_report.write_worlds_report(partial=args.partial, **kw)
    except (report.ReportError, worlds_report.ReportError) as err:
        print(f"sgopd_lite report: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {first}")
    return 0


def _cmd_sweep(args) -> int:
    from .config import ConfigError
    from .study.sweep import from_command_line, load_study, parse_shard, refresh_summaries, run_sweep

    if args.config and args.study:
        raise ConfigError("give --config or --study, not both (a study file names its config)")
    shard_of = parse_shard(args.shard)
    if args.study:
        base = load_study(args.study)
        sweep = from_command_line(None, args.overrides, args.out, base=base, work=args.work)
    else:
        if not args.out:
            raise ConfigError("--out DIR is missing (where the summaries and runs go)")
        sweep = from_command_line(args.config, args.overrides, args.out, work=args.work)
    if args.refresh:
        done, missing = refresh_summaries(sweep)
        print(f"[sweep] refreshed {done} summaries from their run folders"
              + (f"; {len(missing)} without a run folder here, left as they were: {', '.join(missing)}" if missing else ""))
        return 0
    try:
        return run_sweep(sweep, jobs=args.jobs, shard_of=shard_of, worker=args.worker,
                         worker_argv=args.argv, verbose=args.verbose, limit=args.limit)
    except KeyboardInterrupt:
        if args.worker is None:
            print("\n[sweep] interrupted: no summary is half-written; the same command resumes each unfinished "
                  "run from its checkpoint", file=sys.stderr)
        return 130


def _cmd_sweep_report(args) -> int:
    from .study.sweep_report import write_sweep_report

    path, table = write_sweep_report(args.dir, baseline=args.baseline)
    print(table)
    print(f"\nwrote {path}")
    return 0


def _cmd_knobs(args) -> int:
    from .knobs import knob_table, write_knob_table

    if args.write:
        changed = write_knob_table(args.write)
        print(f"{'rewrote' if changed else 'already current:'} the knob table in {args.write}")
    else:
        print(knob_table())
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="sgopd_lite", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="one training run")
    p.add_argument("--config", default=None, help="YAML file (see configs/)")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. gate.lambda_e=1.5 steps=100")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--restart", action="store_true",
                   help="delete a checkpoint in out_dir and start over (a checkpoint is resumed only when "
                        "the same configuration wrote it; another one is refused without this flag)")
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("eval", help="avg@n and pass@k of a model")
    p.add_argument("--model", default="tiny-student")
    p.add_argument("--data", default="eval", help="a committed split ('eval': the tiny held-out split; 'eval_skills': 64 "
                   "problems of each skill; 'train') or a JSONL path")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--style-gap", type=float, default=0.0)
    p.add_argument("--teacher-noise", type=float, default=0.0)
    p.add_argument("--instruction", default=None,
                   help="text after the question (default: the tiny world's for --data eval, else the boxed request)")
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    p.set_defaults(fn=_cmd_eval)

    p = sub.add_parser("world", help="build / report the tiny world")
    p.add_argument("--size", default="tiny")
    p.add_argument("--report", action="store_true", help="print the table of the world (docs/tiny_world.md for tiny)")
    p.add_argument("--rebuild", action="store_true", help="retrain every model of the report")
    p.add_argument("--build-dir", default=None,
                   help="where --rebuild writes (default: the cache; sgopd_lite/assets/tiny = the committed copies)")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--limit", type=int, default=None, help="held-out problems used (default all)")
    p.set_defaults(fn=_cmd_world)

    p = sub.add_parser("data", help="regenerate the committed arithmetic splits")
    p.set_defaults(fn=_cmd_data)

    p = sub.add_parser("demo", help="the README's main job")
    p.add_argument("--out-dir", default="runs/demo")
    p.add_argument("--steps", type=int, default=None)
    p.set_defaults(fn=_cmd_demo)

    p = sub.add_parser("reproduce", help="every study behind docs/results.md and docs/results_first_study.md "
                       "(study.plan.REPRODUCE; resumable: skips every run whose summary exists)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (one torch thread each; smol runs alone)")
    p.add_argument("--limit", type=int, default=None, help="at most this many runs in all")
    p.add_argument("--steps", type=int, default=None,
                   help="smoke runs: every study's steps (default: each study's own)")
    p.add_argument("--seeds", type=int, default=None,
                   help="smoke runs: this many seeds of every study, from its own first seed (default: its own)")
    p.add_argument("--grid-seeds", type=int, default=None, help="smoke runs: the same for the grid study only")
    p.add_argument("--results-dir", default=None, help="where run summaries go (default results/runs)")
    p.add_argument("--work-dir", default=None, help="checkpoints of unfinished runs, in DIR/<study> "
                   "(default: each study file's work:, e.g. runs/reproduce)")
    p.add_argument("--smol", action="store_true",
                   help="only the pretrained-model runs: OPD vs SG-OPD with SmolLM2 (configs/studies/smol.yaml)")
    p.add_argument("--start-points", action="store_true",
                   help="only the start points (teachers and starting students, cached in results/runs/)")
    p.set_defaults(fn=_cmd_reproduce)

    p = sub.add_parser("report", help="write docs/results.md (and results_first_study.md) from the finished runs")
    p.add_argument("--results-dir", default=None)
    p.add_argument("--partial", action="store_true",
                   help="write docs/results.md while runs are missing (its first lines say how many)")
    p.set_defaults(fn=_cmd_report)

    p = sub.add_parser("sweep", help="a grid of training runs from one command (resumable, parallel)")
    p.add_argument("--config", default=None, help="base YAML config (see configs/)")
    p.add_argument("--study", default=None, help="a study file (configs/studies/*.yaml) instead of --config")
    p.add_argument("--out", default=None, help="where summaries (DIR/*.json) and runs (DIR/work/) go")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (one torch thread each)")
    p.add_argument("--shard", default=None, help="i/n: run only the i-th of n disjoint slices (0 <= i < n)")
    p.add_argument("--work", default=None, help="where the runs' folders go (default DIR/work, or the study's work:)")
    p.add_argument("--limit", type=int, default=None, help="at most this many runs per process")
    p.add_argument("--verbose", action="store_true", help="the trainer's progress bars and logs")
    p.add_argument("--refresh", action="store_true",
                   help="train nothing: recompute finished summaries' curves and evidence from their run folders")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*",
                   help="key=value (fixed) or key=a,b,c / key=0:5 (an axis); seed=0:3 = 3 seeds per cell")
    p.set_defaults(fn=_cmd_sweep)

    p = sub.add_parser("sweep-report", help="the table of a sweep: mean ± 95%% interval, paired differences")
    p.add_argument("dir", help="the sweep's --out folder")
    p.add_argument("--baseline", nargs="+", default=None, metavar="key=value",
                   help="the cell the others are compared with, paired by seed (e.g. gate.lambda_i=1)")
    p.set_defaults(fn=_cmd_sweep_report)

    p = sub.add_parser("knobs", help="every config knob (TrainConfig, world.*, gate.*, pts.*, vllm.*) as a table")
    p.add_argument("--write", default=None, metavar="FILE",
                   help="replace the table between the knob markers of FILE (docs/usage.md) instead of printing it")
    p.set_defaults(fn=_cmd_knobs)

    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    args.argv = argv
    from .config import ConfigError
    from .data import DataError

    try:
        return args.fn(args)
    except (ConfigError, DataError) as err:   # bad input: one clear line, no traceback
        print(f"sgopd_lite {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
