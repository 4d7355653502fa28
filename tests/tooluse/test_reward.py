import pytest

from rest.tooluse.reward import (
    REWARDS,
    ScoreRange,
    build_reward_fn,
    compute_score,
    correctness_score,
    multiset_jaccard,
    schedule_range,
)

CALL = '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "C"}}'
GT = f"<think>need weather</think>\n<tool_call>\n{CALL}\n</tool_call>"


def resp(calls: str, think: str = "I should call it") -> str:
    return f"<think>{think}</think>\n<tool_call>\n{calls}\n</tool_call>"


def test_exact_match_unscheduled():
    assert compute_score(resp(CALL), GT, step=1, schedule=False) == {"format": 1.0, "correctness": 3.0, "total": 4.0}


def test_exact_match_scheduled_step_1_and_150():
    s = compute_score(resp(CALL), GT, step=1)
    assert s["format"] == pytest.approx(2 - 1 / 150) and s["correctness"] == pytest.approx(2 + 1 / 150)
    s = compute_score(resp(CALL), GT, step=150)
    assert (s["format"], s["correctness"]) == pytest.approx((1.0, 3.0))


def test_schedule_bounds_at_step_30_and_late():
    r = schedule_range(30)
    assert (r.max_format, r.min_format, r.max_correct, r.min_correct) == pytest.approx((1.8, -1.6, 2.2, -2.2))
    r = schedule_range(1000)
    assert (r.max_format, r.min_format, r.max_correct, r.min_correct) == pytest.approx((1.0, -1.0, 3.0, -3.0))


def test_wrong_value_partial_credit():
    pred = '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "F"}}'
    # score = J(names) 1 + J(keys) 1 + 1 equal value = 3 ; S_max = 1 + (1 + 2) = 4 ; 6 * 3/4 - 3 = 1.5
    assert compute_score(resp(pred), GT, 1, schedule=False)["correctness"] == pytest.approx(1.5)


def test_wrong_name_gets_min_plus_nothing():
    pred = '{"name": "get_time", "parameters": {"city": "Paris", "unit": "C"}}'
    assert compute_score(resp(pred), GT, 1, schedule=False)["correctness"] == pytest.approx(-3.0)


def test_multi_call_greedy_matching():
    gt = '<tool_call>\n{"name": "a", "parameters": {"x": 1}}\n{"name": "b", "parameters": {}}\n</tool_call>'
    pred = '{"name": "a", "parameters": {"x": 1}}\n{"name": "a", "arguments": {"x": 2}}\n{"name": "b", "parameters": {}}'
    # J(names) = |{a,b}| / |{a,a,b}| = 2/3 ; a -> best 1 + 1 = 2 ; b -> J([],[]) = 1 ; S_max = 1 + 2 + 1 = 4
    expected = 6 * (2 / 3 + 2 + 1) / 4 - 3
    assert correctness_score(resp(pred), gt, ScoreRange()) == pytest.approx(expected)  # 2.5


def test_arguments_alias_is_exact_match():
    pred = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}'
    assert compute_score(resp(pred), GT, 1, schedule=False)["correctness"] == 3.0


def test_parse_failures_and_missing_tags_get_min():
    assert compute_score(resp('{"name": "get_weather", "parameters": '), GT, 1, False)["correctness"] == -3.0
    assert compute_score("<think>x</think>\nno call", GT, 1, False) == {"format": 0.0, "correctness": -3.0, "total": -3.0}
    assert compute_score(resp('{"name": "get_weather", "parameters": [1]}'), GT, 1, False)["correctness"] == -3.0


def test_format_rules_by_ground_truth_kind():
    gt_resp = "<think>x</think>\n<response>hi</response>"
    assert compute_score("<think>a</think>\n<response>hello</response>", gt_resp, 1, False) == {
        "format": 1.0, "correctness": 0.0, "total": 1.0}
    assert compute_score("<response>hello</response>", gt_resp, 1, False)["format"] == 0.0
    both = GT + "\n<response>done</response>"
    assert compute_score(resp(CALL) + "\n<response>ok</response>", both, 1, False)["format"] == 1.0
    assert compute_score(resp(CALL), both, 1, False)["format"] == 0.0  # response missing
    assert compute_score(resp(CALL + "\n</tool_call>\n<tool_call>\n" + CALL), GT, 1, False)["format"] == 0.0
    assert compute_score("<think>only</think>", "<think>x</think>", 1, False)["format"] == 1.0
    assert compute_score("<think>a</think><think>b</think>", "<think>x</think>", 1, False)["format"] == 0.0


def test_chat_wrapping_is_stripped():
    solution = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" + resp(CALL) + "<|im_end|>"
    assert compute_score(solution, GT, 1, schedule=False)["total"] == 4.0


def test_multiset_jaccard():
    assert multiset_jaccard([], []) == 1.0
    assert multiset_jaccard(["a"], []) == 0.0
    assert multiset_jaccard(["a", "a", "b"], ["a", "b", "b"]) == pytest.approx(2 / 4)


def test_registry_and_poster_variant():
    assert REWARDS.names() == ["toolrl", "toolrl_poster"]
    out = REWARDS.get("toolrl_poster")(resp(CALL), GT, 1, 0.25)
    # R = beta_a * 3 * (1 - 0.25) + beta_f * 1 * 0.25
    assert (out["correctness"], out["format"], out["total"]) == pytest.approx((2.25, 0.25, 2.5))

    class Cfg:
        name, schedule, beta_accuracy, beta_format = "toolrl_poster", True, 2.0, 4.0

    out = build_reward_fn(Cfg())(resp(CALL), GT, 1, 0.5)
    assert out["total"] == pytest.approx(2.0 * 3 * 0.5 + 4.0 * 1 * 0.5)
    Cfg.name, Cfg.schedule = "toolrl", False
    assert build_reward_fn(Cfg())(resp(CALL), GT, 7, 0.5)["total"] == 4.0


def test_malformed_ground_truth_raises():
    with pytest.raises(ValueError):
        compute_score(resp(CALL), "<tool_call>\nnot json\n</tool_call>", 1)
