"""Dispatch of worker-group calls: split, run every rank, collect."""

import pytest
import ray
import torch
from tensordict import TensorDict

from rest.workers.dispatch import Dispatch, RayWorkerGroup, register, split_list


class EchoWorker:
    def __init__(self, rank):
        self.rank = rank

    @register(Dispatch.DP_COMPUTE)
    def double(self, batch):
        return TensorDict({"y": batch["x"] * 2, "rank": torch.full_like(batch["x"], self.rank)},
                          batch_size=batch.batch_size)

    @register(Dispatch.DP_COMPUTE)
    def lengths(self, items, tag):
        return [(self.rank, item, tag) for item in items]

    @register(Dispatch.DP_COMPUTE)
    def metrics(self, batch):
        return {"m": float(self.rank)}

    @register(Dispatch.ONE_TO_ALL)
    def whoami(self, suffix):
        return f"{self.rank}{suffix}"

    @register(Dispatch.RANK_ZERO)
    def rank_zero(self):
        return self.rank

    @register(Dispatch.ONE_TO_ALL, blocking=False)
    def export(self, tag):
        return {"rank": self.rank, "tag": tag}

    def not_registered(self):
        return None


@pytest.fixture(scope="module")
def group():
    ray.init(num_cpus=2, include_dashboard=False)
    actor = ray.remote(num_cpus=0.1)(EchoWorker)
    yield RayWorkerGroup(EchoWorker, [actor.remote(r) for r in range(2)])
    ray.shutdown()


def test_dp_compute_splits_and_concatenates_in_rank_order(group):
    out = group.double(TensorDict({"x": torch.arange(6)}, batch_size=[6]))
    assert out["y"].tolist() == [0, 2, 4, 6, 8, 10]
    assert out["rank"].tolist() == [0, 0, 0, 1, 1, 1]


def test_dp_compute_splits_lists_unevenly_and_broadcasts_scalars(group):
    assert group.lengths([1, 2, 3], "t") == [(0, 1, "t"), (0, 2, "t"), (1, 3, "t")]


def test_dp_compute_averages_metric_dicts(group):
    assert group.metrics(TensorDict({"x": torch.arange(2)}, batch_size=[2])) == {"m": 0.5}


def test_one_to_all_and_rank_zero(group):
    assert group.whoami("!") == ["0!", "1!"]
    assert group.rank_zero() == 0


def test_a_non_blocking_method_returns_one_object_ref_per_rank(group):
    refs = group.export("w")
    assert len(refs) == 2 and all(isinstance(ref, ray.ObjectRef) for ref in refs)
    assert ray.get(refs) == [{"rank": 0, "tag": "w"}, {"rank": 1, "tag": "w"}]
    assert group.whoami("?") == ["0?", "1?"]  # a blocking one still waits and returns the answers


def test_uneven_tensor_batch_is_refused(group):
    with pytest.raises(ValueError, match="evenly"):
        group.double(TensorDict({"x": torch.arange(5)}, batch_size=[5]))


def test_unregistered_method_is_refused(group):
    with pytest.raises(AttributeError, match="not_registered"):
        group.not_registered()


def test_split_list_sizes():
    assert [len(p) for p in split_list(list(range(7)), 3)] == [3, 2, 2]
