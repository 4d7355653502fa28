"""Data-driven tasks: a parquet (or JSON-lines) file of episodes for any registered environment.

One row per task, JSON-encoded columns: `uid` (str), `env` (a registered environment), `messages` (chat
messages of the prompt), `state` (the environment's initial state, e.g. BFCL's `involved_classes` and
`initial_config` for `bfcl_sim`), `gold` (the reference calls per model turn, `{"name", "arguments"}`),
`info` (optional, environment-specific). Rows are checked on load; a bad row fails naming file and row.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rest.envs.base import ENVIRONMENTS, EnvTask

COLUMNS = ("uid", "env", "messages", "state", "gold", "info")


class TaskFileError(ValueError):
    pass


def _task(row: dict, where: str) -> EnvTask:
    import rest.envs  # noqa: F401  (registers the built-in environments)

    missing = [c for c in COLUMNS[:5] if c not in row]
    if missing:
        raise TaskFileError(f"{where}: missing column(s) {missing}")
    try:
        values = {c: json.loads(row[c]) if isinstance(row[c], str) and c != "uid" and c != "env" else row[c]
                  for c in COLUMNS if c in row and row[c] is not None}
    except ValueError as e:
        raise TaskFileError(f"{where}: a column is not valid JSON ({e})") from None
    if values["env"] not in ENVIRONMENTS:
        raise TaskFileError(f"{where}: unknown environment {values['env']!r}; available: {ENVIRONMENTS.names()}")
    messages = values["messages"]
    if not (isinstance(messages, list) and messages and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                            and m.get("role") in ("system", "user", "assistant")
                                                            for m in messages)):
        raise TaskFileError(f"{where}: messages must be a non-empty list of {{role, content}} chat messages")
    gold = values["gold"]
    if not (isinstance(gold, list) and all(isinstance(step, list) and all(
            isinstance(c, dict) and isinstance(c.get("name"), str)
            and isinstance(c.get("arguments", c.get("parameters")), dict) for c in step) for step in gold)):
        raise TaskFileError(f"{where}: gold must be a list of turns, each a list of {{name, arguments}} calls")
    if not isinstance(values["state"], dict):
        raise TaskFileError(f"{where}: state must be an object")
    return EnvTask(str(values["uid"]), values["env"], messages, values["state"], gold, values.get("info") or {})


def load_tasks(path: str | Path) -> list[EnvTask]:
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [_task(row, f"{path}: row {i}") for i, row in enumerate(rows)]


def save_tasks(tasks: list[EnvTask], path: str | Path) -> None:
    """Write tasks in the format `load_tasks` reads (parquet by suffix, else JSON lines)."""
    path = Path(path)
    rows = [{k: (v if k in ("uid", "env") else json.dumps(v)) for k, v in asdict(t).items()} for t in tasks]
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
