"""Sampling rollouts with HF `generate`, and the response mask built from positions.

A rollout batch holds, for every (prompt, sample) pair, the prompt (left-padded), the sampled
response (right-padded) and `response_mask`: 1 on every response position up to AND including
the first EOS, 0 after it. The mask comes from positions, never from token values: a student
can *sample* the pad id (often equal to the EOS id); masking by `token != pad_id` would drop
exactly those tokens from the loss, making "emit pad" the one action never penalised, which
looks like a collapse (TINY_WORLD_NOTES.md).

The sampler is pi_old, exactly. Checkpoints ship sampling settings in their
`generation_config` (Qwen2.5 instruct: a repetition penalty, top_k and a temperature; others
`no_repeat_ngram_size`, `min_new_tokens`, bad words), and transformers 5 fills every field a
caller leaves unset from `model.generation_config`, even when a fresh `GenerationConfig` is
passed. The scorer computes raw log-probs, so any such processor would make the gate and the
policy gradient silently off-policy. `sample` therefore swaps in a clean, fully specified
configuration for the duration of the call (`neutral_generation_config`): the raw softmax at
`temperature`, top_p = 1, no top_k, no penalties, no processors beyond the suppression of
embedding padding rows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass
class Rollouts:
    """A batch of sampled responses. R = number of rollouts, P prompt length, T response length."""

    prompt_ids: torch.Tensor      # (R, P) left-padded prompt tokens
    prompt_mask: torch.Tensor     # (R, P) 1 on real prompt tokens
    response_ids: torch.Tensor    # (R, T) sampled tokens, right-padded with pad_id
    response_mask: torch.Tensor   # (R, T) 1 up to and including the first EOS
    truncated: torch.Tensor       # (R,)   bool, no EOS within max_new_tokens
    texts: list[str]              # decoded responses (special tokens removed)
    group_ids: torch.Tensor       # (R,)   index of the prompt each rollout answers

    def __len__(self) -> int:
        return self.response_ids.shape[0]

    def select(self, idx) -> "Rollouts":
        """The rollouts at `idx` (a slice, list or index tensor), e.g. one micro-batch."""
        if isinstance(idx, slice):
            idx = torch.arange(len(self))[idx]
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Rollouts(prompt_ids=self.prompt_ids[idx], prompt_mask=self.prompt_mask[idx],
                        response_ids=self.response_ids[idx], response_mask=self.response_mask[idx],
                        truncated=self.truncated[idx], texts=[self.texts[i] for i in idx.tolist()],
                        group_ids=self.group_ids[idx])

    def to(self, device) -> "Rollouts":
        """The same rollouts with every tensor on `device`."""
        return Rollouts(prompt_ids=self.prompt_ids.to(device), prompt_mask=self.prompt_mask.to(device),
                        response_ids=self.response_ids.to(device), response_mask=self.response_mask.to(device),
                        truncated=self.truncated.to(device), texts=self.texts, group_ids=self.group_ids.to(device))

    @property
    def input_ids(self) -> torch.Tensor:
        """(R, P + T): prompt and response, the sequence the training forward pass reads."""
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """(R, P + T): real prompt tokens and the counted response tokens.

        Positions after the first EOS are not attended; they are not in the loss either.
        """
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)


def response_mask_from_eos(response_ids: torch.Tensor, eos_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask of the response positions up to and including the first EOS.

    response_ids: (R, T); eos_ids: an int or a collection of ints.
    Returns (mask (R, T) long, truncated (R,) bool: no EOS at all, every position counts).
    """
    eos = torch.as_tensor(sorted(eos_ids) if not isinstance(eos_ids, int) else [eos_ids],
                          device=response_ids.device)
    is_eos = torch.isin(response_ids, eos)                                        # (R, T)
    # number of EOS tokens strictly before each position: 0 means "still inside the response"
    eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()              # (R, T)
    mask = (eos_before == 0).long()
    truncated = ~is_eos.any(dim=1)
    return mask, truncated


def eos_token_ids(tokenizer, model=None) -> set[int]:
    """The ids that end a response: the tokenizer's EOS plus the generation config's."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if gen_eos is not None:
        ids.update([gen_eos] if isinstance(gen_eos, int) else gen_eos)
    if not ids:
        raise ValueError("the tokenizer has no eos_token_id: responses could never end")
    return ids


def tokenize_prompts(tokenizer, prompts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and mask (R, P). The chat template already holds any special tokens."""
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = old_side
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def neutral_generation_config(max_new_tokens: int, temperature: float, pad_id: int, eos_ids,
                              suppress_tokens: list[int] | None = None, top_p: float = 1.0):
    """A `GenerationConfig` with every logits processor at its neutral value.

    temperature > 0 samples from softmax(logits / temperature) (top_p < 1 only where a caller
    asks for it, e.g. an evaluation preset); temperature = 0 is greedy. Every other field that
    changes the distribution is set explicitly, so nothing is left for `generate` to fill in
    from a checkpoint's own config: top_k = 0 (off; transformers' global default is 50),
    penalties 1.0, no n-gram blocking, no minimum length, no bad words, no forced tokens.
    """
    from transformers import GenerationConfig

    sampling = temperature > 0
    return GenerationConfig(
        max_new_tokens=max_new_tokens, min_length=0, min_new_tokens=None,
        do_sample=sampling, temperature=temperature if sampling else 1.0,
        top_p=top_p if sampling else 1.0, top_k=0 if sampling else None, min_p=None, typical_p=1.0,
        epsilon_cutoff=0.0, eta_cutoff=0.0,
        repetition_penalty=1.0, encoder_repetition_penalty=1.0, length_penalty=1.0,
        no_repeat_ngram_size=0, encoder_no_repeat_ngram_size=0,
        bad_words_ids=None, sequence_bias=None, suppress_tokens=suppress_tokens or None,
        begin_suppress_tokens=None, forced_bos_token_id=None, forced_eos_token_id=None,
        exponential_decay_length_penalty=None, renormalize_logits=False, remove_invalid_values=False,
        guidance_scale=None, watermarking_config=None,
        num_beams=1, num_return_sequences=1, use_cache=True,
        pad_token_id=pad_id, eos_token_id=sorted(eos_ids))


@contextlib.contextmanager
def clean_generation_config(model, gen_cfg):
    """Within the block, every HF model inside `model` (a PEFT wrapper's base model too) carries
    `gen_cfg` as its `generation_config`, so `generate` has nothing of the checkpoint's to merge."""
    from transformers import GenerationConfig

    saved = [(m, m.generation_config) for m in model.modules()
             if isinstance(vars(m).get("generation_config"), GenerationConfig)]
    try:
        for m, _ in saved:
            m.generation_config = gen_cfg
        yield
    finally:
        for m, cfg in saved:
            m.generation_config = cfg


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], num_samples: int = 1, max_new_tokens: int = 64,
           temperature: float = 1.0, top_p: float = 1.0, batch_size: int | None = None,
           vocab_size: int | None = None) -> Rollouts:
    """`num_samples` sampled responses for each prompt (rollouts of prompt i are contiguous).

    prompts: already formatted (see `data.format_prompt`). temperature = 0 means greedy.
    Draws from the raw softmax at `temperature`, whatever the model's `generation_config` says
    (see the module docstring and `neutral_generation_config`).
    batch_size: rollouts per `generate` call (None: all at once).
    vocab_size: the tokenizer's size when the model has more embedding rows (Qwen: 151,936 rows
    for 151,665 tokens). The padding rows are suppressed while sampling, so the sampler draws
    from exactly the distribution the scorer computes on sliced logits, and never emits an id
    the tokenizer does not have (a random-init Qwen-shaped model did, measured on a GPU).
    """
    device = next(model.parameters()).device
    expanded = [p for p in prompts for _ in range(num_samples)]
    group_ids = torch.arange(len(prompts)).repeat_interleave(num_samples)
    eos = eos_token_ids(tokenizer, model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    prompt_ids, prompt_mask = tokenize_prompts(tokenizer, expanded, device)
    rows = model.config.vocab_size
    suppress = list(range(vocab_size, rows)) if vocab_size is not None and rows > vocab_size else None
    gen_cfg = neutral_generation_config(max_new_tokens, temperature, pad_id, eos, suppress, top_p)
    step = batch_size or len(expanded)
    pieces = []
    was_training = model.training
    model.eval()
    try:
        with clean_generation_config(model, gen_cfg):
            for s in range(0, len(expanded), step):
                ids, am = prompt_ids[s:s + step], prompt_mask[s:s + step]
                out = model.generate(input_ids=ids, attention_mask=am, generation_config=gen_cfg)
                pieces.append(out[:, ids.shape[1]:])
    finally:
        model.train(was_training)
    width = max(p.shape[1] for p in pieces)
    response_ids = torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=pad_id)
                              for p in pieces])
    mask, truncated = response_mask_from_eos(response_ids, eos)
    response_ids = torch.where(mask.bool(), response_ids, torch.full_like(response_ids, pad_id))
    texts = tokenizer.batch_decode(torch.where(mask.bool(), response_ids, pad_id), skip_special_tokens=True)
    return Rollouts(prompt_ids=prompt_ids, prompt_mask=prompt_mask, response_ids=response_ids,
                    response_mask=mask, truncated=truncated, texts=texts, group_ids=group_ids)


def response_logits(model, rollouts: Rollouts, vocab_size: int | None = None) -> torch.Tensor:
    """Logits of the distributions that produced each response token: (R, T, V).

    One forward pass over prompt + response; the logits at position p predict token p + 1, so
    only the last T + 1 positions are computed (`logits_to_keep`) and the final one is dropped.
    vocab_size: the tokenizer's size when the model pads its embedding with extra rows (Qwen:
    151,936 rows for 151,665 tokens); those columns are sliced off before any softmax.
    """
    ids, am = rollouts.input_ids, rollouts.attention_mask
    T = rollouts.response_ids.shape[1]
    position_ids = (am.cumsum(-1) - 1).clamp(min=0)     # left padding: real tokens start at 0
    logits = model(input_ids=ids, attention_mask=am, position_ids=position_ids,
                   logits_to_keep=T + 1).logits[:, :-1]                            # (R, T, V)
    return logits if vocab_size is None else logits[..., :vocab_size]


def sequence_logprobs(model, rollouts: Rollouts, vocab_size: int | None = None,
                      chunk_size: int | None = None) -> torch.Tensor:
    """log pi(y_t | h_t) of every response token under `model`: (R, T) float32.

    Gradients flow when grad is enabled (the training forward); wrap in torch.no_grad() for the
    teacher and the old policy.
    """
    from .losses import token_logprobs

    return token_logprobs(response_logits(model, rollouts, vocab_size), rollouts.response_ids, chunk_size)
