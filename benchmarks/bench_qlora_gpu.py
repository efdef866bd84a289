"""GPU memory and step time of a QLoRA SG-OPD run at Qwen's real sizes, with random-init models.

    python benchmarks/bench_qlora_gpu.py --steps 3 --prompts 4 --group 8 --max-new-tokens 256

Student: a Qwen2.5-0.5B-shaped model (4-bit nf4 + LoRA r=16); teacher: a Qwen2.5-1.5B-shaped
model in bf16, unquantised; both random init (the hub is not needed), with a synthetic
151,665-token vocabulary and Qwen's 151,936 embedding rows, so logits, memory and speed have
the real shapes. Random models rarely emit EOS, so every response runs to --max-new-tokens:
a worst case for memory. Prints peak GPU memory after loading and during training, and the
median seconds per step split by phase.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import string
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch

QWEN_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                num_key_value_heads=2, tie_word_embeddings=True)
QWEN_15B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                num_key_value_heads=2, tie_word_embeddings=True)
ROWS, TOKENS = 151_936, 151_665

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def synthetic_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
    vocab = {t: i for i, t in enumerate(specials + chars)}
    for i in range(len(vocab), TOKENS):
        vocab[f"<t{i}>"] = i
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="?"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                  additional_special_tokens=["<|im_start|>"])
    tok.chat_template = CHATML
    return tok


def save_random(shape: dict, tok, path: Path, dtype=torch.bfloat16):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=ROWS, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      bos_token_id=None, max_position_embeddings=4096, **shape)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(cfg).to(dtype)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    n = sum(p.numel() for p in model.parameters())
    del model
    torch.cuda.empty_cache()
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"

    from sgopd_lite.config import TrainConfig
    from sgopd_lite.data import arithmetic_split
    from sgopd_lite.models import ModelConfig, load_models, trainable_parameter_summary
    from sgopd_lite.train import Trainer, World

    tok = synthetic_tokenizer()
    root = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    n_student = save_random(QWEN_05B, tok, root / "student")
    n_teacher = save_random(QWEN_15B, tok, root / "teacher")
    print(f"random Qwen2 shapes saved: student {n_student / 1e6:.0f}M, teacher {n_teacher / 1e6:.0f}M "
          f"params ({time.perf_counter() - t0:.0f} s)", flush=True)

    torch.cuda.reset_peak_memory_stats()
    pair = load_models(ModelConfig(size="custom", teacher=str(root / "teacher"), student=str(root / "student"),
                                   student_quant="4bit", lora=True, dtype="bfloat16"))
    loaded = torch.cuda.max_memory_allocated() / 2**30
    print(trainable_parameter_summary(pair.student), flush=True)
    print(f"peak GPU memory after loading: {loaded:.2f} GiB", flush=True)

    world = World(pair.tokenizer, pair.teacher, pair.student, arithmetic_split("train"),
                  arithmetic_split("eval")[:4], vocab_size=pair.vocab_size)
    cfg = TrainConfig(method="sgopd", steps=args.steps, prompts_per_step=args.prompts, group_size=args.group,
                      max_new_tokens=args.max_new_tokens, micro_batch_size=args.micro_batch, eval_every=0,
                      eval_problems=1, eval_n=1, save_every=0, log_rollouts=0, pts={"k1": 1, "k2": args.steps + 1},
                      out_dir=str(root / "run"))
    trainer = Trainer(cfg, world=world, verbose=False)
    torch.cuda.reset_peak_memory_stats()
    history = trainer.run()
    peak = torch.cuda.max_memory_allocated() / 2**30
    phases = {k: statistics.median(m[k] for m in history if k in m)
              for k in ("time_rollout", "time_verify", "time_teacher", "time_teacher_sampling", "time_update")
              if any(k in m for m in history)}
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
              "student_params": n_student, "teacher_params": n_teacher, "loaded_peak_gib": loaded,
              "train_peak_gib": peak, "rollouts_per_step": args.prompts * args.group,
              "max_new_tokens": args.max_new_tokens, "micro_batch": args.micro_batch,
              "median_phase_seconds": phases, "steps": len(history),
              "mean_response_len": statistics.mean(m["response_len"] for m in history)}
    print(json.dumps(result, indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
