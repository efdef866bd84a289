"""The tiny world: a teacher and a student small enough to train on a laptop CPU in minutes,
on a task where the two OPD assumptions of docs/method.md §1 can be broken on purpose.

* Tokenizer: one token per printable ASCII character plus four specials, built locally with
  `tokenizers`, with a chat template, so the tiny models are prompted through exactly the same
  code as SmolLM2 or Qwen (`data.format_prompt`).
* Models: transformers `Qwen2ForCausalLM` from a config, random init, trained here by supervised
  fine-tuning (SFT) on worked arithmetic solutions (`data.solve`). The teacher is larger and
  learned from clean solutions. The student is smaller and learned from *sloppy* ones: by
  default 90% of its SFT solutions forget every carry and every borrow (`student_slip`), so it
  has seen both the right and the wrong step and picked up a habit that a teacher can correct
  token by token. (A student that was merely stopped early, with errors spread everywhere,
  did not improve under on-policy distillation within minutes: docs/tiny_world.md, "Does on-policy
  distillation learn here?".)
* Knob `style_gap` (breaks A1, trajectory alignment): that fraction of the student's SFT
  solutions is written in the "prose" style, which the teacher never saw, so the student's own
  trajectories leave the teacher's distribution.
* Knob `teacher_noise` (breaks A2, trustworthy token preferences): that fraction of the
  teacher's SFT solutions forgets the carry in every carrying addition, so the teacher becomes
  confidently wrong on exactly those digits while the verifier still knows the right answer.

Both knobs at 0 give a world where both assumptions hold. Built pairs are cached under
`~/.cache/sgopd_lite/tiny/` (or $SGOPD_CACHE/tiny); the four models of the report are also
committed, as package data, in `sgopd_lite/assets/tiny/` (rebuild:
`python -m sgopd_lite world --size tiny --report --rebuild --build-dir sgopd_lite/assets/tiny`).
How the world got to this design, with its measurements: docs/tiny_world.md.

May import: worlds.base, models (generic loading), data, losses, and (inside functions) gate,
rollout, verifier, evaluate. Never another world.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import random
import re
import string
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..assets import asset_path
from ..data import (DATA_DIR, SKILLS, STEP_LINE, ArithmeticTask, DataError, Problem, _apply, arithmetic_split,
                    check_steps, expression_text, format_prompt, parse_expression, sample_expression,
                    save_jsonl, skill_of, solve)
from ..losses import masked_mean, token_logprobs
from ..models import ModelConfig, ModelPair, assemble_pair, enable_checkpointing, resolve_device, resolve_dtype
from ..models import cache_root as models_cache_root
from ..models import load_tokenizer as load_exact
from .base import World, model_config, problem_sets, sft_batch

NAME = "tiny"

# The tiny world's prompt has no instruction text: the models learn the \boxed{} format from
# their SFT data, and the question then sits right before the answer. With the 33-character
# DEFAULT_INSTRUCTION between them, the same teacher reached 43% avg@8 after 800 SFT steps
# instead of 54% (measured), and every step costs 20% more. The prompt still goes through the
# tokenizer's chat template like every other model's.
TINY_INSTRUCTION = ""

SPECIAL_TOKENS = {"pad": "<|pad|>", "user": "<|user|>", "assistant": "<|assistant|>", "eos": "<|end|>"}

# Jinja chat template: <|user|>question<|end|><|assistant|>answer<|end|>
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}<|end|>"
    "{% elif m['role'] == 'assistant' %}<|assistant|>{{ m['content'] }}<|end|>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer():
    """A character-level fast tokenizer with a chat template (no network, well under a second)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c"]  # 96 characters incl. \n
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS.values())}
    for c in chars:
        vocab[c] = len(vocab)
    unk = "?"  # unknown characters read as "?": never produced by the task
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=SPECIAL_TOKENS["pad"],
                                  eos_token=SPECIAL_TOKENS["eos"],
                                  additional_special_tokens=[SPECIAL_TOKENS["user"], SPECIAL_TOKENS["assistant"]])
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def load_tokenizer(path):
    """Reload a saved tiny tokenizer.

    Not through AutoTokenizer: in transformers 5, AutoTokenizer on a folder that also holds a
    Qwen2 `config.json` silently builds a `Qwen2Tokenizer` from tokenizer.json, whose
    pre-tokenizer drops the spaces and newlines of this character vocabulary (measured: the
    prompt of "15-4+16" lost 6 of its 44 tokens, and the models looked untrained).
    """
    tok = load_exact(path)
    tok.padding_side = "left"
    return tok


@dataclass(frozen=True)
class NetConfig:
    """Size of one tiny transformer (Qwen2 architecture)."""

    hidden: int = 128        # model width
    layers: int = 4          # decoder layers
    heads: int = 4           # attention heads (key/value heads = heads)
    mlp: int = 256           # MLP width


@dataclass(frozen=True)
class TinyWorldConfig:
    """Everything that determines a tiny teacher/student pair (it is the cache key)."""

    style_gap: float = 0.0        # fraction of student SFT solutions in the "prose" style (A1)
    teacher_noise: float = 0.0    # fraction of teacher SFT solutions with forgotten carries (A2)
    student_slip: float = 0.9     # fraction of student SFT solutions that forget carries and borrows
    teacher_slip_kind: str = "carry"   # what a noisy teacher forgets: "carry" (A2 shared: the
                                       # student's own habit) or "borrow" (A2 complementary)
    student_slip_kind: str = "both"    # what a sloppy student forgets: "both" (carries and borrows)
                                       # or "carry" (it keeps its borrows: the A2 complementary student)
    teacher: NetConfig = NetConfig(hidden=128, layers=4, heads=4, mlp=256)   # 0.67M parameters
    student: NetConfig = NetConfig(hidden=96, layers=2, heads=4, mlp=384)    # 0.31M parameters
    teacher_steps: int = 1600     # SFT steps for the teacher (800 gave 54% avg@8, 1200 gave 71%)
    student_steps: int = 1000     # SFT steps for the student (its habit, not its training time, limits it)
    batch_size: int = 64          # SFT sequences per step
    lr: float = 3e-3              # peak learning rate of the one-cycle schedule
    seed: int = 0
    task: ArithmeticTask = ArithmeticTask()
    instruction: str = TINY_INSTRUCTION   # text after the question in the user turn

    def __post_init__(self):
        for name in ("style_gap", "teacher_noise", "student_slip"):
            # one type for the cache key: style_gap=1 (from YAML) and 1.0 are the same world
            object.__setattr__(self, name, float(getattr(self, name)))
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"TinyWorldConfig.{name} must be in [0, 1], got {v}")
        for name, kinds in (("teacher_slip_kind", ("carry", "borrow")), ("student_slip_kind", ("both", "carry"))):
            if getattr(self, name) not in kinds:
                raise ValueError(f"TinyWorldConfig.{name} must be one of {kinds}, got {getattr(self, name)!r}")



def make_model(net: NetConfig, tokenizer, seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tokenizer), hidden_size=net.hidden, num_hidden_layers=net.layers,
                      num_attention_heads=net.heads, num_key_value_heads=net.heads,
                      intermediate_size=net.mlp, max_position_embeddings=256, tie_word_embeddings=True,
                      bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    # Eager attention: on these CPUs torch's SDPA path was ~15x slower for such small shapes
    # (64 x 76 tokens: 1.1 s vs 0.07 s per forward, measured).
    cfg._attn_implementation = "eager"
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def sft_draws(rng: random.Random, cfg: TinyWorldConfig, role: str, exclude: set[str]):
    """The endless stream of one role's SFT draws: (operands, ops, style, slip), questions in
    `exclude` skipped. Every random number a build uses is drawn here, in this order, so
    `sft_questions` can replay a build's questions without training anything."""
    while True:
        operands, ops = sample_expression(rng, cfg.task)
        if expression_text(operands, ops) in exclude:
            continue
        style = "prose" if role == "student" and rng.random() < cfg.style_gap else "chain"
        if role == "teacher":
            slip = rng.random() < cfg.teacher_noise
        else:   # draws only when the knob is on, so existing students rebuild bit for bit
            slip = cfg.student_slip > 0 and rng.random() < cfg.student_slip
        yield operands, ops, style, slip


def sft_examples(draws, n: int, cfg: TinyWorldConfig, role: str) -> list[tuple[str, str]]:
    """The next `n` (question, solution) pairs of a role's stream (`sft_draws`), with that
    role's knob applied to the solution."""
    out = []
    for operands, ops, style, slip in itertools.islice(draws, n):
        if role == "teacher":
            carry = cfg.teacher_slip_kind == "carry"
            solution = solve(operands, ops, style, slip=slip and carry, borrow_slip=slip and not carry)[0]
        else:
            solution = solve(operands, ops, style, slip=slip,
                             borrow_slip=slip and cfg.student_slip_kind == "both")[0]
        out.append((expression_text(operands, ops), solution))
    return out


# --------------------------------------------------------------------------------------------
# What each model saw while it was built
# --------------------------------------------------------------------------------------------

# Every committed split a run may be scored on. A model built now never sees any of them in its
# SFT data. The seven committed models were built earlier, when SFT skipped only `eval`; their
# recipe (and so their key) stays as it was, because every study ran on them. `sft_seen` tells
# which evaluation problems they saw, and `eval_unseen` holds problems none of them saw.
EVALUATION_SPLITS = ("eval", "eval_skills", "eval_unseen")
EARLY_KEYS = frozenset({"teacher-bb41ca3007", "teacher-eb14091c22", "teacher-cafd8bfebb", "student-89dc05f5b0",
                        "student-d17cc7f303", "student-4f5ae4379a", "student-5f78d009f4"})


def sft_exclusion(cfg: TinyWorldConfig, role: str) -> tuple[str, ...]:
    """The committed splits whose questions the SFT of `cfg`'s `role` model skips: only `eval`
    for the committed models (built before the other splits existed), every evaluation split
    for any other build."""
    return ("eval",) if _early_key(cfg, role) in EARLY_KEYS else EVALUATION_SPLITS


def _excluded_questions(splits) -> set[str]:
    return {p.question for name in splits for p in arithmetic_split(name)}


def sft_questions(cfg: TinyWorldConfig, role: str) -> list[str]:
    """Every question (with repeats, in order) of the SFT data the `role` model of `cfg` was
    trained on: the build's random stream replayed, nothing trained (about a second)."""
    steps = cfg.teacher_steps if role == "teacher" else cfg.student_steps
    draws = sft_draws(random.Random(f"{cfg.seed}-{role}"), cfg, role,
                       _excluded_questions(sft_exclusion(cfg, role)))
    return [expression_text(operands, ops) for operands, ops, _, _ in itertools.islice(draws, steps * cfg.batch_size)]


@functools.lru_cache(maxsize=None)
def sft_seen(cfg: TinyWorldConfig, role: str) -> frozenset[str]:
    """The set of questions the `role` model of `cfg` saw in its SFT data (computed once per model)."""
    return frozenset(sft_questions(cfg, role))


def committed_models() -> dict[str, tuple[TinyWorldConfig, str]]:
    """{key: (config, role)} of every model committed in assets/tiny/, read from its meta.json
    (fields a model's meta lacks were added later, at values that keep its key)."""
    out = {}
    for meta_path in sorted(COMMITTED_DIR.glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        raw = dict(meta["config"])
        raw["task"] = ArithmeticTask(**raw["task"])
        for net in ("teacher", "student"):
            raw[net] = NetConfig(**raw[net])
        cfg = TinyWorldConfig(**raw)
        if role_key(cfg, meta["role"]) != meta["key"]:
            raise DataError(f"{meta_path}: its config gives key {role_key(cfg, meta['role'])}, not {meta['key']}")
        out[meta["key"]] = (cfg, meta["role"])
    return out


def unseen_problems(per_skill: int = 64, seed: int = 2468) -> tuple[list[Problem], dict[str, int]]:
    """The `eval_unseen` split: up to `per_skill` problems of each skill (SKILLS order, then
    interleaved) that no committed model saw in its SFT data and that are in no other committed
    split (so neither RL training prompts nor the other held-out problems), drawn with `seed`
    from every question of the task. Also returns how many such questions each skill has.

    Every two-operand question was drawn while the committed models were built, so every problem
    here has three operands; `eval_skills` mixes two and three. Compare like with like."""
    seen = set().union(*(sft_seen(cfg, role) for cfg, role in committed_models().values()))
    seen |= _excluded_questions(("eval", "train", "eval_skills"))
    task = ArithmeticTask()
    buckets: dict[str, list[str]] = {s: [] for s in SKILLS}
    for question in all_questions(task):
        if question not in seen:
            buckets[skill_of(question)].append(question)
    rng = random.Random(seed)
    chosen = {s: rng.sample(qs, min(per_skill, len(qs))) for s, qs in buckets.items()}
    problems = []
    for i in range(max(map(len, chosen.values()))):
        for s in SKILLS:
            if i < len(chosen[s]):
                operands, ops = parse_expression(chosen[s][i])
                solution, value = solve(operands, ops)
                problems.append(Problem(id=f"arith-unseen-{seed}-{s}-{i}", question=chosen[s][i],
                                        answer=str(value), solution=solution, source="arithmetic"))
    return problems, {s: len(qs) for s, qs in buckets.items()}


def all_questions(task: ArithmeticTask = ArithmeticTask()):
    """Every question `sample_expression` can draw from `task`, in a fixed order."""
    values = range(task.min_operand, task.max_operand + 1)
    for terms in range(task.min_terms, task.max_terms + 1):
        for operands in itertools.product(values, repeat=terms):
            for ops in itertools.product(task.ops, repeat=terms - 1):
                yield expression_text(list(operands), list(ops))


def write_unseen_split(path: Path | None = None) -> Path:
    """Write `eval_unseen` to the committed assets (`python -m sgopd_lite data`)."""
    path = Path(path) if path else DATA_DIR / "arith_eval_unseen.jsonl"
    save_jsonl(unseen_problems()[0], path)
    return path


def sft_train(model, tokenizer, cfg: TinyWorldConfig, role: str, steps: int, log_every: int = 100,
              verbose: bool = True) -> list[float]:
    """Supervised fine-tuning on freshly drawn worked solutions (the questions of the evaluation
    splits of `sft_exclusion` skipped)."""
    draws = sft_draws(random.Random(f"{cfg.seed}-{role}"), cfg, role,
                       _excluded_questions(sft_exclusion(cfg, role)))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    model.train()
    losses = []
    for step in range(steps):
        pairs = sft_examples(draws, cfg.batch_size, cfg, role)
        ids, attn, loss_mask = sft_batch(tokenizer, pairs, cfg.instruction)
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]          # (B, L-1, V)
        logp = token_logprobs(logits, ids[:, 1:])                                   # (B, L-1)
        loss = -masked_mean(logp, loss_mask[:, 1:])                                 # per token
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if verbose and (step + 1) % log_every == 0:
            print(f"  [{role}] step {step + 1}/{steps} loss {sum(losses[-log_every:]) / log_every:.4f}",
                  flush=True)
    model.eval()
    return losses


def cache_root() -> Path:
    """Where built tiny models are cached: $SGOPD_CACHE/tiny, else ~/.cache/sgopd_lite/tiny."""
    return models_cache_root() / "tiny"


COMMITTED_DIR = asset_path("tiny")    # the committed models, package data (assets/tiny/README.md)


def _recipe(cfg: TinyWorldConfig, role: str) -> tuple[dict, dict]:
    """(the fields of `role`'s own, the fields both roles share) that shape a model."""
    shared = {"task": asdict(cfg.task), "instruction": cfg.instruction, "lr": cfg.lr,
              "batch_size": cfg.batch_size, "seed": cfg.seed}
    if role == "teacher":
        own = {"net": asdict(cfg.teacher), "steps": cfg.teacher_steps, "teacher_noise": cfg.teacher_noise}
        if cfg.teacher_slip_kind != "carry":   # knobs enter the key only off their default,
            own["teacher_slip_kind"] = cfg.teacher_slip_kind   # so existing models keep their keys
    elif role == "student":
        own = {"net": asdict(cfg.student), "steps": cfg.student_steps, "style_gap": cfg.style_gap}
        if cfg.student_slip:   # keeps the keys of models built before this knob existed
            own["student_slip"] = cfg.student_slip
        if cfg.student_slip_kind != "both":
            own["student_slip_kind"] = cfg.student_slip_kind
    else:
        raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")
    return own, shared


def _hash_key(role: str, recipe: dict) -> str:
    blob = json.dumps({"role": role, **recipe}, sort_keys=True)
    return f"{role}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


def _early_key(cfg: TinyWorldConfig, role: str) -> str:
    """The key of `cfg`'s `role` model under the recipe of the committed models (SFT skipping `eval` only)."""
    own, shared = _recipe(cfg, role)
    return _hash_key(role, {**shared, **own})


def role_key(cfg: TinyWorldConfig, role: str) -> str:
    """Cache key of one model: only the fields that shape it, so that a `style_gap` variant
    reuses the default teacher and a `teacher_noise` variant reuses the default student. A model
    outside EARLY_KEYS skips every evaluation split in its SFT data, and its key says so."""
    key = _early_key(cfg, role)
    if key in EARLY_KEYS:
        return key
    own, shared = _recipe(cfg, role)
    return _hash_key(role, {**shared, **own, "sft_exclude": list(EVALUATION_SPLITS)})


def model_dir(cfg: TinyWorldConfig, role: str) -> Path:
    """Where a built model lives: the committed copy in assets/tiny/ if any, else the cache."""
    key = role_key(cfg, role)
    committed = COMMITTED_DIR / key
    return committed if (committed / "meta.json").is_file() else cache_root() / key


def build_model(cfg: TinyWorldConfig, role: str, out_dir: Path | None = None, verbose: bool = True) -> Path:
    """Train the teacher or the student of `cfg` by SFT and save it with the tokenizer."""
    out_dir = Path(out_dir) if out_dir else cache_root() / role_key(cfg, role)
    net, steps = (cfg.teacher, cfg.teacher_steps) if role == "teacher" else (cfg.student, cfg.student_steps)
    tok = build_tokenizer()
    start = time.perf_counter()
    model = make_model(net, tok, seed=cfg.seed + (0 if role == "teacher" else 1))
    losses = sft_train(model, tok, cfg, role, steps, verbose=verbose)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    meta = {"role": role, "key": role_key(cfg, role), "config": asdict(cfg),
            "seconds": round(time.perf_counter() - start, 1), "final_loss": round(losses[-1], 4),
            "params": sum(p.numel() for p in model.parameters()),
            "torch": torch.__version__, "threads": torch.get_num_threads()}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    return out_dir


def _build_in_worker(cfg: TinyWorldConfig, role: str, out_dir: Path, threads: int, verbose: bool) -> Path:
    torch.set_num_threads(threads)
    return build_model(cfg, role, out_dir, verbose=verbose)


def build_models(cfg: TinyWorldConfig, todo: dict[str, Path], parallel: bool | None = None,
                 verbose: bool = True) -> None:
    """Build the models of `todo` ({role: out_dir}). parallel (None = when there are two models
    and at least two CPUs): the teacher and the student train at the same time in two processes,
    half of the CPUs each. On 2 cores that is the teacher's time alone instead of the sum (the
    SFT of such small models gains little from a second thread). A model's weights depend on
    its thread count (float sums in another order), so meta.json records it."""
    cpus = os.cpu_count() or 1
    if parallel is None:
        parallel = len(todo) == 2 and cpus >= 2
    if not parallel or len(todo) < 2:
        for role, path in todo.items():
            build_model(cfg, role, path, verbose=verbose)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, cpus // len(todo))
    with ProcessPoolExecutor(len(todo), mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_build_in_worker, cfg, role, path, threads, verbose) for role, path in todo.items()]
        for f in futures:
            f.result()


def load_tiny_pair(style_gap: float = 0.0, teacher_noise: float = 0.0, cfg: TinyWorldConfig | None = None,
                   build: bool = True, verbose: bool = True, parallel: bool | None = None):
    """(tokenizer, teacher, student) of the tiny world, building and caching what is missing.

    The teacher is frozen and in eval mode; the student is a fresh trainable copy.
    """
    from transformers import Qwen2ForCausalLM

    cfg = cfg or TinyWorldConfig(style_gap=style_gap, teacher_noise=teacher_noise)
    paths = {role: model_dir(cfg, role) for role in ("teacher", "student")}
    todo = {role: path for role, path in paths.items() if not (path / "meta.json").is_file()}
    if todo and not build:
        role = next(iter(todo))
        raise FileNotFoundError(f"tiny {role} {role_key(cfg, role)} is not built ({todo[role]})")
    if todo:
        if verbose:
            print(f"building the tiny {' and '.join(todo)} (style_gap={cfg.style_gap}, teacher_noise="
                  f"{cfg.teacher_noise}) into {', '.join(str(p) for p in todo.values())}", flush=True)
        build_models(cfg, todo, parallel, verbose=verbose)
    tok = load_tokenizer(paths["teacher"])
    teacher = Qwen2ForCausalLM.from_pretrained(paths["teacher"], attn_implementation="eager")
    teacher.eval().requires_grad_(False)
    student = Qwen2ForCausalLM.from_pretrained(paths["student"], attn_implementation="eager")
    return tok, teacher, student


def build_seconds(cfg: TinyWorldConfig) -> dict:
    """Recorded SFT time of each model of `cfg` (from meta.json), for the world report."""
    out = {}
    for role in ("teacher", "student"):
        meta = model_dir(cfg, role) / "meta.json"
        out[role] = json.loads(meta.read_text())["seconds"] if meta.is_file() else None
    return out


def first_mistake(question: str, response: str) -> int | None:
    """Character (= token) index where a response first leaves the correct worked solution of
    `question`, in whichever style the response is written; None if it never does."""
    operands = [int(x) for x in re.findall(r"\d+", question)]
    ops = re.findall(r"(?<=\d)[+-]", question)
    gold = solve(operands, ops, "prose" if " is " in response else "chain")[0]
    for i, (a, b) in enumerate(zip(response, gold)):
        if a != b:
            return i
    return None if len(response) >= len(gold) else len(response)


@torch.no_grad()
def knob_evidence(tokenizer, teacher, student, problems, n: int = 8, instruction: str = TINY_INSTRUCTION,
                  max_new_tokens: int = 40) -> dict:
    """Per-token evidence that a knob does what it says, on the student's own rollouts:

    a2_mean        mean of a2 = log pi_T - log pi_S over sampled tokens (= minus the k1 KL estimate)
    conflict_frac  fraction of conflict tokens of docs/method.md §4 (teacher and verifier disagree)
    endorse_rate   of the wrong rollouts, the fraction whose *first mistake* the teacher
                   endorses (a2 >= 0 on that token): where A2 holds this is near 0
    teacher_wrong  of the positions whose correct next token is known (up to and including each
                   rollout's first mistake), the share where the teacher's most likely token is
                   not the correct one (`gate.gate_evidence`)
    """
    from ..gate import GateConfig, gate_evidence, sign_gate
    from ..rollout import response_logits, sample, sequence_logprobs
    from ..verifier import rewards

    prompts = [format_prompt(tokenizer, p.question, instruction) for p in problems]
    ro = sample(student, tokenizer, prompts, n, max_new_tokens, 1.0)
    r = torch.tensor(rewards(ro.texts, [p.answer for p in problems for _ in range(n)]))
    teacher_logits = response_logits(teacher, ro)                                   # (R, T, V), one forward
    out = sign_gate(token_logprobs(teacher_logits, ro.response_ids), sequence_logprobs(student, ro), r,
                    ro.group_ids, ro.response_mask, None, GateConfig())
    top = teacher_logits.argmax(-1)                                                 # (R, T)
    correct = torch.full_like(top, -1)
    for i in range(len(ro)):
        k = int(ro.response_mask[i].sum())
        correct[i, :k] = torch.tensor(correct_next_tokens(tokenizer, problems[i // n].question,
                                                          ro.response_ids[i, :k].tolist()))
    teacher_wrong = gate_evidence(out.a2, out.advantage, top, correct, ro.response_mask)["evidence_teacher_wrong"]
    endorsed, wrong = 0, 0
    for i, text in enumerate(ro.texts):
        pos = first_mistake(problems[i // n].question, text) if r[i] == 0 else None
        if pos is not None and pos < int(ro.response_mask[i].sum()):   # one token per character
            wrong += 1
            endorsed += int(out.a2[i, pos] >= 0)
    m = out.metrics
    return {"a2_mean": m["a2_mean"], "conflict_frac": m["frac_conflict_i"] + m["frac_conflict_ii"],
            "endorse_rate": endorsed / wrong if wrong else float("nan"), "rollouts": len(ro),
            "teacher_wrong": teacher_wrong}


# The named settings of the study (TrainConfig.world overrides). "A1 graded": the style_gap where
# plain OPD degrades without collapsing to 0 within 200 steps, measured before any other method
# ran (OPD alone, seed 100, held-out avg@8 at steps 0 / 50 / 100 / 150 / 200):
#   style_gap 0.25: 0.251 -> 0.209 / 0.211 / 0.288 / 0.252  (dips, recovers to the start)
#   style_gap 0.5:  0.109 -> 0.115 / 0.128 / 0.126 / 0.106  (flat)
#   style_gap 0.75: 0.117 -> 0.066 / 0.075 / 0.101 / 0.106  (falls by 43%, ends below the start)
#   style_gap 1.0:  0.232 -> 0.0 (the study's "A1 broken": every method collapses)
SETTINGS = {
    "both hold": {},
    "A1 graded": {"style_gap": 0.75},
    "A2 shared": {"teacher_noise": 1.0},
    "A2 complementary": {"teacher_noise": 1.0, "teacher_slip_kind": "borrow", "student_slip_kind": "carry"},
    "both broken": {"style_gap": 1.0, "teacher_noise": 1.0},
}

# The knob settings of the world report: both assumptions hold, A1 broken, A2 broken, both.
REPORT_SETTINGS = (
    ("both hold", SETTINGS["both hold"]),
    ("A1 graded", SETTINGS["A1 graded"]),
    ("A2 shared", SETTINGS["A2 shared"]),
    ("A2 complementary", SETTINGS["A2 complementary"]),
    ("both broken", SETTINGS["both broken"]),
)


def world_report(n: int = 8, rebuild: bool = False, build_dir=None, limit: int | None = None,
                 settings=REPORT_SETTINGS, verbose: bool = True, evidence_problems: int = 128) -> list[dict]:
    """Build (or reuse) each knob setting's pair and print teacher / student avg@n and pass@n
    on the held-out split, with each model's build time (`python -m sgopd_lite world --report`).

    rebuild: retrain every model of the report into `build_dir` (default: the cache), even when
    a copy exists. `--rebuild --build-dir sgopd_lite/assets/tiny` regenerates the committed checkpoints.
    """
    from ..evaluate import evaluate

    problems = arithmetic_split("eval")[:limit]
    rows, rebuilt = [], set()
    for name, knobs in settings:
        cfg = TinyWorldConfig(**knobs)
        # knob variants share the unchanged model: build each once
        todo = {role: Path(build_dir or cache_root()) / role_key(cfg, role) for role in ("teacher", "student")
                if rebuild and role_key(cfg, role) not in rebuilt}
        if todo:
            if verbose:
                print(f"rebuilding {', '.join(p.name for p in todo.values())} ({name})", flush=True)
            start = time.perf_counter()
            build_models(cfg, todo, verbose=verbose)
            rebuilt.update(p.name for p in todo.values())
            if verbose:
                print(f"  built in {time.perf_counter() - start:.0f} s wall", flush=True)
        tok, teacher, student = load_tiny_pair(cfg=cfg, verbose=verbose)
        secs = build_seconds(cfg)
        row = {"setting": name, **knobs}
        for role, model in (("teacher", teacher), ("student", student)):
            torch.manual_seed(0)
            res = evaluate(model, tok, problems, n=n, max_new_tokens=40, instruction=cfg.instruction,
                           step_checker=check_steps)
            row[role] = {f"avg@{n}": res.avg_at_n, f"pass@{n}": res.pass_at_k, "per_skill": res.per_skill,
                         "slip": {k: res.slip_rate(k) for k in ("carry", "borrow")},
                         "build_seconds": secs[role], "eval_seconds": res.seconds}
        torch.manual_seed(0)
        row["evidence"] = knob_evidence(tok, teacher, student, problems[:evidence_problems], n=n,
                                        instruction=cfg.instruction)
        rows.append(row)
        if verbose:
            print(f"  {name}: teacher avg@{n} {row['teacher'][f'avg@{n}']:.3f}, "
                  f"student avg@{n} {row['student'][f'avg@{n}']:.3f}", flush=True)
    print(f"\nTiny world, held-out split ({len(problems)} problems, n = {n} samples at temperature 1.0,"
          f" torch {torch.__version__}, {torch.get_num_threads()} threads)\n")
    print(f"| setting | teacher avg@{n} | teacher pass@{n} | student avg@{n} | student pass@{n} "
          "| mean a2 on student rollouts | conflict tokens | first mistakes the teacher endorses "
          "| wrong-teacher tokens | teacher build s | student build s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, s, e = r["teacher"], r["student"], r["evidence"]
        print(f"| {r['setting']} | {t[f'avg@{n}']:.3f} | {t[f'pass@{n}']:.3f} | {s[f'avg@{n}']:.3f} "
              f"| {s[f'pass@{n}']:.3f} | {e['a2_mean']:.3f} | {e['conflict_frac']:.3f} | {e['endorse_rate']:.3f} "
              f"| {e['teacher_wrong']:.3f} | {t['build_seconds']} | {s['build_seconds']} |")
    skills = rows[0]["student"]["per_skill"]
    print(f"\nAccuracy per skill (avg@{n}; number of held-out problems in brackets)\n")
    print("| setting | model | " + " | ".join(f"{k} ({v['problems']})" for k, v in skills.items()) + " |")
    print("|---|---|" + "---|" * len(skills))
    for r in rows:
        for role in ("teacher", "student"):
            per = r[role]["per_skill"]
            print(f"| {r['setting']} | {role} | " + " | ".join(f"{per[k]['avg']:.3f}" for k in skills) + " |")
    print(f"\nError adoption: of the sampled steps that need a carry (a borrow), the share that forgets it\n")
    print("| setting | model | forgotten carry | forgotten borrow |")
    print("|---|---|---|---|")
    for r in rows:
        for role in ("teacher", "student"):
            slip = r[role]["slip"]
            print(f"| {r['setting']} | {role} | {slip['carry']:.3f} | {slip['borrow']:.3f} |")
    print(f"\n(mean a2 and conflict tokens: {rows[0]['evidence']['rollouts']} student rollouts per setting, "
          "default gate; a2 < 0 is the student-teacher disagreement, conflict = teacher and verifier disagree; "
          "wrong-teacher tokens = share of the known positions where the teacher's top token is not the correct one)")
    return rows


# --------------------------------------------------------------------------------------------
# The world's interface (worlds/base.py)
# --------------------------------------------------------------------------------------------

def world_config(w) -> TinyWorldConfig:
    """The tiny world's config from a `TrainConfig.world` section (its knobs)."""
    return TinyWorldConfig(style_gap=w.style_gap, teacher_noise=w.teacher_noise,
                           teacher_slip_kind=w.teacher_slip_kind, student_slip_kind=w.student_slip_kind)


def model_pair(cfg: ModelConfig, tokenizer=None, verbose: bool = True, **tiny_kwargs) -> ModelPair:
    """The tiny pair (`load_tiny_pair(**tiny_kwargs)`, e.g. style_gap=, teacher_noise=) as a
    checked ModelPair on `cfg`'s device and dtype, the student made trainable as `cfg` says."""
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    tiny_tok, teacher, student = load_tiny_pair(verbose=verbose, **tiny_kwargs)
    teacher, student = teacher.to(device=device, dtype=dtype), student.to(device=device, dtype=dtype)
    tok = tokenizer if tokenizer is not None else tiny_tok
    return assemble_pair(cfg, tok, tiny_tok, teacher, student, verbose=verbose)


def load(cfg, verbose: bool = True) -> World:
    """The World of a run (`cfg`: TrainConfig) with `world.size = "tiny"`: the pair of its knobs,
    the student a plain (full fine-tune) model."""
    w = cfg.world
    if w.teacher or w.student:
        model_config(w)          # raises: the tiny size builds its own pair, paths need size=custom
    wcfg = world_config(w)
    tok, teacher, student = load_tiny_pair(cfg=wcfg, verbose=verbose)
    if w.gradient_checkpointing:
        enable_checkpointing(student)
    train, held_out = problem_sets(w)
    return World(tok, teacher, student, train, held_out, instruction=wcfg.instruction,
                 token_oracle=lambda question, ids, reach="first_mistake": correct_next_tokens(tok, question, ids, reach),
                 step_checker=check_steps)


ORACLE_REACHES = ("first_mistake", "local")


def correct_next_tokens(tokenizer, question: str, response_ids: list[int], reach: str = "first_mistake") -> list[int]:
    """The correct next token at each position of a response, up to and including its first
    mistake (later positions have no correct continuation: -1).

    reach="local" also fills, after the first mistake, the characters of each line's result that
    its own operands determine (`a op b = c`: the next character of a op b while c agrees with it
    so far, then the newline), the way the step checker judges a line: the oracle of a bound
    that knows every result digit, not only those before the first mistake.

    A response may be written in either solution style, so both gold continuations (chain and
    prose, each followed by EOS) are followed while the response agrees with them. Where the two
    styles differ (the choice of style, not arithmetic) the position is -1: both tokens are
    right. The first token that no remaining style allows is the first mistake; it is counted
    with the correct token of the style(s) still possible, or -1 if they disagree there. One
    token per character, so token t is character t. A question that is not this project's
    arithmetic has no known continuation: every position is -1.
    """
    out = [-1] * len(response_ids)
    try:
        operands, ops = parse_expression(question)
    except DataError:
        return out
    golds = [tokenizer(solve(operands, ops, style)[0], add_special_tokens=False)["input_ids"]
             + [tokenizer.eos_token_id] for style in ("chain", "prose")]
    for t, tok in enumerate(response_ids):
        nexts = {g[t] for g in golds if t < len(g)}
        if not nexts:
            break
        if len(nexts) == 1:
            out[t] = next(iter(nexts))
        if tok not in nexts:
            break                      # the first mistake is counted; what follows is not
        golds = [g for g in golds if t < len(g) and g[t] == tok]
    if reach == "local":
        _fill_local_results(tokenizer, question, response_ids, out)
    elif reach != "first_mistake":
        raise ValueError(f"oracle reach must be one of {ORACLE_REACHES}, got {reach!r}")
    return out


def _fill_local_results(tokenizer, question: str, response_ids: list[int], out: list[int]) -> None:
    """Fill the unknown (-1) positions of `out` that are result characters of a step line,
    each with the character its own operands call for (one token per character)."""
    pieces = [tokenizer.decode([t], skip_special_tokens=True) for t in response_ids]
    if any(len(piece) > 1 for piece in pieces):
        return                                     # not one character per token: leave it unknown
    text = "".join(piece or "\0" for piece in pieces)   # a special token (EOS) holds its place
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    for step in check_steps(question, text):
        m = STEP_LINE.fullmatch(text[step.start:step.end].rstrip("\n"))
        if m is None:
            continue
        should = str(_apply(int(m[1]), m[2], int(m[3])))
        begin = step.start + m.start(5)
        for k in range(len(should) + 1):
            t = begin + k
            if t >= len(out) or (k and text[begin:t] != should[:k]):
                break
            if out[t] == -1:
                out[t] = tokenizer(should[k], add_special_tokens=False)["input_ids"][0] if k < len(should) else newline


report = world_report
