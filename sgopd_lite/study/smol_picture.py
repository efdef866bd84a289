"""What a verifier keeps on real text: one group of the starting SmolLM2 student's rollouts in the
planted smol world (configs/smol_a2c.yaml: its teacher forgets every borrow), token by token, at
the borrow digit.

    python -m sgopd_lite.study.smol_picture --config configs/smol_a2c.yaml

samples groups of the starting student on training problems that need a borrow, scores them with
the teacher, and keeps the first group with a correct rollout whose borrow line holds a token the
teacher would not write (its most likely token there differs from the sampled one: the right
digit pushed down) and a wrong rollout beside it. For both rollouts it records OPD's push (a2)
and the advantage of each place a verifier can act on the smol world: OPDVR's gate (the rollout's
verdict), the teacher probe (the teacher is sampled PROBE_M times on the prompt and trusted when at
least half are right), the probe with the sign of a2 (the mixing study's balanced arm) and GRPO.
Writes results/runs/smol_a2c/picture.json (the records) and docs/figures/smol_a2c_borrow.png.

The tiny world frames the positions where the teacher's top token is wrong by its token oracle;
SmolLM2 has no oracle, so here a framed token is a digit of the result of a line the step checker
(`data.check_steps`) calls a correct borrow step, where the teacher's top token is another.

May import: advantage, config, data, gate, losses, rollout, verifier, viz, worlds, train.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

RESULT = Path("results/runs/smol_a2c/picture.json")
FIGURE = Path("docs/figures/smol_a2c_borrow.png")
PROBE_M = 4
# label -> (method, gate preset, a2 scale): the rows drawn under OPD's push
ROWS = {"OPDVR's gate": ("opdvr", "opdvr", "value"), "teacher probe": ("teacher_probe", "opd", "value"),
        "probe, sign of a2": ("teacher_probe", "opd", "sign"), "GRPO": ("grpo", "opd", "value")}


def borrow_frames(tokenizer, question: str, ids: list[int], top: list[int]) -> list[bool]:
    """Per response token: a digit of the result (after "=") of a correct step that borrows, where
    the teacher's top token is not the sampled one (it would write another digit where the
    student is right)."""
    from ..data import check_steps

    pieces = [tokenizer.decode([t], skip_special_tokens=True) for t in ids]
    text = "".join(pieces)
    inside = [False] * len(pieces)
    starts, pos = [], 0
    for piece in pieces:
        starts.append(pos)
        pos += len(piece)
    for step in check_steps(question, text):
        if step.verdict == 1 and step.needs == "borrow":
            first = text.find("=", step.start, step.end) + 1      # the result starts after "="
            if first == 0:
                continue
            for t, (c, piece) in enumerate(zip(starts, pieces)):
                inside[t] = inside[t] or (piece != "" and first <= c < step.end)
    return [inside[t] and ids[t] != top[t] and pieces[t].strip().isdigit() for t in range(len(ids))]


def find_example(world, problems: int = 16, group: int = 8, max_new_tokens: int = 40, seed: int = 0,
                 rounds: int = 4) -> dict:
    """{"records": [correct rollout, wrong rollout], "tried": problems sampled, "seconds"}; records
    is [] when no group of `rounds` x `problems` borrow problems has both."""
    from ..advantage import Signals, method_advantage
    from ..data import format_prompt, skill_of
    from ..gate import GateConfig
    from ..losses import token_logprobs
    from ..rollout import response_logits, sample, sequence_logprobs
    from ..train import teacher_pass_counts
    from ..verifier import rewards as verifier_rewards

    start, tok = time.perf_counter(), world.tokenizer
    pool = [p for p in world.train_problems if skill_of(p.question) == "borrow"]
    torch.manual_seed(seed)
    for r_i in range(rounds):
        chosen = pool[r_i * problems:(r_i + 1) * problems]
        prompts = [format_prompt(tok, p.question, world.instruction) for p in chosen]
        with torch.no_grad():
            ro = sample(world.student, tok, prompts, group, max_new_tokens=max_new_tokens, temperature=1.0,
                        vocab_size=world.vocab_size)
            r = torch.tensor(verifier_rewards(ro.texts, [p.answer for p in chosen for _ in range(group)]),
                             dtype=torch.float32)
            logits = response_logits(world.teacher, ro, world.vocab_size)
            teacher_logp, top = token_logprobs(logits, ro.response_ids), logits.argmax(-1)
            old_logp = sequence_logprobs(world.student, ro, world.vocab_size)
        mask = ro.response_mask
        frames = {}
        for i in range(len(ro)):
            n = int(mask[i].sum())
            q = chosen[int(ro.group_ids[i])].question
            frames[i] = borrow_frames(tok, q, ro.response_ids[i, :n].tolist(), top[i, :n].tolist())
        pick = None
        for g in range(len(chosen)):
            rows = [i for i in range(len(ro)) if int(ro.group_ids[i]) == g]
            right = [i for i in rows if r[i] == 1 and any(frames[i])]
            wrong = [i for i in rows if r[i] == 0]
            if right and wrong:
                pick = (g, right[0], wrong[0])
                break
        if pick is None:
            continue
        g, i_right, i_wrong = pick
        passes = teacher_pass_counts(world.teacher, tok, [prompts[g]], [chosen[g].answer], PROBE_M, max_new_tokens,
                                     vocab_size=world.vocab_size)[0]
        trusted = torch.tensor([int(ro.group_ids[i]) == g and passes / PROBE_M >= 0.5 for i in range(len(ro))])
        signals = Signals(old_logp, r, ro.group_ids, mask, teacher_logp, teacher_top=top, prompt_trusted=trusted)
        opd = method_advantage("opd", GateConfig.opd(), signals).advantage
        roles = {label: method_advantage(method, getattr(GateConfig, preset)().replace(a2_scale=scale),
                                         signals).advantage
                 for label, (method, preset, scale) in ROWS.items()}
        records = []
        for i in (i_right, i_wrong):
            n = int(mask[i].sum())
            ids = ro.response_ids[i, :n].tolist()
            records.append({"question": chosen[g].question, "answer": chosen[g].answer, "reward": float(r[i]),
                            "tokens": [tok.decode([t]) for t in ids], "a2": opd[i, :n].tolist(),
                            "gate": roles["OPDVR's gate"][i, :n].tolist(), "teacher_wrong": frames[i],
                            "teacher_wants": [tok.decode([int(t)]) for t in top[i, :n]],
                            "roles": {k: v[i, :n].tolist() for k, v in roles.items()}})
        group_rewards = [float(r[i]) for i in range(len(ro)) if int(ro.group_ids[i]) == g]
        return {"records": records, "group_rewards": group_rewards, "probe_passes": passes, "probe_m": PROBE_M,
                "tried": (r_i + 1) * problems, "group": group, "seconds": round(time.perf_counter() - start, 1)}
    return {"records": [], "tried": rounds * problems, "group": group,
            "seconds": round(time.perf_counter() - start, 1)}


def describe(found: dict) -> list[str]:
    """One line per framed token: the teacher's wish and every row's advantage there."""
    lines = []
    for rec in found["records"]:
        verdict = "correct" if rec["reward"] == 1 else "wrong"
        text = "".join(rec["tokens"]).strip().replace("\n", " / ")
        lines.append(f"{verdict} rollout of {rec['question']}: {text}")
        for t, framed in enumerate(rec["teacher_wrong"]):
            if framed:
                rows = ", ".join(f"{k} {v[t] + 0.0:+.2f}" for k, v in rec["roles"].items())
                lines.append(f"  at {rec['tokens'][t]!r} (token {t}) the teacher wants {rec['teacher_wants'][t]!r}: "
                             f"OPD {rec['a2'][t]:+.2f}, {rows}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/smol_a2c.yaml")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULT))
    ap.add_argument("--figure", default=str(FIGURE))
    args = ap.parse_args(argv)
    from .. import viz
    from ..config import load_config
    from ..worlds import load_world

    cfg = load_config(args.config)
    world = load_world(cfg)
    found = find_example(world, max_new_tokens=cfg.max_new_tokens, seed=args.seed)
    found.update({"config": args.config, "seed": args.seed, "threads": torch.get_num_threads()})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(found, indent=1) + "\n")
    print("\n".join(describe(found)) or f"no group of {found['tried']} borrow problems had both rollouts")
    if found["records"]:
        fig = viz.plot_gate_change(found["records"], roles=True)
        fig.savefig(args.figure, dpi=110, bbox_inches="tight")
        print(f"wrote {args.out} and {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
