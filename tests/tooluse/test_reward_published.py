"""Our two reward variants against the published files themselves, on mutated responses over real ToolRL
ground truths: every score must be equal as floats (==), not approximately.

Opt-in (their code is not in this repository): REST_RLLA_TOOLRL and REST_RLLA_REST name local copies of
`verl/utils/reward_score/rlla.py` from qiancheng0/ToolRL and 1229095296/ResT_Tool_use_LLM, and REST_TEST_DATA
the shared data folder (toolrl/test.parquet, toolrl/rlla_sft.json). Skipped when any is unset."""

import contextlib
import importlib.util
import io
import json
import os
import random
from pathlib import Path

import pytest

from rest.data.example import normalize_ground_truth
from rest.tooluse.reward import compute_score

N_CASES = 4_000


def _published(env: str):
    path = os.environ.get(env)
    if not path or not Path(path).is_file():
        pytest.skip(f"{env} is not set to a copy of the published rlla.py")
    spec = importlib.util.spec_from_file_location(f"published_{env.lower()}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _calls(gt: str) -> list:
    """The ground truth's call objects as both files read them (raises where their training would crash)."""
    if "<tool_call>" not in gt:
        return []
    return [json.loads(line) for line in gt.split("<tool_call>")[1].split("</tool_call>")[0].strip().split("\n")]


def _ground_truths(shared_data: Path) -> list[str]:
    pd = pytest.importorskip("pandas")
    raw = [r["ground_truth"] for r in pd.read_parquet(shared_data / "toolrl" / "test.parquet")["reward_model"]]
    raw += [d["output"] for d in json.loads((shared_data / "toolrl" / "rlla_sft.json").read_text())]
    out = []
    for gt in raw + [normalize_ground_truth(g) for g in raw]:
        with contextlib.suppress(ValueError):
            _calls(gt)
            out.append(gt)
    return out


def _mutate_call(rng: random.Random, call: dict):
    call = json.loads(json.dumps(call))
    params = call.get("parameters", {})
    kind = rng.randrange(13)
    if kind == 0 and params:
        params[rng.choice(list(params))] = rng.choice(["x", 1, 1.0, True, None, [1], {"a": 1}, float("nan")])
    elif kind == 1 and params:
        params.pop(rng.choice(list(params)))
    elif kind == 2:
        params["extra"] = "v"
    elif kind == 3:
        call["name"] = str(call.get("name")) + "_x"
    elif kind == 4:
        call["arguments"] = call.pop("parameters", {})
    elif kind == 5:
        call.pop("parameters", None)
    elif kind == 6:
        call["parameters"] = rng.choice(["s", [1], 3, None])
    elif kind == 7:
        call["name"] = rng.choice([None, 5, ["l"], {"d": 1}, True, 1.5])
    elif kind == 8:
        call.pop("name", None)
    elif kind == 9:
        call["id"] = 1
    elif kind == 10:
        return rng.choice([[call], "str", 3, None])
    elif kind == 11 and params:
        call["parameters"] = dict(reversed(list(params.items())))
    return call


def _line(rng: random.Random, value) -> str:
    text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
    r = rng.random()
    if r < 0.05:
        return text[: rng.randrange(len(text) + 1)]
    if r < 0.1:
        return "  " + text + " \t"
    return json.dumps(value, indent=1) if r < 0.12 else text


def mutated_response(rng: random.Random, gt: str) -> str:
    calls = _calls(gt)
    values = [_mutate_call(rng, c) if rng.random() < 0.3 else c for c in calls]
    if calls and rng.random() < 0.2:
        values.append(rng.choice(calls))
    if values and rng.random() < 0.15:
        rng.shuffle(values)
    body = ("\n\n" if rng.random() < 0.1 else "\n").join(_line(rng, v) for v in values)  # (a)
    parts = [rng.choice(["<think> ok </think>", "<think>a\nb</think>", "", "<think>x", "x</think>",
                         "<think>a <tool_call> b</think>"])]
    if calls or rng.random() < 0.3:
        block = "<tool_call>" + rng.choice(["\n", "", " "]) + body + rng.choice(["\n", "", "\n\n"]) + "</tool_call>"
        r = rng.random()
        if r < 0.06:
            block = f"<tool_call>\n{body}\n<tool_call>\n{body}\n</tool_call>"  # (d)
        elif r < 0.1:
            block = block + "\n" + block
        elif r < 0.13:
            block = "<tool_call>\n" + body
        elif r < 0.15:
            block = "</tool_call>\n<tool_call>\n" + body
        parts.append(block)
    if "<response>" in gt or rng.random() < 0.2:
        parts.append(rng.choice(["<response> done </response>", "<response>x",
                                 "<response>a</response><response>b</response>"]))
    if rng.random() < 0.15:
        rng.shuffle(parts)
    text = rng.choice(["\n", "\n\n", " ", ""]).join(parts)
    r = rng.random()
    if r < 0.08:
        return text + "<|endoftext|>"  # (c)
    if r < 0.12:
        return text + "<|im_end|>trailing"
    if r < 0.16:
        return "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" + text + "<|im_end|>"
    return "prefix " + text if r < 0.2 else text


def test_variants_equal_the_published_files(shared_data, monkeypatch):
    published = {"toolrl": _published("REST_RLLA_TOOLRL"), "rest": _published("REST_RLLA_REST")}
    gts = _ground_truths(shared_data)
    monkeypatch.setenv("EXPERIMENT_NAME", "qwen3")  # their Qwen branch: cut at <|im_start|>assistant / <|im_end|>
    rng = random.Random(7)
    mismatches, format_differs = [], 0
    for _ in range(N_CASES):
        gt = rng.choice(gts)
        text = mutated_response(rng, gt)
        step, schedule = rng.choice([0, 1, 30, 75, 150, 151, 1000]), rng.random() < 0.6
        monkeypatch.setenv("SCHEDULEREWARD", "1" if schedule else "0")
        formats = []
        for variant, module in published.items():
            with contextlib.redirect_stdout(io.StringIO()):  # they print every score
                total, fmt, correctness, _length = module.compute_score(text, gt, step)
            ours = compute_score(text, gt, step, schedule=schedule, variant=variant)
            if (ours["total"], ours["format"], ours["correctness"]) != (total, fmt, correctness):
                mismatches.append((variant, step, schedule, text[:300], ours, (total, fmt, correctness)))
            formats.append(fmt)
        format_differs += formats[0] != formats[1]
    assert not mismatches, mismatches[:3]
    assert format_differs > N_CASES // 10  # the mutations do reach where the two format checks disagree
