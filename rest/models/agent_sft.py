"""`tiny-qwen3-agentsft`: `tiny-qwen3-toolsft` after a supervised warm start on `embedded_multiturn`.

Why: `tiny-qwen3-toolsft` knows the single-turn task only; on the multi-turn task it calls that task's tools and
never reads an observation, so every GRPO group scores alike and RL has nothing to follow. This warm start shows
it whole episodes: call, read the `<tool_response>`, call again or reply.

The demonstrations are gold solutions played through the agent loop itself (`rest.workers.agent_loop.run_agent_loop`
with a scripted generate function that stops at `</tool_call>` as the engine does), so the trained sequence is
exactly what a rollout produces: model turns (loss) interleaved with the chat template's tool-message tokens and
the observations (context only, loss mask 0). The loss and the schedule are `rest.models.tool_sft.train_sft`'s.

Built like the single-turn start (issue 10), after a first version on the 512 train tasks (500 steps) gave greedy
held-out success 0.07 and RL gains whose CI included 0:
- `AGENT_SFT_POOL` tasks drawn fresh from the generator (`rest.envs.embedded.generate_pool`), none in the world of
  one of the first `AGENT_SFT_HELD_OUT` validation tasks, 2,000 steps (each task drawn about twice);
- from `tiny-qwen3-toolsft`, which already copies request values into calls: from the random tiny Qwen3 the same
  build copied badly (greedy 0.078; with 4 layers 0.383, cities still wrong half the time);
- the demonstrator's slip (`early_reply`, at `AGENT_SFT_SLIP_RATE`): on a two-call task it replies after the
  first call's result instead of making the second call. RL has to teach it to keep going.
Measured (`rest.eval.multiturn`'s loop, 128 held-out tasks, greedy and 8 samples at temperature 1, 2026-12-01):
greedy success 0.523 (compute 1.00, lookup_answer 1.00, chain 0.09, lookup_act 0.00), pass@8 0.742 (chain 0.875,
lookup_act 0.094: its message text, the first of two quoted values in the request, is rarely copied).
"""

from __future__ import annotations

import random
from pathlib import Path

from rest.models.tool_sft import SFTResult, train_sft

AGENT_SFT_ENV = "embedded_multiturn"
AGENT_SFT_PROMPT_FORMAT = "toolrl"
AGENT_SFT_TASKS = 512  # data.embedded_train_size's default: with the split seed it fixes the validation split
AGENT_SFT_SPLIT_SEED = 31415  # data.seed's default (rest.data.config.DataConfig)
AGENT_SFT_HELD_OUT = 1024  # the demonstrations avoid the worlds of the first this-many validation tasks
AGENT_SFT_POOL = 8192  # distinct demonstrations drawn fresh from the generator (steps x batch ~ 2 draws each)
AGENT_SFT_POOL_SEED = 161_803
AGENT_SFT_STEPS = 2000
AGENT_SFT_BATCH_SIZE = 8
AGENT_SFT_LR = 1e-2
AGENT_SFT_SLIP_RATE = 0.6  # how often the demonstrator replies after the first of two calls (0: never)


def episodes(tokenizer, tasks, scripts: list[list[str]], env_name: str = AGENT_SFT_ENV,
             prompt_format: str = AGENT_SFT_PROMPT_FORMAT) -> list:
    """`scripts[i]` (the model turns' texts) played through the agent loop on task i, as the engine would
    produce them (stopping at `</tool_call>`): the loop's AgentSamples, environment reward included."""
    from rest.envs import make_env
    from rest.workers.agent_loop import AgentLimits, ScriptedGenerate, run_agent_loop

    envs = [make_env(env_name, prompt_format) for _ in tasks]
    generate = ScriptedGenerate(tokenizer, scripts, stop_at_call_close=True)
    limits = AgentLimits(max_turns=max(len(s) for s in scripts), max_response_tokens=4096, max_obs_tokens=4096)
    return run_agent_loop(tasks, envs, tokenizer, generate, limits, list(range(len(tasks))), prompt_format)


def demonstrations(tokenizer, tasks, env_name: str = AGENT_SFT_ENV,
                   prompt_format: str = AGENT_SFT_PROMPT_FORMAT) -> list[tuple[list[int], list[int], list[int]]]:
    """(prompt ids, response ids, loss mask) of each task's gold solution, as the agent loop lays it out.

    Raises if a replayed gold solution does not succeed (the task or the loop would be teaching nonsense)."""
    from rest.envs import make_env

    env = make_env(env_name, prompt_format)
    samples = episodes(tokenizer, tasks, [env.reference_turns(t) for t in tasks], env_name, prompt_format)
    for task, sample in zip(tasks, samples):
        if sample.reward.get("reward", 0.0) < 1.0 - 1e-9:
            raise RuntimeError(f"the gold solution of {task.uid} scores {sample.reward} through the agent loop")
    return [(s.prompt_ids, s.response_ids, s.response_mask) for s in samples]


def slipped_demonstrations(tokenizer, tasks, rng: random.Random) -> list[tuple[list[int], list[int], list[int]] | None]:
    """The demonstrator's slip on each task (`rest.envs.embedded.early_reply`: on a two-call task it replies
    after the first call's result), laid out like `demonstrations`; None where a task has no slip.

    Raises if a slipped episode succeeds (it would not be a slip)."""
    from rest.envs import make_env
    from rest.envs.base import render_reply
    from rest.envs.embedded import early_reply

    env = make_env(AGENT_SFT_ENV, AGENT_SFT_PROMPT_FORMAT)
    replies = [early_reply(t, rng) for t in tasks]
    slipping = [i for i, r in enumerate(replies) if r is not None]
    scripts = [env.reference_turns(tasks[i])[:1] + [render_reply([], replies[i], AGENT_SFT_PROMPT_FORMAT)]
               for i in slipping]
    out: list = [None] * len(tasks)
    if slipping:
        for i, sample in zip(slipping, episodes(tokenizer, [tasks[i] for i in slipping], scripts)):
            if sample.reward.get("success", 0.0) > 0.0:
                raise RuntimeError(f"the slipped episode of {tasks[i].uid} succeeds: {sample.reward}")
            out[i] = (sample.prompt_ids, sample.response_ids, sample.response_mask)
    return out


def build_agent_sft(out_dir: Path, base_dir: Path, steps: int = AGENT_SFT_STEPS, seed: int = 0,
                    pool: int = AGENT_SFT_POOL, batch_size: int = AGENT_SFT_BATCH_SIZE, lr: float = AGENT_SFT_LR,
                    slip_rate: float = AGENT_SFT_SLIP_RATE, log_every: int = 0) -> SFTResult:
    """SFT the model in `base_dir` on the episodes of `pool` fresh tasks, none in a held-out world (`train_sft`);
    with `slip_rate` > 0 that share of the two-call tasks' draws is the demonstrator's slip. Writes `out_dir`."""
    from transformers import AutoTokenizer

    from rest.envs import load_env_tasks
    from rest.envs.embedded import generate_pool

    if not 0.0 <= slip_rate <= 1.0:
        raise ValueError(f"slip_rate must be in [0, 1], got {slip_rate}")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    _train, held_out = load_env_tasks(AGENT_SFT_ENV, AGENT_SFT_TASKS, AGENT_SFT_HELD_OUT, AGENT_SFT_SPLIT_SEED)
    tasks = generate_pool(pool, AGENT_SFT_POOL_SEED, held_out)
    gold = demonstrations(tokenizer, tasks)
    slipped = slipped_demonstrations(tokenizer, tasks, random.Random(seed + 2)) if slip_rate > 0 else [None] * pool
    slip_rng = random.Random(seed + 1)

    def draw(i: int) -> tuple[list[int], list[int], list[int]]:
        return slipped[i] if slipped[i] is not None and slip_rng.random() < slip_rate else gold[i]

    return train_sft(out_dir, base_dir, len(gold), draw, steps, seed, batch_size, lr, log_every=log_every)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rest.models.agent_sft", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("base_dir", type=Path,
                        help="the model to start from; the registered build uses tiny-qwen3-toolsft "
                             "(rest.models.cache.resolve_model_path('tiny-qwen3-toolsft'))")
    parser.add_argument("--steps", type=int, default=AGENT_SFT_STEPS)
    parser.add_argument("--pool", type=int, default=AGENT_SFT_POOL)
    parser.add_argument("--slip-rate", type=float, default=AGENT_SFT_SLIP_RATE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = build_agent_sft(args.out_dir, args.base_dir, steps=args.steps, seed=args.seed, pool=args.pool,
                             slip_rate=args.slip_rate, log_every=100)
    print(f"built in {result.seconds:.1f}s, loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}")


if __name__ == "__main__":
    main()
