"""Evaluation harness: BFCL (v3/v4, single- and multi-turn) and API-Bank (ToolRL/ResT protocol).

CLI: `python -m rest.eval {apibank,bfcl} --backend {oracle,hf,vllm} ...`. In training, the validation hook
calls `run_validation` with its own generate function.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

from rest.eval.backends import Backend, FunctionBackend

BENCHMARKS = ("apibank", "bfcl")


def run_benchmark(benchmark: str, backend: Backend, limit: Optional[int] = None, prompt_format: str = "toolrl",
                  data_dir: Optional[str] = None, version: str = "v3", categories: Optional[list[str]] = None):
    """Category scores (rest.eval.report.CategoryScore) of one benchmark."""
    if benchmark == "apibank":
        from rest.eval.apibank import evaluate_apibank

        if data_dir is None:
            raise ValueError("apibank needs data_dir: the folder with ToolRL's level-{1,2,3}-api_processed.json")
        return evaluate_apibank(backend, data_dir, prompt_format, limit)
    if benchmark == "bfcl":
        from rest.eval.bfcl import evaluate_bfcl

        return evaluate_bfcl(backend, version, categories, limit, prompt_format)
    raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {BENCHMARKS}")


def run_validation(benchmark: str, generate_fn: Union[Backend, Callable], limit: int, **options) -> dict[str, float]:
    """Metrics for the trainer's logger: `val/apibank/overall`, `val/bfcl/multi_turn_base`, ... (accuracy in [0, 1]).

    `generate_fn(prompts, tools) -> texts` gets chat messages in `options["prompt_format"]` (default
    "toolrl") and per-prompt tool schemas (None in the ToolRL format); options as in `run_benchmark`.
    """
    backend = generate_fn if isinstance(generate_fn, Backend) else FunctionBackend(generate_fn)
    scores = run_benchmark(benchmark, backend, limit=limit, **options)
    metrics = {f"val/{benchmark}/{s.category}": s.accuracy for s in scores}
    # entries failed because a prompt outgrew the engine's context (the last score is the overall average)
    metrics[f"val/{benchmark}/prompt_overflow"] = float(scores[-1].prompt_overflow) if scores else 0.0
    return metrics


__all__ = ["BENCHMARKS", "run_benchmark", "run_validation"]
