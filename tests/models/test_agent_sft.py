"""`tiny-qwen3-agentsft`: the demonstrations are the agent loop's own layout of the gold episodes, the loss reads
only model tokens; a short build lowers the loss (slow)."""

from __future__ import annotations

import pytest
import torch

from rest.envs import load_env_tasks
import random

from rest.envs.embedded import generate_pool
from rest.models.agent_sft import (AGENT_SFT_HELD_OUT, AGENT_SFT_POOL_SEED, AGENT_SFT_SPLIT_SEED, AGENT_SFT_TASKS,
                                   build_agent_sft, demonstrations, slipped_demonstrations)
from rest.models.cache import BUILTIN_MODELS
from rest.models.tool_sft import _batch


def test_registered():
    assert "tiny-qwen3-agentsft" in BUILTIN_MODELS


def test_demonstrations_are_the_loops_layout_of_train_tasks(qwen3_tokenizer):
    tok = qwen3_tokenizer
    train, val = load_env_tasks("embedded_multiturn", AGENT_SFT_TASKS, 16, AGENT_SFT_SPLIT_SEED)
    examples = demonstrations(tok, train[:8])
    close, eos = tok.convert_tokens_to_ids("</tool_call>"), tok.convert_tokens_to_ids("<|im_end|>")
    for task, (prompt, response, mask) in zip(train, examples):
        assert len(response) == len(mask) and mask[0] == 1 and mask[-1] == 1 and 0 in mask
        runs = "".join(map(str, mask)).replace("0", " ").split()
        assert len(runs) == len(task.gold) + 1  # one model turn per gold step, then the reply
        model_ids = [t for t, m in zip(response, mask) if m]
        assert model_ids.count(close) == len(task.gold) and model_ids[-1] == eos
        observations = tok.decode([t for t, m in zip(response, mask) if not m])
        assert "<tool_response>" in observations and "Error" not in observations
    # the held-out tasks' worlds are not among the demonstrations'
    assert not {(t.messages[0]["content"], str(t.state)) for t in val} & {
        (t.messages[0]["content"], str(t.state)) for t in train}


def test_pool_is_fresh_and_avoids_the_held_out_worlds():
    _train, held_out = load_env_tasks("embedded_multiturn", AGENT_SFT_TASKS, AGENT_SFT_HELD_OUT, AGENT_SFT_SPLIT_SEED)
    pool = generate_pool(512, AGENT_SFT_POOL_SEED, held_out)
    worlds = {(t.messages[0]["content"], str(t.state)) for t in pool}
    assert len(pool) == 512 and not worlds & {(t.messages[0]["content"], str(t.state)) for t in held_out}
    assert {t.info["kind"] for t in pool} == {"compute", "lookup_answer", "lookup_act", "chain"}
    assert [t.uid for t in generate_pool(8, AGENT_SFT_POOL_SEED, held_out)] == [t.uid for t in pool[:8]]
    with pytest.raises(RuntimeError, match="outside the held-out split"):  # its first 40 draws are all held out
        generate_pool(4, AGENT_SFT_POOL_SEED, generate_pool(40, AGENT_SFT_POOL_SEED, []))


def test_slip_replies_after_the_first_of_two_calls(qwen3_tokenizer):
    tok = qwen3_tokenizer
    tasks = generate_pool(8, AGENT_SFT_POOL_SEED, [])
    gold, slipped = demonstrations(tok, tasks), slipped_demonstrations(tok, tasks, random.Random(0))
    for task, g, s in zip(tasks, gold, slipped):
        if task.info["kind"] in ("compute", "lookup_answer"):  # one call: nothing to skip
            assert s is None
            continue
        prompt, response, mask = s
        assert prompt == g[0] and response != g[1]
        runs = "".join(map(str, mask)).replace("0", " ").split()
        assert len(runs) == 2  # the first call, then the reply: the second call is skipped
        reply = tok.decode(response[len(mask) - len(runs[-1]):])
        assert "<response>" in reply and "<tool_call>" not in reply
        # the slip's prefix is the gold episode's first call and its result, token for token
        first = len(mask) - len(runs[-1])
        assert response[:first] == g[1][:first]


def test_loss_positions_are_the_model_tokens_only():
    prompt, response, mask = [1, 2, 3], [10, 11, 12, 13, 14], [1, 1, 0, 0, 1]
    ids, attention, rows, cols, targets = _batch([(prompt, response, mask)], pad_id=0)
    assert targets.tolist() == [10, 11, 14] and cols.tolist() == [2, 3, 6] and rows.tolist() == [0, 0, 0]
    assert ids[0].tolist() == prompt + response and attention.sum() == 8
    plain = _batch([(prompt, response)], pad_id=0)
    assert plain[4].tolist() == response  # without a mask every response token is trained


@pytest.mark.slow
def test_short_build_lowers_the_loss(tiny_qwen3_dir, tmp_path):
    result = build_agent_sft(tmp_path / "m", tiny_qwen3_dir, steps=6, batch_size=4, pool=32)
    assert len(result.losses) == 6 and all(torch.isfinite(torch.tensor(result.losses)))
    assert result.losses[-1] < result.losses[0] - 1.0, result.losses
    assert (tmp_path / "m" / "model.safetensors").is_file()
