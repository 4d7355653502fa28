"""The tracker: JSONL lines, the console lines people read, and the curves at the end."""

from rest.trainer.tracking import Tracker, held_out_change

VAL = {"val/task/n": 4, "val/task/exact_match": 0.5, "val/task/format_ok": 0.75, "val/task/name_match": 0.75,
       "val/task/reward_unscheduled": 1.25, "val/task/n/no_call": 2, "val/task/exact_match/no_call": 1.0,
       "val/task/n/one_call": 2, "val/task/exact_match/one_call": 0.0, "val/task/n/multi_call": 0}


def test_validation_steps_print_the_split_and_the_run_ends_with_before_and_after(tmp_path, capsys):
    tracker = Tracker(["console", "jsonl"], str(tmp_path), "p", "e", {})
    tracker.log(dict(VAL), step=0)
    tracker.log({"critic/reward_mean": 0.2, "rest/entropy/name": 0.5, "rest/share/name": 0.1,
                 "rest/weight/name": 1.5}, step=1)
    tracker.log({**VAL, "val/task/exact_match": 0.75, "critic/reward_mean": 0.4}, step=2)
    out = capsys.readouterr().out
    assert "val step 0: n=4 exact_match 0.500 (no_call 1.000 n=2, one_call 0.000 n=2) | format_ok 0.750" in out
    assert "step 2: critic/reward_mean=0.4 | val/task/exact_match=0.75" in out
    assert out.count("val step") == 2  # only validation steps get the line
    assert [row["step"] for row in tracker.history()] == [0, 1, 2]
    plot = tracker.finish()
    assert "held-out exact_match: step 0 0.500 -> step 2 0.750 (n=4)" in capsys.readouterr().out
    assert plot == tmp_path / "curves.png" and plot.stat().st_size > 10_000


def test_held_out_change_needs_a_validation():
    assert held_out_change([{"step": 1, "critic/reward_mean": 0.1}]) is None
    assert held_out_change([{"step": 3, "val/task/exact_match": 0.25}]) == "held-out exact_match: step 3 0.250"


def test_resume_drops_lines_after_the_checkpoint(tmp_path):
    tracker = Tracker(["jsonl"], str(tmp_path), "p", "e", {})
    for step in (0, 1, 2, 3):
        tracker.log({"x": float(step)}, step=step)
    resumed = Tracker(["jsonl"], str(tmp_path), "p", "e", {}, resume_step=2)
    assert [row["step"] for row in resumed.history()] == [0, 1, 2]


def test_the_final_line_gives_the_paired_interval_of_the_gain(tmp_path, capsys):
    from rest.trainer.validation import record_item_scores

    uids = [f"u{i}" for i in range(100)]
    tracker = Tracker(["console", "jsonl"], str(tmp_path), "p", "e", {})
    tracker.log({**VAL, "val/task/n": 100, "val/task/exact_match": 0.2}, step=0)
    record_item_scores(str(tmp_path), 0, uids, [1] * 20 + [0] * 80)
    tracker.log({**VAL, "val/task/n": 100, "val/task/exact_match": 0.6}, step=5)
    record_item_scores(str(tmp_path), 5, uids, [1] * 60 + [0] * 40)  # 40 items gained, none lost
    tracker.finish()
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("held-out exact_match: step 0 0.200 -> step 5 0.600 (n=100); gain +0.400, 95% paired")
    low, high = (float(x) for x in line.split("CI [")[1].rstrip("]").split(", "))
    assert 0.29 < low < 0.4 < high <= 0.51  # binomial: 0.4 +- 1.96 * sqrt(0.4 * 0.6 / 100) = [0.30, 0.50]
    assert Tracker(["jsonl"], str(tmp_path), "p", "e", {}) and not (tmp_path / "val_items.jsonl").exists()
