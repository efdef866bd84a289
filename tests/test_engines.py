"""Rollout engines (engines.py): HF generate behind the interface, and vLLM against a fake module.

There is no GPU and no vLLM here: `fake_vllm` installs a stand-in `vllm` package into
sys.modules with the three names the engine uses (LLM, SamplingParams, lora.request.LoRARequest).
Its LLM records every call and answers like vLLM does: completions that stop at the first EOS,
with each sampled token's raw log-prob, drawn from a tiny model. The "faithful" fake loads the
LoRA adapter folder it is sent (cached by integer id, as vLLM caches adapters); the "stale" one
ignores it and samples the base model, which is what a forgotten weight delivery looks like.
"""

import copy
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import make_tiny_world
from sgopd_lite.config import ConfigError, TrainConfig, load_config
from sgopd_lite.data import format_prompt
from sgopd_lite.engines import (EngineSample, HFEngine, OffPolicyEngineError, VLLMEngine, check_engine_logp,
                                engine_logp_gap, make_engine, vllm_outputs_to_rollouts)
from sgopd_lite.rollout import sample, sequence_logprobs, tokenize_prompts

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# --------------------------------------------------------------------------------------------
# A fake vllm package
# --------------------------------------------------------------------------------------------

class FakeSamplingParams:
    # vLLM's own defaults for the fields that reshape the distribution (vllm.SamplingParams)
    DEFAULTS = dict(top_p=1.0, top_k=-1, min_p=0.0, presence_penalty=0.0, frequency_penalty=0.0,
                    repetition_penalty=1.0, min_tokens=0, ignore_eos=False, bad_words=None,
                    logit_bias=None, logits_processors=None)

    def __init__(self, n=1, temperature=1.0, max_tokens=16, logprobs=None, seed=None, stop_token_ids=None,
                 allowed_token_ids=None, **fields):
        unknown = set(fields) - set(self.DEFAULTS)
        assert not unknown, f"not a vllm.SamplingParams field: {unknown}"
        self.n, self.temperature, self.max_tokens, self.logprobs = n, temperature, max_tokens, logprobs
        self.seed, self.stop_token_ids, self.allowed_token_ids = seed, stop_token_ids, allowed_token_ids
        self.explicit = dict(fields)
        for name, value in {**self.DEFAULTS, **fields}.items():
            setattr(self, name, value)


class FakeLoRARequest:
    def __init__(self, lora_name, lora_int_id, lora_path):
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path


class FakeLLM:
    """Records its construction and every generate call; samples `FakeLLM.base` (+ the adapter)."""

    base = None                 # the student's base model, set by the fixture
    faithful = True             # False: ignore the LoRA request and sample the base model
    instances = []

    def __init__(self, **kwargs):
        self.kwargs, self.calls, self.adapters = kwargs, [], {}
        FakeLLM.instances.append(self)

    def _model(self, lora_request):
        if not self.faithful or lora_request is None:
            return FakeLLM.base
        if lora_request.lora_int_id not in self.adapters:      # vLLM caches adapters by integer id
            from peft import PeftModel

            self.adapters[lora_request.lora_int_id] = PeftModel.from_pretrained(
                copy.deepcopy(FakeLLM.base), lora_request.lora_path).eval()
        return self.adapters[lora_request.lora_int_id]

    @torch.no_grad()
    def generate(self, prompts, sampling_params, use_tqdm=True, lora_request=None):
        self.calls.append(SimpleNamespace(prompts=prompts, params=sampling_params, lora_request=lora_request))
        model = self._model(lora_request)
        results = []
        for prompt, sp in zip(prompts, sampling_params):
            ids = torch.tensor([prompt["prompt_token_ids"]])
            torch.manual_seed(sp.seed)
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                 temperature=sp.temperature, top_k=0, max_new_tokens=sp.max_tokens,
                                 num_return_sequences=sp.n, eos_token_id=sp.stop_token_ids,
                                 pad_token_id=sp.stop_token_ids[0])
            completions = []
            for j, row in enumerate(out[:, ids.shape[1]:].tolist()):
                stop = next((i for i, t in enumerate(row) if t in sp.stop_token_ids), None)
                toks = row if stop is None else row[:stop + 1]                # vLLM stops at the EOS
                full = torch.tensor([prompt["prompt_token_ids"] + toks])
                logp = model(input_ids=full).logits[0, ids.shape[1] - 1:-1].float().log_softmax(-1)
                lps = [{t: SimpleNamespace(logprob=float(logp[i, t]))} for i, t in enumerate(toks)]
                completions.append(SimpleNamespace(index=j, token_ids=toks, logprobs=lps, text="",
                                                   finish_reason="length" if stop is None else "stop"))
            results.append(SimpleNamespace(outputs=completions))
        return results


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = FakeLLM, FakeSamplingParams
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = FakeLoRARequest
    vllm.lora, lora.request = lora, request
    for name, mod in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(FakeLLM, "instances", [])
    monkeypatch.setattr(FakeLLM, "faithful", True)
    return vllm


def lora_world(tokenizer):
    """The tiny random world with a LoRA student; FakeLLM.base = a copy of its base weights."""
    from peft import LoraConfig, get_peft_model

    world = make_tiny_world(tokenizer)
    FakeLLM.base = copy.deepcopy(world.student).eval()
    world.student = get_peft_model(world.student, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                              lora_dropout=0.0))
    return world


def perturb_adapter(policy, seed=0):
    """Make the adapter matter (LoRA B starts at zero, so a fresh adapter equals the base)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g))


def _cfg(tmp_path, **kw):
    base = dict(method="opd", steps=2, prompts_per_step=3, group_size=4, max_new_tokens=12, eval_every=0,
                eval_problems=2, eval_n=2, save_every=0, log_rollouts=0, out_dir=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


# --------------------------------------------------------------------------------------------
# HF engine
# --------------------------------------------------------------------------------------------

def test_hf_engine_gives_the_rollouts_of_rollout_sample(char_tokenizer):
    world = make_tiny_world(char_tokenizer)
    tok, model = world.tokenizer, world.student
    prompts = [format_prompt(tok, q, "") for q in ("1+2", "12-3+4")]
    torch.manual_seed(7)
    ref = sample(model, tok, prompts, 3, max_new_tokens=10, temperature=1.0)
    torch.manual_seed(7)
    engine = HFEngine()
    engine.sync(model, 0)
    out = engine.sample(model, tok, prompts, 3, 10, 1.0)
    assert isinstance(out, EngineSample) and out.logprobs is None
    for name in ("prompt_ids", "prompt_mask", "response_ids", "response_mask", "truncated", "group_ids"):
        assert torch.equal(getattr(out.rollouts, name), getattr(ref, name)), name
    assert out.rollouts.texts == ref.texts


def test_the_default_engine_never_imports_vllm(tmp_path, char_tokenizer, monkeypatch):
    # A trap `vllm` package on the path: importing it anywhere would fail this test.
    trap = tmp_path / "trap" / "vllm"
    trap.mkdir(parents=True)
    (trap / "__init__.py").write_text("raise RuntimeError('vllm was imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "trap"))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    import sgopd_lite  # noqa: F401
    import sgopd_lite.engines  # noqa: F401  (imported to show it does not import vllm)
    from sgopd_lite.train import Trainer

    cfg = _cfg(tmp_path, steps=1)
    assert cfg.rollout_engine == "hf" and isinstance(make_engine(cfg), HFEngine)
    Trainer(cfg, world=make_tiny_world(char_tokenizer), verbose=False).run()
    assert "vllm" not in sys.modules


# --------------------------------------------------------------------------------------------
# vLLM engine against the fake
# --------------------------------------------------------------------------------------------

def test_vllm_outputs_become_rollouts_with_the_position_mask(char_tokenizer):
    tok = char_tokenizer
    eos, pad = tok.eos_token_id, tok.pad_token_id
    a, b, c = tok.convert_tokens_to_ids(["1", "2", "+"])
    prompts = [format_prompt(tok, "1+2", ""), format_prompt(tok, "12-3+4", "")]
    expanded = [p for p in prompts for _ in range(2)]
    prompt_ids, prompt_mask = tokenize_prompts(tok, expanded)

    def completion(i, toks, finish):
        return SimpleNamespace(index=i, token_ids=toks, finish_reason=finish,
                               logprobs=[{t: SimpleNamespace(logprob=-0.5 - k)} for k, t in enumerate(toks)])

    outputs = [  # completions listed out of order: the engine sorts them by index
        SimpleNamespace(outputs=[completion(1, [a, b, c, a], "length"), completion(0, [a, eos], "stop")]),
        SimpleNamespace(outputs=[completion(0, [eos], "stop"), completion(1, [b, eos, a], "stop")]),
    ]
    out = vllm_outputs_to_rollouts(outputs, tok, prompt_ids, prompt_mask, 2, {eos}, pad)
    ro = out.rollouts
    assert torch.equal(ro.prompt_ids, prompt_ids) and torch.equal(ro.prompt_mask, prompt_mask)
    assert ro.group_ids.tolist() == [0, 0, 1, 1]
    assert ro.response_ids.tolist() == [[a, eos, pad, pad], [a, b, c, a], [eos, pad, pad, pad],
                                        [b, eos, pad, pad]]           # nothing after the first EOS
    assert ro.response_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]
    assert ro.truncated.tolist() == [False, True, False, False]
    assert ro.texts == ["1", "12+1", "", "2"]
    assert out.logprobs.tolist() == [[-0.5, -1.5, 0, 0], [-0.5, -1.5, -2.5, -3.5], [-0.5, 0, 0, 0],
                                     [-0.5, -1.5, 0, 0]]


def test_padding_never_ends_a_response_even_when_pad_is_eos(char_tokenizer):
    # A response cut short without an EOS (vLLM's max_model_len) beside a longer one, with
    # pad id == EOS id: the padding must neither count nor mark the short one as finished.
    tok = char_tokenizer
    eos, a = tok.eos_token_id, tok.convert_tokens_to_ids("1")
    prompt_ids, prompt_mask = tokenize_prompts(tok, [format_prompt(tok, "1", "")] * 2)
    outputs = [SimpleNamespace(outputs=[SimpleNamespace(index=0, token_ids=[a, a], finish_reason="length", logprobs=None),
                                        SimpleNamespace(index=1, token_ids=[a, a, a, eos], finish_reason="stop",
                                                        logprobs=None)])]
    out = vllm_outputs_to_rollouts(outputs, tok, prompt_ids, prompt_mask, 2, {eos}, pad_id=eos)
    assert out.rollouts.response_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert out.rollouts.truncated.tolist() == [True, False]
    assert out.logprobs is None


def test_vllm_engine_sends_a_new_lora_request_each_step_and_samples_the_policy(fake_vllm, char_tokenizer, tmp_path):
    world = lora_world(char_tokenizer)
    tok, policy = world.tokenizer, world.student
    prompts = [format_prompt(tok, q, "") for q in ("1+2", "12-3+4", "7")]
    engine = VLLMEngine(model="tiny-base", adapter_dir=str(tmp_path / "adapters"), gpu_memory_utilization=0.25,
                        seed=3)
    with pytest.raises(RuntimeError, match="before sync"):
        engine.sample(policy, tok, prompts, 2, 8, 1.0)
    requests = []
    for step in range(3):
        perturb_adapter(policy, seed=step)               # the policy changes between steps
        engine.sync(policy, step)
        out = engine.sample(policy, tok, prompts, 2, 8, 1.0)
        req = FakeLLM.instances[0].calls[-1].lora_request
        requests.append(req)
        # the delivered adapter is the current policy: the engine's log-probs are the trainer's
        with torch.no_grad():
            train_logp = sequence_logprobs(policy.eval(), out.rollouts)
        assert engine_logp_gap(out.logprobs, train_logp, out.rollouts.response_mask) < 1e-4
        assert out.rollouts.group_ids.tolist() == [0, 0, 1, 1, 2, 2]
    assert len(FakeLLM.instances) == 1                   # one LLM, built at the first sync
    llm_kwargs = FakeLLM.instances[0].kwargs
    assert llm_kwargs["model"] == "tiny-base"
    assert llm_kwargs["enable_lora"] is True and llm_kwargs["max_lora_rank"] == 4
    assert llm_kwargs["gpu_memory_utilization"] == 0.25
    assert len({r.lora_int_id for r in requests}) == 3 and len({r.lora_name for r in requests}) == 3
    assert len({r.lora_path for r in requests}) == 3
    assert [p.name for p in (tmp_path / "adapters").iterdir()] == [Path(requests[-1].lora_path).name]  # old ones removed
    sp = FakeLLM.instances[0].calls[-1].params[0]
    assert sp.n == 2 and sp.max_tokens == 8 and sp.logprobs is not None and sp.stop_token_ids == [tok.eos_token_id]


def test_vllm_engine_sets_every_distribution_field_explicitly(fake_vllm, char_tokenizer, tmp_path):
    # vLLM would otherwise take a checkpoint's sampling defaults (generation_config="auto"):
    # the engine names every field that reshapes the distribution, at its neutral value.
    world = lora_world(char_tokenizer)
    engine = VLLMEngine(model="tiny-base", adapter_dir=str(tmp_path / "adapters"))
    engine.sync(world.student, 0)
    engine.sample(world.student, world.tokenizer, [format_prompt(world.tokenizer, "1+2", "")], 2, 8, 1.0)
    sp = FakeLLM.instances[0].calls[-1].params[0]
    assert sp.explicit == FakeSamplingParams.DEFAULTS
    assert FakeLLM.instances[0].kwargs["generation_config"] == "vllm"


def test_vllm_engine_refuses_a_full_student_and_a_missing_package(fake_vllm, char_tokenizer, monkeypatch):
    world = make_tiny_world(char_tokenizer)
    with pytest.raises(NotImplementedError, match="LoRA"):
        VLLMEngine().sync(world.student, 0)
    monkeypatch.setitem(sys.modules, "vllm", None)        # `import vllm` now fails
    with pytest.raises(ImportError, match=r"pip install '\.\[vllm\]'"):
        VLLMEngine()


def test_trainer_with_the_vllm_engine_runs_and_checks_it_samples_the_policy(fake_vllm, char_tokenizer, tmp_path):
    from sgopd_lite.train import Trainer

    cfg = _cfg(tmp_path, rollout_engine="vllm", world={"lora": True}, vllm={"model": "tiny-base"}, engine_check_every=1)
    trainer = Trainer(cfg, world=lora_world(char_tokenizer), verbose=False)
    assert isinstance(trainer.engine, VLLMEngine)
    perturb_adapter(trainer.policy)
    batch = trainer.collect(0)
    assert batch.metrics["engine_logp_gap"] < 1e-4 and "engine_check" in batch.times
    m = trainer.learn(0, batch)
    assert m["grad_norm"] > 0
    assert trainer.collect(1).metrics["engine_logp_gap"] < 1e-4     # the updated adapter was delivered
    ids = [c.lora_request.lora_int_id for c in FakeLLM.instances[0].calls]
    assert ids == [1, 2]


def test_the_check_stops_a_run_whose_engine_samples_a_stale_policy(fake_vllm, char_tokenizer, tmp_path, monkeypatch):
    from sgopd_lite.train import Trainer

    monkeypatch.setattr(FakeLLM, "faithful", False)      # the engine never sees the adapter
    cfg = _cfg(tmp_path, rollout_engine="vllm", world={"lora": True}, vllm={"model": "tiny-base"})
    trainer = Trainer(cfg, world=lora_world(char_tokenizer), verbose=False)
    perturb_adapter(trainer.policy)
    with pytest.raises(OffPolicyEngineError, match="engine_logp_tol"):
        trainer.collect(0)
    assert [c.lora_request.lora_int_id for c in FakeLLM.instances[0].calls] == [1]
    # a knowingly loose tolerance lets it pass and reports the gap; off-check steps skip it
    cfg.engine_logp_tol = 1e3
    batch = trainer.collect(0)
    assert batch.metrics["engine_logp_gap"] > 0.05
    assert trainer.collect(1).metrics == {}               # engine_check_every = 50: not a check step
    assert [c.lora_request.lora_int_id for c in FakeLLM.instances[0].calls] == [1, 2, 3]  # never reused


def test_full_run_with_the_vllm_engine(fake_vllm, char_tokenizer, tmp_path):
    from sgopd_lite.train import Trainer

    cfg = _cfg(tmp_path, rollout_engine="vllm", world={"lora": True}, vllm={"model": "tiny-base"}, method="sgopd",
               pts={"k1": 1, "k2": 2, "m": 2})
    history = Trainer(cfg, world=lora_world(char_tokenizer), verbose=False).run()
    assert [m["step"] for m in history] == [0, 1] and "reward_mean" in history[-1]
    assert (tmp_path / "run" / "final" / "adapter_config.json").is_file()


# --------------------------------------------------------------------------------------------
# The check itself, and the config
# --------------------------------------------------------------------------------------------

def test_engine_logp_gap_is_a_masked_per_token_mean():
    train = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert engine_logp_gap(train, train, mask) == 0.0
    engine = train + torch.tensor([[0.1, -0.3, 9.0], [0.2, 9.0, 9.0]])   # 9s sit off the mask
    assert engine_logp_gap(engine, train, mask) == pytest.approx(0.2)
    assert check_engine_logp(engine, train, mask, tol=0.25) == pytest.approx(0.2)
    with pytest.raises(OffPolicyEngineError):
        check_engine_logp(engine, train, mask, tol=0.1)
    with pytest.raises(OffPolicyEngineError):
        check_engine_logp(engine * float("nan"), train, mask, tol=0.1)


@pytest.mark.parametrize("kw, field", [
    (dict(rollout_engine="sglang"), "rollout_engine"),
    (dict(engine_check_every=-1), "engine_check_every"),
    (dict(engine_logp_tol=0.0), "engine_logp_tol"),
    (dict(vllm={"gpu_memory_utilization": 1.5}), "vllm.gpu_memory_utilization"),
    (dict(vllm={"max_lora_rank": 0}), "vllm.max_lora_rank"),
    (dict(vllm={"max_model_len": 20}, max_new_tokens=40), "vllm.max_model_len"),
    (dict(rollout_engine="vllm", world={"size": "tiny"}), "rollout_engine"),     # tiny = full student
    (dict(rollout_engine="vllm", world={"size": "qwen", "lora": False}), "rollout_engine"),
])
def test_engine_config_errors_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        TrainConfig(**kw)


def test_vllm_without_the_package_is_refused_before_any_model_loads(monkeypatch, tmp_path):
    from sgopd_lite import train as train_module

    monkeypatch.setitem(sys.modules, "vllm", None)
    cfg = TrainConfig(rollout_engine="vllm", world={"size": "qwen"}, out_dir=str(tmp_path / "run"))

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the engine check")

    monkeypatch.setattr(train_module, "load_world", no_loading)
    with pytest.raises(ConfigError, match=r"^rollout_engine: .*pip install '\.\[vllm\]'"):
        train_module.Trainer(cfg, verbose=False)


def test_the_qwen_vllm_config_loads_without_vllm_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)       # a config is data: loadable anywhere
    cfg = load_config(CONFIGS / "qwen_vllm.yaml", ["vllm.gpu_memory_utilization=0.4"])
    assert cfg.rollout_engine == "vllm" and cfg.world.size == "qwen" and cfg.vllm.gpu_memory_utilization == 0.4
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(CONFIGS / "qwen_vllm.yaml", ["vllm.gpu_util=0.4"])


def test_make_gpu_check_exits_cleanly_without_a_gpu():
    """`make gpu-check` on a machine without CUDA: one line, exit 0 (the GPU parts never start)."""
    import subprocess
    import sys
    from pathlib import Path

    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: gpu-check would run for minutes")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().count("\n") == 0 and "no CUDA GPU" in proc.stdout
