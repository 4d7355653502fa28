"""API-Bank as ToolRL/ResT score it: the processed level-1/2/3 files, prompts used as given.

An item is correct when ANY predicted call (last `<tool_call>` block; every block for Hermes output) has
exactly the gold name and exactly the gold parameter dict. Per-level accuracy and the micro average.
The prompts are ToolRL-format text in the files, so a Hermes model gets them as they are (as in the paper).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from rest.eval.backends import Backend
from rest.eval.formats import decode_calls
from rest.eval.report import CategoryScore, micro_average
from rest.tooluse.calls import Call, call_from_object, render_tool_call_block

LEVELS = ("level-1", "level-2", "level-3")


def load_level(data_dir: str | Path, level: str, limit: Optional[int] = None) -> list[dict]:
    path = Path(data_dir) / f"{level}-api_processed.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pass the folder holding ToolRL's processed API-Bank files")
    items = json.loads(path.read_text())
    return items[:limit] if limit is not None else items


def gold_calls(item: dict) -> list[Call]:
    """The gold calls of an item, read by the decoder's rule; raises ValueError naming a malformed one."""
    answer = item["answer"]
    calls = []
    for a in answer if isinstance(answer, list) else [answer]:
        call, error = call_from_object(a)
        if call is None:
            raise ValueError(f"API-Bank item {item.get('other', '')!r}: gold call {a!r}: {error}")
        calls.append(call)
    return calls


def is_correct(prediction: str, gold: list[Call], prompt_format: str) -> bool:
    predicted = decode_calls(prediction, prompt_format)
    return any(p.name == g.name and p.kwargs == g.kwargs for p in predicted for g in gold)


def evaluate_apibank(backend: Backend, data_dir: str | Path, prompt_format: str = "toolrl",
                     limit: Optional[int] = None) -> list[CategoryScore]:
    """Scores per level, then "overall" (micro average)."""
    scores = []
    for level in LEVELS:
        items = load_level(data_dir, level, limit)
        prompts = [[{"role": "system", "content": it["system"]}, {"role": "user", "content": it["user"]}] for it in items]
        golds = [gold_calls(it) for it in items]
        outputs = backend.generate(prompts, None, [render_tool_call_block(g) for g in golds])
        score = CategoryScore(level, total=len(items))
        for it, gold, out in zip(items, golds, outputs):
            if is_correct(out, gold, prompt_format):
                score.correct += 1
            elif len(score.errors) < 5:
                score.errors.append({"other": it.get("other"), "gold": [g.__dict__ for g in gold], "output": out[-500:]})
        scores.append(score)
    return scores + [micro_average(scores)]
