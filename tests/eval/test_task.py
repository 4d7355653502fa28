"""The held-out task metrics on hand-built answers: each item kind, argument equality, malformed output."""

import pytest

from rest.eval.task import aggregate, pass_at_k, pass_at_k_metrics, score_item, summary_line, task_metrics

NO_CALL_GT = "<response> Hello! How can I help you today? </response>"
ADD_GT = '<tool_call>\n{"name": "add", "parameters": {"a": 5, "b": 7}}\n</tool_call>'
TWO_GT = ('<tool_call>\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n'
          '{"name": "get_weather", "parameters": {"city": "Oslo"}}\n</tool_call>')


def answer(*call_lines: str, response: str | None = None) -> str:
    parts = ["<think> thinking </think>"]
    if call_lines:
        parts.append("<tool_call>\n" + "\n".join(call_lines) + "\n</tool_call>")
    if response is not None:
        parts.append(f"<response> {response} </response>")
    return "\n".join(parts)


def test_no_call_item_needs_no_call_and_a_response():
    right = score_item(answer(response="Hi!"), NO_CALL_GT)
    assert (right.kind, right.exact_match, right.format_ok, right.name_match, right.malformed) == (
        "no_call", True, True, True, False)
    assert right.reward_unscheduled == 1.0  # S_format 1 + S_correctness 0 (no gold call)
    called = score_item(answer('{"name": "add", "parameters": {"a": 1, "b": 2}}', response="Hi!"), NO_CALL_GT)
    assert (called.exact_match, called.name_match) == (False, False)
    assert not score_item("<think> x </think>\n<response>   </response>", NO_CALL_GT).exact_match  # empty
    assert not score_item("<think> x </think> Hi there", NO_CALL_GT).exact_match  # no <response>
    # ToolRL's no-op call named "None" is not a call
    assert score_item(answer('{"name": "None", "parameters": {}}', response="Hi"), NO_CALL_GT).exact_match


def test_one_call_arguments_compare_with_python_equality_after_json():
    right = score_item(answer('{"name": "add", "parameters": {"b": 7, "a": 5.0}}'), ADD_GT)  # key order, 5.0 == 5
    assert (right.kind, right.exact_match, right.format_ok, right.name_match) == ("one_call", True, True, True)
    assert right.reward_unscheduled == 4.0  # 1 + max_c 3
    string = score_item(answer('{"name": "add", "parameters": {"a": "5", "b": 7}}'), ADD_GT)  # "5" != 5
    assert (string.exact_match, string.name_match, string.malformed) == (False, True, False)
    bools = score_item(answer('{"name": "f", "arguments": {"x": true}}'),
                       '<tool_call>\n{"name": "f", "parameters": {"x": 1}}\n</tool_call>')
    assert bools.exact_match  # true == 1 in Python, as in ToolRL's reward
    extra = score_item(answer('{"name": "add", "parameters": {"a": 5, "b": 7}}',
                              '{"name": "add", "parameters": {"a": 5, "b": 7}}'), ADD_GT)
    assert (extra.exact_match, extra.name_match) == (False, False)  # multisets: a repeated call is one too many


def test_several_calls_are_a_multiset_in_any_order():
    paris, oslo = ('{"name": "get_weather", "parameters": {"city": "Paris"}}',
                   '{"name": "get_weather", "parameters": {"city": "Oslo"}}')
    swapped = score_item(answer(oslo, paris), TWO_GT)
    assert (swapped.kind, swapped.exact_match, swapped.name_match) == ("multi_call", True, True)
    once = score_item(answer(paris), TWO_GT)
    assert (once.exact_match, once.name_match) == (False, False)  # one get_weather where gold has two
    twice_paris = score_item(answer(paris, paris), TWO_GT)
    assert (twice_paris.exact_match, twice_paris.name_match) == (False, True)


def test_malformed_outputs_never_match_and_never_raise():
    bad_json = score_item(answer('{"name": "add", "parameters": {"a": 5, "b": 7}}', '{"name": "add", "param'), ADD_GT)
    assert (bad_json.malformed, bad_json.exact_match, bad_json.format_ok) == (True, False, True)
    unclosed = score_item('<think> x </think>\n<tool_call>\n{"name": "add", "parameters": {"a": 5, "b": 7}}', ADD_GT)
    assert (unclosed.malformed, unclosed.exact_match, unclosed.format_ok) == (True, False, False)
    assert unclosed.reward_unscheduled == -3.0  # S_format 0 + min_c
    unclosed_no_call = score_item("<think> x </think>\n<tool_call>\n{\"name\"\n<response> Hi </response>", NO_CALL_GT)
    assert (unclosed_no_call.malformed, unclosed_no_call.exact_match) == (True, False)
    for junk in ("", "</tool_call><tool_call>", "<tool_call>\n[1, 2]\n</tool_call>", "\x00" * 10, "<response>"):
        for gt in (NO_CALL_GT, ADD_GT, TWO_GT):
            assert not score_item(junk, gt).exact_match


def test_hermes_answers_read_every_block_and_plain_text_responses():
    hermes_two = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
                  '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>')
    assert score_item(hermes_two, TWO_GT, "hermes").exact_match
    assert not score_item(hermes_two, TWO_GT, "toolrl").exact_match  # ToolRL reads the last block only
    assert score_item("<think>\n\n</think>\n\nHello!", NO_CALL_GT, "hermes").exact_match
    assert not score_item("<think>\n\n</think>\n\n", NO_CALL_GT, "hermes").exact_match


def test_aggregate_splits_by_kind_with_counts():
    pairs = [(answer(response="Hi"), NO_CALL_GT),  # right
             (answer('{"name": "add", "parameters": {"a": 5, "b": 7}}'), ADD_GT),  # right
             (answer('{"name": "add", "parameters": {"a": 4, "b": 7}}'), ADD_GT),  # right name, wrong value
             (answer('{"name": "mul", "parameters": {"a": 5, "b": 7}}'), ADD_GT)]  # wrong name
    m = task_metrics(pairs)
    assert m["val/task/n"] == 4
    assert (m["val/task/n/no_call"], m["val/task/n/one_call"], m["val/task/n/multi_call"]) == (1, 3, 0)
    assert m["val/task/exact_match"] == 0.5
    assert m["val/task/exact_match/no_call"] == 1.0
    assert m["val/task/exact_match/one_call"] == pytest.approx(1 / 3)
    assert m["val/task/name_match/one_call"] == pytest.approx(2 / 3)
    assert m["val/task/format_ok"] == 1.0 and m["val/task/malformed"] == 0.0
    assert "val/task/exact_match/multi_call" not in m  # no items: a count of 0, no rate
    # rewards: 1 (no call), 4 (exact), wrong value: J(names) 1 + J(keys) 1 + 1 equal value = 3 of S_max 4 ->
    # 6 * 3/4 - 3 = 1.5 (+1 format); wrong name: 0 of 4 -> -3 (+1 format)
    assert m["val/task/reward_unscheduled"] == pytest.approx((1 + 4 + 2.5 - 2) / 4)
    assert aggregate([]) == {}
    assert task_metrics(pairs, prefix="eval")["eval/exact_match"] == 0.5


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(4, 0, 2) == 0.0 and pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(4, 3, 2) == 1.0  # fewer than k wrong samples: some k-subset always holds a right one
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)  # pass@1 is the fraction right
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(2, 1, 3)
    right, wrong = answer('{"name": "add", "parameters": {"a": 5, "b": 7}}'), answer(response="no idea")
    m = pass_at_k_metrics([[right, wrong, wrong, wrong], [answer(response="Hi")] * 4], [ADD_GT, NO_CALL_GT], k=2)
    assert m["val/task/pass_at_2/one_call"] == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert m["val/task/pass_at_2/no_call"] == 1.0
    assert m["val/task/pass_at_2"] == pytest.approx(0.75)
    assert m["val/task/sample_exact_match"] == pytest.approx((0.25 + 1.0) / 2)


def test_summary_line_reads_the_split():
    m = task_metrics([(answer(response="Hi"), NO_CALL_GT), (answer(response="Hi"), ADD_GT)])
    m.update({"val/task/pass_at_4": 0.75, "val/task/pass_at_4/no_call": 1.0})
    line = summary_line(m, step=30)
    assert line.startswith("val step 30: n=2 exact_match 0.500 (no_call 1.000 n=1, one_call 0.000 n=1)")
    assert "pass_at_4 0.750" in line and "pass_at_4/no_call" not in line
    assert summary_line({"critic/reward_mean": 1.0}) is None


def test_paired_bootstrap_interval_of_a_gain():
    from rest.eval.task import paired_bootstrap_ci

    assert paired_bootstrap_ci([1, 0, 1, 0], [1, 0, 1, 0]) == (0.0, 0.0, 0.0)  # nothing changed: no width
    gain, low, high = paired_bootstrap_ci([0] * 200, [1] * 50 + [0] * 150)
    assert gain == 0.25 and 0.18 < low < 0.25 < high < 0.32  # sqrt(.25 * .75 / 200) = 0.031; +-1.96 sd
    with pytest.raises(ValueError, match="equal, non-zero"):
        paired_bootstrap_ci([1], [1, 0])
