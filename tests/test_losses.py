"""Analytic checks of sgopd_lite.losses against direct computations and closed forms."""

import math

import pytest
import torch
import torch.nn.functional as F

from sgopd_lite import losses as L


def _logits(B=3, T=5, V=11, seed=0, dtype=torch.float64, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, V, generator=g, dtype=dtype) * scale)


def _tokens(B=3, T=5, V=11, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=g)


# ---------------------------------------------------------------- token_logprobs

@pytest.mark.parametrize("chunk_size", [None, 1, 2, 7, 1000])
def test_token_logprobs_matches_naive(chunk_size):
    logits, tokens = _logits(dtype=torch.float32), _tokens()
    naive = logits.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
    got = L.token_logprobs(logits, tokens, chunk_size=chunk_size)
    assert got.shape == (3, 5) and got.dtype == torch.float32
    torch.testing.assert_close(got, naive, atol=1e-5, rtol=0)


def test_token_logprobs_large_vocab_bf16_matches_fp32_reference():
    V = 151_936  # Qwen's vocabulary
    logits = torch.randn(2, 3, V, dtype=torch.bfloat16) * 4
    tokens = torch.randint(0, V, (2, 3))
    ref = logits.float().log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
    got = L.token_logprobs(logits, tokens, chunk_size=2)
    # values near -20: float32 summation order leaves ~1e-6 relative noise
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=2e-6)


@pytest.mark.parametrize("chunk_size", [1, 4, None])
def test_token_logprobs_gradient_matches_autograd_of_log_softmax(chunk_size):
    logits = _logits(dtype=torch.float64).requires_grad_()
    tokens = _tokens()
    weights = torch.randn(3, 5, dtype=torch.float64)
    (L.token_logprobs(logits, tokens, chunk_size) * weights).sum().backward()
    ours = logits.grad.clone()
    logits.grad = None
    (logits.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1) * weights).sum().backward()
    torch.testing.assert_close(ours, logits.grad, atol=1e-6, rtol=0)


def test_token_logprobs_gradcheck():
    logits = _logits(B=2, T=3, V=5, dtype=torch.float64).requires_grad_()
    tokens = _tokens(B=2, T=3, V=5)
    # the autograd Function computes in float32, so gradcheck with a float32-sized tolerance
    assert torch.autograd.gradcheck(lambda x: L.token_logprobs(x, tokens, 2).double(), (logits,),
                                    eps=1e-3, atol=1e-3, rtol=1e-3)


def test_token_logprobs_rejects_misaligned_shapes():
    with pytest.raises(ValueError, match="tokens"):
        L.token_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


# ---------------------------------------------------------------- masked reductions / KL estimators

def test_masked_mean_per_token_and_per_row_and_empty():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert L.masked_mean(x, m).item() == pytest.approx(2.0)              # (1+2+3)/3 per token
    torch.testing.assert_close(L.masked_mean(x, m, dim=-1), torch.tensor([1.5, 3.0]))  # per row
    assert L.masked_mean(x, torch.zeros_like(m)).item() == 0.0           # empty: 0, not NaN


def test_masked_mean_ignores_nan_outside_mask():
    x = torch.tensor([1.0, float("nan")])
    assert L.masked_mean(x, torch.tensor([1, 0])).item() == 1.0


def test_kl_estimators_are_unbiased_for_the_exact_kl():
    # q and p over 4 outcomes; E_{y~q}[k] must equal KL(q||p) for k1 and k3.
    q = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    p = torch.tensor([0.25, 0.25, 0.4, 0.1], dtype=torch.float64)
    exact = (q * (q / p).log()).sum()
    k1 = (q * L.k1_kl(q.log(), p.log())).sum()
    k3 = (q * L.k3_kl(q.log(), p.log())).sum()
    torch.testing.assert_close(k1, exact)
    torch.testing.assert_close(k3, exact)
    assert (L.k3_kl(q.log(), p.log()) >= 0).all()  # k3 is never negative per sample
    assert (L.k1_kl(q.log(), p.log()) < 0).any()   # k1 can be


def test_entropy_matches_direct_computation_and_bounds():
    logits = _logits(dtype=torch.float32)
    p = logits.softmax(-1)
    direct = -(p * p.log()).sum(-1)
    torch.testing.assert_close(L.entropy_from_logits(logits, chunk_size=4), direct, atol=1e-5, rtol=0)
    uniform = torch.zeros(1, 2, 11)
    torch.testing.assert_close(L.entropy_from_logits(uniform), torch.full((1, 2), math.log(11)))


# ---------------------------------------------------------------- policy-gradient loss

def test_identical_teacher_and_student_give_zero_loss():
    logits = _logits(dtype=torch.float32).requires_grad_()
    tokens, mask = _tokens(), torch.ones(3, 5)
    logp = L.token_logprobs(logits, tokens)
    advantage = logp.detach() - logp.detach()          # a2 = log pT - log pS with pT == pS
    loss = L.policy_gradient_loss(logp, advantage, mask, L.count_tokens(mask))
    loss.backward()
    assert loss.item() == 0.0
    assert logits.grad.abs().max().item() == 0.0


def test_policy_gradient_gradient_equals_closed_form():
    # loss = -(1/N) sum m A logp  =>  d loss / d logits[b,t,:] = -(1/N) m A (onehot - softmax)
    logits = _logits(dtype=torch.float64).requires_grad_()
    tokens = _tokens()
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0]])
    advantage = torch.randn(3, 5, dtype=torch.float64)
    N = int(mask.sum())
    loss = L.policy_gradient_loss(L.token_logprobs(logits, tokens), advantage, mask, N)
    loss.backward()
    onehot = F.one_hot(tokens, 11).double()
    closed = -(mask * advantage)[..., None] * (onehot - logits.detach().softmax(-1)) / N
    torch.testing.assert_close(logits.grad, closed, atol=1e-6, rtol=0)


def test_advantage_is_not_differentiated():
    logp = torch.randn(2, 3, requires_grad=True)
    adv = logp * 2  # an advantage that (wrongly) carries a graph
    L.policy_gradient_loss(logp, adv, torch.ones(2, 3), 6).backward()
    torch.testing.assert_close(logp.grad, -adv.detach() / 6)


@pytest.mark.parametrize("splits", [1, 2, 4])
def test_gradient_independent_of_micro_batching(splits):
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 13).double()
    B, T = 8, 7
    x = torch.randn(B, T, 6, dtype=torch.float64)
    tokens = torch.randint(0, 13, (B, T))
    lengths = torch.randint(1, T + 1, (B,))  # ragged responses
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    adv = torch.randn(B, T, dtype=torch.float64)

    def grads(n_split):
        model.zero_grad()
        N = L.count_tokens(mask)  # the whole step's count, shared by every micro-batch
        for idx in torch.arange(B).chunk(n_split):
            logp = L.token_logprobs(model(x[idx]), tokens[idx])
            L.policy_gradient_loss(logp, adv[idx], mask[idx], N).backward()
        return [p.grad.clone() for p in model.parameters()]

    for ours, full in zip(grads(splits), grads(1)):
        torch.testing.assert_close(ours, full, atol=1e-6, rtol=0)


def test_per_microbatch_mean_would_change_the_gradient():
    # The bug the explicit normaliser prevents: averaging inside each micro-batch.
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    adv = torch.ones(2, 3)
    L.policy_gradient_loss(logp, adv, mask, 4).backward()
    global_grad = logp.grad.clone()
    logp.grad = None
    for i in range(2):
        L.policy_gradient_loss(logp[i:i + 1], adv[i:i + 1], mask[i:i + 1], L.count_tokens(mask[i:i + 1])).backward()
    assert not torch.allclose(global_grad, logp.grad)
    assert global_grad[0, 0].item() == pytest.approx(-0.25)


def test_loss_rejects_zero_normaliser():
    with pytest.raises(ValueError, match="num_tokens"):
        L.policy_gradient_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), 0)


def test_ppo_clip_equals_reinforce_at_ratio_one_and_clips_otherwise():
    logp = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    adv = torch.randn(2, 4, dtype=torch.float64)
    mask = torch.ones(2, 4)
    loss, info = L.ppo_clip_loss(logp, logp.detach(), adv, mask, 8)
    loss.backward()
    g_ppo = logp.grad.clone()
    logp.grad = None
    L.policy_gradient_loss(logp, adv, mask, 8).backward()
    torch.testing.assert_close(g_ppo, logp.grad)
    assert info["clip_frac"] == 0.0
    # ratio e^1 with positive advantage: beyond 1 + eps, clipped, so no gradient there
    lp = torch.zeros(1, 1, requires_grad=True)
    loss, info = L.ppo_clip_loss(lp, torch.full((1, 1), -1.0), torch.ones(1, 1), torch.ones(1, 1), 1)
    loss.backward()
    assert info["clip_frac"] == 1.0 and lp.grad.item() == 0.0
    assert loss.item() == pytest.approx(-1.2)


def test_aux_ce_is_token_mean_and_zero_without_accepted_rollouts():
    logp = torch.log(torch.tensor([[0.5, 0.25, 1.0], [0.5, 1.0, 1.0]])).requires_grad_()
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    expected = -(math.log(0.5) + math.log(0.25) + math.log(0.5)) / 3
    assert L.aux_ce_loss(logp, mask).item() == pytest.approx(expected, rel=1e-6)
    empty = L.aux_ce_loss(logp, torch.zeros_like(mask))
    empty.backward()  # stays connected to the graph
    assert empty.item() == 0.0 and logp.grad.abs().sum().item() == 0.0


# ---------------------------------------------------------------- full-vocabulary divergences

def test_reverse_and_forward_kl_match_direct_computation_and_kl_div():
    s, t = _logits(seed=2, dtype=torch.float32), _logits(seed=3, dtype=torch.float32)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 1]])
    ls, lt = s.log_softmax(-1), t.log_softmax(-1)
    rev_tok = (ls.exp() * (ls - lt)).sum(-1)
    fwd_tok = (lt.exp() * (lt - ls)).sum(-1)
    rev = L.reverse_kl(s, t, mask, chunk_size=3)
    fwd = L.forward_kl(s, t, mask, chunk_size=3)
    torch.testing.assert_close(rev, (rev_tok * mask).sum() / mask.sum(), atol=1e-5, rtol=0)
    torch.testing.assert_close(fwd, (fwd_tok * mask).sum() / mask.sum(), atol=1e-5, rtol=0)
    # torch's kl_div(input, target) = KL(target || input) with log inputs
    kd_rev = F.kl_div(lt, ls, log_target=True, reduction="none").sum(-1)
    kd_fwd = F.kl_div(ls, lt, log_target=True, reduction="none").sum(-1)
    torch.testing.assert_close(L.token_divergence(s, t, 1.0), kd_rev, atol=1e-5, rtol=0)
    torch.testing.assert_close(L.token_divergence(s, t, 0.0), kd_fwd, atol=1e-5, rtol=0)


def test_generalized_jsd_interior_matches_mixture_formula_and_symmetry():
    s, t = _logits(seed=4, dtype=torch.float64), _logits(seed=5, dtype=torch.float64)
    beta = 0.3
    ps, pt = s.softmax(-1), t.softmax(-1)
    mix = beta * pt + (1 - beta) * ps
    direct = beta * (pt * (pt / mix).log()).sum(-1) + (1 - beta) * (ps * (ps / mix).log()).sum(-1)
    torch.testing.assert_close(L.generalized_jsd(s, t, beta), direct.mean().float(), atol=1e-5, rtol=0)
    # JSD(beta)(S, T) = JSD(1 - beta)(T, S)
    torch.testing.assert_close(L.generalized_jsd(s, t, 0.3), L.generalized_jsd(t, s, 0.7), atol=1e-6, rtol=0)
    assert L.generalized_jsd(s, s, 0.5).abs().item() < 1e-6


def test_divergence_gradient_is_the_same_chunked_and_not():
    t = _logits(seed=7, dtype=torch.float64)
    grads = []
    for chunk in (1, 1000):
        s = _logits(seed=6, dtype=torch.float64).requires_grad_()
        L.generalized_jsd(s, t, 0.5, chunk_size=chunk).backward()
        grads.append(s.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_dense_loss_weights_reverse_kl_by_lambda():
    s = _logits(seed=8, dtype=torch.float32).requires_grad_()
    t = _logits(seed=9, dtype=torch.float32)
    mask = torch.ones(3, 5)
    lam = torch.full((3, 5), 1.8)
    dense = L.dense_distill_loss(s, t, lam, mask, 15)
    torch.testing.assert_close(dense, 1.8 * L.reverse_kl(s, t), atol=1e-5, rtol=1e-5)
    assert L.dense_distill_loss(t.clone().requires_grad_(), t, lam, mask, 15).abs().item() < 1e-6


def test_divergence_rejects_mismatched_vocabularies():
    with pytest.raises(ValueError, match="slice"):
        L.reverse_kl(torch.zeros(1, 2, 5), torch.zeros(1, 2, 6))


def test_dense_loss_beta_zero_is_forward_kl():
    s = _logits(seed=10, dtype=torch.float32)
    t = _logits(seed=11, dtype=torch.float32)
    ones = torch.ones(3, 5)
    torch.testing.assert_close(L.dense_distill_loss(s, t, ones, ones, 15, beta=0.0), L.forward_kl(s, t),
                               atol=1e-5, rtol=1e-5)
