"""Held-out success of a model on a multi-turn environment, through the training rollout's own agent loop.

`evaluate_env` runs the validation tasks once greedily and `n` times sampled (`rest.workers.agent_loop`, the same
token-in/token-out loop, limits and reward as training) and reports, under `val/<env>/`:
`success` (greedy, the environment's `success` part), `reward` and every other reward part (greedy means),
`pass_at_1` (mean sampled success, at the sampling temperature) and `pass_at_<k>` (unbiased, Chen et al. 2021,
from the n samples), with the rollout/* counts of the greedy pass. Any `GenerateFn` works (vLLM through
`VLLMGenerate`, a scripted one in tests). The trainer's validation (data.source=env) calls `evaluate_rollouts`,
the same metrics over its rollout workers' agent loop (`RolloutWorker.run_agent`).

    python -m rest.eval.multiturn --model tiny-qwen3-agentsft --env embedded_multiturn --n-val 64 --k 8

BFCL's multi-turn entries run on the same loop as the `bfcl_eval` environment (BFCL's checker on the final state
and calls; the oracle scores 100% through it, tests/workers/test_agent_loop.py):

    python -m rest.eval.multiturn --model Qwen/Qwen3-8B --env bfcl_eval --bfcl-category multi_turn_base \
        --prompt-format hermes --n 0 --n-val 200 --max-turns 64 --max-response-tokens 8192 \
        --max-obs-tokens 4096 --max-model-len 16384
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Callable, Optional

from rest.eval.task import pass_at_k


# (tasks, seeds, greedy) -> one AgentSample per task: the agent loop run somewhere (here, or in rollout workers)
Rollouts = Callable[[list, list, bool], list]


def evaluate_env(tasks, env_name: str, tokenizer, greedy, sampled, limits, prompt_format: str = "toolrl",
                 n: int = 8, k: int = 8, seed: int = 0) -> dict[str, float]:
    """`greedy` / `sampled`: GenerateFns (temperature 0 / the sampling temperature); `sampled` may be None
    (greedy metrics only). The agent loop runs in this process (`evaluate_rollouts` for the metrics)."""
    from rest.envs import make_env
    from rest.workers.agent_loop import run_agent_loop

    def rollouts(batch, seeds, is_greedy):
        envs = [make_env(env_name, prompt_format) for _ in batch]
        return run_agent_loop(batch, envs, tokenizer, greedy if is_greedy else sampled, limits, seeds, prompt_format)

    return evaluate_rollouts(tasks, env_name, rollouts, n if sampled is not None else 0, k, seed)[0]


def evaluate_rollouts(tasks, env_name: str, rollouts: Rollouts, n: int = 8, k: int = 8, seed: int = 0
                      ) -> tuple[dict[str, float], list[float]]:
    """(metrics, each task's greedy success): the tasks once greedily and, with n > 0, n times sampled through
    `rollouts` (the trainer's validation passes its rollout workers' agent loop). Success of a sample: its reward
    part `success` (else reward == 1). Every reward part's greedy mean is reported (`val/<env>/<part>`)."""
    from rest.workers.agent_loop import rollout_metrics

    def run(copies: int, greedy: bool) -> list:
        batch = [t for t in tasks for _ in range(copies)]
        return rollouts(batch, [seed * 1_000_003 + i for i in range(len(batch))], greedy)

    def success(sample) -> float:
        return float(sample.reward.get("success", sample.reward["reward"] >= 1.0))

    prefix = f"val/{env_name}"
    first = run(1, True)
    per_task = [success(s) for s in first]
    parts = {key for s in first for key in s.reward}
    out = {f"{prefix}/n": len(tasks), f"{prefix}/success": _mean(per_task),
           **{f"{prefix}/{part}": _mean([s.reward.get(part, 0.0) for s in first])
              for part in sorted(parts - {"success"})},
           **{f"{prefix}/{key.split('/')[-1]}": v for key, v in rollout_metrics(first).items()}}
    if n > 0:
        many = run(n, False)
        correct = [sum(success(s) for s in many[i * n:(i + 1) * n]) for i in range(len(tasks))]
        out[f"{prefix}/pass_at_1"] = _mean([c / n for c in correct])
        out[f"{prefix}/pass_at_{k}"] = _mean([pass_at_k(n, int(c), k) for c in correct])
        out[f"{prefix}/sampled_reward"] = _mean([s.reward["reward"] for s in many])
    return out, per_task


def summary_line(metrics: dict[str, float], step: Optional[int] = None) -> Optional[str]:
    """The console line of a multi-turn validation: `val step 20: embedded_multiturn n=64 success 0.156 | reward
    0.41 | ... | turns_mean 2.1`; None when `metrics` has none."""
    keys = [key for key in metrics if key.startswith("val/") and key.endswith("/success") and key.count("/") == 2
            and not key.startswith("val/task/")]
    if not keys:
        return None
    prefix = keys[0].rsplit("/", 1)[0]
    shown = [f"{key[len(prefix) + 1:]} {value:.3f}" for key, value in metrics.items()
             if key.startswith(prefix + "/") and key != f"{prefix}/n"]
    head = "held-out" if step is None else f"val step {step}"
    return f"{head}: {prefix[4:]} n={int(metrics.get(f'{prefix}/n', 0))} " + " | ".join(shown)


def _mean(values) -> float:
    return sum(values) / len(values) if values else 0.0


def make_vllm(model_path: str, max_model_len: int, seed: int = 0):
    """An in-process vLLM(-cpu) engine for evaluation (as the slow agent-loop test builds it)."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM

    from rest.config.schema import RolloutConfig
    from rest.workers.rollout import prefill_args

    # the rollout's prefill settings and its prefix-caching default (rollout.enable_prefix_caching): whole-prompt
    # prefill on CPU, where vLLM cannot rewind a seeded generator after a chunked one
    rollout = RolloutConfig()
    return LLM(model=model_path, dtype="float32", enforce_eager=True, max_model_len=max_model_len, seed=seed,
               logprobs_mode="processed_logprobs",
               **prefill_args(rollout.enable_prefix_caching, True, max_model_len, rollout.max_num_batched_tokens))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rest.eval.multiturn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="built-in name, local dir or hub id")
    parser.add_argument("--env", default="embedded_multiturn")
    parser.add_argument("--prompt-format", choices=["toolrl", "hermes"], default="toolrl")
    parser.add_argument("--n-train", type=int, default=512, help="the train split's size (val is disjoint from it)")
    parser.add_argument("--n-val", type=int, default=64)
    parser.add_argument("--split-seed", type=int, default=31415, help="data.seed")
    parser.add_argument("--tasks-path", default=None, help="a task file instead of the generator")
    parser.add_argument("--n", type=int, default=8, help="sampled episodes per task (0: greedy only)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--max-response-tokens", type=int, default=192)
    parser.add_argument("--max-obs-tokens", type=int, default=64)
    parser.add_argument("--max-model-len", type=int, default=1024,
                        help="the engine's context: the longest prompt + --max-response-tokens (BFCL multi-turn "
                             "hermes prompts reach 7.5k tokens)")
    parser.add_argument("--bfcl-category", default="multi_turn_base", help="--env bfcl_eval: a multi-turn category")
    parser.add_argument("--bfcl-version", choices=["v3", "v4"], default="v3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="write the metrics as JSON here")
    args = parser.parse_args(argv)
    if args.n and not 1 <= args.k <= args.n:
        parser.error("--k must be in [1, --n]")

    from rest.data.prompt_set import EnvTaskSet
    from rest.envs import load_env_tasks
    from rest.models.cache import load_tokenizer, resolve_model_path
    from rest.workers.agent_loop import AgentLimits, VLLMGenerate

    _train, val = load_env_tasks(args.env, args.n_train, args.n_val, args.split_seed, args.tasks_path,
                                 args.bfcl_category, args.bfcl_version)
    tokenizer = load_tokenizer(args.model)
    limits = AgentLimits(args.max_turns, args.max_response_tokens, args.max_obs_tokens)
    max_prompt = args.max_model_len - args.max_response_tokens
    too_long = EnvTaskSet(val, args.env, tokenizer, args.prompt_format, max_prompt).dropped_overlong
    if too_long:
        parser.error(f"{len(too_long)} of {len(val)} tasks do not fit --max-model-len {args.max_model_len} with "
                     f"--max-response-tokens {args.max_response_tokens} (prompts over {max_prompt} tokens): "
                     f"{too_long[:5]}")
    start = time.perf_counter()
    llm = make_vllm(str(resolve_model_path(args.model)), args.max_model_len, args.seed)
    metrics = evaluate_env(val, args.env, tokenizer, VLLMGenerate(llm, tokenizer, greedy=True),
                           VLLMGenerate(llm, tokenizer, temperature=args.temperature) if args.n else None,
                           limits, args.prompt_format, args.n, args.k, args.seed)
    metrics[f"val/{args.env}/tasks"] = len(val)
    print(json.dumps(metrics, indent=1))
    print(f"{args.model} on {args.env}: greedy success {metrics[f'val/{args.env}/success']:.3f}"
          + (f", pass@1 {metrics[f'val/{args.env}/pass_at_1']:.3f}, pass@{args.k} "
             f"{metrics[f'val/{args.env}/pass_at_{args.k}']:.3f}" if args.n else "")
          + f" over {len(val)} held-out tasks ({time.perf_counter() - start:.0f}s)")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(metrics, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
