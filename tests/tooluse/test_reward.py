"""The two published rewards, pinned by hand. Expected values are derived from reading ToolRL's and ResT's
`verl/utils/reward_score/rlla.py` (the derivation is in each test); ranges unscheduled unless stated:
format {0, 1}, correctness [-3, 3], so S_c = 6 * score / S_max - 3."""

import pytest

from rest.algo.config import RewardConfig
from rest.tooluse.reward import (
    REWARDS,
    ScoreRange,
    build_reward_fn,
    compute_score,
    correctness_score,
    multiset_jaccard,
    rest_format_ok,
    schedule_range,
    toolrl_format_ok,
)

CALL = '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "C"}}'
CALL_B = '{"name": "get_time", "parameters": {"zone": "UTC"}}'
GT = f"<think>need weather</think>\n<tool_call>\n{CALL}\n</tool_call>"
GT2 = f"<tool_call>\n{CALL}\n{CALL_B}\n</tool_call>"
BOTH = ("toolrl", "rest")


def resp(calls: str, think: str = "I should call it") -> str:
    return f"<think>{think}</think>\n<tool_call>\n{calls}\n</tool_call>"


def score(text, gt=GT, variant="toolrl", step=1, schedule=False, **kw):
    return compute_score(text, gt, step, schedule=schedule, variant=variant, **kw)


@pytest.mark.parametrize("variant", BOTH)
def test_exact_match_unscheduled(variant):
    assert score(resp(CALL), variant=variant) == {"format": 1.0, "correctness": 3.0, "total": 4.0}


def test_schedule_in_the_files_arithmetic():
    # max_f = 2 - (2 - 1) s/150, min_f = -2 + (2 + 0) s/150, max_c = (3 - 2) s/150 + 2, min_c = (-3 + 2) s/150 - 2
    r = schedule_range(30)
    assert (r.max_format, r.min_format, r.max_correct, r.min_correct) == (2 - 30 / 150, -2 + 60 / 150,
                                                                           30 / 150 + 2, -30 / 150 - 2)
    assert (r.max_format, r.min_format, r.max_correct, r.min_correct) == pytest.approx((1.8, -1.6, 2.2, -2.2))
    # clamps: format reaches [-1, 1] at s = 75 (min) and 150 (max); correctness [-3, 3] at s = 150
    assert schedule_range(75).min_format == -1.0 and schedule_range(74).min_format < -1.0
    assert schedule_range(1000) == ScoreRange(1.0, -1.0, 3.0, -3.0)
    assert schedule_range(0) == ScoreRange(2.0, -2.0, 2.0, -2.0)  # their step 0 (validation before training)
    s = score(resp(CALL), step=1, schedule=True)
    assert (s["format"], s["correctness"]) == (2 - 1 / 150, 1 / 150 + 2)


def test_wrong_value_partial_credit():
    pred = '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "F"}}'
    # score = J(names) 1 + J(keys) 1 + 1 equal value = 3 ; S_max = 1 + (1 + 2) = 4 ; 6 * 3 / 4 - 3 = 1.5
    assert score(resp(pred))["correctness"] == 1.5


def test_wrong_name_gets_min_plus_nothing():
    pred = '{"name": "get_place", "parameters": {"city": "Paris", "unit": "C"}}'
    assert score(resp(pred))["correctness"] == -3.0  # J(names) 0, no same-name call: 6 * 0 / 4 - 3


def test_multi_call_greedy_matching_and_jaccard():
    gt = '<tool_call>\n{"name": "a", "parameters": {"x": 1}}\n{"name": "b", "parameters": {}}\n</tool_call>'
    pred = '{"name": "a", "parameters": {"x": 2}}\n{"name": "a", "parameters": {"x": 1}}\n{"name": "b", "parameters": {}}'
    # J([a, b], [a, a, b]) = 2 / 3 ; a: first pred scores 1 + 0, second 1 + 1 = 2 (strictly better, taken);
    # b: J([], []) = 1 + 0 values ; S_max = 1 + (1 + 1) + (1 + 0) = 4
    assert correctness_score(resp(pred), gt, ScoreRange()) == 6 * (2 / 3 + 2 + 1) / 4 - 3
    # a tie keeps the first: two identical predictions for one GT call, the second stays unused
    pred = '{"name": "a", "parameters": {"x": 1}}\n{"name": "a", "parameters": {"x": 1}}'
    # J([a, b], [a, a]) = 1 / 3 ; a -> 2 ; b -> no candidate ; S_max = 4
    assert correctness_score(resp(pred), gt, ScoreRange()) == 6 * (1 / 3 + 2) / 4 - 3


def test_multiset_jaccard():
    assert multiset_jaccard([], []) == 1.0
    assert multiset_jaccard(["a"], []) == 0.0
    assert multiset_jaccard(["a", "a", "b"], ["a", "b", "b"]) == 2 / 4  # |{a, b}| / |{a, a, b, b}|
    assert multiset_jaccard(["x", "y"], ["y", "x"]) == 1.0  # order is free: 2 / (2 + 2 - 2)


def test_exact_match_is_python_equality_of_the_decoded_objects():
    # their `gt_tools == pd_tools`: key order is free and 1 == 1.0 == true
    gt = '<tool_call>\n{"name": "f", "parameters": {"a": 1, "b": "x"}}\n</tool_call>'
    assert score(resp('{"parameters": {"b": "x", "a": true}, "name": "f"}'), gt)["correctness"] == 3.0
    # an extra key breaks the object equality; the partial score is then full: 6 * 4 / 4 - 3 = 3
    assert score(resp('{"name": "f", "parameters": {"a": 1, "b": "x"}, "id": 7}'), gt)["correctness"] == 3.0


@pytest.mark.parametrize("variant", BOTH)
def test_a_blank_line_between_calls_fails_the_parse(variant):
    # (a) the block is stripped and split at "\n"; json.loads("") raises -> min_c
    assert score(resp(CALL + "\n\n" + CALL_B), GT2, variant)["correctness"] == -3.0
    assert score(resp(CALL + "\n" + CALL_B), GT2, variant)["correctness"] == 3.0
    # leading/trailing blank lines are stripped away before the split
    assert score(f"<think>t</think>\n<tool_call>\n\n{CALL}\n\n</tool_call>", GT, variant)["correctness"] == 3.0


@pytest.mark.parametrize("variant", BOTH)
def test_b_a_malformed_call_beside_a_good_one(variant):
    # (b) {"name": "zzz"} has no "parameters", but its name is no GT name, so it is never indexed:
    # J([get_weather], [get_weather, zzz]) = 1/2 ; get_weather -> J(keys) 1 + 2 values ; S_max = 1 + 3
    # -> 6 * 3.5 / 4 - 3 = 2.25
    assert score(resp(CALL + '\n{"name": "zzz"}'), variant=variant)["correctness"] == 2.25
    # a non-string but hashable name counts in the Jaccard the same way
    assert score(resp(CALL + '\n{"name": 5, "parameters": {}}'), variant=variant)["correctness"] == 2.25
    # a same-name object without object "parameters": their code reads pd_tool["parameters"] -> min_c
    for bad in ('{"name": "get_weather"}', '{"name": "get_weather", "parameters": [1]}',
                '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}'):
        assert score(resp(CALL + "\n" + bad), variant=variant)["correctness"] == -3.0, bad
    # no object, no "name", or an unhashable name: their name list / Counter raises -> min_c
    for bad in ("[1]", '"text"', "3", '{"parameters": {}}', '{"name": ["x"], "parameters": {}}'):
        assert score(resp(CALL + "\n" + bad), variant=variant)["correctness"] == -3.0, bad


def test_arguments_key_is_our_extension():
    pred = resp('{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}')
    assert score(pred)["correctness"] == -3.0  # published: "parameters" missing on a GT name
    # accepted: not the same objects as the GT's ("arguments" != "parameters"), the partial score is full
    assert score(pred, accept_arguments_key=True)["correctness"] == 3.0


def test_c_only_im_end_ends_the_answer():
    text = resp(CALL) + "<|endoftext|>"
    # (c) ToolRL's anchored regex needs "</tool_call>" at the end: format 0; ResT's check has no anchor
    assert score(text, variant="toolrl") == {"format": 0.0, "correctness": 3.0, "total": 3.0}
    assert score(text, variant="rest") == {"format": 1.0, "correctness": 3.0, "total": 4.0}
    chat = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" + resp(CALL) + "<|im_end|>\nignored <response>"
    assert score(chat, variant="toolrl")["total"] == 4.0 and score(chat, variant="rest")["total"] == 4.0


@pytest.mark.parametrize("variant", BOTH)
def test_d_a_second_open_tag_ends_the_block(variant):
    # (d) split("<tool_call>")[1] stops at the second open tag: only CALL is read, an exact match;
    # two "<tool_call>" tags fail the count in both format checks
    text = f"<think>t</think>\n<tool_call>\n{CALL}\n<tool_call>\n{CALL_B}\n</tool_call>"
    assert score(text, variant=variant) == {"format": 0.0, "correctness": 3.0, "total": 3.0}
    # and a close tag that comes before the first open tag does not stop it either
    text = f"<think>t</think></tool_call>\n<tool_call>\n{CALL}"
    assert score(text, variant=variant)["correctness"] == 3.0


@pytest.mark.parametrize("variant", BOTH)
def test_missing_tags_and_bad_json_get_min(variant):
    assert score(resp('{"name": "get_weather", "parameters": '), variant=variant)["correctness"] == -3.0
    assert score("<think>x</think>\nno call", variant=variant) == {"format": 0.0, "correctness": -3.0, "total": -3.0}
    assert score(f"<think>x</think>\n<tool_call>\n{CALL}", variant=variant)["correctness"] == -3.0


def test_format_checks_differ_where_resT_relaxed_them():
    gt_resp = "<response>hi</response>"
    cases = [  # (response, ground truth, ToolRL's, ResT's)
        (resp(CALL), GT, True, True),
        (f"<think>a</think>\nI will call.\n<tool_call>\n{CALL}\n</tool_call>", GT, False, True),
        (f"<think>a</think><tool_call>{CALL}</tool_call>", GT, False, True),  # no newlines
        (f"<think>a</think>\n<tool_call>\n{CALL}\n</tool_call>\ntrailing words", GT, False, True),
        (resp(CALL) + "\n<response>x</response>", GT, False, False),  # ResT: no <response> when GT has none
        ("<think>a</think>\n<response>x</response>", gt_resp, True, True),
        ("<think>a</think>\n<tool_call>\n{}\n</tool_call>\n<response>x</response>", gt_resp, False, True),
        ("<response>x</response>\n<think>a</think>", gt_resp, False, False),  # order
        ("<think>a</think>\n<response>x</response>", GT2 + "\n<response>r</response>", False, False),
        (resp(CALL) + "\n<response>r</response>", GT + "\n<response>r</response>", True, True),
        ("<think>a</think><think>b</think>", "<think>x</think>", True, False),  # ResT counts <think>
        ("</think>a<think>", "<think>x</think>", False, True),  # ResT checks no order here
        ("<think>only</think>", "<think>x</think>", True, True),
    ]
    for text, gt, toolrl, rest in cases:
        assert (toolrl_format_ok(text, gt), rest_format_ok(text, gt)) == (toolrl, rest), text


def test_registry_poster_and_config():
    assert REWARDS.names() == ["toolrl", "toolrl_poster"]
    out = REWARDS.get("toolrl_poster")(resp(CALL), GT, 1, 0.25)
    # R = beta_a * 3 * (1 - 0.25) + beta_f * 1 * 0.25
    assert (out["correctness"], out["format"], out["total"]) == (2.25, 0.25, 2.5)
    cfg = RewardConfig(name="toolrl_poster", beta_accuracy=2.0, beta_format=4.0)
    assert build_reward_fn(cfg)(resp(CALL), GT, 1, 0.5)["total"] == 2.0 * 3 * 0.5 + 4.0 * 1 * 0.5
    assert RewardConfig().variant == "rest"
    text = resp(CALL) + "\ntrailing"  # format 1 under ResT's check, 0 under ToolRL's
    assert build_reward_fn(RewardConfig(schedule=False))(text, GT, 7, 0.5)["total"] == 4.0
    assert build_reward_fn(RewardConfig(schedule=False, variant="toolrl"))(text, GT, 7, 0.5)["total"] == 3.0
    with pytest.raises(ValueError, match="algorithm.reward.variant"):
        RewardConfig(variant="verl").validate()


def test_malformed_ground_truth_raises():
    for gt in ("<tool_call>\nnot json\n</tool_call>", f"<tool_call>\n{CALL}\n\n{CALL_B}\n</tool_call>",
               '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>', f"<tool_call>\n{CALL}"):
        with pytest.raises(ValueError):
            compute_score(resp(CALL), gt, 1)


def test_every_preset_scores_with_rest_and_hermes_needs_the_arguments_key():
    from rest.config.load import load_config
    from rest.config.validate import ConfigError

    for preset in ("grpo", "drgrpo", "dapo", "rest", "rest_static"):
        reward = load_config([f"algorithm={preset}"]).algorithm.reward
        assert (reward.name, reward.variant, reward.schedule) == ("toolrl", "rest", True), preset
    with pytest.raises(ConfigError, match="accept_arguments_key"):
        load_config(["data.prompt_format=hermes"])
    assert load_config(["data.prompt_format=hermes", "algorithm.reward.accept_arguments_key=true"])
