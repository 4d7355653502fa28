"""`python -m rest.plot`: the points it draws and the overlay of run folders."""

import json
import math

from rest.plot import PANELS, Series, main, points, run_labels


def write_run(run_dir, rows):
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


ROWS = [
    {"step": 0, "val/task/exact_match": 0.3, "val/task/exact_match/no_call": 1.0},
    {"step": 1, "critic/reward_mean": 0.2, "rest/entropy/name": 0.0, "rest/share/name": 0.0,
     "rest/entropy/cot": 1.5, "rest/share/cot": 0.4, "actor/entropy": math.nan},
    {"step": 2, "critic/reward_mean": 0.5, "rest/entropy/name": 0.7, "rest/share/name": 0.1,
     "val/task/exact_match": 0.35},
]


def test_points_skip_absent_regions_and_non_finite_values():
    assert points(ROWS, Series("rest/entropy/name", "name", "rest/share/name")) == [(2, 0.7)]  # step 1: absent
    assert points(ROWS, Series("actor/entropy")) == []
    assert points(ROWS, Series("val/task/exact_match")) == [(0, 0.3), (2, 0.35)]


def test_default_panels_include_held_out_exact_match_and_per_region_curves():
    keys = {s.key for p in PANELS for s in p.series}
    assert {"val/task/exact_match", "val/task/exact_match/multi_call", "rest/entropy/params",
            "rest/weight/cot", "critic/reward_mean"} <= keys


def test_overlay_of_run_dirs_writes_one_png(tmp_path, capsys):
    write_run(tmp_path / "a" / "demo", ROWS)
    write_run(tmp_path / "b", ROWS[:2])
    out = tmp_path / "cmp.png"
    assert main([str(tmp_path / "a" / "demo"), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert main([str(tmp_path / "b"), "--out", str(out), "--metrics", "critic/reward_mean", "nope"]) == 0
    assert "no run logged ['nope']" in capsys.readouterr().err


def test_missing_run_dir_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 2
    assert "metrics.jsonl not found" in capsys.readouterr().err


def test_run_labels_fall_back_to_paths_when_names_clash(tmp_path):
    assert run_labels(["x/run1", "y/run2"]) == ["run1", "run2"]
    assert run_labels(["x/run", "y/run"]) == ["x/run", "y/run"]
