"""ToolRL's rlla data: read JSON (instruction/input/output) or verl-style parquet, split, write parquet.

Rows are located as `file:row` so a bad row can be named; `load_rlla` either stops on the first bad row or
skips and counts it (`on_bad_row`), never drops it silently.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from rest.data.example import ToolUseExample, normalize_ground_truth
from rest.data.prompts import history_to_chat, parse_toolrl_tools

TOOLRL_SPLIT_SEED = 31415
TOOLRL_TEST_FRACTION = 0.02
_DATA_SUFFIXES = (".json", ".jsonl", ".parquet")


class BadRowError(ValueError):
    pass


@dataclass
class LoadStats:
    rows_read: int = 0
    skipped: int = 0
    skipped_rows: list[str] = field(default_factory=list)  # "file:row: reason"
    train: int = 0
    val: int = 0


def toolrl_split(items: list, seed: int = TOOLRL_SPLIT_SEED, test_fraction: float = TOOLRL_TEST_FRACTION):
    """ToolRL's split: a numpy permutation with the seed, the last `test_fraction` is the test set.

    Not checked against the released test.parquet: the full 4k raw file is not available offline.
    """
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(items))
    n_train = int(len(items) * (1.0 - test_fraction))
    return [items[i] for i in order[:n_train]], [items[i] for i in order[n_train:]]


def _read_file(path: Path) -> Iterator[tuple[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    elif path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        rows = json.loads(path.read_text())
        if not isinstance(rows, list):
            raise BadRowError(f"{path}: expected a JSON list of records")
    for i, row in enumerate(rows):
        yield f"{path}:{i}", row


def resolve_rlla_path(path: str) -> Path:
    """A local file or folder, or else a hub dataset id (downloaded; needs internet)."""
    local = Path(os.path.expanduser(path))
    if local.exists():
        return local
    if path.startswith((".", "/", "~")) or path.endswith(_DATA_SUFFIXES) or path.count("/") != 1:
        raise FileNotFoundError(f"data.path {path!r} does not exist (and is not a hub id like 'owner/name')")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=path, repo_type="dataset"))
    except Exception as e:  # offline, unknown id, auth: all end the same way for the user
        raise RuntimeError(
            f"could not download hub dataset {path!r} ({type(e).__name__}: {e}); "
            "without internet, download it elsewhere and set data.path to the local file or folder"
        ) from e


def data_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.suffix in _DATA_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no .json/.jsonl/.parquet files under {root}")
    return files


def row_to_example(row: Any, where: str, prompt_format: str) -> ToolUseExample:
    """One raw row (JSON record or verl parquet row) -> example; raises BadRowError naming `where`."""
    try:
        if not isinstance(row, dict):
            raise ValueError("row is not an object")
        if "prompt" in row:  # verl-style parquet
            prompt = list(row["prompt"])
            system = next((m["content"] for m in prompt if m["role"] == "system"), None)
            history = next(m["content"] for m in prompt if m["role"] == "user")
            output = (row.get("reward_model") or {})["ground_truth"]
            extra = row.get("extra_info") or {}
            tools = json.loads(extra["tools"]) if extra.get("tools") else None
        else:
            system, history, output = row["instruction"], row["input"], row["output"]
            tools = None
        if not isinstance(history, str) or (system is not None and not isinstance(system, str)):
            raise ValueError("prompt fields are not strings")
        if tools is None:
            tools = parse_toolrl_tools(system) if system else []
        ground_truth = normalize_ground_truth(output)
        if "prompt" in row and not (system and "**Available Tools**" in system):  # a parquet we wrote in Hermes format
            if prompt_format != "hermes":
                raise ValueError("prompt is not in the ToolRL format; load it with data.prompt_format=hermes")
            messages = prompt
        elif prompt_format == "toolrl":
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": history}]
        else:
            messages = history_to_chat(history) if "<user>" in history else [{"role": "user", "content": history}]
        return ToolUseExample(uid=where, messages=messages, ground_truth=ground_truth, tools=tools, source="rlla")
    except (KeyError, StopIteration, TypeError, ValueError, AttributeError) as e:
        detail = f"missing field {e}" if isinstance(e, KeyError) else str(e) or type(e).__name__
        raise BadRowError(f"{where}: {detail}") from e


def _convert(rows: list[tuple[str, Any]], prompt_format: str, on_bad_row: str, stats: LoadStats) -> list:
    """Examples in file order (so the first bad row is the one reported); None where a row was skipped."""
    out: list = []
    for where, row in rows:
        try:
            out.append(row_to_example(row, where, prompt_format))
        except BadRowError as e:
            if on_bad_row == "error":
                raise
            stats.skipped += 1
            stats.skipped_rows.append(str(e))
            out.append(None)
    return out


def load_rlla(path: str, prompt_format: str, on_bad_row: str = "error", test_fraction: float = TOOLRL_TEST_FRACTION,
              seed: int = TOOLRL_SPLIT_SEED):
    """(train, val, stats). A folder with train.parquet and test.parquet is used as split; else ToolRL's split."""
    root = resolve_rlla_path(path)
    stats = LoadStats()
    files = data_files(root)
    by_name = {f.name: f for f in files}
    if root.is_dir() and "train.parquet" in by_name and "test.parquet" in by_name:
        train_rows = list(_read_file(by_name["train.parquet"]))
        val_rows = list(_read_file(by_name["test.parquet"]))
        stats.rows_read = len(train_rows) + len(val_rows)
        train = _convert(train_rows, prompt_format, on_bad_row, stats)
        val = _convert(val_rows, prompt_format, on_bad_row, stats)
    else:  # split the raw rows, as ToolRL does, so a skipped row does not shift the split
        rows = [r for f in files for r in _read_file(f)]
        stats.rows_read = len(rows)
        train, val = toolrl_split(_convert(rows, prompt_format, on_bad_row, stats), seed, test_fraction)
    train, val = [e for e in train if e is not None], [e for e in val if e is not None]
    stats.train, stats.val = len(train), len(val)
    return train, val, stats


def _parquet_safe(messages: list[dict]) -> list[dict]:
    """Arrow needs one struct type per column: tool-call arguments become JSON strings (chat templates accept them)."""
    out = []
    for m in messages:
        m = dict(m)
        if "tool_calls" in m:
            m["tool_calls"] = [
                {"type": "function", "function": {"name": c["function"]["name"], "arguments": json.dumps(c["function"]["arguments"])}}
                for c in m["tool_calls"]
            ]
        out.append(m)
    return out


def write_verl_parquet(examples: list[ToolUseExample], path: str, split: str = "train") -> None:
    """verl's layout: data_source, prompt (chat messages), ability, reward_model{ground_truth, style}, extra_info."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "data_source": ex.source or "rlla",
            "prompt": _parquet_safe(ex.messages),
            "ability": "tool_use",
            "reward_model": {"ground_truth": ex.ground_truth, "style": "rule"},
            "extra_info": {"index": i, "uid": ex.uid, "split": split, "tools": json.dumps(ex.tools)},
        }
        for i, ex in enumerate(examples)
    ]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
