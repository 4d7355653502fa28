"""`tiny-qwen3-agentsft`: the tiny random Qwen3 after a short supervised warm start on `embedded_multiturn`.

Why: `tiny-qwen3-toolsft` knows the single-turn task only; on the multi-turn task it calls that task's tools and
never reads an observation (held-out success 0.0), so every GRPO group scores alike and RL has nothing to
follow. This warm start shows it whole episodes: call, read the `<tool_response>`, call again or reply.

The demonstrations are the gold solutions (`Environment.reference_turns`) of the TRAIN tasks, played through
the agent loop itself (`rest.workers.agent_loop.run_agent_loop` with a scripted generate function that stops at
`</tool_call>` as the engine does), so the trained sequence is exactly what a rollout produces: model turns
(loss) interleaved with the chat template's tool-message tokens and the observations (context only, loss mask
0). The loss and the schedule are `rest.models.tool_sft.train_sft`'s (sampled softmax over the LM head).

Measured (`python -m rest.eval.multiturn`, 64 held-out tasks, 8 samples at temperature 1, 2026-12-01): the model
learns the turn structure and the tool names but copies arguments and results poorly (it falls back to the most
frequent city, name or digit): greedy success 0.031 / 0.047 / 0.094 after 150 / 300 / 500 steps, pass@8 0.34 /
0.36 / 0.34. Headroom for RL (pass@8 >> greedy), but greedy is below the 0.2-0.5 wanted; copying improves slowly
with steps (train loss 0.12 at 300 -> ~0.06 at 500).
"""

from __future__ import annotations

from pathlib import Path

from rest.models.tool_sft import SFTResult, train_sft

AGENT_SFT_ENV = "embedded_multiturn"
AGENT_SFT_PROMPT_FORMAT = "toolrl"
AGENT_SFT_TASKS = 512  # data.embedded_train_size's default: the driver's train split, so its val stays unseen
AGENT_SFT_SPLIT_SEED = 31415  # data.seed's default (rest.data.config.DataConfig)
AGENT_SFT_STEPS = 500  # ~100 s on 2 quiet cores (0.18 s/step measured at the end of a build)
AGENT_SFT_BATCH_SIZE = 8
AGENT_SFT_LR = 1e-2


def demonstrations(tokenizer, tasks, env_name: str = AGENT_SFT_ENV,
                   prompt_format: str = AGENT_SFT_PROMPT_FORMAT) -> list[tuple[list[int], list[int], list[int]]]:
    """(prompt ids, response ids, loss mask) of each task's gold solution, as the agent loop lays it out.

    Raises if a replayed gold solution does not succeed (the task or the loop would be teaching nonsense)."""
    from rest.envs import make_env
    from rest.workers.agent_loop import AgentLimits, ScriptedGenerate, run_agent_loop

    envs = [make_env(env_name, prompt_format) for _ in tasks]
    scripts = [env.reference_turns(task) for env, task in zip(envs, tasks)]
    generate = ScriptedGenerate(tokenizer, scripts, stop_at_call_close=True)
    limits = AgentLimits(max_turns=max(len(s) for s in scripts), max_response_tokens=4096, max_obs_tokens=4096)
    samples = run_agent_loop(tasks, envs, tokenizer, generate, limits, list(range(len(tasks))), prompt_format)
    for task, sample in zip(tasks, samples):
        if sample.reward.get("reward", 0.0) < 1.0 - 1e-9:
            raise RuntimeError(f"the gold solution of {task.uid} scores {sample.reward} through the agent loop")
    return [(s.prompt_ids, s.response_ids, s.response_mask) for s in samples]


def build_agent_sft(out_dir: Path, base_dir: Path, steps: int = AGENT_SFT_STEPS, seed: int = 0,
                    n_tasks: int = AGENT_SFT_TASKS, batch_size: int = AGENT_SFT_BATCH_SIZE, lr: float = AGENT_SFT_LR,
                    log_every: int = 0) -> SFTResult:
    """SFT the model in `base_dir` on the gold episodes of `n_tasks` TRAIN tasks; write it to `out_dir`."""
    from transformers import AutoTokenizer

    from rest.envs import load_env_tasks

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    train, _val = load_env_tasks(AGENT_SFT_ENV, n_tasks, 0, AGENT_SFT_SPLIT_SEED)
    examples = demonstrations(tokenizer, train)
    return train_sft(out_dir, base_dir, len(examples), examples.__getitem__, steps, seed, batch_size, lr,
                     log_every=log_every)


if __name__ == "__main__":  # python -m rest.models.agent_sft OUT_DIR BASE_DIR [STEPS]
    import sys

    result = build_agent_sft(Path(sys.argv[1]), Path(sys.argv[2]),
                             steps=int(sys.argv[3]) if len(sys.argv) > 3 else AGENT_SFT_STEPS, log_every=25)
    print(f"built in {result.seconds:.1f}s, loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}")
