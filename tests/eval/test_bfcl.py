import json
import os

import pytest

from rest.eval import run_validation
from rest.eval.__main__ import main
from rest.eval.backends import Backend, OracleBackend
from rest.eval.bfcl import evaluate_bfcl
from rest.eval.bfcl_data import MULTI_TURN, SINGLE_TURN, VERSIONS, checker_modules, load_category
from rest.eval.bfcl_multi_turn import SafeExecutor

VERSION_PACKAGES = {"v3": "bfcl", "v4": "bfcl_eval"}


@pytest.fixture(params=["v3", "v4"])
def version(request):
    pytest.importorskip(VERSION_PACKAGES[request.param])
    return request.param


@pytest.mark.parametrize("fmt", ["toolrl", "hermes"])
def test_oracle_scores_100_on_expressible_entries(version, fmt):
    scores = {s.category: s for s in evaluate_bfcl(OracleBackend(fmt), version, limit=12, prompt_format=fmt)}
    for category in SINGLE_TURN + MULTI_TURN:
        s = scores[category]
        assert s.total == 12 and s.correct == s.expressible == 12, (category, s.errors)


def test_v3_simple_363_is_not_expressible():
    pytest.importorskip("bfcl")
    pairs = load_category(VERSIONS["v3"], "simple_python")[363:364]
    from rest.eval.bfcl import evaluate_single_turn

    score = evaluate_single_turn(OracleBackend(), VERSIONS["v3"], "simple_python", pairs, "toolrl", "m")
    assert (score.correct, score.expressible) == (0, 0)


def test_corrupted_oracle_scores_lower(version):
    scores = {s.category: s for s in evaluate_bfcl(OracleBackend("toolrl", corruption=0.5, seed=1), version,
                                                   ["simple_python", "multi_turn_base"], limit=20)}
    assert scores["simple_python"].correct < 20 and scores["multi_turn_base"].correct < 20


class Malicious(Backend):
    """Answers every step with calls that would run code if anything evaluated them."""

    def __init__(self, sentinel):
        self.sentinel, self.calls = sentinel, 0

    def generate(self, prompts, tools=None, references=None):
        self.calls += 1
        evil = f"__import__('os').system('touch {self.sentinel}')"
        return [
            "<tool_call>\n" + json.dumps({"name": "cd", "parameters": {"folder": evil}}) + "\n"
            + json.dumps({"name": evil, "parameters": {}}) + "\n"
            + json.dumps({"name": "ls", "parameters": {"a": [evil]}}) + "\n</tool_call>"
        ] * len(prompts)


def test_model_text_never_runs_and_the_step_cap_ends_the_entry(version, tmp_path):
    sentinel = tmp_path / "SENTINEL"
    backend = Malicious(sentinel)
    scores = evaluate_bfcl(backend, version, ["multi_turn_base"], limit=2)
    assert not os.path.exists(sentinel)
    assert scores[0].correct == 0
    assert all(e["error_type"] == "multi_turn:force_terminated" for e in scores[0].errors)
    assert backend.calls == 21  # 20 steps, then the 21st executed step force-quits


def test_entries_and_runs_do_not_share_state(version):
    first = [(s.category, s.correct) for s in evaluate_bfcl(OracleBackend(), version, ["multi_turn_base"], limit=5)]
    again = [(s.category, s.correct) for s in evaluate_bfcl(OracleBackend(), version, ["multi_turn_base"], limit=5)]
    assert first == again == [("multi_turn_base", 5), ("multi_turn", 5), ("overall", 5)]
    _, _, _, class_paths = checker_modules(VERSIONS[version])
    entry, _ = load_category(VERSIONS[version], "multi_turn_base", 1)[0]
    a, b = SafeExecutor(class_paths), SafeExecutor(class_paths)
    args = (entry["initial_config"], entry["involved_classes"], "m", entry["id"])
    a(["mkdir(dir_name='fresh_dir')"], *args)
    assert "fresh_dir" not in b(["ls()"], *args)[0][0]
    assert "fresh_dir" in a(["ls()"], *args)[0][0]


def test_run_validation_and_cli(version, tmp_path):
    metrics = run_validation("bfcl", lambda prompts, tools: [""] * len(prompts), limit=2, version=version,
                             categories=["irrelevance", "multi_turn_base"])
    assert metrics["val/bfcl/irrelevance"] == 1.0 and metrics["val/bfcl/multi_turn_base"] == 0.0
    assert main(["bfcl", "--version", version, "--limit", "2", "--categories", "parallel", "multi_turn_miss_func",
                 "--output-dir", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / f"bfcl_{version}_score.json").read_text())
    assert payload["scores"]["multi_turn_miss_func"]["accuracy"] == 1.0
    assert "| parallel | 100.00 | 2 | 2 |" in (tmp_path / f"bfcl_{version}_score.md").read_text()
