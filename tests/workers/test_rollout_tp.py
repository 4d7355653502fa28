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


class HFGreedyTurns:
    """The agent loop's GenerateFn over transformers, greedy: each turn stops at EOS or the tool-call close (as
    the engine does with rollout.multi_turn.stop_at_tool_call_close)."""

    def __init__(self, model, tokenizer):
        from rest.workers.agent_loop import call_close_stop

        self.model, self.stops = model, call_close_stop(tokenizer)[0] + [tokenizer.convert_tokens_to_ids("<|im_end|>")]

    def __call__(self, requests):
        from rest.workers.agent_loop import Generation

        out = []
        for r in requests:
            ids = hf_greedy(self.model, [r.prompt_ids], r.max_tokens)[0]
            cut = next((i + 1 for i, t in enumerate(ids) if t in self.stops), len(ids))
            out.append(Generation(ids[:cut], [0.0] * cut, "stop" if ids[cut - 1] in self.stops else "length"))
        return out


def test_agent_loop_through_a_separate_tp2_engine(tmp_path):
    """`run_agent` (multiturn_cpu) on a TP 2 engine in its own process (GPU shape: engine core and both TP ranks
    are processes of their own): greedy episodes equal the same loop over transformers' greedy turns."""
    from transformers import AutoModelForCausalLM

    from rest.envs import load_env_tasks, make_env
    from rest.models.cache import load_tokenizer
    from rest.workers.agent_loop import AgentLimits, run_agent_loop

    cfg = load_config(["+recipe=multiturn_cpu", "rollout.tensor_parallel_size=2", "rollout.engine_process=separate",
                       f"rollout.weight_sync_dir={tmp_path}"])
    path = str(resolve_model_path(cfg.model.path))
    _train, tasks = load_env_tasks(cfg.data.env_name, cfg.data.embedded_train_size, 6, cfg.data.seed)
    worker = RolloutWorker(cfg, path, rank=0)
    got = worker.run_agent(tasks, list(range(len(tasks))), cfg.data.max_response_length, greedy=True)

    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    multi = cfg.rollout.multi_turn
    envs = [make_env(cfg.data.env_name, cfg.data.prompt_format) for _ in tasks]
    expected = run_agent_loop(tasks, envs, tokenizer, HFGreedyTurns(model, tokenizer),
                              AgentLimits(multi.max_turns, cfg.data.max_response_length, multi.max_obs_tokens),
                              list(range(len(tasks))), cfg.data.prompt_format)
    assert sum(s.turns for s in got) > len(tasks)  # tools ran: some episode took a second turn
    for g, e in zip(got, expected):
        assert (g.prompt_ids, g.response_ids, g.response_mask) == (e.prompt_ids, e.response_ids, e.response_mask)
        assert g.reward == e.reward
