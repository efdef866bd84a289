"""What kind of mistake does a student make, skill by skill? Each sampled line of a worked
solution sorted by what went wrong in it, for the saved students of a study.

A line `a op b = c` is judged on its own operands (as `data.check_steps` does) and sorted:

* right:          c = a op b, and a, op, b are the ones the question asks for next;
* forgot carry:   the line needs a carry and c is 10 too small (the forgotten-carry result);
* forgot borrow:  the line needs a borrow and c is 10 too large;
* phantom carry:  an addition that needs no carry, c 10 too large (a carry where there is none);
* phantom borrow: a subtraction that needs no borrow, c 10 too small;
* off by one:     c is a op b plus or minus 1 (a units-digit slip);
* other result:   the operands are right and c is wrong some other way;
* wrong operands: a, op or b is not what the question asks for next (or the line should not be
                  there); the boxed line and cut-off lines are not counted.

The horizon check asks why the skill `none` (no carry, no borrow) falls while a teacher that is
right on it teaches carry and borrow: phantom carries and borrows on `none` problems are the
student applying what it learned where it does not belong.

`python -m sgopd_lite.study.error_kinds` measures the starting students of both hold and A2
complementary error and the final students of the run folders given, on the held-out
skill-balanced split, and writes results/runs/horizon/error_kinds.json, which docs/results.md
reports. Tiny world only.

May import: config, data, evaluate, worlds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

RESULT = Path("results/runs/horizon/error_kinds.json")
KINDS = ("right", "forgot carry", "forgot borrow", "phantom carry", "phantom borrow", "off by one", "other result",
         "wrong operands")
WORLDS = {"hold": {"style_gap": 0.0, "teacher_noise": 0.0, "eval_data": "eval_skills"},
          "a2c": {"style_gap": 0.0, "teacher_noise": 1.0, "teacher_slip_kind": "borrow",
                  "student_slip_kind": "carry", "eval_data": "eval_skills"}}


def line_kinds(question: str, response: str) -> list[str]:
    """The KINDS of each step line of `response` (boxed and cut-off lines left out)."""
    from ..data import STEP_LINE, _apply, check_steps, has_borrow, has_carry

    out = []
    for step in check_steps(question, response):
        m = STEP_LINE.fullmatch(response[step.start:step.end].rstrip("\n"))
        if m is None or step.verdict == 0:
            continue
        a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[5])
        if step.verdict == 1:
            out.append("right")
        elif step.first_wrong is not None and step.first_wrong < step.start + m.start(5):
            out.append("wrong operands")
        elif step.slip is not None:
            out.append(f"forgot {step.slip}")
        elif op == "+" and not has_carry(a, op, b) and c == _apply(a, op, b) + 10:
            out.append("phantom carry")
        elif op == "-" and not has_borrow(a, op, b) and c == _apply(a, op, b) - 10:
            out.append("phantom borrow")
        elif abs(c - _apply(a, op, b)) == 1:
            out.append("off by one")
        else:
            out.append("other result")
    return out


def error_profile(world, student, n: int = 8, seed: int = 0, max_new_tokens: int = 64) -> dict:
    """Sample `n` solutions (temperature 1) of every held-out problem of `world` and count KINDS
    per skill, beside the greedy solution's accuracy (temperature 0: what the student knows
    best, apart from how sharply it samples): {skill: {"lines": N, "avg": avg@n, "greedy":
    greedy accuracy, kind: share of the lines}}."""
    from ..data import SKILLS, check_steps, skill_of
    from ..evaluate import evaluate

    counts: dict[str, dict[str, int]] = {s: dict.fromkeys(KINDS, 0) for s in SKILLS}

    def recorder(question, text):                    # evaluate's step checker, counting on the side
        skill = skill_of(question)
        if skill is not None:
            for kind in line_kinds(question, text):
                counts[skill][kind] += 1
        return check_steps(question, text)

    torch.manual_seed(seed)
    res = evaluate(student, world.tokenizer, world.eval_problems, n=n, max_new_tokens=max_new_tokens,
                   instruction=world.instruction, vocab_size=world.vocab_size, step_checker=recorder)
    greedy = evaluate(student, world.tokenizer, world.eval_problems, n=1, temperature=0.0,
                      max_new_tokens=max_new_tokens, instruction=world.instruction, vocab_size=world.vocab_size)
    out = {}
    for skill, row in counts.items():
        lines = sum(row.values())
        if skill in res.per_skill:
            out[skill] = {"lines": lines, "avg": res.per_skill[skill]["avg"], "greedy": greedy.per_skill[skill]["avg"],
                          **{k: v / lines if lines else 0.0 for k, v in row.items()}}
    return out


def main(argv=None) -> int:
    import os

    from transformers import AutoModelForCausalLM

    from ..config import TrainConfig
    from ..worlds import load_world

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", help="run folders WORLD-...: their final/ students are measured")
    ap.add_argument("--out", default=str(RESULT))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = {"n": 8, "seed": 0, "students": {}}
    for name, world_kw in WORLDS.items():
        world = load_world(TrainConfig(world=dict(world_kw)), verbose=False)
        out["students"][f"{name} start"] = error_profile(world, world.student)
        for run in args.runs:
            run = Path(run)
            if run.name.startswith(f"{name}-") and (run / "final").exists():
                student = AutoModelForCausalLM.from_pretrained(run / "final").eval()
                steps = json.loads((run / "config.json").read_text()).get("steps")
                out["students"][f"{run.name} at {steps}"] = error_profile(world, student)
        for key, prof in out["students"].items():
            if key.startswith(name):
                print(f"[error_kinds] {key}: " + "; ".join(
                    f"{s} {v['avg']:.2f} greedy {v['greedy']:.2f} (" + ", ".join(f"{k} {100 * v[k]:.0f}%" for k in KINDS if v[k] >= 0.01) + ")"
                    for s, v in prof.items()), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
