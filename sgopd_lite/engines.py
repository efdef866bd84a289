"""Rollout engines: who samples the student's responses (step 1 of docs/method.md §7).

One small interface, two engines:

    HFEngine     batched HF `generate` on the training model itself (`rollout.sample`); the
                 default, CPU and GPU. Nothing to deliver: it samples the live module.
    VLLMEngine   vLLM (the optional `vllm` extra, GPU only). vLLM keeps its own copy of the
                 weights, so the current policy is delivered to it before every step: the
                 student's LoRA adapter is saved and sent as a new `LoRARequest` (fresh name,
                 id and folder each step). `vllm` is imported in its constructor and nowhere
                 else, so nothing imports it unless `rollout_engine: vllm` is chosen.

    engine = make_engine(cfg)
    engine.sync(policy, step)                              # deliver the current weights
    out = engine.sample(policy, tok, prompts, G, max_new_tokens, temperature, vocab_size)
    out.rollouts                                           # rollout.Rollouts, same layout for both
    out.logprobs                                           # (R, T) engine's own log-probs, or None

What the trainer does with an engine (train.py, `Trainer.collect`), the project's choices:
* Teacher, old-policy and reference log-probs are ALWAYS recomputed with the training stack
  from the rollouts' token ids; an engine's own log-probs are never used in the loss.
* The engine's log-probs serve one purpose: the on-policy check. Every `engine_check_every`
  steps the trainer scores the rollouts with the training model and compares
  (`engine_logp_gap`, mean |difference| per response token, nats); above
  `engine_logp_tol` it stops with `OffPolicyEngineError`. A stale adapter, a wrong base
  model or a dtype mismatch all show up here instead of as a silently off-policy run.
* HFEngine returns no log-probs, so the check is skipped for it: its sampler IS the training
  module, and the remaining difference (generate's KV cache vs one full forward) is tested in
  tests/test_rollout.py (below 1e-4 nats). Getting them from `generate` would need
  `output_logits=True`, which keeps every step's (R, V) logits: (R, T, V) floats, 5 GB for
  32 x 256 Qwen rollouts, which defeats the point of a cheap check.
* vLLM V1 returns the sampled token's log-prob under the RAW model distribution (before
  temperature, top-p and the allowed-token mask); the training stack's old log-probs are
  raw too, so the two are comparable at any temperature. (vLLM's older V0 engine returned
  log-probs after temperature: with it, run the check at temperature 1.)
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple, Protocol

import torch

from .rollout import Rollouts, eos_token_ids, response_mask_from_eos, sample, tokenize_prompts

ENGINES = ("hf", "vllm")
VLLM_INSTALL_HINT = ("'vllm' needs the optional vLLM extra: pip install '.[vllm]' "
                     "(on a GPU machine; vLLM pins its own torch), or use rollout_engine='hf'")


def vllm_importable() -> bool:
    """Whether `import vllm` would find the package, without importing it (config validation)."""
    import importlib.util
    import sys

    if "vllm" in sys.modules:
        return sys.modules["vllm"] is not None
    return importlib.util.find_spec("vllm") is not None


class OffPolicyEngineError(RuntimeError):
    """The rollout engine's log-probs disagree with the training model's: it is not sampling
    the current policy (or samples it at a precision too far from the trainer's)."""


class EngineSample(NamedTuple):
    rollouts: Rollouts                 # prompts, responses, masks: the layout of rollout.sample
    logprobs: torch.Tensor | None      # (R, T) the engine's log pi(y_t) of each sampled token, 0 off the mask


class RolloutEngine(Protocol):
    """What the trainer needs from a sampler."""

    name: str

    def sync(self, policy, step: int) -> None:
        """Deliver the policy's current weights before step `step` samples from it."""

    def sample(self, policy, tokenizer, prompts: list[str], group_size: int, max_new_tokens: int,
               temperature: float, vocab_size: int | None = None) -> EngineSample:
        """`group_size` rollouts per prompt, rollouts of prompt i contiguous (group_ids = i)."""


# --------------------------------------------------------------------------------------------
# HF generate
# --------------------------------------------------------------------------------------------

class HFEngine:
    """`rollout.sample` behind the engine interface: identical rollouts, no log-probs."""

    name = "hf"

    def sync(self, policy, step: int) -> None:
        pass                           # generate runs on the live training module

    def sample(self, policy, tokenizer, prompts, group_size, max_new_tokens, temperature,
               vocab_size=None) -> EngineSample:
        ro = sample(policy, tokenizer, prompts, group_size, max_new_tokens, temperature,
                    vocab_size=vocab_size)
        return EngineSample(ro, None)


# --------------------------------------------------------------------------------------------
# vLLM
# --------------------------------------------------------------------------------------------

def _is_peft(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


# Every SamplingParams field that reshapes the distribution, at its neutral value, so vLLM samples
# the raw softmax at `temperature` exactly as `rollout.sample` does (the sampler is pi_old).
# top_k = -1 is "all tokens" in every vLLM version >= 0.8 (newer ones also accept 0).
NEUTRAL_SAMPLING = dict(top_p=1.0, top_k=-1, min_p=0.0, presence_penalty=0.0, frequency_penalty=0.0,
                        repetition_penalty=1.0, min_tokens=0, ignore_eos=False, bad_words=None,
                        logit_bias=None, logits_processors=None)


class VLLMEngine:
    """Student rollouts with vLLM's offline `LLM`, the current LoRA adapter delivered every step.

    vLLM API used (checked against vLLM's docs and source, see the README):
        LLM(model=..., enable_lora=True, max_lora_rank=r, max_loras=1, gpu_memory_utilization=...,
            dtype=..., seed=..., max_model_len=..., enforce_eager=...)
        LLM.generate([{"prompt_token_ids": [...]}, ...], [SamplingParams, ...], use_tqdm=False,
                     lora_request=LoRARequest(lora_name, lora_int_id, lora_path))
        SamplingParams(n=G, temperature=, max_tokens=, logprobs=1, seed=, stop_token_ids=,
                       allowed_token_ids=, top_p=1, top_k=-1, min_p=0, presence_penalty=0,
                       frequency_penalty=0, repetition_penalty=1, min_tokens=0, ...)  (NEUTRAL_SAMPLING)
        -> RequestOutput.outputs: CompletionOutput(index, token_ids, logprobs, finish_reason)
           logprobs: one {token_id: Logprob(logprob=...)} dict per generated token

    Only LoRA students are supported: a LoRA adapter is a few MB written to disk and read by
    vLLM's public API each step. Delivering a full fine-tuned student would need vLLM's
    internals (`llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights`,
    which exists only in-process, i.e. V0 or V1 with VLLM_ENABLE_V1_MULTIPROCESSING=0, as TRL's
    colocate mode does); that path moves between vLLM versions and is not implemented here.

    The base weights vLLM loads are the student's base checkpoint (`model`, default: the peft
    config's `base_model_name_or_path`) in `dtype`. Under QLoRA the trainer's base is 4-bit
    while vLLM's is not, so the engine samples a slightly different policy: the on-policy
    check measures how far (loosen `engine_logp_tol` knowingly, or train without 4-bit).
    Prompts are sent as token ids (tokenised exactly as `rollout.sample` does), so both
    engines see the same prompt tokens; responses are decoded with the project's tokenizer.
    """

    name = "vllm"

    def __init__(self, gpu_memory_utilization: float = 0.3, dtype: str = "auto",
                 max_model_len: int | None = None, enforce_eager: bool = False,
                 model: str | None = None, max_lora_rank: int | None = None,
                 adapter_dir: str | None = None, seed: int = 0):
        try:
            import vllm  # noqa: F401  (the only place the package is imported)
            from vllm import LLM, SamplingParams
            from vllm.lora.request import LoRARequest
        except ImportError as err:
            raise ImportError(f"rollout_engine {VLLM_INSTALL_HINT} ({err})") from None
        self._LLM, self._SamplingParams, self._LoRARequest = LLM, SamplingParams, LoRARequest
        # generation_config="vllm": vLLM's own neutral defaults, never the checkpoint's sampling
        # settings (every field that shapes the distribution is also set in each SamplingParams)
        self.llm_kwargs = dict(gpu_memory_utilization=gpu_memory_utilization, dtype=dtype,
                               enforce_eager=enforce_eager, seed=seed, generation_config="vllm")
        if max_model_len is not None:
            self.llm_kwargs["max_model_len"] = max_model_len
        self.model, self.max_lora_rank, self.seed = model, max_lora_rank, seed
        self._own_dir = adapter_dir is None
        self.adapter_root = Path(adapter_dir or tempfile.mkdtemp(prefix="sgopd_vllm_"))
        self.adapter_root.mkdir(parents=True, exist_ok=True)
        self.llm = None                # built on the first sync, when the policy is known
        self.lora_request = None
        self.synced_step = None
        self.n_syncs = 0               # LoRA ids are 1, 2, 3, ...: never reused, even for a repeated step

    def _build(self, policy) -> None:
        adapter = policy.active_adapter if isinstance(policy.active_adapter, str) else policy.active_adapter[0]
        pcfg = policy.peft_config[adapter]
        model = self.model or pcfg.base_model_name_or_path
        if not model:
            raise ValueError("VLLMEngine: the student's peft config names no base model; "
                             "set vllm.model to the base checkpoint vLLM should load")
        self.llm = self._LLM(model=model, enable_lora=True, max_loras=1,
                             max_lora_rank=self.max_lora_rank or int(pcfg.r), **self.llm_kwargs)

    def sync(self, policy, step: int) -> None:
        """Save the policy's adapter and make the next `sample` use it (new name, id and folder).

        vLLM caches adapters by their integer id: reusing an id after the weights changed would
        keep sampling the cached (stale) adapter, hence a fresh id on every call.
        """
        if not _is_peft(policy):
            raise NotImplementedError(
                "rollout_engine='vllm' delivers the student to vLLM as a LoRA adapter each step and "
                "needs a LoRA student (world.lora=true). Full-weight delivery is not implemented; "
                "use rollout_engine='hf' for a full fine-tune.")
        if self.llm is None:
            self._build(policy)
        self.n_syncs += 1
        path = self.adapter_root / f"adapter_{self.n_syncs:06d}_step_{step}"
        shutil.rmtree(path, ignore_errors=True)
        policy.save_pretrained(str(path))
        previous = self.lora_request
        self.lora_request = self._LoRARequest(f"policy_{self.n_syncs}_step_{step}", self.n_syncs, str(path))
        self.synced_step = step
        if previous is not None:
            # vLLM reads the folder when the request is first scheduled; the previous step's
            # adapter has been loaded (and used) by now, so its folder can go.
            shutil.rmtree(previous.lora_path, ignore_errors=True)

    def sample(self, policy, tokenizer, prompts, group_size, max_new_tokens, temperature,
               vocab_size=None) -> EngineSample:
        if self.lora_request is None:
            raise RuntimeError("VLLMEngine.sample before sync(policy, step): vLLM has no policy weights yet")
        eos = eos_token_ids(tokenizer, policy)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
        expanded = [p for p in prompts for _ in range(group_size)]
        prompt_ids, prompt_mask = tokenize_prompts(tokenizer, expanded)            # (R, P) left-padded
        requests = [{"prompt_token_ids": prompt_ids[i * group_size][prompt_mask[i * group_size].bool()].tolist()}
                    for i in range(len(prompts))]
        extra = {}
        rows = getattr(policy.config, "vocab_size", None)
        if vocab_size is not None and rows is not None and rows > vocab_size:
            extra["allowed_token_ids"] = list(range(vocab_size))   # never sample padding rows
        params = [self._SamplingParams(n=group_size, temperature=temperature, max_tokens=max_new_tokens,
                                       logprobs=1, seed=self.seed * 1_000_003 + self.synced_step * 1009 + i,
                                       stop_token_ids=sorted(eos), **NEUTRAL_SAMPLING, **extra)
                  for i in range(len(prompts))]
        outputs = self.llm.generate(requests, params, use_tqdm=False, lora_request=self.lora_request)
        return vllm_outputs_to_rollouts(outputs, tokenizer, prompt_ids, prompt_mask, group_size, eos, pad_id)

    def __del__(self):
        if getattr(self, "_own_dir", False):
            shutil.rmtree(self.adapter_root, ignore_errors=True)


def vllm_outputs_to_rollouts(outputs, tokenizer, prompt_ids, prompt_mask, group_size: int, eos,
                             pad_id: int) -> EngineSample:
    """vLLM `RequestOutput`s (one per prompt, `group_size` completions each) -> EngineSample.

    The layout is exactly `rollout.sample`'s: prompt_ids/prompt_mask (R, P) left-padded,
    response_ids (R, T) right-padded with pad_id where T is the longest response, the mask from
    positions (1 up to and including the first EOS), truncated = no EOS at all.
    """
    seqs, logps = [], []
    for req in outputs:
        completions = sorted(req.outputs, key=lambda c: c.index)
        if len(completions) != group_size:
            raise ValueError(f"vLLM returned {len(completions)} completions for a prompt, expected {group_size}")
        for c in completions:
            ids = list(c.token_ids)
            seqs.append(ids)
            if c.logprobs is None:
                logps.append(None)
            else:
                logps.append([float(step[t].logprob) for t, step in zip(ids, c.logprobs)])
    R = len(seqs)
    if R != prompt_ids.shape[0]:
        raise ValueError(f"vLLM returned {R} rollouts for {prompt_ids.shape[0]} expected")
    width = max(1, max(len(s) for s in seqs))
    response_ids = torch.full((R, width), pad_id, dtype=torch.long)
    engine_logp = torch.zeros(R, width)
    for i, ids in enumerate(seqs):
        response_ids[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        if logps[i] is not None:
            engine_logp[i, :len(ids)] = torch.tensor(logps[i])
    # padding is not a token the engine produced: it must neither end a response (pad_id is
    # often the EOS id) nor count, even for a response cut short by vLLM's max_model_len
    lengths = torch.tensor([len(s) for s in seqs])
    produced = torch.arange(width)[None, :] < lengths[:, None]                    # (R, T)
    mask, truncated = response_mask_from_eos(torch.where(produced, response_ids, -1), eos)
    mask = mask * produced.long()
    response_ids = torch.where(mask.bool(), response_ids, torch.full_like(response_ids, pad_id))
    texts = tokenizer.batch_decode(response_ids, skip_special_tokens=True)
    group_ids = torch.arange(R // group_size).repeat_interleave(group_size)
    ro = Rollouts(prompt_ids=prompt_ids, prompt_mask=prompt_mask, response_ids=response_ids,
                  response_mask=mask, truncated=truncated, texts=texts, group_ids=group_ids)
    has_logp = all(lp is not None for lp in logps)
    return EngineSample(ro, engine_logp * mask if has_logp else None)


# --------------------------------------------------------------------------------------------
# The on-policy check and the factory
# --------------------------------------------------------------------------------------------

def engine_logp_gap(engine_logp: torch.Tensor, train_logp: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean |log pi_engine(y_t) - log pi_train(y_t)| over response tokens (per token), in nats.

    engine_logp, train_logp, mask: (R, T). 0 when the engine samples exactly the trained policy.
    """
    from .losses import masked_mean

    diff = (engine_logp.float().to(train_logp.device) - train_logp.float()).abs()    # (R, T)
    return float(masked_mean(diff, mask.to(train_logp.device)))


def check_engine_logp(engine_logp, train_logp, mask, tol: float, engine: str = "") -> float:
    """`engine_logp_gap`, raising OffPolicyEngineError above `tol`; returns the gap."""
    gap = engine_logp_gap(engine_logp, train_logp, mask)
    if not gap <= tol:                  # also catches NaN
        raise OffPolicyEngineError(
            f"rollout engine {engine!r} is not sampling the current policy: its log-probs differ from "
            f"the training model's by {gap:.4f} nats per token on average (engine_logp_tol = {tol}). "
            "Likely causes: the adapter was not delivered (stale weights), vLLM loaded another base "
            "model (vllm.model), or a precision gap (bf16 engine vs float32 trainer, or a 4-bit "
            "QLoRA base in training): raise engine_logp_tol only if that gap is expected.")
    return gap


def make_engine(cfg) -> RolloutEngine:
    """The engine `cfg.rollout_engine` names ('hf' or 'vllm'), built from cfg.vllm's knobs."""
    if cfg.rollout_engine == "hf":
        return HFEngine()
    if cfg.rollout_engine == "vllm":
        v = cfg.vllm
        return VLLMEngine(gpu_memory_utilization=v.gpu_memory_utilization, dtype=v.dtype,
                          max_model_len=v.max_model_len, enforce_eager=v.enforce_eager, model=v.model,
                          max_lora_rank=v.max_lora_rank, adapter_dir=v.adapter_dir, seed=cfg.seed)
    raise ValueError(f"rollout_engine must be one of {ENGINES}, got {cfg.rollout_engine!r}")
