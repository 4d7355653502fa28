"""Metrics carry their reduction: every rank's values are combined by it, by hand."""

import pytest
import torch
from tensordict import TensorDict

from rest.workers.dispatch import WorkerOutput, collect_dp
from rest.workers.metrics import Metric, reduce_metrics


def test_each_metric_is_combined_over_all_ranks_values_by_its_own_reduction():
    rank0 = {"entropy": Metric("mean", [1.0, 2.0]), "tokens": Metric("sum", [3.0, 4.0]),
             "diff_max": Metric("max", [0.1, 0.5])}
    rank1 = {"entropy": Metric("mean", [3.0, 6.0]), "tokens": Metric("sum", [5.0, 6.0]),
             "diff_max": Metric("max", [0.2, 0.3])}
    assert reduce_metrics([rank0, rank1]) == {"entropy": (1 + 2 + 3 + 6) / 4, "tokens": 18.0, "diff_max": 0.5}


def test_a_replicated_metric_counts_one_rank_so_a_sum_is_not_multiplied_by_the_world_size():
    # two optimizer steps, the second skipped on every rank; the all-reduced mini-batch losses 0.3 and 0.5
    per_rank = [{"actor/skipped_steps": Metric("sum", [0, 1], replicated=True),
                 "actor/pg_loss": Metric("mean", [0.3, 0.5], replicated=True)} for _ in range(4)]
    assert reduce_metrics(per_rank) == {"actor/skipped_steps": 1.0, "actor/pg_loss": pytest.approx(0.4)}


def test_plain_numbers_are_averaged_and_a_metric_missing_on_a_rank_uses_the_others():
    assert reduce_metrics([{"m": 1.0}, {"m": 2.0}]) == {"m": 1.5}
    assert reduce_metrics([{"a": Metric("max", [1.0])}, {"a": Metric("max", [4.0]), "b": Metric("sum", [2.0])}]) \
        == {"a": 4.0, "b": 2.0}


def test_reductions_that_disagree_between_ranks_are_refused():
    with pytest.raises(ValueError, match="'m' has different reductions"):
        reduce_metrics([{"m": Metric("mean", [1.0])}, {"m": Metric("sum", [1.0])}])
    with pytest.raises(ValueError, match="unknown metric reduction 'median'"):
        Metric("median")


def test_collect_dp_concatenates_the_rows_and_reduces_the_metrics_of_worker_outputs():
    outputs = [WorkerOutput(TensorDict({"x": torch.tensor([rank, rank])}, batch_size=[2]),
                            {"loss": Metric("sum", [rank + 1.0])}) for rank in range(2)]
    collected = collect_dp(outputs)
    assert collected.batch["x"].tolist() == [0, 0, 1, 1] and collected.metrics == {"loss": 3.0}
    outputs = [WorkerOutput(None, {"m": Metric("max", [2.0])}), WorkerOutput(None, {"m": Metric("max", [7.0])})]
    assert collect_dp(outputs) == WorkerOutput(None, {"m": 7.0})
