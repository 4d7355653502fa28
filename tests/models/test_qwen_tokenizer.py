"""The converted Qwen3 tokenizer reproduces Qwen3's real ids, tags and chat format."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rest.models.qwen_tokenizer import QWEN3_ADDED_TOKENS, recover_merges

# Ids from Qwen3's published tokenizer.
REAL_IDS = {
    "Hello, world!": [9707, 11, 1879, 0],
    "你好，世界": [108386, 3837, 99489],
    "<tool_call>": [151657],
    "</tool_call>": [151658],
    "<tool_response>": [151665],
    "</tool_response>": [151666],
    "<think>": [151667],
    "</think>": [151668],
    "<|im_start|>user\nhi<|im_end|>": [151644, 872, 198, 6023, 151645],
}


@pytest.mark.parametrize("text, ids", list(REAL_IDS.items()))
def test_real_qwen3_ids(qwen3_tokenizer, text, ids):
    assert qwen3_tokenizer(text).input_ids == ids


def test_added_tokens_special_ids_and_flags(qwen3_tokenizer):
    assert len(QWEN3_ADDED_TOKENS) == 26
    assert len(qwen3_tokenizer) == 151_669
    for offset, (text, special) in enumerate(QWEN3_ADDED_TOKENS):
        assert qwen3_tokenizer.convert_tokens_to_ids(text) == 151_643 + offset
        assert (text in qwen3_tokenizer.all_special_tokens) == special, text
    assert qwen3_tokenizer.eos_token == "<|im_end|>" and qwen3_tokenizer.eos_token_id == 151_645
    assert qwen3_tokenizer.pad_token == "<|endoftext|>" and qwen3_tokenizer.pad_token_id == 151_643
    assert qwen3_tokenizer.bos_token is None


def test_tool_and_think_tags_survive_skip_special_tokens(qwen3_tokenizer):
    text = '<|im_start|>assistant\n<think>\nok\n</think>\n<tool_call>\n{"name": "f"}\n</tool_call><|im_end|>'
    decoded = qwen3_tokenizer.decode(qwen3_tokenizer(text).input_ids, skip_special_tokens=True)
    assert decoded == 'assistant\n<think>\nok\n</think>\n<tool_call>\n{"name": "f"}\n</tool_call>'


def test_merges_from_ranks_on_a_toy_vocabulary():
    ranks = {b"a": 0, b"b": 1, b"c": 2, b"ab": 3, b"bc": 4, b"abc": 5}
    # tiktoken on "abc" with ranks < 5 joins a+b first (rank 3 < 4), so "abc" = "ab" + "c".
    assert recover_merges(ranks) == [(b"a", b"b"), (b"b", b"c"), (b"ab", b"c")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_decode_encode_round_trip(qwen3_tokenizer, text):
    # The normalizer applies NFC, so NFC text comes back unchanged.
    text = unicodedata.normalize("NFC", text)
    ids = qwen3_tokenizer(text, add_special_tokens=False).input_ids
    assert qwen3_tokenizer.decode(ids) == text


tiktoken = pytest.importorskip("tiktoken", reason="tiktoken gives the reference encoding")


@pytest.fixture(scope="module")
def tiktoken_qwen():
    from rest.models.qwen_tokenizer import QWEN_SPLIT_PATTERN, find_qwen_tiktoken_file, load_tiktoken_ranks

    ranks = load_tiktoken_ranks(find_qwen_tiktoken_file())
    return tiktoken.Encoding("qwen", pat_str=QWEN_SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens={})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=80))
def test_ids_equal_tiktoken(qwen3_tokenizer, tiktoken_qwen, text):
    text = unicodedata.normalize("NFC", text)
    for tag, _ in QWEN3_ADDED_TOKENS:  # tiktoken here knows no added tokens
        text = text.replace(tag, "")
    assert qwen3_tokenizer(text, add_special_tokens=False).input_ids == tiktoken_qwen.encode_ordinary(text)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_chat_template_with_tools(qwen3_tokenizer):
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "It is 21 degrees."},
        {"role": "user", "content": "Thanks"},
    ]
    text = qwen3_tokenizer.apply_chat_template(
        messages, tools=[WEATHER_TOOL], tokenize=False, add_generation_prompt=True
    )
    expected = (
        "<|im_start|>system\nYou are helpful.\n\n# Tools\n\nYou may call one or more functions to assist with the "
        "user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        + json.dumps(WEATHER_TOOL)
        + "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
        "<args-json-object>}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>\n"
        '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\nIt is 21 degrees.<|im_end|>\n"
        "<|im_start|>user\nThanks<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert text == expected
    ids = qwen3_tokenizer(text).input_ids
    for tag_id in (151644, 151645, 151657, 151658, 151665, 151666):
        assert tag_id in ids
    assert qwen3_tokenizer.decode(ids) == text


def test_chat_template_without_tools_is_plain_chatml(qwen3_tokenizer):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<think>\nx\n</think>\n\nhello"}]
    text = qwen3_tokenizer.apply_chat_template(messages, tokenize=False)
    # Assistant content, think block included, is rendered verbatim.
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\nx\n</think>\n\nhello<|im_end|>\n"
