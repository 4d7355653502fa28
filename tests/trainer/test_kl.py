"""End to end with a KL penalty (algorithm.kl_coef > 0): the actor ranks build the frozen reference, the driver
scores it every step (timing_s/ref) and the update adds the KL term (actor/kl_loss).

One PPO mini-batch per step, so the whole step-1 update is scored at the start weights: pi == pi_ref and the
KL is 0 up to numerics; after one optimizer step (a large lr, so that it shows) it is > 0.
"""

import math

import pytest

from tests.trainer.test_e2e import metrics, run_main

pytestmark = pytest.mark.slow


def test_a_kl_run_scores_the_reference_and_logs_a_positive_kl(tmp_path):
    run_main(tmp_path, "trainer.total_steps=2", "algorithm.kl_coef=0.05", "actor.ppo_mini_batch_size=4",
             "actor.lr=1e-3", "trainer.save_final=false", "trainer.export_hf=false")
    rows = metrics(tmp_path)
    assert [row["step"] for row in rows] == [1, 2]
    assert all(row["timing_s/ref"] >= 0 for row in rows)
    first, second = rows[0]["actor/kl_loss"], rows[1]["actor/kl_loss"]
    assert math.isfinite(first) and abs(first) < 1e-6  # the policy is still the reference
    assert math.isfinite(second) and second > 1e-6  # it moved away after one step
