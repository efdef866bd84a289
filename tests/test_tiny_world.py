"""The tiny world's tokenizer and models (no training: that is what `world --report` measures)."""


from sgopd_lite.data import format_prompt
from sgopd_lite.tiny_world import NetConfig, TinyWorldConfig, build_tokenizer, load_tokenizer, make_model, role_key


def test_tokenizer_is_character_level_and_round_trips():
    tok = build_tokenizer()
    text = "15-4=11\n11+16 is 27\nso \\boxed{27}"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text
    prompt = format_prompt(tok, "15-4+16")
    assert tok(prompt, add_special_tokens=False)["input_ids"][-1] == tok.convert_tokens_to_ids("<|assistant|>")


def test_saved_tokenizer_reloads_identically_next_to_a_qwen2_config(tmp_path):
    # AutoTokenizer would rebuild a Qwen2Tokenizer here and drop spaces and newlines.
    tok = build_tokenizer()
    model = make_model(NetConfig(hidden=32, layers=1, heads=2, mlp=64), tok, seed=0)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    prompt = format_prompt(tok, "3+4") + "3+4=7\n\\boxed{7}"
    assert again(prompt, add_special_tokens=False)["input_ids"] == tok(prompt, add_special_tokens=False)["input_ids"]
    assert again.eos_token_id == tok.eos_token_id and again.pad_token_id == tok.pad_token_id


def test_knob_variants_share_the_unchanged_model():
    base = TinyWorldConfig()
    assert role_key(TinyWorldConfig(style_gap=1.0), "teacher") == role_key(base, "teacher")
    assert role_key(TinyWorldConfig(style_gap=1.0), "student") != role_key(base, "student")
    assert role_key(TinyWorldConfig(teacher_noise=1.0), "student") == role_key(base, "student")
    assert role_key(TinyWorldConfig(teacher_noise=1.0), "teacher") != role_key(base, "teacher")


def test_models_end_responses_with_the_tokenizers_eos():
    tok = build_tokenizer()
    model = make_model(NetConfig(hidden=32, layers=1, heads=2, mlp=64), tok, seed=0)
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.config.vocab_size == len(tok)
    assert model.config._attn_implementation == "eager"
