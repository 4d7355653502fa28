"""bench/ablation.py: the statistics and the report on synthetic metrics.jsonl files (fast), and the smallest
configuration end to end through the real stack (slow)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import ablation  # noqa: E402
from bench.ablation import (  # noqa: E402
    MissingMetricError,
    Sizes,
    curve_area,
    read_run,
    run_is_complete,
    steps_to_threshold,
    t_interval,
)


def test_t_interval_hand_computed():
    iv = t_interval([0.1, 0.2, 0.3])
    # mean 0.2, s = 0.1, t_{0.975, 2} = 4.303 -> half width 4.303 x 0.1 / sqrt(3) = 0.248434
    assert iv.mean == pytest.approx(0.2)
    assert (iv.low, iv.high) == pytest.approx((0.2 - 0.248434, 0.2 + 0.248434), abs=1e-6)
    assert iv.seeds_cell() == "0.100 / 0.200 / 0.300"
    assert iv.cell() == "0.200 [-0.048, 0.448]"
    two = t_interval([1.0, 2.0])  # s = 0.7071, t_{0.975, 1} = 12.706 -> half 12.706 x 0.5 = 6.353
    assert (two.low, two.high) == pytest.approx((1.5 - 6.353, 1.5 + 6.353))
    one = t_interval([0.4])
    assert one.mean == 0.4 and math.isnan(one.low) and one.cell() == "0.400"
    assert t_interval([0.5] * 40).low == pytest.approx(0.5)  # beyond the table: the normal quantile, s = 0


def test_curve_area_is_the_trapezoid_mean_level():
    # trapezoids over [0, 5, 15]: 5 x (0.1 + 0.3) / 2 + 10 x (0.3 + 0.2) / 2 = 1.0 + 2.5 ; over 15 steps
    assert curve_area([0, 5, 15], [0.1, 0.3, 0.2]) == pytest.approx(3.5 / 15)
    assert curve_area([0], [0.25]) == 0.25


def test_steps_to_threshold():
    assert steps_to_threshold([0, 5, 10], [0.1, 0.2, 0.3], 0.2) == 5
    assert steps_to_threshold([0, 5, 10], [0.1, 0.2, 0.3], 0.31) is None


SIZES = Sizes(prompts=2, n=4, steps=4, test_freq=2, val_size=16)


def _write_run(root: Path, preset: str, seed: int, em: list[float], *, weights=None, tries=1, em_key=True):
    """A synthetic complete run of SIZES: validation at 0, 2, 4; training steps 1..4; the metrics.jsonl rows rest
    writes and the record the script leaves after a finished run."""
    run = root / preset / f"seed{seed}"
    run.mkdir(parents=True)
    rows = []
    val = dict(zip([0, 2, 4], em))
    for step in range(5):
        row = {"step": step}
        if step:
            row.update({"timing_s/step": 10.0 + step, "training/step": step, "response_length/mean": 20.0})
            if preset == "dapo":
                row["dapo/tries"] = tries
            for g, w in (weights or {}).items():
                row[f"rest/weight/{g}"] = w * step
                row[f"rest/entropy/{g}"] = 0.5
        if step in val:
            if em_key:
                row["val/task/exact_match"] = val[step]
                row["val/task/exact_match/one_call"] = val[step] / 2
            row["val/task/reward_mean"] = 1.0
        rows.append(row)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = ablation.run_overrides(preset, seed, SIZES, ablation.default_config([]), [])
    (run / ablation.RUN_RECORD).write_text(json.dumps({"overrides": overrides, "wall_s": 60.0 + seed}))
    return run


def test_read_run_and_missing_metric_error(tmp_path):
    run = _write_run(tmp_path, "dapo", 1, [0.1, 0.2, 0.4], tries=3)
    result = read_run(run, "dapo", 1, prompts=2, n=4)
    assert result.val_steps == [0, 2, 4] and result.exact_match == [0.1, 0.2, 0.4]
    assert result.step_seconds == [11.0, 12.0, 13.0, 14.0]
    assert (result.sampled_sequences, result.planned_sequences) == (4 * 3 * 8, 4 * 8)
    assert result.sampled_tokens == 4 * 3 * 8 * 20.0
    assert result.final_by_kind == {"one_call": 0.2}
    bad = _write_run(tmp_path, "grpo", 1, [0.1, 0.2, 0.4], em_key=False)
    with pytest.raises(MissingMetricError, match="run with a rest version that logs val/task/exact_match"):
        read_run(bad, "grpo", 1, 2, 4)


def test_report_from_synthetic_runs(tmp_path):
    runs = tmp_path / "runs"
    for seed, em in zip([1, 2, 3], ([0.1, 0.2, 0.3], [0.1, 0.3, 0.3], [0.1, 0.2, 0.4])):
        _write_run(runs, "rest_entropy", seed, em, weights={"format": 4.8, "name": 0.4, "params": 0.2, "cot": 0.6})
        _write_run(runs, "grpo", seed, [0.1, 0.3, 0.5])
        _write_run(runs, "dapo", seed, [0.1, 0.1, 0.2], tries=2)
    _write_run(runs, "drgrpo", 1, [0.1, 0.9, 0.9]).joinpath(ablation.RUN_RECORD).unlink()  # unfinished: left out
    results = ablation.collect(["rest_entropy", "grpo", "dapo", "drgrpo"], [1, 2, 3], SIZES, runs, [])
    assert sorted(results) == ["dapo", "grpo", "rest_entropy"]
    report, png = tmp_path / "ABLATION.md", tmp_path / "plots" / "ablation.png"
    report.write_text("old\n<!-- begin:notes -->\nhand-written\n<!-- end:notes -->\n")
    summaries = ablation.write_report(results, SIZES, 0.05, "python bench/ablation.py", report, png,
                                      failed=["drgrpo seed 2"])
    by = {s.preset: s for s in summaries}
    # rest_entropy: end 0.3, 0.3, 0.4 -> mean 0.3333 ; gain the same minus 0.1 ; area (2 x (0.1 + v2) / 2 +
    # 2 x (v2 + v4) / 2) / 4, seed 1: (0.3 + 0.5) / 4 = 0.2
    assert by["rest_entropy"].end.mean == pytest.approx(1 / 3)
    assert by["rest_entropy"].gain.values == pytest.approx([0.2, 0.2, 0.3])
    assert by["rest_entropy"].area.values[0] == pytest.approx(0.2)
    # threshold = 0.1 (step-0 mean) + 0.05: reached at step 2 by every grpo/rest seed, by dapo only at 4
    assert by["grpo"].threshold_steps == [2, 2, 2] and by["dapo"].threshold_steps == [4, 4, 4]
    assert by["dapo"].extra_samples == pytest.approx(1.0)  # two tries per step: twice the planned samples
    assert by["dapo"].tokens_per_step.mean == 2 * 8 * 20.0 and by["grpo"].tokens_per_step.mean == 8 * 20.0
    assert by["grpo"].seconds_per_step.mean == pytest.approx(13.0)  # median of 12, 13, 14 (step 1 dropped)
    assert by["rest_entropy"].weight_first["params"] == pytest.approx(0.2)
    assert by["rest_entropy"].weight_last["format"] == pytest.approx(4.8 * 4)
    text = report.read_text()
    ranked = [line.split("|")[1].strip() for line in text.splitlines()
              if line.startswith("| ") and "[" in line and "preset" not in line][:3]
    assert ranked == ["grpo", "rest_entropy", "dapo"]
    assert "ResT does not win: its best form, rest_entropy, ranks 2 of 3" in text
    assert "rest_entropy at step 1: most weight on format (4.80" in text and "least on params (0.20" in text
    assert "0.300 / 0.300 / 0.400" in text and "61 / 62 / 63" in text  # per-seed final exact match, wall s
    assert "**Failed runs (left out):** drgrpo seed 2." in text
    assert "95% Student-t interval over 3 seeds" in text and "+100%" in text
    assert "hand-written" in text and "old\n" not in text  # the notes block survives, the rest is re-rendered
    assert "](plots/ablation.png)" in text
    assert png.stat().st_size > 10_000


def _summary(preset: str, ends: list[float]) -> ablation.PresetSummary:
    end, flat = t_interval(ends), t_interval([0.1] * len(ends))
    nan = {g: float("nan") for g in ablation.REGIONS}
    return ablation.PresetSummary(preset, [1, 2, 3], flat, end, end, end, [None] * 3, flat, 0.0, flat, flat, {},
                                  nan, nan, nan, nan, [0], [end])


def test_reading_when_rest_ranks_first():
    apart = ablation.interpretation(ablation.ranking([_summary("grpo", [0.2, 0.3, 0.25]),
                                                      _summary("rest_variance_bound", [0.5, 0.6, 0.55])]))
    assert "1. rest_variance_bound 0.550, 2. grpo 0.250" in apart
    assert "ranks first; its 95% interval lies above grpo's" in apart
    close = ablation.interpretation(ablation.ranking([_summary("grpo", [0.2, 0.6, 0.45]),
                                                      _summary("rest_entropy", [0.5, 0.6, 0.55])]))
    assert "overlaps grpo's: this size does not separate them" in close


def test_run_overrides_same_budget_for_every_preset_and_resume_check(tmp_path):
    sizes = Sizes(prompts=2, n=4, steps=3, test_freq=1, val_size=16, dapo_max_tries=2)
    defaults = ablation.Defaults(embedded=True, num_workers=2, micro_batch=8)
    runs = {p: ablation.run_overrides(p, 7, sizes, defaults, ["model.path=x"]) for p in ablation.PRESETS}
    shared = {p: [o for o in ov if o not in ablation.PRESETS[p] and not o.startswith("trainer.experiment_name")
                  and not o.startswith("algorithm.dynamic_sampling")] for p, ov in runs.items()}
    assert all(v == shared["grpo"] for v in shared.values())  # same sizes, data, seed, validation everywhere
    grpo = runs["grpo"]
    assert "actor.ppo_micro_batch_size=4" in grpo  # gcd(2 x 4 / 2 ranks, 8)
    assert "trainer.seed=7" in grpo and "data.embedded_val_size=16" in grpo and grpo[-1] == "model.path=x"
    assert "algorithm.dynamic_sampling.max_tries=2" in runs["dapo"]
    assert runs["rest_variance_bound"][:2] == ["algorithm=rest", "algorithm.region_weights.mode=variance_bound"]
    run = _write_run(tmp_path, "grpo", 7, [0.1, 0.2, 0.3])
    (run / ablation.RUN_RECORD).unlink()
    assert not run_is_complete(run, grpo, 4)  # no record: never finished under this script
    (run / ablation.RUN_RECORD).write_text(json.dumps({"overrides": grpo, "wall_s": 1.0}))
    assert run_is_complete(run, grpo, 4)
    assert not run_is_complete(run, grpo, 5)  # fewer steps logged than asked
    assert not run_is_complete(run, [*grpo, "rollout.n=8"], 4)  # other overrides: rerun


def test_every_preset_is_a_valid_config():
    from rest.config.load import load_config

    for preset, overrides in ablation.PRESETS.items():
        cfg = load_config(overrides)
        assert cfg.algorithm.name in preset or preset.startswith("rest_")


@pytest.mark.slow
def test_quick_ablation_end_to_end(tmp_path):
    """--quick through the real stack: one rest_entropy run of one step, validated at steps 0 and 1."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "bench" / "ablation.py"), "--quick", "--out", str(tmp_path / "runs"),
           "--report", str(tmp_path / "ABLATION.md"), "--plot", str(tmp_path / "ablation.png")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[1/1] rest_entropy seed 1:" in proc.stdout
    rows = [json.loads(line) for line in (tmp_path / "runs" / "rest_entropy" / "seed1" / "metrics.jsonl").open()]
    assert [r["step"] for r in rows if "val/task/exact_match" in r] == [0, 1]
    assert "rest/weight/params" in rows[1] and "rest/entropy/params" in rows[1]
    text = (tmp_path / "ABLATION.md").read_text()
    assert "| rest_entropy |" in text and (tmp_path / "ablation.png").exists()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "complete, skipped" in again.stdout  # resumable: the finished run is not run again
