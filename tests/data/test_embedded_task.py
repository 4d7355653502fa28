import collections
import json

import pytest

from rest.data import DataConfig, ground_truth_calls, load_examples
from rest.data.embedded_task import generate_split


def test_deterministic_and_disjoint():
    train, val, stats = load_examples(DataConfig(embedded_train_size=200, embedded_val_size=40))
    train2, val2 = generate_split(200, 40, seed=31415)
    assert [e.messages for e in train] == [e.messages for e in train2] and len(val) == 40
    assert {str(e.messages) for e in val}.isdisjoint(str(e.messages) for e in train)


def test_mix_of_no_tool_single_and_parallel_calls():
    train, _ = generate_split(400, 0, seed=0)
    kinds = collections.Counter(len(ground_truth_calls(e.ground_truth)) for e in train)
    assert kinds[0] > 40 and kinds[1] > 150 and kinds[2] > 40
    for e in train:
        names = {t["name"] for t in e.tools}
        assert {c.name for c in ground_truth_calls(e.ground_truth)} <= names
        if not ground_truth_calls(e.ground_truth):
            assert e.ground_truth.startswith("<response>")


def test_hermes_format_passes_tools_separately():
    train, _ = generate_split(3, 0, seed=0, prompt_format="hermes")
    assert train[0].messages == [{"role": "user", "content": train[0].messages[0]["content"]}]
    assert train[0].tools[0]["parameters"]["type"] == "object"


def test_prompts_are_short_in_qwen3_tokens():
    pytest.importorskip("dashscope")
    from rest.models.qwen_tokenizer import build_qwen3_backend_tokenizer

    tok = build_qwen3_backend_tokenizer()
    train, _ = generate_split(200, 0, seed=0)
    lengths = [sum(len(tok.encode(m["content"]).ids) for m in e.messages) for e in train]
    assert max(lengths) < 210 and sum(lengths) / len(lengths) < 180
    assert max(len(tok.encode(e.ground_truth).ids) for e in train) < 60


def test_demonstrator_slips_are_lookalike_tools_and_dropped_parallel_calls():
    from rest.data.embedded_task import slipped_calls

    weather = {"name": "get_weather", "parameters": {"city": "Oslo"}}
    time = {"name": "get_time", "parameters": {"city": "Rome"}}
    assert slipped_calls([weather, time]) == [weather]
    assert slipped_calls([time]) == [{"name": "get_weather", "parameters": {"city": "Rome"}}]
    assert slipped_calls([{"name": "multiply", "parameters": {"a": 3, "b": 4}}]) == [
        {"name": "add", "parameters": {"a": 3, "b": 4}}]
    assert slipped_calls([weather]) is None and slipped_calls([]) is None


def test_demonstrator_that_does_not_call_replies_directly():
    from rest.data.embedded_task import UNCALLED_REPLY, uncalled_reply

    assert uncalled_reply([{"name": "get_weather", "parameters": {"city": "Oslo"}}]) == f"<response> {UNCALLED_REPLY} </response>"
    assert uncalled_reply([]) is None


def test_argument_values_come_from_small_closed_sets():
    """The tiny demo model learns values it has seen (a one-digit number, a weekday, one word); it did not learn
    to copy open-ended ones (two-digit numbers, dates, multi-word titles)."""
    train, _ = generate_split(400, 0, seed=0)
    values = collections.Counter(json.dumps(v) for e in train for c in ground_truth_calls(e.ground_truth)
                                 for v in c.kwargs.values())
    assert 30 < len(values) < 60
    assert all(" " not in value and "-" not in value for value in values)
    numbers = [int(v) for v in values if v.isdigit()]
    assert numbers and max(numbers) < 10


def test_demonstrations_avoid_held_out_items(monkeypatch):
    from rest.data import embedded_task
    from rest.data.embedded_task import generate_demonstrations

    _train, val = generate_split(512, 300, seed=31415)
    demos = generate_demonstrations(2000, seed=5, held_out=val)
    assert len(demos) == 2000
    assert {json.dumps(e.messages) for e in demos}.isdisjoint(json.dumps(e.messages) for e in val)
    assert demos[:50] == generate_demonstrations(50, seed=5, held_out=val)
    only = val[0]  # a generator that can only repeat a held-out item gives up, naming the shortfall
    monkeypatch.setattr(embedded_task, "make_example", lambda uid, rng, prompt_format: only)
    with pytest.raises(ValueError, match="0 of 3 generated problems are not held out"):
        generate_demonstrations(3, seed=5, held_out=[only])
