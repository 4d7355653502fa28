"""Training prompts: the data layer's examples rendered with the model's chat template and tokenized once."""

from __future__ import annotations

from dataclasses import dataclass

from rest.data.prompts import encode_prompt


@dataclass(frozen=True)
class Prompt:
    uid: str
    prompt_ids: list[int]
    ground_truth: str
    messages: list[dict]


class PromptSet:
    """Tokenized prompts; prompts longer than data.max_prompt_length are dropped and counted (reported)."""

    def __init__(self, examples, tokenizer, prompt_format: str, max_prompt_length: int):
        self.items: list[Prompt] = []
        self.dropped_overlong: list[str] = []
        for example in examples:
            ids = encode_prompt(tokenizer, example.messages, example.tools, prompt_format)
            if len(ids) > max_prompt_length:
                self.dropped_overlong.append(example.uid)
                continue
            self.items.append(Prompt(example.uid, ids, example.ground_truth, example.messages))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Prompt:
        return self.items[index]


@dataclass(frozen=True)
class EnvPrompt:
    """A multi-turn task (`rest.envs.EnvTask`) and its prompt as the agent loop renders it (for the length check:
    the rollout worker renders it again in the sample's own environment)."""

    uid: str
    task: object
    prompt_ids: list[int]


class EnvTaskSet:
    """The tasks of a multi-turn environment (data.source=env); those whose prompt is longer than
    data.max_prompt_length are dropped and counted (reported), as in PromptSet."""

    def __init__(self, tasks, env_name: str, tokenizer, prompt_format: str, max_prompt_length: int):
        from rest.envs import make_env

        self.env_name = env_name
        self.items: list[EnvPrompt] = []
        self.dropped_overlong: list[str] = []
        env = make_env(env_name, prompt_format)
        for task in tasks:
            ids = encode_prompt(tokenizer, *env.reset(task), prompt_format)
            if len(ids) > max_prompt_length:
                self.dropped_overlong.append(task.uid)
                continue
            self.items.append(EnvPrompt(task.uid, task, ids))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> EnvPrompt:
        return self.items[index]


def prompt_sets(cfg, tokenizer):
    """-> (train set, validation set, load stats): the config's data as the trainer samples it (PromptSets; for
    data.source=env, EnvTaskSets)."""
    from rest.data import load_examples  # the package imports its modules, not this one: no cycle

    data = cfg.data
    train, val, stats = load_examples(data)
    if data.source == "env":
        return tuple(EnvTaskSet(tasks, data.env_name, tokenizer, data.prompt_format, data.max_prompt_length)
                     for tasks in (train, val)) + (stats,)
    return tuple(PromptSet(examples, tokenizer, data.prompt_format, data.max_prompt_length)
                 for examples in (train, val)) + (stats,)
