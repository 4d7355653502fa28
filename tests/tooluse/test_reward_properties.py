"""Random and malformed responses through the reward: never raises, finite, within the documented ranges."""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rest.tooluse.reward import REWARDS, VARIANTS, ScoreRange, compute_score, schedule_range

CALL = '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "C"}}'
GTS = [
    f"<think>x</think>\n<tool_call>\n{CALL}\n</tool_call>",
    "<think>x</think>\n<response>hello</response>",
    f"<think>x</think>\n<tool_call>\n{CALL}\n" + '{"name": "f", "parameters": {}}\n</tool_call>\n<response>r</response>',
    "<think>x</think>",
]
FRAGMENTS = [
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<response>", "</response>", "\n", CALL,
    '{"name": "get_weather", "parameters": {"city": "Paris"}}', '{"name": "f", "arguments": {}}',
    '{"name": "get_weather", "parameters": {"city": ', '{"name": ["x"], "parameters": {}}', "NaN", "{", "}", '"',
    "<|im_start|>assistant\n", "<|im_end|>", "<|endoftext|>", "日本", '{"name": "get_weather"}', "\n\n",
]
responses = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=25).map("".join)


def in_range(score: dict, rng: ScoreRange, gt: str) -> bool:
    assert all(math.isfinite(v) for v in score.values())
    assert score["format"] in (rng.max_format, rng.min_format)
    if "<tool_call>" in gt:
        assert rng.min_correct - 1e-9 <= score["correctness"] <= rng.max_correct + 1e-9
    else:
        assert score["correctness"] == 0.0
    return abs(score["total"] - score["format"] - score["correctness"]) < 1e-9


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses, st.sampled_from(GTS), st.integers(1, 1000), st.booleans(), st.sampled_from(VARIANTS))
def test_reward_total_and_ranges(response, gt, step, schedule, variant):
    score = compute_score(response, gt, step, schedule=schedule, variant=variant)
    assert in_range(score, schedule_range(step) if schedule else ScoreRange(), gt)
    assert -5.0 <= score["total"] <= 5.0  # the widest scheduled range: [-2, 2] + [-3, 3]


@settings(max_examples=1000, deadline=None)
@given(responses, st.sampled_from(GTS), st.floats(0.0, 1.0))
def test_poster_reward_ranges(response, gt, nu):
    out = REWARDS.get("toolrl_poster")(response, gt, 1, nu)
    assert 0.0 <= out["format"] <= nu + 1e-12
    assert -3.0 * (1 - nu) - 1e-9 <= out["correctness"] <= 3.0 * (1 - nu) + 1e-9
