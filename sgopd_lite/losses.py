"""Losses and per-token quantities of on-policy distillation (docs/method.md §3, §5, §6).

What lives here, all pure functions of tensors:

* `token_logprobs`: log pi(y_t | h_t) of the sampled tokens, from logits, chunk by chunk, so
  that a float32 `(B, T, V)` log-softmax is never built (V = 151,936 for Qwen);
* masked reductions (`masked_sum`, `masked_mean`): the one masking convention of the project;
* `k1_kl`, `k3_kl`: sampled estimates of KL(pi_old || pi_T) from per-token log-probs;
* `entropy_from_logits`: per-token entropy, chunked;
* `policy_gradient_loss` (the paper's REINFORCE form, docs/method.md §5) and `ppo_clip_loss`, both
  normalised by an explicit token count N so the gradient does not depend on how a batch is
  split into micro-batches or processes;
* `aux_ce_loss`: the token-mean cross-entropy on verifier-endorsed teacher rollouts (docs/method.md §6);
* full-vocabulary divergences for the classroom comparison and the `dense` loss:
  `token_divergence`, `generalized_jsd`, `forward_kl`, `reverse_kl`, `dense_distill_loss`.

Conventions (stated once, used everywhere):

* Shapes: B sequences, T positions, V vocabulary. `logits[b, t]` is the distribution of the
  token at position t, i.e. logits are already aligned with `tokens` (the caller shifts).
* `mask` is `(B, T)`, 1 for response tokens that count, 0 elsewhere (prompt, padding, and
  everything after the first EOS). Build it from positions, never from token ids.
* "per token" reductions average over all masked tokens of the batch; "per sequence"
  reductions average within each row first. Every function says which it does.

Choices this project makes (not from the paper):

* The sampled-token log-prob has a hand-written backward (`_TokenLogprob`), so training
  through it keeps no float32 copy of the logits either; the gradient is recomputed chunk by
  chunk from the saved log-normaliser.
* `generalized_jsd` follows the GKD paper's and trl's convention: beta = 0 is
  KL(teacher || student) (forward), beta = 1 is KL(student || teacher) (reverse), and the
  endpoints are special-cased because the interpolated form tends to 0 there.

May import: torch only (the ground floor: pure functions).
"""

from __future__ import annotations

import math

import torch
from torch.utils.checkpoint import checkpoint

# Elements (rows x V) of float32 work memory per chunk: 2**24 floats = 64 MiB.
_CHUNK_ELEMENTS = 1 << 24


def _rows_per_chunk(vocab_size: int, chunk_size: int | None) -> int:
    """Positions per chunk: the caller's choice, else enough to fill about 64 MiB of float32."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of positions, got {chunk_size}")
        return int(chunk_size)
    return max(1, _CHUNK_ELEMENTS // max(1, vocab_size))


# --------------------------------------------------------------------------------------------
# Masked reductions: the one convention
# --------------------------------------------------------------------------------------------

def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of `x` where `mask` is set. x, mask: same shape (mask bool or 0/1 float)."""
    x = torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x.sum() if dim is None else x.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `x` over the masked entries (per token when dim is None; per row with dim=-1).

    An empty mask gives 0, not NaN: a batch without response tokens contributes nothing.
    """
    total = masked_sum(x, mask, dim)
    count = mask.bool().sum() if dim is None else mask.bool().sum(dim)
    return total / count.clamp(min=1).to(total.dtype)


# --------------------------------------------------------------------------------------------
# Sampled-token log-probs without a (B, T, V) float32 log-softmax
# --------------------------------------------------------------------------------------------

class _TokenLogprob(torch.autograd.Function):
    """log softmax(logits)[token], chunked in forward and in backward.

    forward saves only the logits (which exist anyway) and the log-normaliser (N,);
    backward rebuilds softmax one chunk at a time: d logp / d logits = onehot(token) - softmax.
    """

    @staticmethod
    def forward(ctx, logits, tokens, rows):  # logits (N, V), tokens (N,)
        out = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(out)
        for s in range(0, logits.shape[0], rows):
            chunk = logits[s:s + rows].float()                                   # (n, V)
            lse[s:s + rows] = torch.logsumexp(chunk, dim=-1)                     # (n,)
            picked = chunk.gather(-1, tokens[s:s + rows, None]).squeeze(-1)      # (n,)
            out[s:s + rows] = picked - lse[s:s + rows]
        ctx.save_for_backward(logits, tokens, lse)
        ctx.rows = rows
        return out

    @staticmethod
    def backward(ctx, grad_out):  # grad_out (N,)
        logits, tokens, lse = ctx.saved_tensors
        rows = ctx.rows
        grad = torch.empty_like(logits)
        for s in range(0, logits.shape[0], rows):
            g = grad_out[s:s + rows, None].float()                               # (n, 1)
            probs = torch.exp(logits[s:s + rows].float() - lse[s:s + rows, None])  # (n, V)
            chunk_grad = -g * probs
            chunk_grad.scatter_add_(-1, tokens[s:s + rows, None], g)
            grad[s:s + rows] = chunk_grad.to(logits.dtype)
        return grad, None, None


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor,
                   chunk_size: int | None = None) -> torch.Tensor:
    """Log-probabilities of the given tokens: log softmax(logits)[..., tokens].

    logits: (B, T, V), any float dtype, already aligned with `tokens` (position t predicts
    tokens[:, t]); tokens: (B, T) int. Returns (B, T) float32, differentiable w.r.t. logits.

    Computed `chunk_size` positions at a time (default: about 64 MiB of float32 per chunk), so
    the extra memory is O(chunk_size * V) instead of the O(B * T * V) of
    `logits.float().log_softmax(-1)`. Backward is chunked the same way.
    """
    if logits.dim() != 3 or tokens.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (B, T, V) and tokens (B, T); got {tuple(logits.shape)} "
                         f"and {tuple(tokens.shape)}")
    B, T, V = logits.shape
    rows = _rows_per_chunk(V, chunk_size)
    flat = _TokenLogprob.apply(logits.reshape(B * T, V), tokens.reshape(B * T).long(), rows)
    return flat.view(B, T)


def entropy_from_logits(logits: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Per-position entropy H(pi(.|h_t)) = -sum_v p log p. logits (B, T, V) -> (B, T) float32.

    No gradient (a diagnostic, docs/method.md §8); chunked like `token_logprobs`.
    """
    B, T, V = logits.shape
    rows = _rows_per_chunk(V, chunk_size)
    flat = logits.detach().reshape(B * T, V)
    out = torch.empty(B * T, dtype=torch.float32, device=logits.device)
    for s in range(0, B * T, rows):
        logp = flat[s:s + rows].float().log_softmax(-1)                          # (n, V)
        out[s:s + rows] = -(logp.exp() * logp).sum(-1)
    return out.view(B, T)


# --------------------------------------------------------------------------------------------
# Sampled KL estimators (Schulman's k1 / k3), for KL(q || p) with samples y ~ q
# --------------------------------------------------------------------------------------------

def k1_kl(logp_q: torch.Tensor, logp_p: torch.Tensor) -> torch.Tensor:
    """Per-token k1 estimate of KL(q || p) from samples of q: log q(y) - log p(y).

    Unbiased, high variance, can be negative per token. With q = pi_old, p = pi_T this is
    -a2 (docs/method.md §3). Shapes: any, equal; returns the same shape.
    """
    return logp_q - logp_p


def k3_kl(logp_q: torch.Tensor, logp_p: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(q || p) from samples of q: (p/q - 1) - log(p/q).

    Unbiased and never negative per token (x - 1 - log x >= 0). Shapes: any, equal.
    """
    log_ratio = logp_p - logp_q
    return torch.expm1(log_ratio) - log_ratio


# --------------------------------------------------------------------------------------------
# Policy losses (docs/method.md §5) and the auxiliary cross-entropy (docs/method.md §6)
# --------------------------------------------------------------------------------------------

def count_tokens(mask: torch.Tensor) -> int:
    """The token normaliser N of one micro-batch: the number of masked positions.

    For a whole optimizer step, N is the sum over all micro-batches and processes (the trainer
    all-reduces it); pass that total to the losses below.
    """
    return int(mask.bool().sum().item())


def _check_normaliser(num_tokens) -> float:
    n = float(num_tokens)
    if not n > 0:
        raise ValueError(f"num_tokens (the step's response-token count N) must be > 0, got {num_tokens}")
    return n


def policy_gradient_loss(logp: torch.Tensor, advantage: torch.Tensor, mask: torch.Tensor,
                         num_tokens: float) -> torch.Tensor:
    """The sampled-token policy-gradient loss of docs/method.md §5 (REINFORCE / "gpg" form):

        L = -(1 / N) * sum_{i,t} m_{i,t} * stopgrad(A_{i,t}) * log pi_theta(y_{i,t} | h_{i,t})

    logp: (B, T) log pi_theta of the sampled tokens (with grad); advantage: (B, T) (detached
    here); mask: (B, T). num_tokens: N, the response-token count of the WHOLE optimizer step
    (all micro-batches and processes), so that summing this loss over micro-batches gives the
    same gradient however the step is split. Per token; a scalar.

    Its gradient is -(1/N) * m * A * d logp / d theta, the closed form the tests check.
    """
    n = _check_normaliser(num_tokens)
    return -masked_sum(advantage.detach() * logp, mask) / n


def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor,
                  mask: torch.Tensor, num_tokens: float, clip_eps: float = 0.2
                  ) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate with the same token normaliser as `policy_gradient_loss`:

        ratio = exp(logp - old_logp)
        L = -(1 / N) * sum m * min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)

    Only matters with several updates per batch (ppo_epochs > 1): on the first update the
    ratio is 1 and the gradient equals the REINFORCE one. Shapes (B, T); returns the scalar
    loss and {"clip_frac": fraction of masked tokens whose ratio was clipped}.
    """
    n = _check_normaliser(num_tokens)
    adv = advantage.detach()
    ratio = torch.exp(logp - old_logp.detach())                                  # (B, T)
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)                         # (B, T)
    surrogate = torch.minimum(ratio * adv, clipped * adv)                         # (B, T)
    loss = -masked_sum(surrogate, mask) / n
    with torch.no_grad():
        was_clipped = (ratio * adv > clipped * adv).float()
        clip_frac = masked_mean(was_clipped, mask).item()
    return loss, {"clip_frac": clip_frac}


def aux_ce_loss(logp: torch.Tensor, mask: torch.Tensor, num_tokens: float | None = None
                ) -> torch.Tensor:
    """Token-mean cross-entropy on verifier-endorsed teacher rollouts (docs/method.md §6):

        L_CE = -(1 / N_T) * sum_t m^T_t * log pi_theta(y^T_t | h^T_t)

    logp: (B_T, T) student log-probs of the teacher's tokens; mask: (B_T, T). N_T defaults to
    the mask's count (pass the global count under several micro-batches / processes). With no
    accepted teacher rollout (empty mask) the loss is 0, still connected to the graph so that
    backward works unchanged.
    """
    n = float(mask.bool().sum().item()) if num_tokens is None else float(num_tokens)
    if n <= 0:
        return (logp * 0.0).sum()
    return -masked_sum(logp, mask) / n


# --------------------------------------------------------------------------------------------
# Full-vocabulary divergences (classroom comparison, and the `dense` loss)
# --------------------------------------------------------------------------------------------

def _divergence_rows(student: torch.Tensor, teacher: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-row generalized JSD(beta) between two logit blocks (n, V) -> (n,), float32."""
    s = student.float().log_softmax(-1)                                          # (n, V)
    t = teacher.float().log_softmax(-1)                                          # (n, V)
    if beta == 0.0:   # KL(teacher || student)
        return (t.exp() * (t - s)).sum(-1)
    if beta == 1.0:   # KL(student || teacher)
        return (s.exp() * (s - t)).sum(-1)
    # mixture M = beta * teacher + (1 - beta) * student, in log space
    m = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log(1.0 - beta)]), dim=0)
    kl_t_m = (t.exp() * (t - m)).sum(-1)
    kl_s_m = (s.exp() * (s - m)).sum(-1)
    return beta * kl_t_m + (1.0 - beta) * kl_s_m


def token_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float,
                     chunk_size: int | None = None) -> torch.Tensor:
    """Per-position generalized JSD(beta) over the full vocabulary: (B, T, V) x 2 -> (B, T).

        beta = 0:      KL(pi_T || pi_S)                       (forward KL)
        beta = 1:      KL(pi_S || pi_T)                       (reverse KL, what OPD estimates)
        0 < beta < 1:  beta KL(pi_T || M) + (1 - beta) KL(pi_S || M),  M = beta pi_T + (1-beta) pi_S

    Differentiable w.r.t. the student logits (the teacher's are detached). Chunked over
    positions; under autograd each chunk is recomputed in backward (activation checkpointing),
    so at most one chunk of float32 vocabulary work is alive at a time.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits differ in shape: {tuple(student_logits.shape)} "
                         f"vs {tuple(teacher_logits.shape)} (slice padded vocabulary rows first)")
    B, T, V = student_logits.shape
    rows = _rows_per_chunk(V, chunk_size)
    s_flat = student_logits.reshape(B * T, V)
    t_flat = teacher_logits.detach().reshape(B * T, V)
    use_ckpt = torch.is_grad_enabled() and s_flat.requires_grad
    parts = []
    for s in range(0, B * T, rows):
        if use_ckpt:
            parts.append(checkpoint(_divergence_rows, s_flat[s:s + rows], t_flat[s:s + rows],
                                    beta, use_reentrant=False))
        else:
            parts.append(_divergence_rows(s_flat[s:s + rows], t_flat[s:s + rows], beta))
    return torch.cat(parts).view(B, T)


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float,
                    mask: torch.Tensor | None = None, chunk_size: int | None = None
                    ) -> torch.Tensor:
    """Generalized JSD(beta) (GKD paper, trl convention), per-token mean over `mask`.

    beta = 0 is KL(teacher || student), beta = 1 is KL(student || teacher); see
    `token_divergence` for the formula. Shapes: logits (B, T, V), mask (B, T) or None (all).
    """
    per_token = token_divergence(student_logits, teacher_logits, beta, chunk_size)  # (B, T)
    if mask is None:
        return per_token.mean()
    return masked_mean(per_token, mask)


def forward_kl(student_logits, teacher_logits, mask=None, chunk_size=None) -> torch.Tensor:
    """KL(pi_T || pi_S) per token, mean over `mask` (mode-covering; what SFT on teacher samples minimises)."""
    return generalized_jsd(student_logits, teacher_logits, 0.0, mask, chunk_size)


def reverse_kl(student_logits, teacher_logits, mask=None, chunk_size=None) -> torch.Tensor:
    """KL(pi_S || pi_T) per token, mean over `mask` (mode-seeking; the quantity OPD estimates from samples)."""
    return generalized_jsd(student_logits, teacher_logits, 1.0, mask, chunk_size)


def dense_distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       lambda_t: torch.Tensor, mask: torch.Tensor, num_tokens: float,
                       chunk_size: int | None = None, beta: float = 1.0) -> torch.Tensor:
    """The `dense` loss (this project's extension, docs/method.md §5; not the paper's form):

        L_dense = (1 / N) * sum_{i,t} m_{i,t} * lambda_t * KL(pi_theta(.|h_{i,t}) || pi_T(.|h_{i,t}))

    logits (B, T, V); lambda_t (B, T) from the sampled token's gate class (detached);
    mask (B, T); N the step's global response-token count, as in `policy_gradient_loss`.
    beta: the divergence at each student-visited position, as in `generalized_jsd`: 1 (default,
    docs/method.md §5) is the reverse KL above; 0 is the forward KL(pi_T || pi_theta) (on-policy GKD's
    mode-covering form); in between, JSD(beta).
    """
    n = _check_normaliser(num_tokens)
    kl = token_divergence(student_logits, teacher_logits, beta, chunk_size)       # (B, T)
    return masked_sum(lambda_t.detach() * kl, mask) / n
