"""Data configuration: one typed object, validated once at start (an OmegaConf structured config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rest.data.prompts import PROMPT_FORMATS

SOURCES = ("embedded", "rlla", "env")


@dataclass
class DataConfig:
    source: str = "embedded"  # "embedded" (offline demo task) | "rlla" (ToolRL's data) | "env" (multi-turn tasks)
    path: Optional[str] = None  # rlla: a .json / .parquet file, a folder of them, or a hub dataset id
    prompt_format: str = "toolrl"  # "toolrl" | "hermes"
    val_fraction: float = 0.02  # rlla: ToolRL's last-2% split; embedded: fraction of generated problems
    seed: int = 31415  # ToolRL's split seed; also seeds the embedded generator
    on_bad_row: str = "error"  # "error": stop naming file and row | "skip": drop it and count it in stats
    embedded_train_size: int = 512
    embedded_val_size: int = 64
    max_examples: Optional[int] = None  # cap on train examples after the split (quick runs)
    # source=env: a registered environment (rest.envs: embedded_multiturn | bfcl_sim | ...); its tasks come from
    # its generator (embedded_train_size / embedded_val_size tasks, seeded by `seed`) or from env_tasks_path
    env_name: Optional[str] = None
    env_tasks_path: Optional[str] = None  # a parquet / JSON-lines task file (rest.envs.task_file)

    def validate(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"data.source must be one of {SOURCES}, got {self.source!r}")
        if self.source == "env":
            from rest.envs import ENVIRONMENTS

            if self.env_name not in ENVIRONMENTS:
                raise ValueError(f"data.env_name must name a registered environment {ENVIRONMENTS.names()} when "
                                 f"data.source is 'env', got {self.env_name!r}")
            if self.env_name == "bfcl_eval" and not self.env_tasks_path:
                raise ValueError("data.env_name=bfcl_eval holds BFCL's evaluation entries, which are never trained on: "
                                 "train on bfcl_sim (generated tasks), evaluate with python -m rest.eval.multiturn "
                                 "--env bfcl_eval")
        if self.source == "rlla" and not self.path:
            raise ValueError("data.path is required when data.source is 'rlla'")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"data.prompt_format must be one of {PROMPT_FORMATS}, got {self.prompt_format!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.on_bad_row not in ("error", "skip"):
            raise ValueError(f"data.on_bad_row must be 'error' or 'skip', got {self.on_bad_row!r}")
        if self.embedded_train_size < 1 or self.embedded_val_size < 0:
            raise ValueError("data.embedded_train_size must be >= 1 and data.embedded_val_size >= 0")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"data.max_examples must be >= 1 when set, got {self.max_examples}")
