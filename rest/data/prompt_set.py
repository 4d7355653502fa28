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


def prompt_sets(cfg, tokenizer):
    """-> (train PromptSet, validation PromptSet, load stats): the config's data as the trainer samples it."""
    from rest.data import load_examples  # the package imports its modules, not this one: no cycle

    train, val, stats = load_examples(cfg.data)
    return tuple(PromptSet(examples, tokenizer, cfg.data.prompt_format, cfg.data.max_prompt_length)
                 for examples in (train, val)) + (stats,)
