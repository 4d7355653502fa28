"""Held-out metrics of the training task that mean the same at every step and for any checkpoint.

The training reward's ranges move with the step (ToolRL's schedule), so its mean cannot show whether a model
improved. These metrics are fixed definitions, computed on the greedy answer to each held-out item:

- `exact_match`: the decoded calls equal the gold calls as a multiset of (name, arguments); for an item whose
  gold answer has no call: no call and a non-empty response (`<response> .. </response>` in the ToolRL format,
  plain text outside `<think>`/`<tool_call>` in the Hermes format). A `<tool_call>` line that does not decode,
  or an unclosed `<tool_call>`, makes the item wrong (the model failed to write the call it meant).
- `format_ok`: ToolRL's format check (the tags the gold answer needs, in order, each once), as the reward's
  S_format uses it.
- `name_match`: the multiset of called names equals the gold one (calling `get_weather` once where the gold
  calls it for two cities is wrong); for a no-call item: no call.
- `malformed`: some `<tool_call>` line did not decode, or a `<tool_call>` is not closed.
- `reward_unscheduled`: ToolRL's R = S_format + S_correctness with the schedule off (S_format in {0, 1},
  S_correctness in [-3, 3], so R in [-3, 4]), whatever reward the run trains with: for reference only.

Argument values compare as ToolRL's reward compares them: Python `==` on the values `json.loads` gives, so
5 == 5.0 and true == 1, but 5 != "5" and "Paris" != "paris". Calls are counted through a canonical JSON key
that is equal exactly when the values are `==` (integral floats and booleans become integers, objects sort
their keys).

Every metric is also split by item kind, `no_call` / `one_call` / `multi_call` (gold call count 0 / 1 / 2+),
each with its item count `n/<kind>`; a kind with no items reports its count (0) and no rates.

`pass_at_k`: from n >= k responses sampled per item, the unbiased estimator of Chen et al. 2021 (HumanEval):
pass@k = E_items[1 - C(n - c, k) / C(n, k)], c = exact matches among the n samples.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from rest.data.example import ground_truth_calls
from rest.tooluse.calls import Call, decode_calls as decode_tool_calls
from rest.tooluse.reward import compute_score, extract_answer, toolrl_format_ok

KINDS = ("no_call", "one_call", "multi_call")
RATES = ("exact_match", "format_ok", "name_match", "malformed")
PREFIX = "val/task"

_RESPONSE = re.compile(r"<response>(.*?)</response>", re.DOTALL)
_BLOCKS = re.compile(r"<(think|tool_call)>.*?</\1>", re.DOTALL)


def decode_calls(text: str, prompt_format: str) -> tuple[list[Call], int]:
    """(calls, number of call lines that did not decode): the one place this module reads tool calls.

    ToolRL format: the last `<tool_call>` block (ToolRL/ResT's parser); Hermes: every block."""
    calls, errors = decode_tool_calls(text, blocks="last" if prompt_format == "toolrl" else "all")
    return [c for c in calls if c.name != "None"], len(errors)  # "None": ToolRL's written-out "no call"


def _canonical(value: Any) -> Any:
    """A JSON value whose dump is equal for two values exactly when they are `==` (Python semantics)."""
    if isinstance(value, bool):
        return int(value)  # True == 1
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 5.0 == 5
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def call_key(call: Call) -> tuple[str, str]:
    """(name, canonical JSON of the arguments): calls are equal exactly when their keys are."""
    return call.name, json.dumps(_canonical(call.kwargs), sort_keys=True, ensure_ascii=False)


def item_kind(n_gold_calls: int) -> str:
    return KINDS[min(n_gold_calls, 2)]


def _has_response(answer: str, prompt_format: str) -> bool:
    if prompt_format == "toolrl":
        return any(r.strip() for r in _RESPONSE.findall(answer))
    return bool(_BLOCKS.sub("", answer).replace("</think>", "").strip())


@dataclass(frozen=True)
class ItemScore:
    kind: str  # no_call | one_call | multi_call
    exact_match: bool
    format_ok: bool
    name_match: bool
    malformed: bool
    reward_unscheduled: float


def score_item(response: str, ground_truth: str, prompt_format: str = "toolrl") -> ItemScore:
    """One answer against its ground truth (ToolRL text); never raises on any response text."""
    gold = ground_truth_calls(ground_truth)
    answer = extract_answer(response)
    pred, n_failed = decode_calls(answer, prompt_format)
    malformed = n_failed > 0 or answer.count("<tool_call>") != answer.count("</tool_call>")
    names_equal = Counter(c.name for c in pred) == Counter(c.name for c in gold)
    if gold:
        exact = not malformed and Counter(map(call_key, pred)) == Counter(map(call_key, gold))
    else:
        exact = not malformed and not pred and _has_response(answer, prompt_format)
    return ItemScore(
        kind=item_kind(len(gold)), exact_match=exact, format_ok=toolrl_format_ok(answer, ground_truth),
        name_match=names_equal, malformed=malformed,
        reward_unscheduled=compute_score(response, ground_truth, step=0, schedule=False)["total"],
    )


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def aggregate(scores: Sequence[ItemScore], prefix: str = PREFIX) -> dict[str, float]:
    """Means over all items and per kind (`<prefix>/<metric>/<kind>`), with counts `<prefix>/n[/<kind>]`."""
    if not scores:
        return {}
    out: dict[str, float] = {f"{prefix}/n": len(scores)}
    for rate in RATES:
        out[f"{prefix}/{rate}"] = _mean([float(getattr(s, rate)) for s in scores])
    out[f"{prefix}/reward_unscheduled"] = _mean([s.reward_unscheduled for s in scores])
    for kind in KINDS:
        of_kind = [s for s in scores if s.kind == kind]
        out[f"{prefix}/n/{kind}"] = len(of_kind)
        if of_kind:
            for rate in RATES:
                out[f"{prefix}/{rate}/{kind}"] = _mean([float(getattr(s, rate)) for s in of_kind])
    return out


def task_metrics(pairs: Iterable[tuple[str, str]], prompt_format: str = "toolrl",
                 prefix: str = PREFIX) -> dict[str, float]:
    """[(response text, ground truth)] -> metric dict (see the module docstring); {} for no items."""
    return aggregate([score_item(r, gt, prompt_format) for r, gt in pairs], prefix)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one item from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_k_metrics(samples: Sequence[Sequence[str]], ground_truths: Sequence[str], k: int,
                      prompt_format: str = "toolrl", prefix: str = PREFIX) -> dict[str, float]:
    """samples[i]: n sampled responses to item i (the same n for every item). -> `<prefix>/pass_at_<k>` (and
    per kind), and `<prefix>/sample_exact_match`: the mean exact match of single samples (pass@1 at the
    sampling temperature)."""
    if len(samples) != len(ground_truths):
        raise ValueError(f"{len(samples)} sample lists for {len(ground_truths)} ground truths")
    if not samples:
        return {}
    per_item = []  # (kind, n, c)
    for responses, gt in zip(samples, ground_truths):
        scores = [score_item(r, gt, prompt_format) for r in responses]
        kind = scores[0].kind if scores else item_kind(len(ground_truth_calls(gt)))
        per_item.append((kind, len(responses), sum(s.exact_match for s in scores)))
    out = {f"{prefix}/pass_at_{k}": _mean([pass_at_k(n, c, k) for _, n, c in per_item]),
           f"{prefix}/sample_exact_match": _mean([c / n for _, n, c in per_item])}
    for kind in KINDS:
        of_kind = [pass_at_k(n, c, k) for kd, n, c in per_item if kd == kind]
        if of_kind:
            out[f"{prefix}/pass_at_{k}/{kind}"] = _mean(of_kind)
    return out


def paired_bootstrap_ci(before: Sequence[float], after: Sequence[float], resamples: int = 10_000,
                        level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(mean gain, low, high): the gain mean(after) - mean(before) over the same items, and its percentile
    bootstrap interval from resampling items with replacement (paired: an item keeps both of its scores)."""
    if len(before) != len(after) or not before:
        raise ValueError(f"paired scores need equal, non-zero lengths, got {len(before)} and {len(after)}")
    import numpy as np

    diffs = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    index = np.random.default_rng(seed).integers(0, len(diffs), size=(resamples, len(diffs)))
    low, high = np.quantile(diffs[index].mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return float(diffs.mean()), float(low), float(high)


def summary_line(metrics: dict[str, float], step: int | None = None, prefix: str = PREFIX) -> str | None:
    """The console line people read: `val step 30: exact_match 0.543 (no_call 1.000 n=64, ...) | ...`;
    None when `metrics` has no task metrics."""
    if f"{prefix}/exact_match" not in metrics:
        return None
    kinds = ", ".join(
        f"{kind} {metrics[f'{prefix}/exact_match/{kind}']:.3f} n={int(metrics[f'{prefix}/n/{kind}'])}"
        for kind in KINDS if f"{prefix}/exact_match/{kind}" in metrics)
    parts = [f"exact_match {metrics[f'{prefix}/exact_match']:.3f} ({kinds})"]
    parts += [f"{name} {metrics[f'{prefix}/{name}']:.3f}" for name in ("format_ok", "name_match")]
    parts.append(f"reward_unscheduled {metrics[f'{prefix}/reward_unscheduled']:.3f}")
    parts += [f"{key[len(prefix) + 1:]} {value:.3f}" for key, value in metrics.items()
              if key.startswith(f"{prefix}/pass_at_") and key.count("/") == prefix.count("/") + 1]
    head = "held-out" if step is None else f"val step {step}"
    return f"{head}: n={int(metrics[f'{prefix}/n'])} " + " | ".join(parts)


def evaluate_task(backend, data, limit: int | None = None) -> tuple[dict[str, float], list]:
    """Greedy answers of `backend` (rest.eval.backends) to the held-out split of `data` (a DataConfig: the
    split the trainer validates on when the data settings match) -> (metrics as `aggregate` names them,
    exact-match CategoryScores: overall then per kind, with the first few failures for reading)."""
    from rest.data import load_examples
    from rest.eval.report import CategoryScore

    _, val, _ = load_examples(data)
    val = val[:limit]
    tools = [ex.tools if data.prompt_format == "hermes" else None for ex in val]
    texts = backend.generate([ex.messages for ex in val], tools, [ex.ground_truth for ex in val])
    scores = [score_item(text, ex.ground_truth, data.prompt_format) for text, ex in zip(texts, val)]
    categories = {name: CategoryScore(name) for name in ("overall", *KINDS)}
    for item, text, ex in zip(scores, texts, val):
        for name in ("overall", item.kind):
            categories[name].total += 1
            categories[name].correct += item.exact_match
            if not item.exact_match and len(categories[name].errors) < 5:
                categories[name].errors.append({"uid": ex.uid, "gold": ex.ground_truth, "output": text[-500:]})
    return aggregate(scores), list(categories.values())
