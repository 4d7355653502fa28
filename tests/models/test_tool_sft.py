"""`tiny-qwen3-toolsft`: the SFT warm start trains on perfect ToolRL responses, lowers the loss and saves a
loadable model. The test runs a few steps only; the registered build runs the full schedule."""

from __future__ import annotations

import pytest
import torch

from rest.data import DataConfig, load_examples
from rest.models.cache import BUILTIN_MODELS
from rest.models.tool_sft import build_tool_sft, sft_response, slipped_ground_truth
from rest.tooluse.reward import compute_score, schedule_range


def test_registered():
    assert "tiny-qwen3-toolsft" in BUILTIN_MODELS
    assert BUILTIN_MODELS.get("tiny-qwen3-toolsft").version == 2


def test_targets_score_full_reward():
    train, _val, _stats = load_examples(DataConfig())
    best = schedule_range(1)
    kinds = set()
    for example in train:
        response = sft_response(example.ground_truth)
        assert response.startswith("<think> ") and response.endswith(example.ground_truth)
        score = compute_score(f"<|im_start|>assistant\n{response}<|im_end|>", example.ground_truth, step=1)
        assert score["format"] == best.max_format
        assert score["correctness"] == (best.max_correct if "<tool_call>" in example.ground_truth else 0.0)
        kinds.add(("<tool_call>" in example.ground_truth, "<response>" in example.ground_truth))
    assert kinds == {(True, False), (False, True)}  # both shapes of target are trained


def test_slipped_ground_truth():
    two = ('<tool_call>\n{"name": "get_weather", "parameters": {"city": "Oslo"}}\n'
           '{"name": "get_time", "parameters": {"city": "Rome"}}\n</tool_call>')
    assert slipped_ground_truth(two, "lookalike") == '<tool_call>\n{"name": "get_weather", "parameters": {"city": "Oslo"}}\n</tool_call>'
    times = '<tool_call>\n{"name": "multiply", "parameters": {"a": 3, "b": 41}}\n</tool_call>'
    assert slipped_ground_truth(times, "lookalike") == '<tool_call>\n{"name": "add", "parameters": {"a": 3, "b": 41}}\n</tool_call>'
    assert slipped_ground_truth("<response> Hello! </response>", "lookalike") is None
    assert sft_response(slipped_ground_truth(times, "lookalike")).startswith("<think> I should call add. </think>")


def test_no_call_slip_replies_directly():
    call = '<tool_call>\n{"name": "get_weather", "parameters": {"city": "Oslo"}}\n</tool_call>'
    slipped = slipped_ground_truth(call, "no_call")
    assert slipped.startswith("<response>") and "<tool_call>" not in slipped
    assert sft_response(slipped).startswith("<think> No tool is needed")  # the same thought as a chat turn
    assert slipped_ground_truth("<response> Hello! </response>", "no_call") is None
    with pytest.raises(ValueError, match="slip must be one of"):
        slipped_ground_truth(call, "typo")


@pytest.fixture(scope="module")
def short_build(tiny_qwen3_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("toolsft") / "model"
    return build_tool_sft(out, tiny_qwen3_dir, steps=8, batch_size=4, seed=0, pool=64)


def test_loss_decreases(short_build):
    losses = short_build.losses
    assert len(losses) == 8 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-2:]) / 2 < losses[0] - 0.5, losses


def test_output_loads(short_build, tiny_qwen3_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = short_build.out_dir
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja"):
        assert (out / name).is_file(), name
    model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir)
    assert model.config.model_type == "qwen3" and model.dtype == torch.float32
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert model.generation_config.eos_token_id == [151645, 151643]
    changed = not torch.equal(model.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)
    assert changed
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["<tool_call>"], return_tensors="pt")
    generated = model.generate(**batch, max_new_tokens=2, do_sample=False)
    assert generated.shape == (1, batch["input_ids"].shape[1] + 2) or generated[0, -1].item() in (151645, 151643)
