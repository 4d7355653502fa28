"""The periodic validation hook: greedy generation with the current rollout weights, scored by name.

`task` scores the validation split of the training data with the training reward; `apibank` and `bfcl` run
the evaluation harness (`rest.eval`) through the same rollout workers.
"""

from __future__ import annotations

from rest.data.prompt_set import PromptSet
from rest.data.prompts import encode_prompt


class Validator:
    def __init__(self, cfg, rollout_group, tokenizer, val: PromptSet, reward_fn):
        self.cfg, self.rollout, self.tokenizer, self.val, self.reward_fn = cfg, rollout_group, tokenizer, val, reward_fn
        self.max_tokens = cfg.validation.max_response_length or cfg.data.max_response_length

    def generate_texts(self, prompt_ids: list[list[int]]) -> list[str]:
        seeds = [[0] for _ in prompt_ids]
        groups = self.rollout.generate(prompt_ids, seeds, self.max_tokens, True)
        return [self.tokenizer.decode(g[0].token_ids, skip_special_tokens=True) for g in groups]

    def generate_chat(self, conversations: list[list[dict]], tools: list | None = None) -> list[str]:
        """The harness's generate function: chat messages in, response texts out; `tools` holds one tool
        list per conversation (None where the prompt carries its tools, as in the ToolRL format)."""
        tools = tools or [None] * len(conversations)
        ids = [encode_prompt(self.tokenizer, messages, t, self.cfg.data.prompt_format)
               for messages, t in zip(conversations, tools)]
        return self.generate_texts(ids)

    def run(self, step: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for benchmark in self.cfg.validation.benchmarks:
            if benchmark == "task":
                metrics.update(self._task(step))
            else:
                from rest.eval import run_validation

                val = self.cfg.validation
                options = {"apibank": {"data_dir": val.apibank_dir},
                           "bfcl": {"version": val.bfcl_version, "categories": val.bfcl_categories}}[benchmark]
                metrics.update(run_validation(benchmark, self.generate_chat, val.limit,
                                              prompt_format=self.cfg.data.prompt_format, **options))
        return metrics

    def _task(self, step: int) -> dict[str, float]:
        items = self.val.items[: self.cfg.validation.limit]
        if not items:
            return {}
        texts = self.generate_texts([p.prompt_ids for p in items])
        progress = 1.0
        scores = [self.reward_fn(t, p.ground_truth, step, progress)
                  for t, p in zip(texts, items)]
        return {
            "val/task/reward_mean": sum(s["total"] for s in scores) / len(scores),
            "val/task/format_mean": sum(s["format"] for s in scores) / len(scores),
            "val/task/correctness_mean": sum(s["correctness"] for s in scores) / len(scores),
        }
