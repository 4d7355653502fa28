"""Rank-0 model loading (rest.workers.model_loading) in a real 2-process gloo group: rank 1 builds on meta and
receives its shards; the sharded model must equal the one every rank loads itself (weights, tied embeddings,
rotary buffers, forward), and rank 1 must never hold a full copy."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rest.workers.model_loading import non_persistent_buffers

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shard_and_load(rank: int, model_path: str, port: int, results) -> None:
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM

    from rest.workers.model_loading import build_causal_lm, full_state_for_broadcast, load_sharded_from_rank0

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        lm = build_causal_lm(model_path, torch.float32, "sdpa", on_meta=rank != 0)
        built_on_meta = all(p.is_meta for p in lm.parameters())
        full = full_state_for_broadcast(lm) if rank == 0 else None
        for layer in lm.model.layers:
            fully_shard(layer)
        fully_shard(lm)
        load_sharded_from_rank0(lm, full, torch.device("cpu"))
        del full
        local_numel = sum(p.to_local().numel() for p in lm.parameters())
        ids = torch.tensor([[5, 17, 301, 42, 7, 99]])
        with torch.no_grad():
            logits = lm(input_ids=ids).logits
        reference = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, attn_implementation="sdpa")
        with torch.no_grad():
            expected = reference(input_ids=ids).logits
        buffers_equal = all(
            torch.equal(lm.get_buffer(name), reference.get_buffer(name)) for name in non_persistent_buffers(reference)
        )
        results.put({
            "rank": rank, "built_on_meta": built_on_meta, "local_numel": local_numel,
            "full_numel": sum(p.numel() for p in reference.parameters()),
            "tied": lm.lm_head.weight is lm.model.embed_tokens.weight,
            "max_logit_diff": float((logits - expected).abs().max()), "buffers_equal": buffers_equal,
            "any_meta": any(t.is_meta for t in list(lm.parameters()) + list(lm.buffers())),
        })
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_rank0_loading_gives_every_rank_its_shard_of_the_checkpoint():
    from rest.models.cache import resolve_model_path

    model_path = str(resolve_model_path("tiny-qwen3"))
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_shard_and_load, args=(rank, model_path, port, results)) for rank in range(WORLD)]
    for p in procs:
        p.start()
    answers = sorted((results.get(timeout=300) for _ in procs), key=lambda a: a["rank"])
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    rank0, rank1 = answers
    assert not rank0["built_on_meta"] and rank1["built_on_meta"]
    for answer in answers:
        assert answer["max_logit_diff"] < 1e-5
        assert answer["tied"] and answer["buffers_equal"] and not answer["any_meta"]
        # a shard of every parameter, half the model (the tied head counted once): never a full copy
        assert answer["local_numel"] <= answer["full_numel"] // WORLD + 1024
