"""Where does the teacher's forgotten borrow reach the student? The pushes each method puts on
the one token that decides a borrow, measured on the same rollouts.

On A2 complementary error the teacher forgets every borrow: on a line `a-b=c` that needs one it
writes a - b + 10. The two answers share their leading characters and then differ in one
character, the *borrow digit* (16 against 26: the "1"; 6 against 16: the first character). A
method teaches the forgotten borrow at that position when its advantage A there pushes the
right digit down or the forgotten digit up ("toward the error"), and the right borrow when it
does the opposite ("away"). Each method's A comes from `advantage.method_advantage`, exactly as
the trainer forms it, on one shared batch of the student's rollouts of borrow and both prompts.

The toward-the-error pushes on a sampled *right* digit are split by where the line stands, since
that is where the verdict-reading gates differ:

* the line is right (a per-step verdict sees a correct step),
* the line is wrong elsewhere (its borrow digit is right, another character is not: a per-line
  verdict calls the whole line wrong, so OPDVR's cells keep the teacher's push down on it),
* an earlier line was wrong (a first-error verdict calls everything from there on wrong, and the
  oracle of correct tokens has stopped knowing).

`python -m sgopd_lite.study.channels` measures the starting student of A2 complementary error
and the final students of the verifier-roles study's seed-0 runs still on disk, and writes
results/runs/verifier_roles/channels.json, which docs/results.md reports. Tiny world only.

May import: advantage, config, data, gate, losses, rollout, train, verifier, worlds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

RESULT = Path("results/runs/verifier_roles/channels.json")
A2C = {"style_gap": 0.0, "teacher_noise": 1.0, "teacher_slip_kind": "borrow", "student_slip_kind": "carry",
       "eval_data": "eval_skills"}
# label -> (method, gate preset, step unit) for advantage.method_advantage, in the report's order
METHODS = {"OPD": ("opd", "opd", "line"), "OPDVR's gate": ("opdvr", "opdvr", "line"), "GRPO": ("grpo", "opd", "line"),
           "teacher probe": ("teacher_probe", "opd", "line"), "step gate": ("step_gate", "opdvr", "line"),
           "step gate, prefix": ("step_gate", "opdvr", "prefix"),
           "first-error gate": ("first_error_gate", "opdvr", "line"), "hybrid c = 1": ("hybrid", "opd", "line"),
           "oracle gate (a bound)": ("oracle_gate", "opd", "line")}
PLACES = ("line right", "line wrong elsewhere", "after a wrong line")


def borrow_digits(question: str, response: str) -> list[dict]:
    """The borrow digit of every line of `response` that needs a borrow and reaches it: its
    character offset, what was written there (right / forgot / other), the line's verdict and
    whether an earlier line was wrong. A line whose result already differs before the borrow
    digit (another mistake first) is left out: its borrow was never decided."""
    from ..data import STEP_LINE, check_steps

    out, earlier_wrong = [], False
    for step in check_steps(question, response):
        line = response[step.start:step.end].rstrip("\n")
        m = STEP_LINE.fullmatch(line)
        if m and step.needs == "borrow":
            a, b, written = int(m[1]), int(m[3]), m[5]
            right, forgot = str(a - b), str(a - b + 10)
            k = next(i for i, (x, y) in enumerate(zip(right + " ", forgot + " ")) if x != y)
            if len(written) > k and written[:k] == right[:k]:
                kind = "right" if written[k] == right[k:k + 1] else "forgot" if written[k] == forgot[k] else "other"
                out.append({"offset": step.start + m.start(5) + k, "kind": kind, "line_right": step.verdict == 1,
                            "earlier_wrong": earlier_wrong})
        earlier_wrong = earlier_wrong or step.verdict == -1
    return out


def place(position: dict) -> str:
    """Where a borrow digit stands, as PLACES names it (an earlier wrong line comes first)."""
    if position["earlier_wrong"]:
        return PLACES[2]
    return PLACES[0] if position["line_right"] else PLACES[1]


def token_at(tokenizer, ids: list[int], offset: int) -> int | None:
    """The index of the response token whose characters cover `offset` (decoded one by one)."""
    pos = 0
    for t, tid in enumerate(ids):
        piece = tokenizer.decode([tid], skip_special_tokens=True)
        if pos <= offset < pos + len(piece):
            return t
        pos += len(piece)
    return None


def push_table(advantages: dict, positions: list[tuple[int, int, dict]], rollouts: int) -> dict:
    """Per method: the pushes at the borrow digits. `positions`: (rollout, token, borrow_digits
    record). Masses are sums of |A| per 100 rollouts; `toward_by_place` splits the pushes toward
    the error on a sampled right digit by `place`."""
    table = {}
    for label, adv in advantages.items():
        row = {"toward": 0.0, "away": 0.0, "toward_right_digit": 0.0,
               "toward_by_place": dict.fromkeys(PLACES, 0.0), "right_by_place": dict.fromkeys(PLACES, 0)}
        for i, t, p in positions:
            a = float(adv[i, t])
            if p["kind"] == "other" or a == 0.0:
                if p["kind"] == "right":
                    row["right_by_place"][place(p)] += 1
                continue
            toward = (p["kind"] == "right" and a < 0) or (p["kind"] == "forgot" and a > 0)
            row["toward" if toward else "away"] += abs(a)
            if p["kind"] == "right":
                row["right_by_place"][place(p)] += 1
                if toward:
                    row["toward_right_digit"] += abs(a)
                    row["toward_by_place"][place(p)] += abs(a)
        scale = 100.0 / rollouts
        for k in ("toward", "away", "toward_right_digit"):
            row[k] *= scale
        row["toward_by_place"] = {k: v * scale for k, v in row["toward_by_place"].items()}
        row["net_toward"] = row["toward"] - row["away"]
        table[label] = row
    return table


def measure(world, student, problems: int = 64, group: int = 8, max_new_tokens: int = 40, probe_m: int = 4,
            seed: int = 0, methods: dict = METHODS) -> dict:
    """Sample `group` rollouts of `student` on the first `problems` borrow and both training
    prompts, form every method's advantage on them, and tabulate the pushes at the borrow digits."""
    from ..advantage import Signals, method_advantage
    from ..data import format_prompt, skill_of
    from ..gate import GateConfig
    from ..losses import token_logprobs
    from ..rollout import response_logits, sample, sequence_logprobs
    from ..train import per_token_values, teacher_pass_counts
    from ..verifier import rewards as verifier_rewards
    from ..worlds.base import STEP_UNITS, token_verdicts

    tok = world.tokenizer
    chosen = [p for p in world.train_problems if skill_of(p.question) in ("borrow", "both")][:problems]
    torch.manual_seed(seed)
    prompts = [format_prompt(tok, p.question, world.instruction) for p in chosen]
    ro = sample(student, tok, prompts, group, max_new_tokens=max_new_tokens, temperature=1.0,
                vocab_size=world.vocab_size)
    questions = [chosen[int(g)].question for g in ro.group_ids]
    r = torch.tensor(verifier_rewards(ro.texts, [chosen[int(g)].answer for g in ro.group_ids]), dtype=torch.float32)
    with torch.no_grad():
        logits = response_logits(world.teacher, ro, world.vocab_size)
        teacher_logp, top = token_logprobs(logits, ro.response_ids), logits.argmax(-1)
        old_logp = sequence_logprobs(student, ro, world.vocab_size)
    mask = ro.response_mask
    passes = teacher_pass_counts(world.teacher, tok, prompts, [p.answer for p in chosen], probe_m, max_new_tokens,
                                 vocab_size=world.vocab_size)
    verdicts = {unit: per_token_values(ro, questions, lambda q, ids, u=unit: token_verdicts(
        tok, world.step_checker, q, ids, unit=u)) for unit in STEP_UNITS}
    signals = {unit: Signals(old_logp, r, ro.group_ids, mask, teacher_logp, step_verdict=verdicts[unit],
                             teacher_top=top, correct_next=per_token_values(ro, questions, world.token_oracle, fill=-1),
                             prompt_trusted=torch.tensor([passes[int(g)] / probe_m >= 0.5 for g in ro.group_ids]))
               for unit in STEP_UNITS}
    advantages = {label: method_advantage(m, getattr(GateConfig, gate)(), signals[unit]).advantage
                  for label, (m, gate, unit) in methods.items()}
    positions, kinds = [], dict.fromkeys(("right", "forgot", "other"), 0)
    for i in range(len(ro)):
        ids = ro.response_ids[i, :int(mask[i].sum())].tolist()
        for p in borrow_digits(questions[i], ro.texts[i]):
            t = token_at(tok, ids, p["offset"])
            if t is not None:
                positions.append((i, t, p))
                kinds[p["kind"]] += 1
    return {"rollouts": len(ro), "prompts": len(chosen), "reward_mean": float(r.mean()),
            "borrow_digits": kinds, "teacher_trusted_prompts": sum(x / probe_m >= 0.5 for x in passes),
            "pushes": push_table(advantages, positions, len(ro))}


def main(argv=None) -> int:
    import os

    from ..config import TrainConfig
    from ..worlds import load_world

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs/verifier_roles", help="the study's run folders")
    ap.add_argument("--out", default=str(RESULT))
    ap.add_argument("--problems", type=int, default=64)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    world = load_world(TrainConfig(world=dict(A2C)), verbose=False)
    students = {"start": world.student}
    for arm in ("step_gate", "first_error_gate", "oracle_gate", "teacher_probe"):
        final = Path(args.runs) / f"a2c-{arm}-s0" / "final"
        if final.exists():
            from transformers import AutoModelForCausalLM
            students[f"a2c-{arm}-s0 final"] = AutoModelForCausalLM.from_pretrained(final).eval()
    out = {"world": "a2c", "problems": args.problems, "group": 8, "seed": 0, "students": {}}
    for name, student in students.items():
        out["students"][name] = measure(world, student, problems=args.problems)
        print(f"[channels] {name}: " + ", ".join(f"{k} toward {v['toward']:.1f} away {v['away']:.1f}"
                                                 for k, v in out["students"][name]["pushes"].items()), flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
