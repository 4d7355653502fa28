import pytest

from rest.eval import run_validation
from rest.eval.apibank import evaluate_apibank
from rest.eval.backends import OracleBackend


def test_oracle_scores_100_on_every_level(shared_data):
    scores = evaluate_apibank(OracleBackend("toolrl"), shared_data / "apibank_toolrl_processed")
    assert [(s.category, s.correct, s.total) for s in scores] == [
        ("level-1", 399, 399), ("level-2", 67, 67), ("level-3", 131, 131), ("overall", 597, 597)]


def test_hermes_oracle_and_corrupted_oracle(shared_data):
    data = shared_data / "apibank_toolrl_processed"
    assert all(s.accuracy == 1.0 for s in evaluate_apibank(OracleBackend("hermes"), data, "hermes", limit=30))
    corrupted = evaluate_apibank(OracleBackend("toolrl", corruption=0.5, seed=3), data, limit=40)
    assert all(0.2 < s.accuracy < 0.8 for s in corrupted)


def test_run_validation_metric_names(shared_data):
    def generate(prompts, tools):
        return ['<think> x </think>\n<tool_call>\n{"name": "Nope", "parameters": {}}\n</tool_call>'] * len(prompts)

    metrics = run_validation("apibank", generate, limit=3, data_dir=str(shared_data / "apibank_toolrl_processed"))
    assert metrics == {"val/apibank/level-1": 0.0, "val/apibank/level-2": 0.0, "val/apibank/level-3": 0.0,
                       "val/apibank/overall": 0.0, "val/apibank/prompt_overflow": 0.0}


def test_gold_calls_use_the_decoder_rule():
    from rest.eval.apibank import gold_calls
    from rest.tooluse.calls import Call

    item = {"other": "x", "answer": [{"name": "A", "parameters": {"k": 1}}, {"name": "B", "arguments": {}}]}
    assert gold_calls(item) == [Call("A", {"k": 1}), Call("B", {})]
    with pytest.raises(ValueError, match="gold call"):
        gold_calls({"answer": {"name": "A"}})  # no argument object: an error, not {}
