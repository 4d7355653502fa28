"""The validation hook with a scripted rollout group (no Ray, no vLLM): what it asks for, what it reports."""

import pytest

from rest.config.schema import RestConfig
from rest.config.validate import ConfigError, check_validation
from rest.data.prompt_set import Prompt
from rest.trainer.validation import Validator, describe_split
from rest.workers.rollout import Sample

NO_CALL_GT = "<response> Hello! </response>"
ADD_GT = '<tool_call>\n{"name": "add", "parameters": {"a": 5, "b": 7}}\n</tool_call>'
RIGHT_ADD = '<think> x </think>\n<tool_call>\n{"name": "add", "parameters": {"a": 5, "b": 7}}\n</tool_call>'
WRONG_ADD = '<think> x </think>\n<tool_call>\n{"name": "add", "parameters": {"a": 1, "b": 7}}\n</tool_call>'
HELLO = "<think> x </think>\n<response> Hi! </response>"
TEXTS = [RIGHT_ADD, WRONG_ADD, HELLO]


class TextTokenizer:
    """Token id i decodes to TEXTS[i]: a response is one token."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(TEXTS[i] for i in ids)


class ScriptedRollout:
    """Greedy: item 0 right, item 1 (add) wrong, item 2 (no call) right. Sampled: the seed's parity picks the
    right or the wrong add answer."""

    def __init__(self):
        self.calls = []

    def generate(self, prompt_ids, seeds, max_tokens, greedy=False):
        self.calls.append({"prompts": prompt_ids, "seeds": seeds, "max_tokens": max_tokens, "greedy": greedy})
        if greedy:
            script = {0: 0, 1: 1, 2: 2}
            return [[Sample([script[p[0]]], [0.0], "stop" if p[0] != 1 else "length")] for p in prompt_ids]
        return [[Sample([2] if p[0] == 2 else [s % 2], [0.0], "stop") for s in prompt_seeds]
                for p, prompt_seeds in zip(prompt_ids, seeds)]


class Split:
    def __init__(self, items):
        self.items = items


ITEMS = [Prompt("v0", [0], ADD_GT, []), Prompt("v1", [1], ADD_GT, []), Prompt("v2", [2], NO_CALL_GT, [])]


def make_validator(**validation):
    cfg = RestConfig()
    for key, value in validation.items():
        setattr(cfg.validation, key, value)
    rollout = ScriptedRollout()
    return Validator(cfg, rollout, TextTokenizer(), Split(ITEMS)), rollout, cfg


def test_greedy_validation_reports_fixed_meaning_metrics_by_kind():
    validator, rollout, cfg = make_validator()
    metrics = validator.run(step=7)
    assert rollout.calls == [{"prompts": [[0], [1], [2]], "seeds": [[0], [0], [0]],
                              "max_tokens": cfg.data.max_response_length, "greedy": True}]
    assert metrics["val/task/exact_match"] == pytest.approx(2 / 3)
    assert metrics["val/task/exact_match/one_call"] == 0.5 and metrics["val/task/exact_match/no_call"] == 1.0
    assert (metrics["val/task/n/one_call"], metrics["val/task/n/no_call"], metrics["val/task/n/multi_call"]) == (2, 1, 0)
    assert metrics["val/task/name_match"] == 1.0
    assert metrics["val/task/truncated"] == pytest.approx(1 / 3)
    assert metrics["val/task/response_length/mean"] == 1.0
    assert "val/task/pass_at_2" not in metrics  # pass@k off by default
    assert metrics["timing_s/validation"] >= metrics["timing_s/validation_greedy"] >= 0
    assert validator.run(step=8)["val/task/exact_match"] == metrics["val/task/exact_match"]  # no step dependence


def test_pass_at_k_samples_n_per_item_with_the_same_seeds_every_time():
    validator, rollout, _ = make_validator(pass_k=2, pass_n=4, task_limit=2)
    first = validator.run(step=1)
    validator.run(step=2)
    sampled = [c for c in rollout.calls if not c["greedy"]]
    assert len(sampled) == 2 and sampled[0]["prompts"] == [[0], [1]]  # task_limit=2
    seeds = sampled[0]["seeds"]
    assert [len(s) for s in seeds] == [4, 4] and len({x for s in seeds for x in s}) == 8
    assert sampled[1]["seeds"] == seeds
    # per item: c = number of even seeds among 4 (right answer); pass@2 = 1 - C(4-c, 2)/C(4, 2)
    from math import comb
    expected = [1 - comb(4 - sum(x % 2 == 0 for x in s), 2) / comb(4, 2) for s in seeds]
    assert first["val/task/pass_at_2"] == pytest.approx(sum(expected) / 2)
    assert first["val/task/sample_exact_match"] == pytest.approx(sum(x % 2 == 0 for s in seeds for x in s) / 8)
    assert first["timing_s/validation_pass_at_k"] >= 0


def test_describe_split_counts_kinds_and_precision():
    line = describe_split(ITEMS)
    assert line.startswith("validation: 3 held-out task items (no_call 1, one_call 2, multi_call 0)")
    assert "standard error <= 0.289" in line  # 0.5 / sqrt(3)


def test_validation_defaults_and_checks():
    cfg = RestConfig()
    assert cfg.data.embedded_val_size >= 256 and cfg.validation.task_limit is None
    assert cfg.trainer.val_before_train and cfg.validation.pass_k == 0
    cfg.validation.pass_k, cfg.validation.pass_n = 8, 4
    with pytest.raises(ConfigError, match="validation.pass_n = 4"):
        check_validation(cfg)
    cfg.validation.pass_k, cfg.validation.task_limit = 0, 0
    with pytest.raises(ConfigError, match="validation.task_limit"):
        check_validation(cfg)
