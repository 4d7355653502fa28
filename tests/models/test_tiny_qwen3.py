"""The tiny Qwen3 builds deterministically and runs."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from rest.models.tiny_qwen3 import QWEN3_VOCAB_SIZE, build_tiny_qwen3


def test_same_seed_same_weights(tiny_qwen3_dir, tmp_path):
    rebuilt = build_tiny_qwen3(tmp_path / "again", tokenizer_dir=tiny_qwen3_dir)
    cached = load_file(tiny_qwen3_dir / "model.safetensors")
    fresh = load_file(rebuilt / "model.safetensors")
    assert cached.keys() == fresh.keys()
    assert all(torch.equal(cached[name], fresh[name]) for name in cached)
    other_dir = build_tiny_qwen3(tmp_path / "seed1", seed=1, tokenizer_dir=tiny_qwen3_dir)
    other_seed = load_file(other_dir / "model.safetensors")
    assert not torch.equal(cached["model.embed_tokens.weight"], other_seed["model.embed_tokens.weight"])


def test_loads_and_forwards(tiny_qwen3_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3_dir)
    assert model.config.model_type == "qwen3" and model.dtype == torch.float32
    assert model.config.vocab_size == QWEN3_VOCAB_SIZE == model.get_input_embeddings().weight.shape[0]
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert 15e6 < sum(p.numel() for p in model.parameters()) < 25e6
    assert model.generation_config.eos_token_id == [151645, 151643]

    batch = tokenizer(["Hello, world!", "<tool_call>"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 4, QWEN3_VOCAB_SIZE) and torch.isfinite(logits).all()
    generated = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert generated.shape == (2, 7)
