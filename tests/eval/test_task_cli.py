"""`python -m rest.eval task` on the embedded held-out split with the oracle backend (no model)."""

import json

from rest.eval.__main__ import main, parse_args


def test_oracle_scores_exact_match_one_and_writes_score_files(tmp_path, capsys):
    assert main(["task", "--limit", "32", "--output-dir", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "task_score.json").read_text())
    metrics = payload["metrics"]
    assert metrics["val/task/n"] == 32 and metrics["val/task/exact_match"] == 1.0
    assert metrics["val/task/format_ok"] == 1.0
    assert sum(metrics[f"val/task/n/{k}"] for k in ("no_call", "one_call", "multi_call")) == 32
    assert payload["scores"]["overall"]["correct"] == 32
    assert "held-out: n=32 exact_match 1.000" in capsys.readouterr().out


def test_corrupted_oracle_misses_only_call_items(tmp_path):
    main(["task", "--oracle-corruption", "0.5", "--seed", "1", "--output-dir", str(tmp_path)])
    payload = json.loads((tmp_path / "task_score.json").read_text())
    metrics = payload["metrics"]
    assert metrics["val/task/n"] == 256  # the default held-out split
    assert metrics["val/task/exact_match/no_call"] == 1.0  # corruption only drops calls
    assert 0.3 < metrics["val/task/exact_match/one_call"] < 0.7
    assert payload["scores"]["one_call"]["errors"]  # failures kept for reading


def test_backend_defaults_to_hf_with_a_model():
    assert parse_args(["task", "--model", "tiny-qwen3"]).backend == "hf"
    assert parse_args(["task"]).backend == "oracle"
    assert parse_args(["bfcl", "--model", "m", "--backend", "vllm"]).backend == "vllm"
