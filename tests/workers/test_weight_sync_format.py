"""The weight-sync wire format (workers/weight_sync.py) without Ray or a process group."""

import pytest
import torch

from workers.weight_sync import _pack, assemble_weights, export_state


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
