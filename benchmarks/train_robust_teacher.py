"""Train a "robust" tiny teacher: like the default teacher, but a fraction of its SFT chains carry
one corrupted intermediate value (excluded from the loss), so it learns to continue consistently
from a mistake without learning to make it. An experiment of the README's learning search:

    python benchmarks/train_robust_teacher.py 0.2 /tmp/robust_teacher
    python benchmarks/bench_learning.py --teacher-dir /tmp/robust_teacher --steps 300
"""
import os
import random
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from sgopd_lite.worlds.tiny import *
from sgopd_lite.data import sample_expression, expression_text, _apply, arithmetic_split
from sgopd_lite.losses import token_logprobs, masked_mean
from sgopd_lite.evaluate import evaluate
frac = float(sys.argv[1]); out = sys.argv[2]
cfg = TinyWorldConfig()
tok = build_tokenizer()
def example(rng):
    operands, ops = sample_expression(rng, cfg.task)
    lines, acc, skip = [], operands[0], []
    corrupt_at = rng.randrange(len(ops)) if rng.random() < frac else -1
    pos = 0
    for j, (op, b) in enumerate(zip(ops, operands[1:])):
        v = _apply(acc, op, b)
        if j == corrupt_at:
            v += rng.choice([-10, -2, -1, 1, 2, 10])
        head = f"{acc}{op}{b}="
        if j == corrupt_at:
            skip.append((pos + len(head), pos + len(head) + len(str(v))))
        line = head + str(v)
        lines.append(line); pos += len(line) + 1; acc = v
    lines.append(f"\\boxed{{{acc}}}")
    return expression_text(operands, ops), "\n".join(lines), skip
exclude = {p.question for p in arithmetic_split("eval")}
model = make_model(cfg.teacher, tok, seed=cfg.seed)
opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
steps = cfg.teacher_steps
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
rng = random.Random("robust"); t = time.time()
for step in range(steps):
    exs = []
    while len(exs) < 64:
        e = example(rng)
        if e[0] not in exclude: exs.append(e)
    ids, attn, lm = sft_batch(tok, [(q, s) for q, s, _ in exs], "")
    for i, (q, s, skip) in enumerate(exs):
        plen = len(tok(format_prompt(tok, q, ""), add_special_tokens=False)["input_ids"])
        for a, b in skip: lm[i, plen + a: plen + b] = 0
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
    loss = -masked_mean(token_logprobs(logits, ids[:, 1:]), lm[:, 1:])
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step()
    if (step + 1) % 400 == 0: print(step + 1, round(loss.item(), 4), flush=True)
model.save_pretrained(out); tok.save_pretrained(out)
torch.manual_seed(0)
r = evaluate(model.eval(), tok, arithmetic_split("eval"), n=8, max_new_tokens=40, instruction="")
print("robust", frac, "time", round(time.time() - t), "avg@8", round(r.avg_at_n, 3), "pass@8", round(r.pass_at_k, 3), flush=True)
