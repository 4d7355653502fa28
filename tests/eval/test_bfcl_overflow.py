"""Prompts longer than the engine's context: the backend answers None (the rollout workers leave such prompts
out of the engine call); BFCL fails those entries and counts them, instead of the run crashing."""

import statistics

import pytest

from rest.eval import run_validation
from rest.eval.backends import OracleBackend
from rest.eval.bfcl import evaluate_bfcl

pytest.importorskip("bfcl")


def prompt_chars(messages) -> int:
    return sum(len(m["content"]) for m in messages)


class ContextLimitedOracle(OracleBackend):
    """The oracle, with a context of `limit` characters: longer prompts get None."""

    def __init__(self, limit: float):
        super().__init__("toolrl")
        self.limit, self.seen = limit, []

    def generate(self, prompts, tools=None, references=None):
        answers = super().generate(prompts, tools, references)
        self.seen += [prompt_chars(p) for p in prompts]
        return [None if prompt_chars(p) > self.limit else a for p, a in zip(prompts, answers)]


@pytest.mark.parametrize("category", ["simple_python", "multi_turn_base"])
def test_overflowing_entries_fail_and_are_counted(category):
    everything = ContextLimitedOracle(float("inf"))
    (full, *_), = [evaluate_bfcl(everything, "v3", [category], limit=12)]
    assert full.correct == 12 and full.prompt_overflow == 0
    # a context that half the prompts outgrow: the others still score as the oracle does
    limited = ContextLimitedOracle(statistics.median(everything.seen))
    score = evaluate_bfcl(limited, "v3", [category], limit=12)[0]
    assert 0 < score.prompt_overflow < 12
    assert score.correct + score.prompt_overflow == 12
    assert any("prompt_overflow" in str(e) for e in score.errors)


def test_run_validation_reports_prompt_overflow():
    metrics = run_validation("bfcl", lambda prompts, tools: [None] * len(prompts), 3, version="v3",
                             categories=["simple_python", "multi_turn_base"])
    assert metrics["val/bfcl/prompt_overflow"] == 6.0  # 3 entries x 2 categories, none sent
    assert metrics["val/bfcl/overall"] == 0.0
