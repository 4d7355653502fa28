"""Region labels across the turns of an agent-loop response: each model turn labelled as a single-turn response,
observation and template tokens OTHER and, through the loss mask, out of the region statistics and weights."""

import functools

import pytest
import torch

from rest.algo.region_weights import region_mean
from rest.envs import make_env
from rest.envs.embedded import generate_split
from rest.models.cache import load_tokenizer
from rest.tooluse.regions import Region, label_agent_response, label_response, model_turn_spans
from rest.workers.agent_loop import AgentLimits, ScriptedGenerate, run_agent_loop


@functools.lru_cache(maxsize=None)
def rollout(name: str, fmt: str):
    tok = load_tokenizer(name)
    tasks, _ = generate_split(8, 0, seed=3)
    envs = [make_env("embedded_multiturn", fmt) for _ in tasks]
    scripts = [env.reference_turns(t) for env, t in zip(envs, tasks)]
    samples = run_agent_loop(tasks, envs, tok, ScriptedGenerate(tok, scripts, stop_at_call_close=True),
                             AgentLimits(4, 1024, 256), list(range(len(tasks))), fmt)
    return tok, samples


def test_model_turn_spans():
    assert model_turn_spans([1, 1, 0, 0, 1, 0, 1, 1]) == [(0, 2), (4, 5), (6, 8)]
    assert model_turn_spans([0, 0]) == [] and model_turn_spans([]) == []
    assert model_turn_spans([1]) == [(0, 1)]


@pytest.mark.parametrize("name,fmt", [("tiny-qwen3", "toolrl"), ("tiny-qwen3", "hermes"),
                                      ("smollm2-135m-instruct", "toolrl")])
def test_each_turn_is_labelled_alone_and_observations_get_no_region(name, fmt):
    tok, samples = rollout(name, fmt)
    for s in samples:
        labels = label_agent_response(s.response_ids, s.response_mask, tok)
        assert len(labels) == len(s.response_ids)
        spans = model_turn_spans(s.response_mask)
        assert len(spans) == s.turns > 1
        for start, end in spans:
            assert labels[start:end] == label_response(s.response_ids[start:end], tok)
        assert all(l == Region.OTHER for l, m in zip(labels, s.response_mask) if not m)
        calls = [labels[a:b] for a, b in spans[:-1]]  # the turns before the reply call a tool
        assert all(Region.NAME in t and Region.PARAMS in t and Region.FORMAT in t for t in calls)
        if fmt == "toolrl":
            assert all(Region.COT in labels[a:b] for a, b in spans)


def test_observation_tokens_do_not_enter_region_statistics():
    tok, samples = rollout("tiny-qwen3", "toolrl")
    width = max(len(s.response_ids) for s in samples)
    regions = torch.zeros(len(samples), width, dtype=torch.long)
    mask = torch.zeros(len(samples), width)
    for i, s in enumerate(samples):
        regions[i, : len(s.response_ids)] = torch.tensor(label_agent_response(s.response_ids, s.response_mask, tok))
        mask[i, : len(s.response_ids)] = torch.tensor(s.response_mask, dtype=torch.float32)
    entropy = torch.rand(regions.shape, generator=torch.Generator().manual_seed(0))
    mean, count = region_mean(regions, mask, entropy)
    # the same statistics from the model tokens alone (observations cut out)
    keep = mask.bool()
    alone = [entropy[keep][regions[keep] == r] for r in range(len(Region))]
    assert count.tolist() == [float(len(a)) for a in alone]
    assert torch.allclose(mean, torch.stack([a.mean() if len(a) else torch.tensor(0.0) for a in alone]))
    # changing the observation tokens' entropy changes nothing
    shifted, _ = region_mean(regions, mask, torch.where(keep, entropy, entropy + 5.0))
    assert torch.equal(shifted, mean)
