"""ToolRL's reward R = S_format + S_correctness, in the two published versions (METHOD.md section 3).

`variant` names the file a score reproduces, behaviour for behaviour:
- "toolrl": ToolRL's `verl/utils/reward_score/rlla.py` (qiancheng0/ToolRL). Format: anchored regexes, exact
  newlines between the blocks, nothing outside them.
- "rest": ResT's copy of that file (1229095296/ResT_Tool_use_LLM). Format: the needed tags present, their
  first occurrences in order, `<tool_call>`/`<response>` counted once (`<think>` once when the ground truth
  has neither); text between or around the blocks is free. ResT's `train_ResT.sh` runs it with
  SCHEDULEREWARD=1 (the step schedule below); ToolRL's `train_grpo.sh` with SCHEDULEREWARD=0.
Correctness is the same code in both files, reproduced with its quirks (each named where it is decided):
(a) the `<tool_call>` block is stripped and split at "\\n", every line must be JSON: a blank line between
    calls is a parse failure -> min_c; (b) a JSON object that is not a usable call (no string "name", or no
    object "parameters") does not fail the answer by itself: it counts in the name Jaccard and matches no
    ground-truth call, unless its name equals a ground-truth name (their code then reads its "parameters"
    and the exception gives min_c), and an object without a hashable "name" gives min_c (their name list /
    Counter raises); (c) the answer is cut at `<|im_end|>` only, so `<|endoftext|>` stays in it (and breaks
    ToolRL's anchored format regex); (d) the block is `split("<tool_call>")[1].split("</tool_call>")[0]`, so a
    second `<tool_call>` opening before `</tool_call>` ends the block there.
Both read only the "parameters" key; `accept_arguments_key=True` also reads Hermes' "arguments" (our
extension for data.prompt_format=hermes, not in either file).

Ranges (schedule off): S_format in {0, 1}, S_correctness in [-3, 3], 0 when the ground truth has no call.
Schedule at step s (from 1), in the files' arithmetic: format's range shrinks, correctness's grows:
    max_f = max(1, 2 - (2 - 1) s/150)    min_f = min(-1, -2 + (2 + 0) s/150)
    max_c = min(3, (3 - 2) s/150 + 2)    min_c = max(-3, (-3 + 2) s/150 - 2)
Poster formula (`toolrl_poster`): R = beta_a * S_acc * (1 - nu) + beta_f * S_format * nu, with the unscheduled
scores; its direction in nu is the poster's (format weight grows), which disagrees with the code.
All functions are pure and never raise on any response text (a malformed ground truth raises ValueError).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from rest.registry import Registry
from rest.tooluse.calls import ARGUMENT_KEYS, Call, CallLine, decode

# fn(solution, ground_truth, step, progress, **options) -> dict(format, correctness, total)
REWARDS: Registry = Registry("reward")
VARIANTS = ("rest", "toolrl")


@dataclass(frozen=True)
class ScoreRange:
    max_format: float = 1.0
    min_format: float = 0.0
    max_correct: float = 3.0
    min_correct: float = -3.0


def schedule_range(step: int) -> ScoreRange:
    """SCHEDULEREWARD=1 of both files, written in their order of operations (so the floats are theirs)."""
    base = ScoreRange()
    return ScoreRange(
        max_format=max(1.0, 2 - (2 - base.max_format) * step / 150),  # max_f
        min_format=min(-1.0, -2 + (2 + base.min_format) * step / 150),  # min_f
        max_correct=min(3.0, (base.max_correct - 2) * step / 150 + 2),  # max_c
        min_correct=max(-3.0, (base.min_correct + 2) * step / 150 - 2),  # min_c
    )


def extract_answer(solution: str) -> str:
    """The assistant's turn: after the last `<|im_start|>assistant`, before the first `<|im_end|>`, stripped.
    Only `<|im_end|>` ends it, as in both files (quirk (c): `<|endoftext|>` stays in the answer)."""
    return solution.split("<|im_start|>assistant")[-1].split("<|im_end|>")[0].strip()


# ---------------------------------------------------------------------------------------------- format

_TOOLRL_FORMAT = {  # (gt has tool_call, gt has response) -> (anchored pattern, tags that must occur once)
    (True, False): (r"^<think>.*?</think>\n<tool_call>\n.*?\n</tool_call>$", ("tool_call",)),
    (False, True): (r"^<think>.*?</think>\n<response>.*?</response>$", ("response",)),
    (True, True): (r"^<think>.*?</think>\n<tool_call>\n.*?\n</tool_call>\n<response>.*?</response>$",
                   ("tool_call", "response")),
    (False, False): (r"^<think>.*?</think>$", ()),  # no count check in their code for this case
}


def _once(text: str, kind: str) -> bool:
    return text.count(f"<{kind}>") == 1 and text.count(f"</{kind}>") == 1


def toolrl_format_ok(response: str, ground_truth: str) -> bool:
    """ToolRL: `re.search` of the anchored pattern (DOTALL) and the needed tags once each."""
    pattern, once = _TOOLRL_FORMAT[("<tool_call>" in ground_truth, "<response>" in ground_truth)]
    return re.search(pattern, response, re.DOTALL) is not None and all(_once(response, k) for k in once)


def rest_format_ok(response: str, ground_truth: str) -> bool:
    """ResT: the needed tags present and the first occurrences in order (str.find), `<tool_call>` and
    `<response>` once each; no `<response>` at all when the ground truth has only calls; `<think>` once
    (order not checked) when the ground truth has neither."""
    text = response.strip()
    has_call, has_resp = "<tool_call>" in ground_truth, "<response>" in ground_truth
    if not has_call and not has_resp:
        return _once(text, "think")
    kinds = ["think"] + (["tool_call"] if has_call else []) + (["response"] if has_resp else [])
    tags = [t for k in kinds for t in (f"<{k}>", f"</{k}>")]
    if not all(t in text for t in tags):
        return False
    if has_call and not has_resp and ("<response>" in text or "</response>" in text):
        return False
    positions = [text.find(t) for t in tags]
    in_order = all(a < b for a, b in zip(positions, positions[1:]))
    return in_order and all(_once(text, k) for k in kinds[1:])


FORMAT_CHECKS = {"toolrl": toolrl_format_ok, "rest": rest_format_ok}


# ------------------------------------------------------------------------------------------ correctness

def multiset_jaccard(a: list, b: list) -> float:
    """J(a, b) = |a ∩ b| / |a ∪ b| over multisets; 1 if a == b (both empty included), 0 if one is empty.
    Raises TypeError on an unhashable element, as their `Counter` does."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    ca, cb = Counter(a), Counter(b)
    inter = sum(min(ca[k], cb[k]) for k in ca.keys() & cb.keys())
    return inter / (len(a) + len(b) - inter)


def tool_match_score(gt: list[Call], pred: list[Call], pred_names: list | None = None) -> tuple[float, float]:
    """(score, S_max): J(names) + per GT call the best unused same-name prediction's
    J(param keys) + #equal values (first best wins, only a positive score is taken);
    S_max = 1 + sum_g (1 + |params_g|). `pred_names` (default: the names of `pred`) is the name list the
    Jaccard sees, which in ToolRL's code includes lines that are not usable calls (quirk (b))."""
    names = [c.name for c in pred] if pred_names is None else pred_names
    score = multiset_jaccard([c.name for c in gt], names)
    s_max = 1.0
    used: set[int] = set()
    for g in gt:
        s_max += 1.0 + len(g.kwargs)
        best, best_i = 0.0, -1
        for i, p in enumerate(pred):
            if i in used or p.name != g.name:
                continue
            s = multiset_jaccard(list(g.kwargs.keys()), list(p.kwargs.keys()))
            s = s + sum(1.0 for k, v in g.kwargs.items() if k in p.kwargs and p.kwargs[k] == v)
            if s > best:
                best, best_i = s, i
        if best_i >= 0:
            used.add(best_i)
            score += best
    return score, s_max


def ground_truth_lines(ground_truth: str) -> list[CallLine]:
    """The ground truth's calls as their code reads them; raises ValueError when a line is not a call."""
    decoded = decode(ground_truth, blocks="toolrl", skip_blank_lines=False, argument_keys=("parameters",))
    if not decoded.found or decoded.errors:
        raise ValueError(f"malformed ground-truth tool calls: {decoded.errors or 'no closed <tool_call> block'}")
    return decoded.lines


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def correctness_score(response: str, ground_truth: str, rng: ScoreRange, accept_arguments_key: bool = False) -> float:
    """S_c = (max_c - min_c) * score / S_max + min_c; max_c when the decoded objects equal the ground
    truth's; min_c when a tag is missing or a line fails (quirks (a), (b), (d) in the module docstring)."""
    if "<tool_call>" not in ground_truth:
        return 0.0
    gt_lines = ground_truth_lines(ground_truth)
    keys = ARGUMENT_KEYS if accept_arguments_key else ("parameters",)
    pred = decode(response, blocks="toolrl", skip_blank_lines=False, argument_keys=keys)
    if not pred.found or not all(line.is_json for line in pred.lines):  # (a): a blank line is not JSON
        return rng.min_correct
    if [line.value for line in pred.lines] == [line.value for line in gt_lines]:  # their `gt_tools == pd_tools`
        return rng.max_correct
    # (b): every line must be an object with a hashable "name" (their name list and Counter raise otherwise)
    if not all(isinstance(line.value, dict) and "name" in line.value and _hashable(line.value["name"])
               for line in pred.lines):
        return rng.min_correct
    gt = [line.call for line in gt_lines]
    gt_names = {g.name for g in gt}
    # (b): a line that is no usable call matches nothing, but its "parameters" are read (and raise) when
    # its name is a ground-truth name
    if any(line.call is None and line.value["name"] in gt_names for line in pred.lines):
        return rng.min_correct
    score, s_max = tool_match_score(gt, pred.calls, [line.value["name"] for line in pred.lines])
    return (rng.max_correct - rng.min_correct) * score / s_max + rng.min_correct


def _scores(solution: str, ground_truth: str, rng: ScoreRange, variant: str, accept_arguments_key: bool
            ) -> tuple[float, float]:
    if variant not in FORMAT_CHECKS:
        raise ValueError(f"reward variant must be one of {VARIANTS}, got {variant!r}")
    response = extract_answer(solution)
    fmt = rng.max_format if FORMAT_CHECKS[variant](response, ground_truth) else rng.min_format
    return fmt, correctness_score(response, ground_truth, rng, accept_arguments_key)


def compute_score(solution: str, ground_truth: str, step: int, schedule: bool = True, variant: str = "toolrl",
                  accept_arguments_key: bool = False) -> dict:
    """The published reward: dict(format, correctness, total) as floats; `step` counts from 1."""
    fmt, corr = _scores(solution, ground_truth, schedule_range(step) if schedule else ScoreRange(), variant,
                        accept_arguments_key)
    return {"format": float(fmt), "correctness": float(corr), "total": float(fmt + corr)}


@REWARDS.register("toolrl")
def toolrl_reward(solution: str, ground_truth: str, step: int, progress: float, *, schedule: bool = True,
                  variant: str = "rest", accept_arguments_key: bool = False) -> dict:
    return compute_score(solution, ground_truth, step, schedule=schedule, variant=variant,
                         accept_arguments_key=accept_arguments_key)


@REWARDS.register("toolrl_poster")
def toolrl_poster_reward(
    solution: str, ground_truth: str, step: int, progress: float, *, beta_accuracy: float = 1.0,
    beta_format: float = 1.0, variant: str = "rest", accept_arguments_key: bool = False,
) -> dict:
    nu = min(max(float(progress), 0.0), 1.0)
    s_format, s_acc = _scores(solution, ground_truth, ScoreRange(), variant, accept_arguments_key)
    fmt = beta_format * s_format * nu  # beta_f * S_format * nu
    corr = beta_accuracy * s_acc * (1.0 - nu)  # beta_a * S_acc * (1 - nu)
    return {"format": fmt, "correctness": corr, "total": fmt + corr}


def build_reward_fn(cfg) -> Callable[[str, str, int, float], dict]:
    """fn(solution, ground_truth, step, progress) for a RewardConfig (rest.algo.config)."""
    fn = REWARDS.get(cfg.name)
    common = {"variant": cfg.variant, "accept_arguments_key": cfg.accept_arguments_key}
    if cfg.name == "toolrl":
        return lambda sol, gt, step, progress: fn(sol, gt, step, progress, schedule=cfg.schedule, **common)
    if cfg.name == "toolrl_poster":
        return lambda sol, gt, step, progress: fn(
            sol, gt, step, progress, beta_accuracy=cfg.beta_accuracy, beta_format=cfg.beta_format, **common
        )
    return lambda sol, gt, step, progress: fn(sol, gt, step, progress)
