"""The converted SmolLM2 equals the GGUF-loaded one and answers."""

from __future__ import annotations

import torch

from rest.models.smollm2 import load_smollm2_from_gguf


def test_converted_logits_equal_gguf_model(smollm2_dir):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    gguf_model, gguf_tokenizer = load_smollm2_from_gguf()
    converted = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    assert type(converted) is LlamaForCausalLM and converted.dtype == torch.float32
    input_ids = gguf_tokenizer("The quick brown fox jumps over", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = gguf_model(input_ids).logits
        actual = converted(input_ids).logits
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_greedy_answer(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    output = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    new_tokens = output[0, prompt["input_ids"].shape[1] :]
    answer = tokenizer.decode(new_tokens, skip_special_tokens=True)
    print(f"SmolLM2 answer: {answer!r}")
    assert len(new_tokens) > 0 and answer.strip()
