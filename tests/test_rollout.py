"""Rollouts: the scorer reads the same distribution the sampler drew from."""

import torch

from conftest import make_tiny_world
from sgopd_lite.data import format_prompt
from sgopd_lite.rollout import Rollouts, response_mask_from_eos, sample, sequence_logprobs, tokenize_prompts


def test_recomputed_logprobs_match_the_samplers_own(char_tokenizer):
    # Left-padded prompts of different lengths; generate's own logits vs one training-style
    # forward pass over prompt + response: the old-policy log-probs must be the sampler's.
    world = make_tiny_world(char_tokenizer)
    tok, model = world.tokenizer, world.student
    prompts = [format_prompt(tok, q, "") for q in ("1+2", "12-3+4", "7")]
    ids, am = tokenize_prompts(tok, prompts)
    assert (am == 0).any()                                   # some prompts are padded
    torch.manual_seed(0)
    out = model.generate(input_ids=ids, attention_mask=am, do_sample=True, temperature=1.0, top_k=0,
                         max_new_tokens=12, output_logits=True, return_dict_in_generate=True,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    resp = out.sequences[:, ids.shape[1]:]
    sampler = torch.stack([l.log_softmax(-1) for l in out.logits], 1).gather(-1, resp[..., None]).squeeze(-1)
    mask, truncated = response_mask_from_eos(resp, tok.eos_token_id)
    ro = Rollouts(ids, am, torch.where(mask.bool(), resp, tok.pad_token_id), mask, truncated,
                  [""] * 3, torch.arange(3))
    with torch.no_grad():
        scorer = sequence_logprobs(model, ro)
    assert ((scorer - sampler).abs() * mask).max() < 1e-4


def test_sample_groups_rollouts_by_prompt_and_masks_by_position(char_tokenizer):
    world = make_tiny_world(char_tokenizer)
    tok = world.tokenizer
    ro = sample(world.student, tok, [format_prompt(tok, "1+1", ""), format_prompt(tok, "2+2", "")],
                num_samples=3, max_new_tokens=8)
    assert ro.group_ids.tolist() == [0, 0, 0, 1, 1, 1]
    assert ro.response_ids.shape == ro.response_mask.shape and len(ro.texts) == 6
    lengths = ro.response_mask.sum(1)
    assert (lengths >= 1).all() and (lengths <= 8).all()
    # mask is a prefix: ones then zeros
    assert torch.equal(ro.response_mask, (torch.arange(ro.response_mask.shape[1]) < lengths[:, None]).long())
    sub = ro.select([1, 4])
    assert sub.group_ids.tolist() == [0, 1] and sub.texts == [ro.texts[1], ro.texts[4]]


def test_padding_rows_are_never_sampled(char_tokenizer):
    # A model with 50 embedding rows more than the tokenizer has tokens (as Qwen has 271), whose
    # padding rows are made likely: sampling with vocab_size must never emit them.
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = char_tokenizer
    rows = len(tok) + 50
    cfg = Qwen2Config(vocab_size=rows, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=64, tie_word_embeddings=False,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    head = torch.nn.Linear(32, rows, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[len(tok):] = 5.0                      # padding rows now carry most of the mass
    model.lm_head = head
    prompts = [format_prompt(tok, "1+2", "")] * 4
    unguarded = sample(model, tok, prompts, 2, max_new_tokens=10)
    assert (unguarded.response_ids >= len(tok)).any()   # the hazard is real
    guarded = sample(model, tok, prompts, 2, max_new_tokens=10, vocab_size=len(tok))
    assert (guarded.response_ids < len(tok)).all()
    with torch.no_grad():
        logp = sequence_logprobs(model, guarded, vocab_size=len(tok))
    assert torch.isfinite(logp).all()


def _model_with_hostile_generation_config(char_tokenizer):
    """The tiny student, made peaked (a few likely tokens at each position), carrying the kind of
    sampling settings real checkpoints ship in their generation_config."""
    model = make_tiny_world(char_tokenizer).student
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    gc = model.generation_config
    gc.no_repeat_ngram_size = 1          # would forbid every repeated character
    gc.repetition_penalty = 50.0         # would all but forbid them too
    gc.top_k = 2                         # would keep only the two likeliest tokens
    gc.temperature = 0.3
    gc.min_new_tokens = 6                # would forbid an early EOS
    return model


def test_sampler_ignores_the_checkpoints_generation_config(char_tokenizer):
    # The tiny task repeats characters: with the checkpoint's settings applied no token could
    # ever repeat inside a response. The sampler must draw from the raw softmax anyway.
    tok = char_tokenizer
    model = _model_with_hostile_generation_config(tok)
    torch.manual_seed(0)
    ro = sample(model, tok, [format_prompt(tok, "12+34", "")], num_samples=64, max_new_tokens=12)
    repeats = sum(len(set(ids[m.bool()].tolist())) < int(m.sum())
                  for ids, m in zip(ro.response_ids, ro.response_mask))
    assert repeats > 0
    # the model's own settings are back after the call
    assert model.generation_config.no_repeat_ngram_size == 1 and model.generation_config.top_k == 2


def test_sampled_token_frequencies_match_the_scorers_softmax(char_tokenizer):
    tok = char_tokenizer
    model = _model_with_hostile_generation_config(tok)
    prompt = format_prompt(tok, "12+34", "")
    n = 4000
    torch.manual_seed(1)
    ro = sample(model, tok, [prompt], num_samples=n, max_new_tokens=1)
    with torch.no_grad():
        one = ro.select([0])
        from sgopd_lite.rollout import response_logits
        probs = response_logits(model, one)[0, 0].softmax(-1)                   # (V,)
    counts = torch.bincount(ro.response_ids[:, 0], minlength=probs.numel()).float()
    freq = counts / n
    assert int((probs > 0.02).sum()) >= 3          # the test needs more than top_k = 2 tokens in play
    tv = 0.5 * (freq - probs).abs().sum().item()    # total variation; sampling noise is about 0.02
    assert tv < 0.05, (tv, probs.topk(5), freq.topk(5))


def test_a_peft_wrapped_policy_samples_its_softmax_too(char_tokenizer):
    from peft import LoraConfig, get_peft_model

    tok = char_tokenizer
    model = get_peft_model(_model_with_hostile_generation_config(tok),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], lora_dropout=0.0))
    torch.manual_seed(0)
    ro = sample(model, tok, [format_prompt(tok, "12+34", "")], num_samples=64, max_new_tokens=12)
    repeats = sum(len(set(ids[m.bool()].tolist())) < int(m.sum())
                  for ids, m in zip(ro.response_ids, ro.response_mask))
    assert repeats > 0
