"""What every world shares: the `World` a run trains on, the problem sets of a run, the
`ModelConfig` of a run's `world` section, and the supervised fine-tuning batch both built worlds
(tiny, smol) train their models with.

A world is one module of this package (tiny.py, smol.py, hub.py) with the same small interface:

    world_config(w)       its own config, from a run's `TrainConfig.world` section
    load(cfg, verbose)    -> World: tokenizer, teacher, student and problem sets of a run
    report(...)           what it prints for `python -m sgopd_lite world --size NAME --report`

May import: data, models (generic loading) and torch. Never a world module, nor train.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import DATA_DIR, DEFAULT_INSTRUCTION, Problem, format_prompt, load_jsonl
from ..models import ModelConfig


HELD_OUT_SPLITS = ("eval", "eval_skills", "eval_unseen")   # committed splits a run may evaluate on, by name


@dataclass
class World:
    """What a run trains on."""

    tokenizer: object
    teacher: torch.nn.Module
    student: torch.nn.Module
    train_problems: list[Problem]
    eval_problems: list[Problem]
    instruction: str = DEFAULT_INSTRUCTION
    vocab_size: int | None = None     # real tokens, when models pad their embedding rows
    token_oracle: object = None       # worlds that know the correct solution (tiny): a function
                                      # (question, response ids) -> correct next token id at each
                                      # response position, -1 after the first mistake; the trainer
                                      # then logs the per-token evidence of harm (gate.gate_evidence)
    step_checker: object = None       # worlds whose solutions have checkable steps (tiny, smol): a function
                                      # (question, response text) -> list of data.Step, each line's
                                      # verdict on its own operands; `token_verdicts` spreads it over
                                      # tokens. Needed by method=step_gate / first_error_gate.
    unseen_problems: list[Problem] = field(default_factory=list)   # a second held-out set scored
                                      # beside eval_problems (`world.eval_unseen`); empty = none


def _committed(name: str) -> Path:
    """The file behind data.arithmetic_split(name)."""
    return DATA_DIR / f"arith_{name}.jsonl"


def data_files(w) -> dict[str, Path]:
    """{"train": path, "eval": path[, "unseen": path]}: the JSONL files `problem_sets` and
    `unseen_set` read for a `TrainConfig.world` section, so that a checkpoint can record what they
    held (train.run_fingerprint)."""
    train = Path(w.train_data) if w.train_data else _committed("train")
    if w.eval_data in HELD_OUT_SPLITS:     # a committed held-out split by name
        held_out = _committed(w.eval_data)
    else:
        held_out = Path(w.eval_data) if w.eval_data else _committed("eval")
    out = {"train": train, "eval": held_out}
    unseen = _unseen_file(w)
    if unseen is not None:
        out["unseen"] = unseen
    return out


def problem_sets(w) -> tuple[list[Problem], list[Problem]]:
    """(train, held-out) problems of a `TrainConfig.world` section: its JSONL files when set
    (eval_data may also name a committed split: "eval" or "eval_skills", the skill-balanced one),
    else the committed arithmetic splits. The files are `data_files(w)`."""
    files = data_files(w)
    return load_jsonl(files["train"]), load_jsonl(files["eval"])


def _unseen_file(w) -> Path | None:
    v = w.eval_unseen
    if v is None or (v == "auto" and w.size != "tiny"):
        return None
    if v == "auto":
        v = "eval_unseen"
    if v == w.eval_data:
        return None                        # already the first held-out set
    return _committed(v) if v in HELD_OUT_SPLITS else Path(v)


def unseen_set(w) -> list[Problem]:
    """The second held-out set of a `TrainConfig.world` section (`world.eval_unseen`): "auto" is
    the committed `eval_unseen` split for the tiny world (problems none of its committed models
    saw in their SFT data) and nothing for the other sizes; a split name or JSONL path; None = []."""
    path = _unseen_file(w)
    return load_jsonl(path) if path is not None else []


def model_config(w, size: str | None = None) -> ModelConfig:
    """The `ModelConfig` of a `TrainConfig.world` section (LoRA, quantisation, paths)."""
    return ModelConfig(size=size or w.size, teacher=w.teacher, student=w.student,
                       student_quant=w.student_quant, teacher_finetune_steps=w.teacher_finetune_steps,
                       student_finetune_steps=w.student_finetune_steps,
                       gradient_checkpointing=w.gradient_checkpointing, lora_dropout=w.lora_dropout,
                       **({} if w.lora is None else {"lora": w.lora}))


def sft_batch(tokenizer, pairs, instruction: str):
    """Right-padded (ids, attention mask, loss mask) for prompt + solution + EOS, each (B, L);
    the loss mask is 1 on the response and its EOS, built from positions, never from token ids."""
    prompts = [format_prompt(tokenizer, q, instruction) for q, _ in pairs]
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer([s for _, s in pairs], add_special_tokens=False)["input_ids"]
    seqs = [p + r + [tokenizer.eos_token_id] for p, r in zip(p_ids, r_ids)]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id)                  # (B, L)
    loss_mask = torch.zeros(len(seqs), width, dtype=torch.long)                   # (B, L)
    attn = torch.zeros(len(seqs), width, dtype=torch.long)                        # (B, L)
    for i, (p, s) in enumerate(zip(p_ids, seqs)):
        ids[i, :len(s)] = torch.tensor(s)
        attn[i, :len(s)] = 1
        loss_mask[i, len(p):len(s)] = 1
    return ids, attn, loss_mask


STEP_UNITS = ("line", "prefix")


def token_verdicts(tokenizer, step_checker, question: str, response_ids: list[int], unit: str = "line") -> list[int]:
    """The step checker's verdict at each response token: +1 inside a correct step, -1 inside a
    wrong one, 0 where no checkable step covers the token (special tokens such as EOS, a line
    cut off). Tokens are decoded one by one to find the characters each covers; a token takes
    the verdict of the step its first character falls in.

    unit="prefix": inside a wrong line, the characters before its first wrong character
    (`Step.first_wrong`) count as correct; a checker that can point inside a line."""
    if unit not in STEP_UNITS:
        raise ValueError(f"step unit must be one of {STEP_UNITS}, got {unit!r}")
    pieces = [tokenizer.decode([t], skip_special_tokens=True) for t in response_ids]
    verdict_at = {}
    for step in step_checker(question, "".join(pieces)):
        for c in range(step.start, step.end):
            right_part = unit == "prefix" and step.first_wrong is not None and c < step.first_wrong
            verdict_at[c] = 1 if right_part else step.verdict
    out, pos = [], 0
    for piece in pieces:
        out.append(verdict_at.get(pos, 0) if piece else 0)
        pos += len(piece)
    return out
