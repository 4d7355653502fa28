"""The periodic validation hook: generation with the current rollout weights, scored by name.

`task` scores the held-out split of the training data with fixed-meaning metrics (`rest.eval.task`: exact
match, format, names, split by item kind; the same numbers `python -m rest.eval task` gives for a checkpoint)
on greedy answers, and optionally pass@k on sampled ones; with data.source=env, `task` runs the held-out
tasks through the rollout workers' agent loop instead (`rest.eval.multiturn`: val/<env>/success and the reward's
parts, greedy). `apibank` and `bfcl` run the evaluation harness (`rest.eval`) through the same rollout workers.
Every validation is timed as `timing_s/validation`.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from pathlib import Path

from rest.data.example import ground_truth_calls
from rest.data.prompt_set import PromptSet
from rest.data.prompts import encode_prompt
from rest.eval.task import KINDS, aggregate, item_kind, pass_at_k_metrics, score_item
from rest.trainer.timing import PhaseTimer
from rest.workers.rollout import PROMPT_OVERFLOW, sample_seed

# the sampled responses for pass@k use the same seeds at every validation (step 0 of the seed scheme, which
# training never uses), so a change between validations comes from the weights, not from the draw
PASS_AT_K_SEED_STEP = 0


class Validator:
    def __init__(self, cfg, rollout_group, tokenizer, val: PromptSet):
        self.cfg, self.rollout, self.tokenizer = cfg, rollout_group, tokenizer
        self.items = val.items[: cfg.validation.task_limit]
        self.max_tokens = cfg.validation.max_response_length or cfg.data.max_response_length
        self.env_name = cfg.data.env_name if cfg.data.source == "env" else None  # tasks run by the agent loop
        if cfg.trainer.test_freq and "task" in cfg.validation.benchmarks:
            print(describe_env_split(self.items, self.env_name) if self.env_name else describe_split(self.items),
                  flush=True)

    def _text(self, sample) -> str:
        return self.tokenizer.decode(sample.token_ids, skip_special_tokens=True)

    def _greedy(self, prompt_ids: list[list[int]]):
        groups = self.rollout.generate(prompt_ids, [[0] for _ in prompt_ids], self.max_tokens, True)
        return [g[0] for g in groups]

    def generate_chat(self, conversations: list[list[dict]], tools: list | None = None,
                      overflow_as_none: bool = False) -> list[str | None]:
        """The harness's generate function: chat messages in, response texts out; `tools` holds one tool
        list per conversation (None where the prompt carries its tools, as in the ToolRL format). A prompt
        that does not fit the engine's context gets "" (a wrong answer), or None with `overflow_as_none`,
        which the BFCL harness counts as `prompt_overflow`."""
        tools = tools or [None] * len(conversations)
        ids = [encode_prompt(self.tokenizer, messages, t, self.cfg.data.prompt_format)
               for messages, t in zip(conversations, tools)]
        return [None if overflow_as_none and s.finish_reason == PROMPT_OVERFLOW
                else self._text(s) for s in self._greedy(ids)]

    def run(self, step: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        timer = PhaseTimer()
        with timer.phase("validation"):
            for benchmark in self.cfg.validation.benchmarks:
                if benchmark == "task":
                    metrics.update(self._env(step) if self.env_name else self._task(timer, step))
                else:
                    from rest.eval import run_validation

                    val = self.cfg.validation
                    options = {"apibank": {"data_dir": val.apibank_dir},
                               "bfcl": {"version": val.bfcl_version, "categories": val.bfcl_categories}}[benchmark]
                    generate = functools.partial(self.generate_chat, overflow_as_none=benchmark == "bfcl")
                    metrics.update(run_validation(benchmark, generate, val.limit,
                                                  prompt_format=self.cfg.data.prompt_format, **options))
        return {**metrics, **timer.metrics()}

    def _task(self, timer: PhaseTimer, step: int) -> dict[str, float]:
        if not self.items:
            return {}
        prompt_format, val = self.cfg.data.prompt_format, self.cfg.validation
        prompt_ids = [p.prompt_ids for p in self.items]
        ground_truths = [p.ground_truth for p in self.items]
        with timer.phase("validation_greedy"):
            samples = self._greedy(prompt_ids)
        texts = [self._text(s) for s in samples]
        scores = [score_item(text, gt, prompt_format) for text, gt in zip(texts, ground_truths)]
        record_item_scores(self.cfg.trainer.run_dir, step, [p.uid for p in self.items],
                           [int(s.exact_match) for s in scores])
        metrics = aggregate(scores)
        metrics["val/task/response_length/mean"] = sum(len(s.token_ids) for s in samples) / len(samples)
        metrics["val/task/truncated"] = sum(s.finish_reason == "length" for s in samples) / len(samples)
        if val.pass_k:
            seeds = [[sample_seed(self.cfg.trainer.seed, PASS_AT_K_SEED_STEP, i, j) for j in range(val.pass_n)]
                     for i in range(len(prompt_ids))]
            with timer.phase("validation_pass_at_k"):
                groups = self.rollout.generate(prompt_ids, seeds, self.max_tokens, False)
            sampled = [[self._text(s) for s in g] for g in groups]
            metrics.update(pass_at_k_metrics(sampled, ground_truths, val.pass_k, prompt_format))
        return metrics

    def _env(self, step: int) -> dict[str, float]:
        """data.source=env: the held-out tasks through the rollout workers' agent loop, greedy (and sampled for
        validation.pass_k), scored by the environment (`rest.eval.multiturn.evaluate_rollouts`: val/<env>/*)."""
        from rest.eval.multiturn import evaluate_rollouts

        if not self.items:
            return {}
        val = self.cfg.validation

        def rollouts(tasks, seeds, greedy):
            return self.rollout.run_agent(tasks, seeds, self.max_tokens, greedy)

        metrics, success = evaluate_rollouts([p.task for p in self.items], self.env_name, rollouts,
                                             val.pass_n if val.pass_k else 0, val.pass_k, self.cfg.trainer.seed)
        record_item_scores(self.cfg.trainer.run_dir, step, [p.uid for p in self.items], success, "success")
        return metrics


ITEM_SCORES_FILE = "val_items.jsonl"


def record_item_scores(run_dir: str | None, step: int, uids: list[str], values: list, metric: str = "exact_match"
                       ) -> None:
    """One line per validation with each held-out item's greedy score under `metric` (exact_match of the task;
    success of a multi-turn task), so the change between two validations can get a paired confidence interval
    (rest.trainer.tracking.held_out_change). No run folder (a validator used on its own): nothing to write."""
    if run_dir is None:
        return
    path = Path(run_dir) / ITEM_SCORES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({"step": step, "uid": uids, metric: list(values)}) + "\n")


def describe_env_split(items, env_name: str) -> str:
    """One line on a multi-turn held-out split: its size, task kinds, and how precise a success rate on it is."""
    kinds = Counter(p.task.info.get("kind", "task") for p in items)
    n = len(items)
    line = (f"validation: {n} held-out {env_name} tasks ("
            + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())) + ")")
    if n:
        line += f"; a success rate on them has a standard error <= {0.5 / math.sqrt(n):.3f}"
    return line


def describe_split(items) -> str:
    """One line on the held-out split: its size, kinds, and how precise an exact-match rate on it is."""
    kinds = Counter(item_kind(len(ground_truth_calls(p.ground_truth))) for p in items)
    n = len(items)
    line = (f"validation: {n} held-out task items ("
            + ", ".join(f"{kind} {kinds[kind]}" for kind in KINDS) + ")")
    if n:
        line += f"; an exact-match rate on them has a standard error <= {0.5 / math.sqrt(n):.3f}"
    return line
