"""The GPU smoke check (`make gpu-smoke`, `scripts/gpu_smoke.sh`): the FSDP2 actor on one CUDA rank (NCCL), bf16
mixed precision, the fused entropy/log-prob head, the packed (padding-free) forward against the padded one, one
RL step end to end without Ray (HF rollout -> on-policy actor update -> weight export -> the engine reloads
them and agrees with the actor), on the device.

Every check is a function of the device: the `cuda` cases are marked `gpu` (`pytest -m gpu`) and skip without
CUDA; the `cpu` cases run the same functions in the fast suite, so the code path is alive where no GPU is.
Not yet run on a GPU: no GPU was lent to the session that wrote it.

Imports are torch, transformers and our small pure dependencies only (hydra-core, omegaconf, tensordict): the
GPU machine the script targets has no Ray, no vLLM and no internet. The model is tiny-qwen3, built offline.
"""

from __future__ import annotations

import contextlib
import os
import socket

import pytest
import torch

from rest.algo.entropy import entropy_and_logprob_from_hidden, entropy_and_logprob_naive
from rest.config.load import load_config
from rest.models.cache import resolve_model_path
from rest.trainer.batch import build_batch

HAS_CUDA = torch.cuda.is_available()
ON_DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")]),
]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# |packed - padded| of log-probs (nats) in bf16: two bf16 forwards whose matmuls and attention reduce in another
# order (one packed row vs a padded batch) differ by bf16 rounding (8 bits of mantissa) through every layer
BF16_LOGPROB_ATOL = 0.15
BF16_LOGPROB_MEAN = 0.03


@pytest.fixture(scope="module")
def model_path() -> str:
    return str(resolve_model_path("tiny-qwen3"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_batch(seed: int, prompt_lengths, response_lengths, vocab: int = 150_000):
    g = torch.Generator().manual_seed(seed)
    ids = lambda n: torch.randint(5, vocab, (n,), generator=g).tolist()  # noqa: E731
    return build_batch([ids(n) for n in prompt_lengths], [ids(n) for n in response_lengths],
                       [[0.0] * n for n in response_lengths], pad_id=0)


# ------------------------------------------------------------------ the fused LM-head entropy / log-prob
def check_fused_head(device: str, dtype: torch.dtype) -> None:
    """`entropy_and_logprob_from_hidden` (chunked, custom backward) equals the naive full-logits formula in value
    and gradient, on `device`, for hidden states and LM head in `dtype` (the actor's bf16 compute)."""
    g = torch.Generator().manual_seed(0)
    n, hidden_size, vocab, temperature = 37, 64, 3000, 0.7
    hidden = (torch.randn(n, hidden_size, generator=g)).to(device, dtype).requires_grad_()
    weight = (torch.randn(vocab, hidden_size, generator=g) / 4).to(device, dtype).requires_grad_()
    labels = torch.randint(0, vocab, (n,), generator=g).to(device)
    labels[3] = -1  # ignore index: log-prob 0, no gradient
    entropy, logprob = entropy_and_logprob_from_hidden(hidden, weight, labels, temperature, chunk_size=8)
    grads = torch.autograd.grad(logprob.sum(), (hidden, weight))
    # the reference rounds where the fused head does: the matmul in `dtype` (as the model's lm_head), then fp32
    logits = (hidden @ weight.t()).float() / temperature
    ref_entropy, ref_logprob = entropy_and_logprob_naive(logits, labels)
    ref_grads = torch.autograd.grad(ref_logprob.sum(), (hidden, weight))
    assert entropy.dtype == logprob.dtype == torch.float32 and entropy.device.type == device
    atol = 1e-5 if dtype == torch.float32 else 1e-2  # bf16: a chunk's matmul may round a logit another way
    torch.testing.assert_close(logprob, ref_logprob, rtol=0, atol=atol)
    torch.testing.assert_close(entropy, ref_entropy, rtol=0, atol=atol)
    assert float(logprob[3].detach()) == 0.0
    for grad, ref in zip(grads, ref_grads):
        scale = float(ref.abs().max())
        torch.testing.assert_close(grad.float(), ref.float(), rtol=0, atol=atol * max(scale, 1.0))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("device", ON_DEVICES)
def test_fused_head_matches_the_naive_formula(device, dtype):
    check_fused_head(device, DTYPES[dtype])


# ------------------------------------------------------------------ packed vs padded forward
def load_scorer(model_path: str, device: str, dtype: torch.dtype, attn: str, remove_padding: bool):
    from transformers import AutoModelForCausalLM

    from rest.workers.fsdp_engine import PolicyScorer
    from rest.workers.packing import packed_attn_implementation

    if remove_padding:
        attn = packed_attn_implementation(attn)
    lm = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation=attn)
    return PolicyScorer(lm, chunk_size=64, remove_padding=remove_padding).to(device).eval()


def score(scorer, batch, temperature: float = 1.0):
    device = next(scorer.parameters()).device
    batch = batch.to(device)
    with torch.no_grad():
        return scorer(batch["input_ids"], batch["attention_mask"], batch["position_ids"], batch["responses"],
                      batch["response_mask"], temperature)


def packing_batch(device: str):
    # uneven prompts and responses, one empty response; longer on the GPU, where it costs nothing
    if device == "cuda":
        return random_batch(0, [300, 41, 777, 128, 9], [64, 250, 0, 17, 300])
    return random_batch(0, [37, 5, 60, 12], [9, 24, 0, 14])


def check_packed_forward(model_path: str, device: str, dtype: torch.dtype, packed_attn: str = "sdpa") -> dict:
    """The packed forward (actor.use_remove_padding: one row, per-sequence positions, attention within each
    sequence) gives the padded forward's log-probs and entropies: 1e-5 in fp32, bf16 rounding in bf16.
    `packed_attn`: the configured attention of the packed path (sdpa -> our per-sequence SDPA; flash_attention_2
    -> flash-attn's varlen kernel, GPU only). Returns the max differences."""
    batch = packing_batch(device)
    mask = batch["response_mask"].bool().to(device)
    padded_lp, padded_ent = score(load_scorer(model_path, device, dtype, "sdpa", remove_padding=False), batch)
    packed_lp, packed_ent = score(load_scorer(model_path, device, dtype, packed_attn, remove_padding=True), batch)
    assert padded_lp.dtype == packed_lp.dtype == torch.float32
    assert padded_lp[mask].abs().min() > 0.1  # real log-probs, not zeros compared with zeros
    assert torch.isfinite(packed_lp).all() and torch.isfinite(packed_ent).all()
    assert (packed_lp[~mask] == 0).all() and (packed_ent[~mask] == 0).all()
    diff_lp, diff_ent = (packed_lp - padded_lp)[mask].abs(), (packed_ent - padded_ent)[mask].abs()
    if dtype == torch.float32:
        assert float(diff_lp.max()) <= 1e-5 and float(diff_ent.max()) <= 1e-5, (diff_lp.max(), diff_ent.max())
    else:
        assert float(diff_lp.max()) <= BF16_LOGPROB_ATOL and float(diff_lp.mean()) <= BF16_LOGPROB_MEAN, \
            (diff_lp.max(), diff_lp.mean())
        assert float(diff_ent.max()) <= BF16_LOGPROB_ATOL, diff_ent.max()
    return {"logprob": float(diff_lp.max()), "entropy": float(diff_ent.max())}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("device", ON_DEVICES)
def test_packed_forward_matches_the_padded_one(model_path, device, dtype):
    print(f"\n{device} {dtype}: max |packed - padded| {check_packed_forward(model_path, device, DTYPES[dtype])}")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_flash_attention_varlen_packed_forward_matches_the_padded_one(model_path):
    """The GPU recipes' packed path: flash-attn's varlen kernel over cu_seqlens (bf16 only, as flash-attn is)."""
    pytest.importorskip("flash_attn", reason="flash-attn is not installed on this machine")
    figures = check_packed_forward(model_path, "cuda", torch.bfloat16, packed_attn="flash_attention_2")
    print(f"\nflash-attn varlen bf16: max |packed - padded| {figures}")


# ------------------------------------------------------------------ one RL step: HF rollout, FSDP2 actor, weight sync
def smoke_config(device: str, precision: str):
    """tiny_cpu on one actor rank with the HF rollout backend; on cuda one GPU shared by actor and rollout.
    precision fp32: fp32 actor and rollout; bf16: bf16 mixed precision and a bf16 rollout (the GPU recipes)."""
    overrides = [
        "+recipe=tiny_cpu", "algorithm=grpo", "model.path=tiny-qwen3", f"trainer.device={device}",
        "actor.num_workers=1", "rollout.backend=hf", "rollout.temperature=1.0", "rollout.n=2",
        "actor.use_remove_padding=true", "actor.max_tokens_per_micro_batch=512", "actor.entropy_chunk_size=64",
        f"actor.mixed_precision={'bf16' if precision == 'bf16' else 'none'}",
        f"rollout.dtype={'bfloat16' if precision == 'bf16' else 'float32'}",
        "actor.lr=1e-3",  # large enough that one step visibly moves a tiny random model
    ]
    if device == "cuda":
        overrides += ["trainer.gpus_per_node=1", "actor.gpus_per_worker=1", "rollout.gpus_per_worker=1",
                      "trainer.placement=colocated", "rollout.gpu_memory_utilization=0.4"]
    return load_config(overrides)


@contextlib.contextmanager
def one_rank_actor(cfg, model_path: str):
    """An FSDPActorWorker as rank 0 of a one-rank group in this process (no Ray): NCCL on cuda, gloo on CPU.
    Restores what the worker changes process-wide (environment, torch threads) and leaves no process group."""
    from rest.workers.fsdp_actor import FSDPActorWorker

    env, threads = dict(os.environ), torch.get_num_threads()
    worker = FSDPActorWorker(cfg, 0, 1, "127.0.0.1", free_port())
    try:
        worker.init_model(model_path, total_steps=2)
        yield worker
    finally:
        worker.shutdown()
        os.environ.clear()
        os.environ.update(env)
        torch.set_num_threads(threads)


def rollout_batch(engine, cfg, seed: int, prompt_lengths=(23, 9), max_tokens: int = 8):
    """One step's batch from the HF engine: len(prompt_lengths) prompts x rollout.n samples, with random
    per-sample advantages (any signal gives a non-zero gradient)."""
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(5, 150_000, (n,), generator=g).tolist() for n in prompt_lengths]
    seeds = [[seed * 100 + i * cfg.rollout.n + j for j in range(cfg.rollout.n)] for i in range(len(prompts))]
    groups = engine.generate(prompts, seeds, max_tokens, greedy=False)
    samples = [(prompt, s) for prompt, group in zip(prompts, groups) for s in group]
    batch = build_batch([p for p, _ in samples], [s.token_ids for _, s in samples], [s.logprobs for _, s in samples],
                        pad_id=engine.pad_id)
    batch["advantages"] = torch.randn(len(samples), 1, generator=g) * batch["response_mask"]
    return batch, groups


def full_weights(worker) -> torch.Tensor:
    return torch.cat([p.full_tensor().detach().float().reshape(-1).cpu() for p in worker.actor.module.parameters()])


def check_rl_step(model_path: str, device: str, precision: str) -> dict:
    """One on-policy step the way the trainer runs it, minus Ray: the HF engine samples on `device`; the one-rank
    FSDP2 actor (packed micro-batches by token budget) scores the samples, compares with the engine's log-probs
    (rollout/logprob_diff_max) and takes one AdamW step; its exported weights go into the engine, whose greedy
    sampling log-probs then equal the actor's on the same tokens. Returns the figures it checked."""
    import torch.distributed as dist

    from rest.workers.metrics import reduce_metrics
    from rest.workers.rollout import HFEngine
    from rest.workers.weight_sync import assemble_weights

    cfg = smoke_config(device, precision)
    bf16 = precision == "bf16"
    # fp32: the same model on both sides, so the two agree to kernel rounding; bf16: to bf16 rounding
    diff_bound = 0.25 if bf16 else 1e-3
    engine = HFEngine(cfg, model_path)
    assert engine.model.device.type == device
    with one_rank_actor(cfg, model_path) as actor:
        backend = str(dist.get_backend_config())
        assert ("nccl" in backend) if device == "cuda" else ("gloo" in backend), backend
        params = list(actor.actor.module.parameters())
        assert all(p.device.type == device for p in params)
        assert all(type(p).__name__ == "DTensor" for p in params)  # fully_shard-ed
        layer_dtypes = []
        hook = actor.actor.module.lm.model.layers[0].register_forward_hook(
            lambda module, args, out: layer_dtypes.append((out[0] if isinstance(out, tuple) else out).dtype))

        batch, groups = rollout_batch(engine, cfg, seed=1)
        assert all(len(s.token_ids) >= 1 and all(lp <= 0 for lp in s.logprobs) for g in groups for s in g)
        before = full_weights(actor)
        update = actor.update_policy(batch, fused_old_log_prob=True)  # the on-policy update gives pi_old
        metrics = reduce_metrics([update.metrics])
        mask = batch["response_mask"].bool()  # the driver's agreement check (rest.trainer.phases)
        metrics["rollout/logprob_diff_max"] = float(
            (update.batch["old_log_prob"] - batch["rollout_log_prob"]).abs()[mask].max())
        after = full_weights(actor)
        hook.remove()
        assert set(layer_dtypes) == {torch.bfloat16 if bf16 else torch.float32}, layer_dtypes
        for key in ("actor/pg_loss", "actor/grad_norm", "rollout/logprob_diff_max"):
            assert torch.isfinite(torch.tensor(metrics[key])), (key, metrics[key])
        assert metrics["actor/skipped_steps"] == 0 and metrics["actor/grad_norm"] > 0
        assert metrics["rollout/logprob_diff_max"] < diff_bound, metrics["rollout/logprob_diff_max"]
        assert not torch.equal(before, after), "one update step left every weight as it was"

        # weight sync: the actor's export (the object-store wire format) into the engine, tensor for tensor
        engine.load_weights(assemble_weights([actor.export_weights(cfg.rollout.dtype)]))
        actor_state = actor.actor.full_state_dict()  # HF names, full tensors (a collective, so on the one rank too)
        engine_state = engine.model.state_dict()
        assert set(actor_state) <= set(engine_state), set(actor_state) - set(engine_state)
        for name, value in actor_state.items():
            assert torch.equal(engine_state[name].cpu(), value.to(engine_state[name].dtype)), name

        # after the sync the engine samples from the updated policy: its log-probs are the actor's
        fresh_batch, _ = rollout_batch(engine, cfg, seed=2)
        scored = actor.compute_log_prob(fresh_batch)
        mask = fresh_batch["response_mask"].bool()
        sync_diff = float((scored["old_log_prob"] - fresh_batch["rollout_log_prob"]).abs()[mask].max())
        assert sync_diff < diff_bound, sync_diff
    return {"logprob_diff_max": metrics["rollout/logprob_diff_max"], "after_sync_diff_max": sync_diff,
            "pg_loss": metrics["actor/pg_loss"], "grad_norm": metrics["actor/grad_norm"]}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("device", ON_DEVICES)
def test_one_rl_step_without_ray(model_path, device, precision):
    figures = check_rl_step(model_path, device, precision)
    print(f"\n{device} {precision}: {figures}")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_cuda_smoke_config_passes_validation(precision):
    """The cuda cases' config (one GPU shared by the actor rank and the HF engine) is valid, checked without one."""
    cfg = smoke_config("cuda", precision)
    assert cfg.trainer.device == "cuda" and cfg.trainer.placement == "colocated" and cfg.actor.num_workers == 1
