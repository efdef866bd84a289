"""Sampling rollouts with HF `generate`, and the response mask built from positions.

A rollout batch holds, for every (prompt, sample) pair, the prompt (left-padded), the sampled
response (right-padded) and `response_mask`: 1 on every response position up to AND including
the first EOS, 0 after it. The mask comes from positions, never from token values: a student
can *sample* the pad id (often equal to the EOS id); masking by `token != pad_id` would drop
exactly those tokens from the loss, making "emit pad" the one action never penalised, which
looks like a collapse (TINY_WORLD_NOTES.md).
"""

from __future__ import annotations

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


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], num_samples: int = 1, max_new_tokens: int = 64,
           temperature: float = 1.0, top_p: float = 1.0, batch_size: int | None = None,
           vocab_size: int | None = None) -> Rollouts:
    """`num_samples` sampled responses for each prompt (rollouts of prompt i are contiguous).

    prompts: already formatted (see `data.format_prompt`). temperature = 0 means greedy.
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
    step = batch_size or len(expanded)
    pieces = []
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(expanded), step):
            ids, am = prompt_ids[s:s + step], prompt_mask[s:s + step]
            gen_kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=pad_id,
                              eos_token_id=sorted(eos))
            rows = model.config.vocab_size
            if vocab_size is not None and rows > vocab_size:
                gen_kwargs["suppress_tokens"] = list(range(vocab_size, rows))
            if temperature > 0:
                gen_kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
            else:
                gen_kwargs.update(do_sample=False)
            out = model.generate(input_ids=ids, attention_mask=am, **gen_kwargs)
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
