"""A tiny, randomly initialised Qwen3 with the real Qwen3 tokenizer, for tests and CPU smoke runs.

Why: every layer of the trainer (FSDP2 actor, vLLM rollout, weight sync, tool-call parsing) must run on a
2-core CPU machine without a model hub. A 2-layer Qwen3 with the full 151,936-entry vocabulary exercises the
same code paths as Qwen3-0.6B/8B (architecture, tied LM head, chat template, tool tags as single tokens) at
about 20 M parameters. The weights depend only on the seed, so runs and tests are reproducible.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from rest.models.qwen_tokenizer import QWEN3_TOKENIZER_FILES, save_qwen3_tokenizer

TINY_QWEN3_SEED = 0
# Qwen3's embedding matrix is padded to 151,936 rows (a multiple of 128) beyond the 151,669 tokenizer ids.
QWEN3_VOCAB_SIZE = 151_936
ENDOFTEXT_ID = 151_643
IM_END_ID = 151_645


def tiny_qwen3_config():
    """Qwen3Config of the tiny model: real Qwen3 layout and vocabulary, toy widths."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=QWEN3_VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=4096,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=ENDOFTEXT_ID,
        eos_token_id=IM_END_ID,
        pad_token_id=ENDOFTEXT_ID,
        torch_dtype="float32",
    )


def build_tiny_qwen3(out_dir: Path, seed: int = TINY_QWEN3_SEED, tokenizer_dir: Path | None = None) -> Path:
    """Write the tiny Qwen3 (safetensors, fp32), its generation config and the Qwen3 tokenizer to `out_dir`.

    `tokenizer_dir`: a saved Qwen3 tokenizer to copy instead of converting the vocabulary again.
    """
    from transformers import GenerationConfig, Qwen3ForCausalLM

    out_dir = Path(out_dir)
    config = tiny_qwen3_config()
    # Seed inside fork_rng: same seed -> same weights, and the caller's global RNG state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=ENDOFTEXT_ID, eos_token_id=[IM_END_ID, ENDOFTEXT_ID], pad_token_id=ENDOFTEXT_ID
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    if tokenizer_dir is None:
        save_qwen3_tokenizer(out_dir)
    else:
        for name in QWEN3_TOKENIZER_FILES:
            shutil.copy2(Path(tokenizer_dir) / name, out_dir / name)
    return out_dir
