"""A tensor-parallel engine (TP 2, vLLM's mp executor, the TP ranks as processes of the rollout worker) takes
a weight sync: afterwards its greedy output equals transformers' greedy output with the new weights. No Ray,
no FSDP: the worker is built in this process and fed the weight-sync wire format directly."""

import pytest
import torch

from rest.config.load import load_config
from rest.models.cache import resolve_model_path
from rest.workers.rollout import RolloutWorker
from rest.workers.weight_sync import export_state

pytestmark = pytest.mark.slow

PROMPTS = [[9707, 11, 1879, 0], [151644, 872, 198, 3838, 374], [40, 1079, 264, 5392]]


def hf_greedy(model, prompts, max_tokens=12):
    out = []
    for prompt in prompts:
        ids = model.generate(torch.tensor([prompt]), max_new_tokens=max_tokens, do_sample=False, eos_token_id=None,
                             attention_mask=torch.ones(1, len(prompt), dtype=torch.long), pad_token_id=0)
        out.append(ids[0, len(prompt):].tolist())
    return out


def tp2_worker_and_moved_model(tmp_path, prompts, *overrides):
    """A TP 2 rollout worker of tiny_cpu's model, built in this process; `greedy()`: its greedy ids on `prompts`
    (12 tokens); those ids before any sync; and a transformers copy of the model in which every parameter moved
    (seeded), the tied embedding / LM head included: the weights a test syncs into the worker."""
    from transformers import AutoModelForCausalLM

    cfg = load_config(["+recipe=tiny_cpu", "rollout.tensor_parallel_size=2", f"rollout.weight_sync_dir={tmp_path}",
                       *overrides])
    path = str(resolve_model_path(cfg.model.path))
    worker = RolloutWorker(cfg, path, rank=0)

    def greedy():
        return [g[0].token_ids for g in worker.generate(prompts, [[0]] * len(prompts), 12, greedy=True)]

    before = greedy()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return worker, greedy, before, model


def test_tp2_engine_follows_a_weight_sync(tmp_path):
    worker, greedy, before, model = tp2_worker_and_moved_model(tmp_path, PROMPTS)
    worker.load_weights([export_state(model.state_dict(), rank=0, world_size=1, dtype=torch.float32)])
    after = greedy()
    expected = hf_greedy(model, PROMPTS, 12)
    assert after == [e[: len(a)] for a, e in zip(after, expected)] and all(after)
    assert after != before
    assert not any(tmp_path.iterdir())  # the sync files are gone
