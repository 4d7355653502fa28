"""Compose the Hydra config, merge it into the typed schema and check it as a whole, before Ray starts.

`+recipe=NAME` picks `recipes/NAME.yaml` (a file of `# @package _global_` overrides that may also select an
`algorithm`); `algorithm=NAME` picks `conf/algorithm/NAME.yaml`; any other `key=value` is an ordinary Hydra
override. Every failure is one `ConfigError` that names the key.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rest.config.schema import RestConfig
from rest.config.validate import ConfigError, validate

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"
RECIPES_DIR = PROJECT_ROOT / "recipes"


def available(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _translate_overrides(overrides: list[str]) -> list[str]:
    """`+recipe=X` -> the `recipes` group of the project root; check recipe and algorithm names early so the
    error lists what exists."""
    out = []
    for item in overrides:
        key, _, value = item.partition("=")
        bare = key.lstrip("+~")
        if bare == "recipe":
            if value not in available(RECIPES_DIR):
                raise ConfigError(f"unknown recipe {value!r}; available recipes: {available(RECIPES_DIR)}")
            out.append(f"+recipes={value}")
            continue
        if bare == "algorithm" and value not in available(CONF_DIR / "algorithm"):
            raise ConfigError(
                f"unknown algorithm {value!r}; available: {available(CONF_DIR / 'algorithm')}"
            )
        out.append(item)
    return out


def compose(overrides: list[str]):
    """The raw composed DictConfig (Hydra's override grammar)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from hydra.core.config_store import ConfigStore

    # the schema is the base of conf/config.yaml: every key exists with its type before any YAML merges in
    ConfigStore.instance().store(name="rest_schema", node=RestConfig)
    GlobalHydra.instance().clear()
    search_path = f"hydra.searchpath=[file://{PROJECT_ROOT}]"  # makes recipes/ a config group
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        try:
            return hydra_compose(config_name="config", overrides=_translate_overrides(overrides) + [search_path])
        except ConfigError:
            raise
        except Exception as error:  # Hydra's own errors are clear; keep them, add the valid top-level keys
            raise ConfigError(f"{error}\nvalid top-level keys: {sorted(RestConfig.__dataclass_fields__)}") from None


def to_typed(raw) -> RestConfig:
    raw = OmegaConf.to_container(raw, resolve=True)
    raw.pop("hydra", None)
    raw.pop("recipes", None)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RestConfig), raw)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        message = str(error).split("\n")[0]
        raise ConfigError(f"config key '{key}': {message}") from None


def load_config(overrides: list[str] | None = None) -> RestConfig:
    """Compose, type and validate. The returned object is what every component receives."""
    cfg = to_typed(compose(list(overrides or [])))
    if cfg.trainer.run_dir is None:
        cfg.trainer.run_dir = os.path.join("runs", cfg.trainer.experiment_name)
    validate(cfg)
    return cfg
