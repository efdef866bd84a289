"""The smol world: a teacher and a student made from SmolLM2-135M-Instruct by short supervised
fine-tunes on the project's arithmetic task, each built once on the CPU and cached.

As shipped, SmolLM2-135M-Instruct does not solve the task (0 of 64 held-out problems in 8
samples each: it answers in its own words), and a teacher that is always wrong gives on-policy
distillation nothing to teach. So the smol teacher is SmolLM2 after 80 steps of supervised
fine-tuning (SFT) on worked solutions of the training split, in the "chain" style
(`15-4=11 / 11+16=27 / \\boxed{27}`, data.solve), prompted exactly as the trainer and the
evaluation prompt it: `data.format_prompt` with SmolLM2's chat template and
`data.DEFAULT_INSTRUCTION`.

The student is NOT derived from this teacher. It is the original SmolLM2 after its own 80 SFT
steps on *sloppy* solutions (SmolStudentConfig: 90% of them forget every carry and borrow, the
tiny world's recipe), so it knows the format, solves the problems without a carry or a borrow,
and has a habit that the teacher can correct token by token: held-out avg@4 0.301, pass@4 0.469
(419 s on one thread of a shared machine). A 15-layer pruned copy (`keep_layers=15`) could not
learn the arithmetic: avg@4 0.012 after 40 steps at lr 2e-4, 0.020 after 150 at lr 4e-4.

The loss is the per-token mean negative log-likelihood of the response tokens and the EOS after
them (the loss mask comes from positions, tiny_world.sft_batch), and the logits are computed
only at those positions: with a 49,152-token vocabulary the LM head is a fifth of the forward
cost, and the prompt (44-49 tokens, 24 of them SmolLM2's default system prompt and the chat
markup) is longer than the response (20 tokens on average, at most 27 with the EOS).

Measured on the 2-core build machine, one torch thread (`benchmarks/bench_smol_teacher.py`;
64 held-out problems, temperature 1, max_new_tokens 48):

    SmolLM2 as shipped                           avg@8 0.000  pass@8 0.000
    this teacher: 80 steps x 8, lr 1e-4, 297 s    avg@8 0.555  pass@8 0.875   (avg@4 0.598)
    the 15-layer pruned copy, no fine-tune        avg@8 0.000  pass@8 0.000
    the student: 80 sloppy steps, lr 1e-4, 419 s  avg@4 0.301  pass@4 0.469   (build-time evaluation)

and on the way there (avg@4, same problems): 60 steps at lr 5e-5 0.461 (248 s), 60 steps at
2e-4 0.434 (221 s), 100 steps training only the top 15 layers at 1e-4 0.387 (238 s: cheaper
steps, worse teacher). LoRA was not trained to an accuracy: in a short side-by-side probe on
the shared machine (3 steps each, noisy) a LoRA step (r = 16, all linear layers) took 3.4-4.9 s
and a full step 4.8-8.0 s, while the full steps of the real fine-tune then ran at 3.7 s, so
the fine-tune is full: every weight trains except the tied embedding / LM-head matrix (28M of
the 134.5M weights; the task needs no new tokens), AdamW, 5 warm-up steps then cosine decay.

Each built model lives under models.cache_root() (next to the converted SmolLM2), in a folder
named by the hash of its config (`SmolTeacherConfig`, `SmolStudentConfig`), with a meta.json
that records the steps, seconds, threads, losses and the build-time held-out avg@4: change a
field and a new model is built. `load_models(ModelConfig(size="smol"))` uses both by default
(building them on first use, about six minutes each with the evaluation);
`teacher_finetune_steps=0` / `student_finetune_steps=0` give SmolLM2 as shipped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import DEFAULT_INSTRUCTION, Problem, arithmetic_split, parse_expression, solve

SMOL_TEACHER_STEPS = 80     # default SFT steps of the smol teacher (see SmolTeacherConfig.steps)
SMOL_STUDENT_STEPS = 80     # default SFT steps of the smol student (see SmolStudentConfig.steps)


@dataclass(frozen=True)
class SmolTeacherConfig:
    """Everything that shapes the fine-tuned smol teacher (its hash names the cache folder)."""

    steps: int = SMOL_TEACHER_STEPS   # optimizer steps; 0 = SmolLM2 as shipped (nothing is built)
    batch_size: int = 8               # sequences per step
    lr: float = 1e-4                  # peak learning rate (AdamW, no weight decay)
    warmup: int = 5                   # linear warm-up steps, then cosine decay to 0
    train_embeddings: bool = False    # also train the (tied) embedding / LM-head matrix
    seed: int = 0                     # order of the training problems
    instruction: str = DEFAULT_INSTRUCTION   # the smol size's prompt (train.World's default)
    eval_problems: int = 64           # held-out problems scored at build time (0 = skip)
    eval_n: int = 4                   # samples per held-out problem (avg@n, temperature 1)
    eval_max_new_tokens: int = 48     # the longest chain solution is 27 tokens + EOS

    def __post_init__(self):
        kind = type(self).__name__
        for name in ("steps", "warmup", "eval_problems"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{kind}.{name} must be an int >= 0, got {getattr(self, name)!r}")
        for name in ("batch_size", "eval_n", "eval_max_new_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{kind}.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"{kind}.lr must be > 0, got {self.lr!r}")

    def key(self) -> str:
        """Short hash of the fields that change the weights (not the build-time evaluation)."""
        shape = {k: v for k, v in asdict(self).items() if not k.startswith("eval_")}
        return hashlib.sha1(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class SmolStudentConfig(SmolTeacherConfig):
    """The smol student: the ORIGINAL SmolLM2 (optionally pruned to `keep_layers` decoder layers,
    models.make_pruned_student) after a short SFT on *sloppy* solutions: a fraction `slip` of them
    forget every carry and every borrow (data.solve), the habit the tiny world's student has too.
    So the student writes the task's format, gets the problems without a carry or a borrow right,
    and the teacher has specific tokens to correct. Same recipe as the teacher otherwise."""

    steps: int = SMOL_STUDENT_STEPS   # optimizer steps; 0 = the (pruned) SmolLM2 as it is
    seed: int = 1                     # another order of the training problems than the teacher's
    keep_layers: int | None = None    # prune to this many decoder layers first; None = keep all 30
    slip: float = 0.9                 # fraction of SFT solutions that forget carries and borrows

    def __post_init__(self):
        super().__post_init__()
        if self.keep_layers is not None and (not isinstance(self.keep_layers, int) or self.keep_layers < 1):
            raise ValueError(f"SmolStudentConfig.keep_layers must be a positive int or None, got {self.keep_layers!r}")
        if not 0.0 <= self.slip <= 1.0:
            raise ValueError(f"SmolStudentConfig.slip must be in [0, 1], got {self.slip!r}")


def sloppy_solutions(problems: list[Problem], slip: float, seed: int) -> list[Problem]:
    """`problems` with the worked solution of a seeded fraction `slip` of them rewritten to forget
    every carry and every borrow (and so, mostly, to box a wrong answer). The gold answers stay:
    only the SFT targets change."""
    rng = random.Random(seed)
    out = []
    for p in problems:
        if slip > 0 and rng.random() < slip:
            operands, ops = parse_expression(p.question)
            p = replace(p, solution=solve(operands, ops, "chain", slip=True, borrow_slip=True)[0])
        out.append(p)
    return out


# --------------------------------------------------------------------------------------------
# The SFT loss
# --------------------------------------------------------------------------------------------

def response_nll(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 loss_mask: torch.Tensor) -> torch.Tensor:
    """Per-token mean negative log-likelihood of the masked tokens (response + EOS).

    input_ids, attention_mask, loss_mask: (B, L), right-padded, loss_mask 1 on the tokens to
    predict (tiny_world.sft_batch). Token t is predicted from position t - 1, so the hidden
    states are shifted by one and the LM head runs only on the N positions that predict a
    masked token: (N, V) logits instead of (B, L, V). Works for any model with a decoder
    (`get_decoder`) and an output embedding (`get_output_embeddings`): Llama, Qwen2, ...
    """
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    predicts = loss_mask[:, 1:].bool()                                            # (B, L-1)
    logits = model.get_output_embeddings()(hidden[:, :-1][predicts])              # (N, V)
    return F.cross_entropy(logits.float(), input_ids[:, 1:][predicts])


def _lr_factor(step: int, cfg: SmolTeacherConfig) -> float:
    """Linear warm-up over cfg.warmup steps, then cosine decay to 0 at cfg.steps."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def finetune(model, tokenizer, problems: list[Problem], cfg: SmolTeacherConfig = SmolTeacherConfig(),
             log_every: int = 10, verbose: bool = True, label: str = "smol SFT") -> list[float]:
    """Supervised fine-tuning of `model` in place on the worked solutions of `problems`.

    Every step takes the next `cfg.batch_size` problems of a seeded shuffle (reshuffled when
    they run out) and minimises `response_nll` of their solutions. Returns the loss of every
    step. The model is left in eval mode.
    """
    from .tiny_world import sft_batch

    if any(p.solution is None for p in problems):
        raise ValueError("finetune needs problems with worked solutions (Problem.solution)")
    if tokenizer.pad_token is None:      # padding is masked out by position, any id will do
        tokenizer.pad_token = tokenizer.eos_token
    was_trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    if not cfg.train_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)   # tied: the LM head too
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
    rng = random.Random(cfg.seed)
    order: list[int] = []
    model.train()
    losses = []
    start = time.perf_counter()
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:
            order += rng.sample(range(len(problems)), len(problems))
        batch, order = [problems[i] for i in order[:cfg.batch_size]], order[cfg.batch_size:]
        ids, attn, loss_mask = sft_batch(tokenizer, [(p.question, p.solution) for p in batch],
                                         cfg.instruction)
        loss = response_nll(model, ids, attn, loss_mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if verbose and ((step + 1) % log_every == 0 or step + 1 == cfg.steps):
            recent = losses[-log_every:]
            print(f"  [{label}] step {step + 1}/{cfg.steps} loss {sum(recent) / len(recent):.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    for name, p in model.named_parameters():
        p.requires_grad_(was_trainable[name])
    model.eval()
    return losses


# --------------------------------------------------------------------------------------------
# The cached teacher and student
# --------------------------------------------------------------------------------------------

def _build_finetuned(base_dir: Path, out_dir: Path, cfg: SmolTeacherConfig, problems: list[Problem],
                     role: str, verbose: bool) -> Path:
    """Fine-tune the model in `base_dir` on `problems` and save it (with meta.json) to `out_dir`,
    unless a complete build is already there. Returns out_dir."""
    from transformers import AutoModelForCausalLM

    from .evaluate import evaluate
    from .models import _save_atomically, load_tokenizer

    if (out_dir / "meta.json").is_file():
        return out_dir

    def write(tmp: Path):
        tok = load_tokenizer(base_dir)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        start = time.perf_counter()
        losses = finetune(model, tok, problems, cfg, verbose=verbose, label=f"smol {role}")
        seconds = time.perf_counter() - start
        meta = {"role": role, "source": str(base_dir), "config": asdict(cfg), "key": cfg.key(),
                "seconds": round(seconds, 1), "threads": torch.get_num_threads(),
                "first_loss": round(losses[0], 4) if losses else None,
                "final_loss": round(sum(losses[-5:]) / len(losses[-5:]), 4) if losses else None,
                "torch": torch.__version__}
        if cfg.eval_problems:
            torch.manual_seed(cfg.seed)
            res = evaluate(model, tok, arithmetic_split("eval")[:cfg.eval_problems], n=cfg.eval_n,
                           max_new_tokens=cfg.eval_max_new_tokens, instruction=cfg.instruction)
            meta["held_out"] = {**res.as_dict(), "seconds": round(res.seconds, 1)}
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        # meta.json last: it marks a complete build (the check at the top of this function)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if verbose:
            held = meta.get("held_out", {})
            print(f"smol {role}: {cfg.steps} SFT steps in {seconds:.0f} s ({torch.get_num_threads()} "
                  f"threads); held-out avg@{cfg.eval_n} {held.get(f'avg@{cfg.eval_n}', float('nan')):.3f}",
                  flush=True)

    if verbose:
        print(f"fine-tuning the smol {role} on the arithmetic task ({cfg.steps} steps of {cfg.batch_size}, "
              f"once) -> {out_dir}", flush=True)
    _save_atomically(out_dir, write)
    return out_dir


def smol_teacher_dir(cfg: SmolTeacherConfig = SmolTeacherConfig(), cache_dir: str | os.PathLike | None = None,
                     verbose: bool = True) -> Path:
    """Directory of the fine-tuned SmolLM2 teacher (model + tokenizer + meta.json), built once.

    cache_dir: where the converted SmolLM2 lives (models.smollm2_dir); the teacher is saved
    next to it as `smollm2-135m-instruct-arith-<key>`. Building takes the fine-tune (about
    `cfg.steps` x 4 s on one CPU thread) plus the held-out evaluation (about a minute).
    """
    from .models import smollm2_dir

    base_dir = smollm2_dir(cache_dir, verbose=verbose)
    return _build_finetuned(base_dir, base_dir.parent / f"{base_dir.name}-arith-{cfg.key()}", cfg,
                            arithmetic_split("train"), "teacher", verbose)


def smol_student_dir(cfg: SmolStudentConfig = SmolStudentConfig(), cache_dir: str | os.PathLike | None = None,
                     verbose: bool = True) -> Path:
    """Directory of the smol student: the original SmolLM2 (or, with cfg.keep_layers, its pruned
    copy models.smollm2_student_dir) after `cfg.steps` SFT steps on sloppy solutions, built once
    and saved next to it as `<base>-student-<key>`; the base itself when cfg.steps is 0."""
    from .models import smollm2_dir, smollm2_student_dir

    if cfg.keep_layers is None:
        base_dir = smollm2_dir(cache_dir, verbose=verbose)
    else:
        base_dir = smollm2_student_dir(cfg.keep_layers, cache_dir, verbose=verbose)
    if cfg.steps == 0:
        return base_dir
    problems = sloppy_solutions(arithmetic_split("train"), cfg.slip, cfg.seed)
    return _build_finetuned(base_dir, base_dir.parent / f"{base_dir.name}-student-{cfg.key()}", cfg,
                            problems, "student", verbose)
