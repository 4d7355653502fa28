"""ToolRL's reward (arXiv 2504.13958) as ResT runs it: R = S_format + S_correctness, with a step schedule.

Ranges (schedule off): S_format in {0, 1}, S_correctness in [-3, 3], 0 when the ground truth has no call.
Schedule at step s (from 1), as the official code: format's range shrinks, correctness's grows:
    max_f = max(1, 2 - s/150)    min_f = min(-1, -2 + s/75)
    max_c = min(3, 2 + s/150)    min_c = max(-3, -2 - s/150)
Poster variant (`toolrl_poster`): R = beta_a * S_acc * (1 - nu) + beta_f * S_format * nu, with the unscheduled
scores; its direction in nu is the poster's (format weight grows), which disagrees with the code.
All functions are pure and never raise on any response text (a malformed ground truth raises ValueError).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from rest.registry import Registry
from rest.tooluse.parsing import ToolCall, parse_tool_calls

# fn(solution, ground_truth, step, progress, **options) -> dict(format, correctness, total)
REWARDS: Registry = Registry("reward")


@dataclass(frozen=True)
class ScoreRange:
    max_format: float = 1.0
    min_format: float = 0.0
    max_correct: float = 3.0
    min_correct: float = -3.0


def schedule_range(step: int) -> ScoreRange:
    s = float(step)
    return ScoreRange(
        max_format=max(1.0, 2.0 - s / 150.0),  # max_f
        min_format=min(-1.0, -2.0 + s / 75.0),  # min_f
        max_correct=min(3.0, 2.0 + s / 150.0),  # max_c
        min_correct=max(-3.0, -2.0 - s / 150.0),  # min_c
    )


def extract_answer(solution: str) -> str:
    """The assistant's turn: text after the last `<|im_start|>assistant`, before `<|im_end|>`, stripped."""
    text = solution.split("<|im_start|>assistant")[-1]
    text = text.split("<|im_end|>")[0].split("<|endoftext|>")[0]
    return text.strip()


_FORMAT_PATTERNS = {  # (gt has tool_call, gt has response) -> full-match pattern
    (True, False): re.compile(r"<think>.*?</think>\n<tool_call>\n.*?\n</tool_call>", re.DOTALL),
    (False, True): re.compile(r"<think>.*?</think>\n<response>.*?</response>", re.DOTALL),
    (True, True): re.compile(r"<think>.*?</think>\n<tool_call>\n.*?\n</tool_call>\n<response>.*?</response>", re.DOTALL),
    (False, False): re.compile(r"<think>.*?</think>", re.DOTALL),
}


def format_ok(response: str, ground_truth: str) -> bool:
    """Tags the ground truth needs, in order, `<tool_call>`/`<response>` each exactly once."""
    need = ("<tool_call>" in ground_truth, "<response>" in ground_truth)
    if not _FORMAT_PATTERNS[need].fullmatch(response):
        return False
    once = [t for t, needed in zip(("tool_call", "response"), need) if needed]
    if not any(need):
        once = ["think"]
    return all(response.count(f"<{t}>") == 1 and response.count(f"</{t}>") == 1 for t in once)


def multiset_jaccard(a: list, b: list) -> float:
    """J(a, b) = |a ∩ b| / |a ∪ b| over multisets; 1 if both empty."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    ca, cb = Counter(a), Counter(b)
    inter = sum((ca & cb).values())
    return inter / (len(a) + len(b) - inter)


def _key(call: ToolCall):
    return call.name, call.parameters


def tool_match_score(gt: list[ToolCall], pred: list[ToolCall]) -> tuple[float, float]:
    """(score, S_max): J(names) + per GT call the best unused same-name prediction's
    J(param keys) + #equal values; S_max = 1 + sum_g (1 + |params_g|)."""
    score = multiset_jaccard([c.name for c in gt], [c.name for c in pred])
    s_max = 1.0
    used: set[int] = set()
    for g in gt:
        s_max += 1.0 + len(g.parameters)
        best, best_i = 0.0, -1
        for i, p in enumerate(pred):
            if i in used or p.name != g.name:
                continue
            s = multiset_jaccard(list(g.parameters), list(p.parameters))
            s += sum(1.0 for k, v in g.parameters.items() if k in p.parameters and _equal(p.parameters[k], v))
            if s > best:
                best, best_i = s, i
        if best_i >= 0:
            used.add(best_i)
            score += best
    return score, s_max


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - exotic values compare unequal
        return False


def _block(text: str, tag: str) -> str | None:
    if f"<{tag}>" not in text or f"</{tag}>" not in text:
        return None
    return text.split(f"<{tag}>", 1)[1].split(f"</{tag}>", 1)[0]


def correctness_score(response: str, ground_truth: str, rng: ScoreRange) -> float:
    """S_c = (max_c - min_c) * score / S_max + min_c; max_c on an exact list match; min_c on parse failure."""
    gt_block = _block(ground_truth, "tool_call")
    if gt_block is None:
        return 0.0
    gt_calls, gt_errors = parse_tool_calls(gt_block)
    if gt_errors:
        raise ValueError(f"malformed ground-truth tool calls: {gt_errors}")
    block = _block(response, "tool_call")
    if block is None:
        return rng.min_correct
    pred, errors = parse_tool_calls(block)
    if errors or not pred:
        return rng.min_correct
    if [_key(c) for c in gt_calls] == [_key(c) for c in pred]:
        return rng.max_correct
    score, s_max = tool_match_score(gt_calls, pred)
    return (rng.max_correct - rng.min_correct) * score / s_max + rng.min_correct


def _scores(solution: str, ground_truth: str, rng: ScoreRange) -> tuple[float, float]:
    response = extract_answer(solution)
    fmt = rng.max_format if format_ok(response, ground_truth) else rng.min_format
    return fmt, correctness_score(response, ground_truth, rng)


def compute_score(solution: str, ground_truth: str, step: int, schedule: bool = True) -> dict:
    """ToolRL reward: dict(format, correctness, total) as floats; `step` counts from 1."""
    fmt, corr = _scores(solution, ground_truth, schedule_range(step) if schedule else ScoreRange())
    return {"format": float(fmt), "correctness": float(corr), "total": float(fmt + corr)}


@REWARDS.register("toolrl")
def toolrl_reward(solution: str, ground_truth: str, step: int, progress: float, *, schedule: bool = True) -> dict:
    return compute_score(solution, ground_truth, step, schedule=schedule)


@REWARDS.register("toolrl_poster")
def toolrl_poster_reward(
    solution: str, ground_truth: str, step: int, progress: float, *, beta_accuracy: float = 1.0, beta_format: float = 1.0
) -> dict:
    nu = min(max(float(progress), 0.0), 1.0)
    s_format, s_acc = _scores(solution, ground_truth, ScoreRange())
    fmt = beta_format * s_format * nu  # beta_f * S_format * nu
    corr = beta_accuracy * s_acc * (1.0 - nu)  # beta_a * S_acc * (1 - nu)
    return {"format": fmt, "correctness": corr, "total": fmt + corr}


def build_reward_fn(cfg) -> Callable[[str, str, int, float], dict]:
    """fn(solution, ground_truth, step, progress) for a RewardConfig (rest.algo.config)."""
    fn = REWARDS.get(cfg.name)
    if cfg.name == "toolrl":
        return lambda sol, gt, step, progress: fn(sol, gt, step, progress, schedule=cfg.schedule)
    if cfg.name == "toolrl_poster":
        return lambda sol, gt, step, progress: fn(
            sol, gt, step, progress, beta_accuracy=cfg.beta_accuracy, beta_format=cfg.beta_format
        )
    return lambda sol, gt, step, progress: fn(sol, gt, step, progress)
