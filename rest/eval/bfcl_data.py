"""BFCL data and checkers from the pip packages: `bfcl-eval` (v4) and `nvidia-bfcl` (v3), both --no-deps.

We read the data files ourselves and import only the checker modules, never the packages' model-handler
chain (v4's `ast_checker` imports `constants.model_config`, which imports every provider SDK: a light
stand-in module takes its place). `BFCL_PROJECT_ROOT` is pointed at a writable folder before any import,
or v4 creates folders inside site-packages.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

SINGLE_TURN = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance")
MULTI_TURN = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")
CATEGORIES = SINGLE_TURN + MULTI_TURN

FUNC_DOC_FILES = {
    "GorillaFileSystem": "gorilla_file_system.json", "MathAPI": "math_api.json", "MessageAPI": "message_api.json",
    "TwitterAPI": "posting_api.json", "TicketAPI": "ticket_api.json", "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json", "VehicleControlAPI": "vehicle_control.json",
}


@dataclass(frozen=True)
class BfclVersion:
    name: str  # "v3" | "v4"
    package: str  # import name: "bfcl" (nvidia-bfcl) | "bfcl_eval" (bfcl-eval)
    prefix: str  # data file prefix

    @property
    def data_dir(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None:
            pip = "nvidia-bfcl==26.3" if self.name == "v3" else "bfcl-eval==2026.3.23"
            raise ImportError(f"BFCL {self.name} needs `pip install --no-deps {pip} mpmath filelock`")
        return Path(spec.origin).parent / "data"

    def file_category(self, category: str) -> str:
        return "simple" if self.name == "v3" and category == "simple_python" else category

    @property
    def checker_package(self) -> str:
        return f"{self.package}.eval_checker"


VERSIONS = {"v3": BfclVersion("v3", "bfcl", "BFCL_v3"), "v4": BfclVersion("v4", "bfcl_eval", "BFCL_v4")}


def prepare_imports() -> None:
    """Environment and stand-in modules; idempotent."""
    os.environ.setdefault("BFCL_PROJECT_ROOT", tempfile.mkdtemp(prefix="rest-bfcl-"))
    name = "bfcl_eval.constants.model_config"
    if name not in sys.modules and importlib.util.find_spec("bfcl_eval") is not None:
        stand_in = types.ModuleType(name)
        stand_in.__doc__ = "rest's stand-in: the checker only asks whether a model maps '.' to '_' (ours do not)."

        class _Mapping(dict):
            def __missing__(self, key):
                return types.SimpleNamespace(underscore_to_dot=False)

        stand_in.MODEL_CONFIG_MAPPING = _Mapping()
        sys.modules[name] = stand_in


def checker_modules(version: BfclVersion):
    """(ast_checker module, multi_turn_checker module, python language token, class -> module path)."""
    prepare_imports()
    pkg = version.checker_package
    ast_mod = importlib.import_module(f"{pkg}.ast_eval.ast_checker")
    mt_mod = importlib.import_module(f"{pkg}.multi_turn_eval.multi_turn_checker")
    if version.name == "v4":
        from bfcl_eval.constants.enums import Language
        from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING

        return ast_mod, mt_mod, Language.PYTHON, CLASS_FILE_PATH_MAPPING
    utils = importlib.import_module(f"{pkg}.multi_turn_eval.multi_turn_utils")
    return ast_mod, mt_mod, "Python", utils.CLASS_FILE_PATH_MAPPING


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_category(version: BfclVersion, category: str, limit: Optional[int] = None) -> list[tuple[dict, dict]]:
    """[(entry, possible answer)]; multi-turn entries get their function docs, held-out ones moved aside."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL category {category!r}; expected one of {CATEGORIES}")
    name = f"{version.prefix}_{version.file_category(category)}.json"
    entries = _read_jsonl(version.data_dir / name)[:limit]
    if category == "irrelevance":
        answers = [{"id": e["id"], "ground_truth": []} for e in entries]
    else:
        by_id = {a["id"]: a for a in _read_jsonl(version.data_dir / "possible_answer" / name)}
        answers = [by_id[e["id"]] for e in entries]
    if category in MULTI_TURN:
        for entry in entries:
            _attach_function_docs(version, entry)
    return list(zip(entries, answers))


def _attach_function_docs(version: BfclVersion, entry: dict) -> None:
    """As BFCL's loader does: all docs of the involved classes, minus held-out ones (miss_func)."""
    docs = []
    for cls in entry["involved_classes"]:
        docs += _read_jsonl_or_list(version.data_dir / "multi_turn_func_doc" / FUNC_DOC_FILES[cls])
    held_out = {}
    for turn, names in entry.get("missed_function", {}).items():
        held_out[int(turn)] = [d for d in docs if d["name"] in names]
        docs = [d for d in docs if d["name"] not in names]
    entry["function"], entry["held_out_functions"] = docs, held_out


def _read_jsonl_or_list(path: Path) -> list[dict]:
    text = path.read_text().strip()
    return json.loads(text) if text.startswith("[") else _read_jsonl(path)
