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

Those are the pushes *at* the borrow digit. Through the shared weights, a push anywhere moves the
borrow too; `influence` reads, to first order, how far one update of each method would move the
borrow's log-odds (right against forgotten digit, on held-out gold solutions), split by which
tokens carry the push (the borrow digit written right / forgotten / otherwise, carry digits, the
rest of each result, everything else) and by the skill of the prompt.

`python -m sgopd_lite.study.channels` measures the starting student of A2 complementary error
(the influence on two batches) and the final students of the seed-0 runs still on disk
(runs/verifier_roles, runs/step_prefix), and writes results/runs/verifier_roles/channels.json,
which docs/results.md reports. Tiny world only.

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
# label -> (method, gate preset, step unit, oracle reach) for advantage.method_advantage, in the report's order
METHODS = {"OPD": ("opd", "opd", "line", "first_mistake"), "OPDVR's gate": ("opdvr", "opdvr", "line", "first_mistake"),
           "GRPO": ("grpo", "opd", "line", "first_mistake"), "teacher probe": ("teacher_probe", "opd", "line", "first_mistake"),
           "step gate": ("step_gate", "opdvr", "line", "first_mistake"),
           "step gate, prefix": ("step_gate", "opdvr", "prefix", "first_mistake"),
           "first-error gate": ("first_error_gate", "opdvr", "line", "first_mistake"),
           "hybrid c = 1": ("hybrid", "opd", "line", "first_mistake"),
           "oracle gate (a bound)": ("oracle_gate", "opd", "line", "first_mistake"),
           "oracle gate, local (a bound)": ("oracle_gate", "opd", "line", "local")}
PLACES = ("line right", "line wrong elsewhere", "after a wrong line")


def _all_signals(world, ro, questions, base) -> dict:
    """(step unit, oracle reach) -> `base` Signals with the step verdicts and oracle of that kind."""
    import dataclasses

    from ..train import per_token_values
    from ..worlds.base import STEP_UNITS, token_verdicts

    tok = world.tokenizer
    verdicts = {u: per_token_values(ro, questions, lambda q, ids, u=u: token_verdicts(tok, world.step_checker, q, ids,
                                                                                       unit=u)) for u in STEP_UNITS}
    oracle = {x: per_token_values(ro, questions, lambda q, ids, x=x: world.token_oracle(q, ids, reach=x), fill=-1)
              for x in ("first_mistake", "local")}
    return {(u, x): dataclasses.replace(base, step_verdict=verdicts[u], correct_next=oracle[x])
            for u in STEP_UNITS for x in oracle}


def decisive_character(response: str, step, m) -> dict | None:
    """Where a line that needs a carry or a borrow (`step.needs`; m: its STEP_LINE match) decides
    it: the offset of the first character at which the right result and the forgotten one differ,
    the two characters there, and what was written (right / forgot / other). Each answer is taken
    with the newline that ends it, so 1 against 11 is decided at the second character. None when
    the written result departs before that character (another mistake first: never decided)."""
    a, b = int(m[1]), int(m[3])
    right, forgot = (f"{a - b}\n", f"{a - b + 10}\n") if step.needs == "borrow" else (f"{a + b}\n", f"{a + b - 10}\n")
    written = response[step.start + m.start(5):step.end]
    k = next(i for i, (x, y) in enumerate(zip(right, forgot)) if x != y)
    if len(written) <= k or written[:k] != right[:k]:
        return None
    kind = "right" if written[k] == right[k] else "forgot" if written[k] == forgot[k] else "other"
    return {"offset": step.start + m.start(5) + k, "kind": kind, "right": right[k], "forgot": forgot[k]}


def _step_lines(question: str, response: str):
    """(Step, STEP_LINE match or None) for each line `data.check_steps` judges."""
    from ..data import STEP_LINE, check_steps

    for step in check_steps(question, response):
        yield step, STEP_LINE.fullmatch(response[step.start:step.end].rstrip("\n"))


def borrow_digits(question: str, response: str) -> list[dict]:
    """The borrow digit of every line of `response` that needs a borrow and reaches it
    (`decisive_character`), with the line's verdict and whether an earlier line was wrong."""
    out, earlier_wrong = [], False
    for step, m in _step_lines(question, response):
        if m and step.needs == "borrow":
            d = decisive_character(response, step, m)
            if d is not None:
                out.append({**d, "line_right": step.verdict == 1, "earlier_wrong": earlier_wrong})
        earlier_wrong = earlier_wrong or step.verdict == -1
    return out


def place(position: dict) -> str:
    """Where a borrow digit stands, as PLACES names it (an earlier wrong line comes first)."""
    if position["earlier_wrong"]:
        return PLACES[2]
    return PLACES[0] if position["line_right"] else PLACES[1]


def token_of_char(tokenizer, ids: list[int]) -> dict[int, int]:
    """Character offset -> the index of the response token that covers it (decoded one by one)."""
    out, pos = {}, 0
    for t, tid in enumerate(ids):
        piece = tokenizer.decode([tid], skip_special_tokens=True)
        out.update((c, t) for c in range(pos, pos + len(piece)))
        pos += len(piece)
    return out


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


def scored_batch(world, student, chosen: list, group: int, seed: int, max_new_tokens: int, probe_m: int):
    """`group` rollouts of `student` on the problems `chosen`, scored as the trainer scores them:
    (rollouts, each rollout's question, rewards, {(step unit, oracle reach): Signals}, the
    teacher's probe pass counts per problem)."""
    from ..advantage import Signals
    from ..data import format_prompt
    from ..losses import token_logprobs
    from ..rollout import response_logits, sample, sequence_logprobs
    from ..train import teacher_pass_counts
    from ..verifier import rewards as verifier_rewards

    tok = world.tokenizer
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
    passes = teacher_pass_counts(world.teacher, tok, prompts, [p.answer for p in chosen], probe_m, max_new_tokens,
                                 vocab_size=world.vocab_size)
    trusted = torch.tensor([passes[int(g)] / probe_m >= 0.5 for g in ro.group_ids])
    signals = _all_signals(world, ro, questions, Signals(old_logp, r, ro.group_ids, ro.response_mask, teacher_logp,
                                                         teacher_top=top, prompt_trusted=trusted))
    return ro, questions, r, signals, passes


def method_advantages(signals: dict, methods: dict) -> dict:
    """label -> (R, T) advantage of each of `methods` (METHODS' form) on the scored batch."""
    from ..advantage import method_advantage
    from ..gate import GateConfig

    return {label: method_advantage(m, getattr(GateConfig, gate)(), signals[unit, reach]).advantage
            for label, (m, gate, unit, reach) in methods.items()}


def measure(world, student, problems: int = 64, group: int = 8, max_new_tokens: int = 40, probe_m: int = 4,
            seed: int = 0, methods: dict = METHODS) -> dict:
    """Sample `group` rollouts of `student` on the first `problems` borrow and both training
    prompts, form every method's advantage on them, and tabulate the pushes at the borrow digits."""
    from ..data import skill_of

    chosen = [p for p in world.train_problems if skill_of(p.question) in ("borrow", "both")][:problems]
    ro, questions, r, signals, passes = scored_batch(world, student, chosen, group, seed, max_new_tokens, probe_m)
    advantages = method_advantages(signals, methods)
    positions, kinds = [], dict.fromkeys(("right", "forgot", "other"), 0)
    for i in range(len(ro)):
        token_at = token_of_char(world.tokenizer, ro.response_ids[i, :int(ro.response_mask[i].sum())].tolist())
        for p in borrow_digits(questions[i], ro.texts[i]):
            if p["offset"] in token_at:
                positions.append((i, token_at[p["offset"]], p))
                kinds[p["kind"]] += 1
    return {"rollouts": len(ro), "prompts": len(chosen), "reward_mean": float(r.mean()),
            "borrow_digits": kinds, "teacher_trusted_prompts": sum(x / probe_m >= 0.5 for x in passes),
            "pushes": push_table(advantages, positions, len(ro))}


# --------------------------------------------------------------------------------------------
# What moved the borrow: first-order influence of each group of pushes on the borrow's log-odds
# --------------------------------------------------------------------------------------------

ROLES = ("borrow digit, right", "borrow digit, forgotten", "borrow digit, other", "carry digit",
         "other result characters", "everything else")


def token_roles(question: str, response: str) -> dict[int, str]:
    """Character offset -> ROLES for the characters of `response` that are not "everything
    else": each line's decisive borrow or carry digit, and the other characters of its result."""
    roles = {}
    for step, m in _step_lines(question, response):
        if m is None:
            continue
        for c in range(step.start + m.start(5), step.start + m.end(5)):
            roles[c] = ROLES[4]
        d = decisive_character(response, step, m) if step.needs == "carry" else None
        if d is not None:
            roles[d["offset"]] = ROLES[3]
    for d in borrow_digits(question, response):
        roles[d["offset"]] = ROLES[("right", "forgot", "other").index(d["kind"])]
    return roles


def forced_rollouts(tok, prompts: list[str], responses: list[str]):
    """`responses` written after `prompts` as a Rollouts batch (teacher forcing; EOS appended)."""
    from ..rollout import Rollouts

    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    p_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    r_ids = [tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in responses]
    P, T = max(map(len, p_ids)), max(map(len, r_ids))
    prompt = torch.tensor([[pad] * (P - len(x)) + x for x in p_ids])
    pmask = torch.tensor([[0] * (P - len(x)) + [1] * len(x) for x in p_ids])
    resp = torch.tensor([x + [pad] * (T - len(x)) for x in r_ids])
    rmask = torch.tensor([[1] * len(x) + [0] * (T - len(x)) for x in r_ids])
    return Rollouts(prompt, pmask, resp, rmask, torch.zeros(len(prompts), dtype=torch.bool), list(responses),
                    torch.arange(len(prompts)))


def borrow_logodds(student, world, problems) -> torch.Tensor:
    """L = sum over the borrow digits of the gold solutions of `problems` of log pi(right digit)
    - log pi(forgotten digit), teacher-forced (a scalar with a graph back to the weights)."""
    from ..data import format_prompt, parse_expression, solve

    tok = world.tokenizer
    from ..rollout import response_logits

    sols = [solve(*parse_expression(p.question))[0] for p in problems]
    ro = forced_rollouts(tok, [format_prompt(tok, p.question, world.instruction) for p in problems], sols)

    logp = torch.log_softmax(response_logits(student, ro, world.vocab_size).float(), -1)
    total = logp.new_zeros(())
    for i, (p, sol) in enumerate(zip(problems, sols)):
        token_at = token_of_char(tok, ro.response_ids[i, :int(ro.response_mask[i].sum())].tolist())
        for d in borrow_digits(p.question, sol):
            r_id, f_id = (tok(d[x], add_special_tokens=False)["input_ids"][0] for x in ("right", "forgot"))
            total = total + logp[i, token_at[d["offset"]], r_id] - logp[i, token_at[d["offset"]], f_id]
    return total


def influence(world, student, methods: dict = METHODS, per_skill: int = 16, group: int = 8, probes: int = 64,
              max_new_tokens: int = 40, probe_m: int = 4, seed: int = 0) -> dict:
    """How one update of each method would move the borrow, to first order, and which pushes
    move it: g_L . grad(sum_t A_t log pi(y_t)) over the tokens of each ROLES group and of each
    prompt skill, with g_L the gradient of `borrow_logodds` on `probes` held-out borrow and both
    problems. Positive: toward the right borrow; negative: toward the forgotten one. One batch of
    `per_skill` training prompts of each skill x `group` rollouts of the (unchanged) student. The
    trainer's AdamW rescales each weight's step, so this is the direction of a plain gradient
    step, not of the optimizer's: a reading of which pushes point where, not a prediction."""
    import copy

    from ..data import SKILLS, skill_of
    from ..rollout import sequence_logprobs

    tok = world.tokenizer
    model = copy.deepcopy(student).float().train(False)
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)
    probe_set = [p for p in world.eval_problems if skill_of(p.question) in ("borrow", "both")][:probes]
    g_l = torch.autograd.grad(borrow_logodds(model, world, probe_set), params)

    chosen = [p for s in SKILLS for p in [q for q in world.train_problems if skill_of(q.question) == s][:per_skill]]
    ro, questions, r, signals, passes = scored_batch(world, model, chosen, group, seed, max_new_tokens, probe_m)
    mask = ro.response_mask
    # the token groups: ROLES by characters (a token spanning several takes the first in ROLES order),
    # and the skill of the prompt
    role_of = torch.full(mask.shape, len(ROLES) - 1, dtype=torch.long)
    for i in range(len(ro)):
        token_at = token_of_char(tok, ro.response_ids[i, :int(mask[i].sum())].tolist())
        for c, role in token_roles(questions[i], ro.texts[i]).items():
            if c in token_at:
                t = token_at[c]
                role_of[i, t] = min(int(role_of[i, t]), ROLES.index(role))
    skill_of_rollout = [skill_of(q) for q in questions]
    groups = {**{f"role: {x}": role_of == k for k, x in enumerate(ROLES)},
              **{f"prompts: {s}": torch.tensor([x == s for x in skill_of_rollout])[:, None].expand_as(mask)
                 for s in SKILLS}}
    logp = sequence_logprobs(model, ro, world.vocab_size)                       # with the graph
    out = {"rollouts": len(ro), "probes": len(probe_set), "reward_mean": float(r.mean()),
           "teacher_trusted_prompts": int(sum(x / probe_m >= 0.5 for x in passes)), "methods": {}}
    for label, adv in method_advantages(signals, methods).items():
        adv = adv.detach()
        row = {}
        for name, sel in groups.items():
            obj = (adv * mask * sel * logp).sum() / len(ro)
            if not obj.requires_grad or float((adv * mask * sel).abs().sum()) == 0.0:
                row[name] = 0.0
                continue
            g = torch.autograd.grad(obj, params, retain_graph=True, allow_unused=True)
            row[name] = float(sum((a * b).sum() for a, b in zip(g, g_l) if a is not None))
        row["total"] = sum(v for k, v in row.items() if k.startswith("role: "))
        out["methods"][label] = row
    return out


def main(argv=None) -> int:
    import os

    from ..config import TrainConfig
    from ..worlds import load_world

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs/verifier_roles", help="the study's run folders")
    ap.add_argument("--prefix-runs", default="runs/step_prefix", help="the step_prefix study's run folders")
    ap.add_argument("--out", default=str(RESULT))
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--influence-seeds", type=int, default=2, help="batches of the influence reading")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    world = load_world(TrainConfig(world=dict(A2C)), verbose=False)
    students = {"start": world.student}
    finals = [Path(args.runs) / f"a2c-{arm}-s0" for arm in ("step_gate", "first_error_gate", "oracle_gate", "teacher_probe")]
    finals += [Path(args.prefix_runs) / f"a2c-{arm}-s0" for arm in ("step_gate_prefix", "oracle_local")]
    for run in finals:
        final = run / "final"
        if final.exists():
            from transformers import AutoModelForCausalLM
            students[f"{run.name} final"] = AutoModelForCausalLM.from_pretrained(final).eval()
    out = {"world": "a2c", "problems": args.problems, "group": 8, "seed": 0, "students": {}, "influence": {}}
    for seed in range(args.influence_seeds):                       # each: its own batch of rollouts
        out["influence"][str(seed)] = influence(world, world.student, seed=seed)
        print(f"[channels] influence, seed {seed}: " + ", ".join(
            f"{k} {v['total']:.0f}" for k, v in out["influence"][str(seed)]["methods"].items()), flush=True)
    for name, student in students.items():
        out["students"][name] = measure(world, student, problems=args.problems)
        print(f"[channels] {name}: " + ", ".join(f"{k} toward {v['toward']:.1f} away {v['away']:.1f}"
                                                 for k, v in out["students"][name]["pushes"].items()), flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
