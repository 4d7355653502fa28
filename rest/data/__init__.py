"""Tool-use data: examples, prompt formats, ToolRL's rlla loaders and the embedded demo task."""

from __future__ import annotations

from rest.data.config import DataConfig
from rest.data.example import ToolUseExample, ground_truth_calls, normalize_ground_truth
from rest.data.rlla import BadRowError, LoadStats, load_rlla, toolrl_split, write_verl_parquet


def load_examples(cfg: DataConfig):
    """(train, val, stats) for the configured source; validates the config first. data.source=env gives the
    environment's tasks (`rest.envs.EnvTask`: its generator's, embedded_train_size / embedded_val_size of them, or
    a task file's), which the multi-turn agent loop runs."""
    cfg.validate()
    if cfg.source == "env":
        from rest.envs import load_env_tasks

        train, val = load_env_tasks(cfg.env_name, cfg.embedded_train_size, cfg.embedded_val_size, cfg.seed,
                                    cfg.env_tasks_path)
        stats = LoadStats(rows_read=len(train) + len(val), train=len(train), val=len(val))
    elif cfg.source == "embedded":
        from rest.data.embedded_task import generate_split

        train, val = generate_split(cfg.embedded_train_size, cfg.embedded_val_size, cfg.seed, cfg.prompt_format)
        stats = LoadStats(rows_read=len(train) + len(val), train=len(train), val=len(val))
    else:
        train, val, stats = load_rlla(cfg.path, cfg.prompt_format, cfg.on_bad_row, cfg.val_fraction, cfg.seed)
    if cfg.max_examples is not None:
        train = train[: cfg.max_examples]
        stats.train = len(train)
    return train, val, stats


__all__ = [
    "BadRowError", "DataConfig", "LoadStats", "ToolUseExample", "ground_truth_calls", "load_examples", "load_rlla",
    "normalize_ground_truth", "toolrl_split", "write_verl_parquet",
]
