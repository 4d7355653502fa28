import json

import pytest

from rest.envs import load_env_tasks, make_env
from rest.envs.embedded import generate_split
from rest.envs.task_file import TaskFileError, load_tasks, save_tasks


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_round_trip(tmp_path, suffix):
    tasks, _ = generate_split(6, 0, seed=1)
    path = tmp_path / f"tasks{suffix}"
    save_tasks(tasks, path)
    assert load_tasks(path) == tasks
    train, val = load_env_tasks("embedded_multiturn", 0, 2, 0, str(path))
    assert len(val) == 2 and len(train) == 4
    env = make_env("embedded_multiturn", "hermes")
    messages, tools = env.reset(train[0])
    assert messages == train[0].messages and tools


def test_bfcl_sim_tasks_from_a_file(tmp_path):
    pytest.importorskip("bfcl")
    from rest.envs.bfcl_tasks import generate_tasks

    tasks, _ = generate_tasks(4, 0, seed=0)
    save_tasks(tasks, tmp_path / "t.parquet")
    loaded = load_tasks(tmp_path / "t.parquet")
    assert loaded == tasks


@pytest.mark.parametrize("row,error", [
    ({"uid": "a", "env": "nope", "messages": "[]", "state": "{}", "gold": "[]"}, "unknown environment"),
    ({"uid": "a", "env": "embedded_multiturn", "messages": "[]", "state": "{}", "gold": "[]"}, "messages"),
    ({"uid": "a", "env": "embedded_multiturn", "messages": json.dumps([{"role": "user", "content": "x"}]),
      "state": "{}", "gold": json.dumps([[{"name": "f"}]])}, "gold"),
    ({"uid": "a", "env": "embedded_multiturn", "messages": "{bad", "state": "{}", "gold": "[]"}, "JSON"),
    ({"uid": "a", "env": "embedded_multiturn"}, "missing column"),
])
def test_bad_rows_name_file_and_row(tmp_path, row, error):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(TaskFileError, match=f"row 0: .*{error}"):
        load_tasks(path)
