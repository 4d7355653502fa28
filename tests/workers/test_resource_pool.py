"""Placement of the GPU recipes: what is booked (pure), and where Ray puts the workers on a cluster that
declares GPUs it does not have (`num_gpus=8` on a CPU machine; Ray assigns device ids and sets
CUDA_VISIBLE_DEVICES all the same). No vLLM or torch.distributed: probe actors report what they got."""

import os

import pytest
import ray

from rest.config.load import load_config
from rest.trainer.cluster import group_resources
from rest.workers.resource_pool import SlotSpec, WorkerResources, create_placement, placement_spec

GPU_NODE = "trainer.cpus_per_node=32"


def test_separate_books_each_tp_engine_as_one_bundle_of_its_gpus():
    actor, rollout = group_resources(load_config(["+recipe=bfcl_qwen3_8b", GPU_NODE]))
    spec = placement_spec(actor, rollout, "separate")
    assert spec.bundles == [[{"CPU": 4, "GPU": 1}] * 4, [{"CPU": 4, "GPU": 2}] * 2]
    assert spec.rollout == [SlotSpec(1, 0, 4, 2), SlotSpec(1, 1, 4, 2)]  # the engine's actor holds both GPUs


def test_colocated_shares_the_gpu_and_adds_the_cpus():
    spec = placement_spec(WorkerResources(4, 4, 1), WorkerResources(2, 4, 1), "colocated")
    assert spec.bundles == [[{"CPU": 8, "GPU": 1}] * 2 + [{"CPU": 4, "GPU": 1}] * 2]
    assert [s.gpus for s in spec.actor] == [0.5, 0.5, 1, 1]  # ranks without a rollout worker keep the whole GPU
    assert [(s.bundle, s.gpus) for s in spec.rollout] == [(0, 0.5), (1, 0.5)]
    cpu = placement_spec(WorkerResources(2, 0.5, 0), WorkerResources(1, 1, 0), "colocated")
    assert cpu.bundles == [[{"CPU": 1.5}, {"CPU": 0.5}]] and cpu.rollout == [SlotSpec(0, 0, 1, 0.0)]


@ray.remote(num_cpus=0)
class Probe:
    def where(self):
        return ray.get_runtime_context().get_node_id(), sorted(int(i) for i in ray.get_gpu_ids()), \
            os.environ.get("CUDA_VISIBLE_DEVICES")


def probe(placement):
    """(node, GPU ids, CUDA_VISIBLE_DEVICES) of a probe actor started in every actor and rollout slot."""
    actors = [[Probe.options(**slot.options()).remote() for slot in slots]
              for slots in (placement.actor, placement.rollout)]
    return [ray.get([a.where.remote() for a in group]) for group in actors]


@pytest.fixture
def gpu_node():
    ray.init(num_cpus=32, num_gpus=8, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("recipe, engines, tp", [("bfcl_qwen3_1.7b", 4, 1), ("bfcl_qwen3_8b", 2, 2),
                                                   ("bfcl_qwen3_14b", 1, 4)])
def test_gpu_recipes_get_disjoint_gpus_and_whole_tp_engines(gpu_node, recipe, engines, tp):
    actor, rollout = group_resources(load_config([f"+recipe={recipe}", GPU_NODE]))
    actors, rollouts = probe(create_placement(actor, rollout, "separate", timeout_s=30))
    assert [len(gpus) for _, gpus, _ in actors] == [1] * 4
    assert [len(gpus) for _, gpus, _ in rollouts] == [tp] * engines
    used = [g for _, gpus, _ in actors + rollouts for g in gpus]
    assert sorted(used) == list(range(len(used))) and len(used) <= 8  # no GPU given twice
    # vLLM's mp executor spawns the TP ranks as children of the rollout actor: they see exactly its GPUs
    assert all(visible == ",".join(map(str, gpus)) for _, gpus, visible in rollouts)


@pytest.mark.slow
def test_colocated_rollout_runs_on_its_actor_ranks_gpu(gpu_node):
    cfg = load_config(["+recipe=bfcl_qwen3_4b", GPU_NODE, "trainer.placement=colocated", "trainer.gpus_per_node=4",
                       "rollout.gpu_memory_utilization=0.4"])
    actors, rollouts = probe(create_placement(*group_resources(cfg), "colocated", timeout_s=30))
    assert [gpus for _, gpus, _ in rollouts] == [gpus for _, gpus, _ in actors]  # rank i shares with worker i
    assert sorted(g for _, gpus, _ in actors for g in gpus) == [0, 1, 2, 3]  # 4 GPUs, not 8: nothing else booked
    assert ray.available_resources().get("GPU", 0) == 4


@pytest.mark.slow
def test_two_nodes_keep_each_tp_engine_on_one_node():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 16, "num_gpus": 4})
    cluster.add_node(num_cpus=16, num_gpus=4)
    ray.init(address=cluster.address)
    try:
        cfg = load_config(["+recipe=bfcl_qwen3_14b", "trainer.cpus_per_node=16", "trainer.nnodes=2",
                           "trainer.gpus_per_node=4", f"trainer.ray_address={cluster.address}"])
        actors, rollouts = probe(create_placement(*group_resources(cfg), "separate", timeout_s=60))
        (engine_node, engine_gpus, _), = rollouts
        assert len(engine_gpus) == 4  # the TP-4 engine has a whole node
        assert all(node != engine_node for node, _, _ in actors)  # so the 4 actor ranks share the other
    finally:
        ray.shutdown()
        cluster.shutdown()
