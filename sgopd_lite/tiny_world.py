"""Compatibility shim: the tiny world now lives in `sgopd_lite.worlds.tiny`.

`from sgopd_lite.tiny_world import load_tiny_pair, TinyWorldConfig` keeps working; new code
imports `sgopd_lite.worlds.tiny`. May import: worlds.tiny only (nothing imports this module).
"""

from .worlds.tiny import *  # noqa: F401,F403
from .worlds.tiny import (COMMITTED_DIR, TINY_INSTRUCTION, NetConfig, TinyWorldConfig,  # noqa: F401
                          build_model, build_models, build_tokenizer, cache_root, first_mistake,
                          knob_evidence, load_tiny_pair, load_tokenizer, make_model, model_dir, role_key,
                          sft_batch, sft_examples, sft_train, world_report)
