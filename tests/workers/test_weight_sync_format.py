"""The weight-sync wire format (workers/weight_sync.py) without Ray or a process group."""

import pytest
import torch

from rest.workers.weight_sync import _pack, assemble_weights, export_state


def test_plain_state_round_trips_with_a_tied_alias_sent_once():
    embed = torch.randn(7, 3)
    state = {"lm.model.embed_tokens.weight": embed, "lm.model.norm.weight": torch.randn(3)}
    export = export_state(state, rank=0, world_size=1, dtype=torch.float32, strip_prefix="lm.",
                          aliases={"lm_head.weight": "model.embed_tokens.weight"})
    assert len(export["data"]) == 2  # the tied head is a second name of the embedding, not a second tensor
    weights = list(assemble_weights([export]))
    assert [name for name, _ in weights] == ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"]
    assert weights[0][1] is weights[1][1]
    assert torch.equal(weights[0][1], embed) and torch.equal(weights[2][1], state["lm.model.norm.weight"])


def test_casts_to_the_rollout_dtype():
    export = export_state({"w": torch.randn(4, 2)}, rank=0, world_size=1, dtype=torch.bfloat16)
    (name, tensor), = assemble_weights([export])
    assert tensor.dtype == torch.bfloat16 and tensor.shape == (4, 2)


def test_uneven_shards_from_two_ranks_are_concatenated_in_rank_order():
    full = torch.arange(15, dtype=torch.float32).view(5, 3)
    entries = [(("w",), "float32", (5, 3), True), (("b",), "float32", (3,), False)]
    rank0 = {"rank": 0, "world_size": 2, "entries": entries, "data": [_pack(full[:3]), _pack(torch.ones(3))]}
    rank1 = {"rank": 1, "world_size": 2, "entries": entries, "data": [_pack(full[3:]), None]}
    weights = dict(assemble_weights([rank1, rank0]))  # the order the answers come in does not matter
    assert torch.equal(weights["w"], full) and torch.equal(weights["b"], torch.ones(3))


def test_a_missing_rank_is_an_error_not_a_partial_model():
    entries = [(("w",), "float32", (4, 1), True)]
    rank0 = {"rank": 0, "world_size": 2, "entries": entries, "data": [_pack(torch.ones(2, 1))]}
    with pytest.raises(ValueError, match="all 2 actor ranks"):
        list(assemble_weights([rank0]))


def test_safetensors_shards_hold_every_name_once_within_the_size_bound(tmp_path):
    from safetensors.torch import load_file

    from rest.workers.weight_sync import write_safetensors_shards

    embed, norm, layer = torch.randn(8, 4), torch.randn(4), torch.randn(4, 4)  # 128, 16 and 64 bytes
    weights = [("model.embed_tokens.weight", embed), ("lm_head.weight", embed), ("model.norm.weight", norm),
               ("model.layers.0.w", layer)]
    paths = write_safetensors_shards(weights, str(tmp_path / "sync"), max_shard_bytes=200)
    files = [load_file(p) for p in paths]
    # 128 + 128 > 200 starts a second shard at the tied copy; 128 + 16 + 64 > 200 a third
    assert [sorted(f) for f in files] == [["model.embed_tokens.weight"], ["lm_head.weight", "model.norm.weight"],
                                          ["model.layers.0.w"]]
    loaded = {k: v for f in files for k, v in f.items()}
    assert torch.equal(loaded["lm_head.weight"], embed) and torch.equal(loaded["model.embed_tokens.weight"], embed)
    assert torch.equal(loaded["model.layers.0.w"], layer)


def test_tied_names_in_one_shard_are_written_as_copies(tmp_path):
    from safetensors.torch import load_file

    from rest.workers.weight_sync import write_safetensors_shards

    embed = torch.randn(3, 2)
    export = export_state({"lm.model.embed_tokens.weight": embed}, rank=0, world_size=1, dtype=torch.float32,
                          strip_prefix="lm.", aliases={"lm_head.weight": "model.embed_tokens.weight"})
    (path,) = write_safetensors_shards(assemble_weights([export]), str(tmp_path / "sync"))
    loaded = load_file(path)  # safetensors refuses two names of one storage; the writer copies the second
    assert sorted(loaded) == ["lm_head.weight", "model.embed_tokens.weight"]
    assert torch.equal(loaded["lm_head.weight"], embed)
