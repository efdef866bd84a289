"""`make demo`: what a verifier gate can and cannot do, on the world where the seeded study
(docs/results.md) measured the clearest mechanism: A2 complementary error, a teacher that forgets
every borrow beside a student that has the borrow and forgets every carry.

1. load (or build) that tiny world and measure teacher and starting student, per skill and in
   forgotten borrows (error adoption: `evaluate(..., step_checker=)`);
2. train OPD, a gate, the teacher probe (the verifier on the teacher, per prompt) and GRPO
   (`DEMO_ARMS`) from that same student, same seed, same steps (each run's folder keeps its
   config.json, metrics.jsonl and final weights);
3. take one group of the starting student's rollouts on problems that need a borrow, score them
   with the teacher, and show, token by token, where the gate changes what the teacher would have
   taught: a correct rollout, where it zeroes the teacher's push against the right borrow digit,
   and a wrong one (it failed at another step), where the same push on the same digit passes;
4. write DIR/report.md (its first line says what the studies found): accuracy per skill, one
   table of where each verifier acted and what it kept, learning curves and the per-token picture.

One seed, a few minutes: a demonstration of a mechanism the study measured with seeds, not
evidence on its own.

May import: config, data, evaluate, gate, losses, rollout, train, verifier, viz, worlds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .config import TrainConfig
from .evaluate import evaluate, skills_from_metrics

# What the seeded studies found (docs/results.md, "What was found", the paired differences and
# "Where must the verifier act?", with Holm's correction); tests/test_worlds_report.py checks that
# this line agrees with the committed summaries (worlds_main, verifier_roles): no gate wins, every
# gate ends below GRPO on A2 complementary error, and of the other places a verifier can act only
# the teacher probe keeps the borrow, without being clearly ahead of GRPO.
FINDING = ("No gate setting beat both OPD and GRPO in the seeded study (docs/results.md: 5 seeds per method, "
           "verdicts corrected over the 24 comparisons of the gates with OPD and with GRPO). On A2 complementary "
           "error, the world this demo trains, every gate ends below GRPO, which never reads the teacher; this "
           "demo shows one reason, token by token: a per-rollout verdict cannot say which token the teacher got "
           "wrong. Acting on the teacher instead keeps the borrow here: the teacher probe (4 verified teacher "
           "samples per prompt; GRPO where fewer than 2 are right, OPD elsewhere) ends at borrow 33.5 ± 5.3 "
           "(OPD 6.1), minus OPD +27.3 ± 4.3 (Holm p 0.0022: higher), overall +11.2 ± 2.9 (Holm p 0.013: "
           "higher); minus GRPO +5.0 ± 2.4 (Holm p 0.099: no clear difference), and no place tried is clearly "
           "ahead of GRPO. It does not hold everywhere: on A2 shared error the probe ends below GRPO, "
           "-8.7 ± 2.4 (Holm p 0.013: lower), and at 1000 steps GRPO's borrow passes the probe's in both "
           "seeds tried. The step gate, the first-error gate and the oracle gate lose the borrow like OPD; the "
           "hybrid's result depends on a coefficient not yet set by gradient shares.")
DEMO_WORLD = {"style_gap": 0.0, "teacher_noise": 1.0, "teacher_slip_kind": "borrow",
              "student_slip_kind": "carry", "eval_data": "eval_skills"}
DEMO_ARMS = {                     # name -> TrainConfig overrides
    "OPD": {"method": "opd"},
    "OPDVR's gate": {"method": "opdvr"},      # zeroes the most wrong-teacher pushes of the gates tested
    "teacher probe": {"method": "teacher_probe"},   # the preset: M = 4, threshold 0.5, GRPO where it fails
    "GRPO": {"method": "grpo"},
}
DEMO_GATE = "OPDVR's gate"        # the arm whose gate decisions are drawn token by token
WHERE_ACTS = {                    # arm -> where its verifier acts (docs/method.md §13)
    "OPD": "nowhere",
    "OPDVR's gate": "rollout verdict, gate",
    "teacher probe": "on the teacher per prompt; GRPO where it fails",
    "GRPO": "reward only",
}
DEMO_STEPS = 200
DEMO_LOSS = "sampled"             # the paper's loss; a gate cannot act on the dense one (refused)


def _config(arm: dict, out_dir: Path, steps: int, eval_problems: int, eval_n: int) -> TrainConfig:
    return TrainConfig(loss_type=DEMO_LOSS, steps=steps, eval_every=0, eval_problems=eval_problems,
                       eval_n=eval_n, save_every=0, log_rollouts=0, seed=0, world=dict(DEMO_WORLD),
                       out_dir=str(out_dir), **arm)


def _table(columns: dict, n: int) -> list[str]:
    """One row per skill (then avg@n and pass@n over all problems), one column per model;
    columns: name -> (avg, pass, {skill: avg}), in points."""
    skills = list(next(iter(columns.values()))[2])
    rows = [(f"{s} (avg@{n})", [c[2][s] for c in columns.values()]) for s in skills]
    rows += [(f"all (avg@{n})", [c[0] for c in columns.values()]), (f"all (pass@{n})", [c[1] for c in columns.values()])]
    return (["| skill | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
            + [f"| {label} | " + " | ".join(f"{100 * v:.1f}" for v in vals) + " |" for label, vals in rows])


def _roles_table(rows: dict, n: int) -> list[str]:
    """One row per model: where its verifier acts, avg@n, carry and borrow, and the shares of
    sampled borrow (carry) steps that end in the forgotten-borrow (-carry) result; rows:
    name -> {"where", "avg", "per_skill": {skill: avg}, "slip": {kind: share}}, in points."""
    def pct(v):
        return "-" if v is None or v != v else f"{100 * v:.1f}"
    lines = [f"| model | where the verifier acts | avg@{n} | carry | borrow | forgot borrow | forgot carry |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['where']} | {pct(r['avg'])} | {pct(r['per_skill'].get('carry'))} | "
                     f"{pct(r['per_skill'].get('borrow'))} | {pct(r['slip'].get('borrow'))} | {pct(r['slip'].get('carry'))} |")
    return lines


def _mean_of(history: list[dict], key: str) -> float | None:
    """Mean of a per-step metric over the steps that logged it (None if none did)."""
    vals = [m[key] for m in history if key in m]
    return sum(vals) / len(vals) if vals else None


# --------------------------------------------------------------------------------------------
# The mechanism, token by token
# --------------------------------------------------------------------------------------------

# the places a verifier can act, drawn on one group by `gate_change_example(roles=True)`:
# label -> (method, gate config name) for advantage.method_advantage
ROLE_ROWS = {"OPDVR's gate (rollout verdict)": ("opdvr", "opdvr"), "teacher probe": ("teacher_probe", "opd"),
             "step gate": ("step_gate", "opdvr"), "first-error gate": ("first_error_gate", "opdvr"),
             "hybrid c = 1": ("hybrid", "opd"), "oracle gate (a bound)": ("oracle_gate", "opd")}


def gate_change_example(world, gate_cfg, problems: int = 24, group: int = 8, max_new_tokens: int = 40,
                        seed: int = 0, roles: bool = False, probe_m: int = 4) -> list[dict]:
    """Two rollouts of one group of the starting student where the teacher pushes a *correct* token
    down (its most likely token there is wrong): one the verifier calls correct and one it calls
    wrong. Each record: question, reward, tokens, a2 (OPD's advantage), gate (the gate's
    advantage), teacher_wrong (bool per token) and teacher_wants (the teacher's token there).
    roles=True adds `roles`: {label: advantage per token} for every place a verifier can act
    (ROLE_ROWS, advantage.method_advantage on the whole batch; the teacher probe samples the
    teacher `probe_m` times per problem). [] when no group has both."""
    from .data import format_prompt, skill_of
    from .gate import GateConfig, sign_gate
    from .losses import token_logprobs
    from .rollout import response_logits, sample, sequence_logprobs
    from .verifier import rewards as verifier_rewards

    tok = world.tokenizer
    chosen = [p for p in world.train_problems if skill_of(p.question) in ("borrow", "both")][:problems]
    torch.manual_seed(seed)
    prompts = [format_prompt(tok, p.question, world.instruction) for p in chosen]
    ro = sample(world.student, tok, prompts, group, max_new_tokens=max_new_tokens, temperature=1.0)
    r = torch.tensor(verifier_rewards(ro.texts, [p.answer for p in chosen for _ in range(group)]), dtype=torch.float32)
    with torch.no_grad():
        logits = response_logits(world.teacher, ro, world.vocab_size)
        teacher_logp, top = token_logprobs(logits, ro.response_ids), logits.argmax(-1)
        old_logp = sequence_logprobs(world.student, ro, world.vocab_size)
    mask = ro.response_mask
    opd = sign_gate(teacher_logp, old_logp, r, ro.group_ids, mask, cfg=GateConfig.opd())
    gated = sign_gate(teacher_logp, old_logp, r, ro.group_ids, mask, cfg=gate_cfg)
    role_adv = _role_advantages(world, chosen, prompts, ro, r, teacher_logp, old_logp, top, max_new_tokens,
                                probe_m) if roles else {}
    records = []
    for i in range(len(ro)):
        n = int(mask[i].sum())
        ids = ro.response_ids[i, :n].tolist()
        correct = world.token_oracle(chosen[int(ro.group_ids[i])].question, ids)
        wrong = [c >= 0 and int(top[i, t]) != c and ids[t] == c for t, c in enumerate(correct)]
        if any(wrong):
            rec = {"group": int(ro.group_ids[i]), "question": chosen[int(ro.group_ids[i])].question,
                   "reward": float(r[i]), "tokens": [tok.decode([t]) for t in ids],
                   "a2": opd.advantage[i, :n].tolist(), "gate": gated.advantage[i, :n].tolist(),
                   "teacher_wrong": wrong, "teacher_wants": [tok.decode([int(t)]) for t in top[i, :n]]}
            if roles:
                rec["roles"] = {label: adv[i, :n].tolist() for label, adv in role_adv.items()}
            records.append(rec)
    for g in sorted({rec["group"] for rec in records}):
        right = [x for x in records if x["group"] == g and x["reward"] == 1]
        failed = [x for x in records if x["group"] == g and x["reward"] == 0]
        if right and failed:
            return [right[0], failed[0]]
    return []


def _role_advantages(world, chosen, prompts, ro, r, teacher_logp, old_logp, top, max_new_tokens, probe_m) -> dict:
    """label -> (R, T) advantage of every ROLE_ROWS method on one batch of rollouts."""
    from .advantage import Signals, method_advantage
    from .gate import GateConfig
    from .train import per_token_values, teacher_pass_counts
    from .worlds.base import token_verdicts

    tok, mask = world.tokenizer, ro.response_mask
    questions = [chosen[int(g)].question for g in ro.group_ids]
    steps = per_token_values(ro, questions, lambda q, ids: token_verdicts(tok, world.step_checker, q, ids))
    correct = per_token_values(ro, questions, world.token_oracle, fill=-1)
    passes = teacher_pass_counts(world.teacher, tok, prompts, [p.answer for p in chosen], probe_m, max_new_tokens)
    trusted = [p / probe_m >= 0.5 for p in passes]
    signals = Signals(old_logp, r, ro.group_ids, mask, teacher_logp, step_verdict=steps, teacher_top=top,
                      correct_next=correct,
                      prompt_trusted=torch.tensor([trusted[int(g)] for g in ro.group_ids]))
    return {label: method_advantage(method, getattr(GateConfig, gate)(), signals).advantage
            for label, (method, gate) in ROLE_ROWS.items()}


def describe_example(records: list[dict]) -> list[str]:
    """One line per rollout: what the teacher wanted where it is wrong, and both advantages there."""
    lines = []
    for rec in records:
        spots = [t for t, w in enumerate(rec["teacher_wrong"]) if w]
        said = "; ".join(f"at {rec['tokens'][t]!r} (position {t}) the teacher wants '{rec['teacher_wants'][t]}': "
                         f"OPD's push a2 = {rec['a2'][t]:+.2f}, the gate's A = {rec['gate'][t] + 0.0:+.2f}" for t in spots)
        verdict = "correct" if rec["reward"] == 1 else "wrong"
        text = "".join(rec["tokens"]).strip().replace("\n", " ⏎ ")
        lines.append(f"* {verdict} rollout `{text}` of `{rec['question']}`: {said}.")
    return lines


# --------------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------------

def run_demo(out_dir: str = "runs/demo", steps: int | None = None, eval_problems: int = 256,
             eval_n: int = 8) -> dict:
    from . import viz
    from .gate import GateConfig
    from .train import Trainer, load_world

    start = time.perf_counter()
    steps = steps or DEMO_STEPS
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    print(f"[demo] {FINDING}", flush=True)
    cfg0 = _config(DEMO_ARMS["OPD"], out / "start", steps, eval_problems, eval_n)
    world = load_world(cfg0)
    held_out = world.eval_problems[:eval_problems]
    start_rows, start_slips = {}, {}
    for who, model in (("teacher", world.teacher), ("starting student", world.student)):
        torch.manual_seed(0)
        res = evaluate(model, world.tokenizer, held_out, n=eval_n, max_new_tokens=cfg0.max_new_tokens,
                       instruction=world.instruction, vocab_size=world.vocab_size, step_checker=world.step_checker)
        start_rows[who] = (res.avg_at_n, res.pass_at_k, {s: v["avg"] for s, v in res.per_skill.items()})
        start_slips[who] = {kind: res.slip_rate(kind) for kind in ("borrow", "carry")}   # error adoption
        print(f"[demo] {who}: avg@{eval_n} {res.avg_at_n:.3f}, per skill {start_rows[who][2]}, "
              f"forgot borrow {start_slips[who]['borrow']:.3f}", flush=True)

    gate_name = DEMO_GATE
    probe = _config(DEMO_ARMS[gate_name], out / "probe", steps, eval_problems, eval_n).gate
    example = gate_change_example(world, probe, max_new_tokens=cfg0.max_new_tokens)

    results, histories = {}, {}
    for name, arm in DEMO_ARMS.items():
        cfg = _config(arm, out / name.lower().replace("'", "").replace(" ", "_"), steps, eval_problems, eval_n)
        t = time.perf_counter()
        print(f"[demo] training {name} for {steps} steps", flush=True)
        # restart: the demo trains from scratch each time (an earlier demo's finished run would
        # otherwise be resumed with nothing left to do, and a smaller --steps would be refused)
        histories[name] = Trainer(cfg, verbose=True, restart=True).run()
        last = histories[name][-1]
        results[name] = {"avg": last[f"eval_avg@{eval_n}"], "pass": last[f"eval_pass@{eval_n}"],
                         "per_skill": skills_from_metrics(last, eval_n), "out_dir": cfg.out_dir,
                         # error adoption, measured by the trainer's final evaluation (Trainer.evaluate)
                         "slip": {kind: last.get(f"eval_slip_{kind}") for kind in ("borrow", "carry")},
                         "train_seconds": round(time.perf_counter() - t, 1)}
        if cfg.method == "teacher_probe":       # the share of trained prompts the probe sent to GRPO
            results[name]["routed"] = {k: _mean_of(histories[name], "probe_fallback" + suffix)
                                       for k, suffix in (("all", ""), ("borrow", "_borrow"), ("carry", "_carry"))}
        print(f"[demo] {name}: avg@{eval_n} {results[name]['avg']:.3f}, per skill {results[name]['per_skill']}", flush=True)

    figs = {"learning_curves.png": viz.plot_learning_curves(histories, "reward_mean", title="training reward"),
            "kl_curves.png": viz.plot_learning_curves(histories, "kl_k1", smooth=1, title="k1 estimate of KL(student || teacher)")}
    if example:
        figs["gate_tokens.png"] = viz.plot_gate_change(example, gate_name)
    for name, fig in figs.items():
        fig.savefig(out / name, dpi=110)
    lines = _report(start_rows, start_slips, results, example, gate_name, probe, eval_n, steps, len(held_out),
                    time.perf_counter() - start)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    summary = {"start": start_rows, "start_slip": start_slips, **results, "example": example,
               "seconds": time.perf_counter() - start}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n".join(lines))
    return summary


def _report(start_rows, start_slips, results, example, gate_name, gate_cfg, n, steps, problems,
            seconds) -> list[str]:
    lines = [FINDING, "", "# make demo: what a verifier gate can and cannot do", "",
             "World: A2 complementary error (the teacher forgets every borrow, the student every carry); "
             f"scored on the skill-balanced split (held out from the RL prompts), {problems} problems, n = {n} "
             "samples each at temperature 1. "
             f"{steps} steps x 16 prompts x 8 rollouts per method, seed 0, the sampled loss. "
             f"The gate: {gate_name} (lambda_e {gate_cfg.lambda_e}, lambda_i {gate_cfg.lambda_i}, a1 {gate_cfg.a1_mode}).", "",
             "## Accuracy per skill (points)", ""]
    lines += _table({**start_rows, **{name: (res["avg"], res["pass"], res["per_skill"]) for name, res in results.items()}}, n)
    lines += ["", "## Where each verifier acted and what it kept (points)", "",
              "*forgot borrow*: of the sampled steps that need a borrow, the share whose result is the "
              "forgotten-borrow one (the teacher's error); *forgot carry* likewise.", ""]
    roles = {who: {"where": "-", "avg": avg, "per_skill": skills, "slip": start_slips[who]}
             for who, (avg, _, skills) in start_rows.items()}
    roles.update({name: {"where": WHERE_ACTS.get(name, ""), **res} for name, res in results.items()})
    lines += _roles_table(roles, n)
    for name, res in results.items():
        routed = res.get("routed")
        if routed and routed["all"] is not None:
            by_skill = ", ".join(f"{k} prompts {100 * routed[k]:.0f}%" for k in ("borrow", "carry") if routed[k] is not None)
            lines += ["", f"The {name} sent {100 * routed['all']:.0f}% of its trained prompts to GRPO ({by_skill}): "
                      "the teacher passed fewer than half of its 4 verified samples on those, so there the student "
                      "learned from the verifier's reward alone and the teacher could not push against its borrow."]
    lines += ["", "## Where the gate changes what the teacher teaches (gate_tokens.png)", ""]
    if example:
        lines += describe_example(example) + [
            "", "The teacher's top token is wrong at the borrow digit in both rollouts, and the student wrote the "
            "right digit in both. The verdict is about the whole rollout: in the correct one the teacher's push "
            "against the right digit is a conflict and the gate drops it; in the wrong one, which failed at "
            "another step, the same push agrees with the verdict and passes at full size. Every rollout that "
            "writes the borrow right and fails elsewhere unteaches the borrow this way; docs/results.md measures "
            "how many of the teacher's wrong pushes each gate lets through. Compare the borrow row of OPD and "
            "the gate with GRPO's, which never reads the teacher, and with the teacher probe's, whose verifier "
            "acts on the teacher instead: it asks, per prompt, whether the teacher can be trusted at all."]
    else:
        lines += ["No group of the sampled rollouts had both a correct and a wrong rollout with a wrong-teacher "
                  "position; rerun with more problems (`gate_change_example(problems=...)`)."]
    lines += ["", "One seed: the numbers above illustrate; the intervals are in docs/results.md.", "",
              "Each run's folder keeps its config.json and metrics.jsonl. Figures: learning_curves.png, "
              "kl_curves.png, gate_tokens.png.", "", f"Total time {seconds:.0f} s on {torch.get_num_threads()} CPU threads."]
    return lines
