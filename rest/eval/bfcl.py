"""BFCL evaluation: single-turn AST categories and the multi-turn categories, scored by BFCL's checkers.

Each run uses a fresh model name (BFCL's helpers key state by name) and fresh simulated instances per
entry. The oracle replays a ground truth that JSON can carry exactly; multi-turn entries whose ground truth
cannot be written that way are counted as not "expressible" (see `ground_truth_as_json_calls`), and so are
single-turn entries whose gold names a function the entry does not offer.

A backend answers None for a prompt longer than its context (the trainer's rollout workers leave such prompts
out of the engine call): the entry fails and is counted in `CategoryScore.prompt_overflow`. BFCL's multi-turn
prompts grow with every step (long_context ones past 70k tokens), so this is expected there, not an error.
"""

from __future__ import annotations

import uuid
from typing import Optional

from rest.data.prompts import toolrl_messages
from rest.eval.backends import Backend
from rest.eval.bfcl_data import CATEGORIES, MULTI_TURN, VERSIONS, checker_modules, load_category
from rest.eval.bfcl_multi_turn import EntryRun, SafeExecutor, run_entry, safe_checker, template_tools
from rest.eval.formats import decode_calls
from rest.eval.report import CategoryScore, micro_average
from rest.tooluse.calls import Call, render_tool_call_block


def _acceptable(options: list) -> bool:
    return any(o != "" for o in options)  # "" marks "may be omitted"


def _pick(options: list):
    """First value other than "" of a possible-answer option list; nested dicts hold option lists again."""
    value = next(o for o in options if o != "")
    if isinstance(value, dict):
        return {k: _pick(v) for k, v in value.items() if _acceptable(v)}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [{k: _pick(o) for k, o in v.items() if _acceptable(o)} for v in value]
    return value


def possible_answer_calls(ground_truth: list[dict], docs: Optional[list[dict]] = None) -> list[Call]:
    """One gold call per possible answer. A parameter that may be omitted ("" among its options) is left
    out when its first option is "" or the doc does not have it (parallel_multiple_12 and _26 list such
    parameters); a required one takes its first real value."""
    docs_by_name = {d["name"]: d.get("parameters", {}) for d in docs or []}

    def keep(name: str, param: str, opts: list) -> bool:
        doc = docs_by_name.get(name)
        if not _acceptable(opts) or (doc is not None and param in doc.get("required", [])):
            return _acceptable(opts)
        return opts[0] != "" and ("" not in opts or doc is None or param in doc.get("properties", {}))

    return [
        Call(name, {p: _pick(opts) for p, opts in params.items() if keep(name, p, opts)})
        for item in ground_truth
        for name, params in item.items()
    ]


def _single_turn_request(entry: dict, answer: dict, prompt_format: str):
    messages = entry["question"][0]
    calls = possible_answer_calls(answer["ground_truth"], entry["function"])
    reference = render_tool_call_block(calls) if calls else "<response> None of the functions apply. </response>"
    if prompt_format == "toolrl":
        records = [("user", m["content"]) for m in messages]
        return toolrl_messages(entry["function"], records), None, reference
    return [dict(m) for m in messages], template_tools(entry["function"]), reference


def evaluate_single_turn(backend: Backend, version, category: str, pairs, prompt_format: str, model_name: str):
    ast_mod, _, language, _ = checker_modules(version)
    requests = [_single_turn_request(e, a, prompt_format) for e, a in pairs]
    outputs = backend.generate([r[0] for r in requests], [r[1] for r in requests], [r[2] for r in requests])
    score = CategoryScore(category, total=len(pairs), expressible=0)
    for (entry, answer), text in zip(pairs, outputs):
        offered = [f["name"] for f in entry["function"]]
        # v3 has gold calls to names the docs do not offer (simple_363 wants `find_closest`, the doc says
        # `restaurant_search.find_closest`): no model can write those.
        expressible = all(c.name in offered for c in possible_answer_calls(answer["ground_truth"]))
        score.expressible += expressible
        if text is None:
            score.prompt_overflow += 1
            if len(score.errors) < 5:
                score.errors.append({"id": entry["id"], "expressible": expressible, "error": "prompt_overflow"})
            continue
        calls = decode_calls(text, prompt_format, offered)
        if category == "irrelevance":
            result = {"valid": not calls, "error": "made a call"}
        elif not calls:
            result = {"valid": False, "error": "no call decoded"}
        else:
            decoded = [{c.name: c.kwargs} for c in calls]
            result = ast_mod.ast_checker(entry["function"], decoded, answer["ground_truth"], language,
                                         version.file_category(category), model_name)
        if result["valid"]:
            score.correct += 1
        elif len(score.errors) < 5:
            score.errors.append({"id": entry["id"], "expressible": expressible, "error": result.get("error"),
                                 "output": text[-500:]})
    return score


def evaluate_multi_turn(backend: Backend, version, category: str, pairs, prompt_format: str, model_name: str):
    _, mt_mod, _, class_paths = checker_modules(version)
    executors = [SafeExecutor(class_paths) for _ in pairs]  # fresh instances per entry
    dialogues = [run_entry(e, a, prompt_format, x, model_name) for (e, a), x in zip(pairs, executors)]
    runs: dict[int, EntryRun] = {}
    pending = {i: next(d) for i, d in enumerate(dialogues)}
    while pending:  # one batched model call per step across all live dialogues
        ids = sorted(pending)
        outputs = backend.generate([pending[i].messages for i in ids], [pending[i].tools for i in ids],
                                   [pending[i].reference for i in ids])
        for i, text in zip(ids, outputs):
            try:
                pending[i] = dialogues[i].send(text)
            except StopIteration as done:
                runs[i] = done.value
                del pending[i]
    score = CategoryScore(category, total=len(pairs), expressible=0)
    for i, (entry, answer) in enumerate(pairs):
        run = runs[i]
        score.expressible += run.expressible
        score.prompt_overflow += run.prompt_overflow
        if run.prompt_overflow:
            result = {"valid": False, "error_type": "multi_turn:prompt_overflow"}
        elif run.force_terminated:
            result = {"valid": False, "error_type": "multi_turn:force_terminated"}
        else:
            with safe_checker(mt_mod, SafeExecutor(class_paths)) as checker:
                result = checker(run.model_calls, answer["ground_truth"], entry, category, model_name)
        if result["valid"]:
            score.correct += 1
        elif len(score.errors) < 5:
            score.errors.append({"id": entry["id"], "expressible": run.expressible, "error_type": result.get("error_type"),
                                 "error": str(result.get("error_message", ""))[:300]})
    return score


def evaluate_bfcl(backend: Backend, version: str = "v3", categories: Optional[list[str]] = None,
                  limit: Optional[int] = None, prompt_format: str = "toolrl") -> list[CategoryScore]:
    """Scores per category, then micro averages: single_turn, multi_turn, overall."""
    bfcl_version = VERSIONS[version]
    model_name = f"rest_{uuid.uuid4().hex[:12]}"
    scores = []
    for category in categories or list(CATEGORIES):
        pairs = load_category(bfcl_version, category, limit)
        run = evaluate_multi_turn if category in MULTI_TURN else evaluate_single_turn
        scores.append(run(backend, bfcl_version, category, pairs, prompt_format, model_name))
    single = [s for s in scores if s.category not in MULTI_TURN]
    multi = [s for s in scores if s.category in MULTI_TURN]
    summary = [micro_average(group, name) for group, name in ((single, "single_turn"), (multi, "multi_turn")) if group]
    return scores + summary + [micro_average(single + multi)]
