"""What reaches the console. Our own messages (the `rest` loggers) print at `trainer.log_level`, one line each,
above the progress bar; vLLM, Ray, transformers and torch log at `trainer.vendor_log_levels` (errors only by
default), and their deprecation notices, meant for their developers, are dropped.

`configure_logging(cfg)` runs once per process: in the driver before Ray starts (`rest.main`) and first thing
in each worker actor. Libraries that read their level from the environment when imported (vLLM, also in its
engine subprocess; Ray; transformers; torch's C++ side) get it there too, so worker processes the driver
starts inherit it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

# per vendor: the environment variables it reads its level from at import, with our level name mapped to theirs
_VENDOR_ENV = {
    "vllm": lambda level: {"VLLM_LOGGING_LEVEL": level.upper()},
    "ray": lambda level: {"RAY_LOGGER_LEVEL": level},
    "transformers": lambda level: {"TRANSFORMERS_VERBOSITY": level,
                                   "HF_HUB_DISABLE_PROGRESS_BARS": "1" if _quiet(level) else "0"},
    "torch": lambda level: {"TORCH_CPP_LOG_LEVEL": "ERROR" if _quiet(level) else "WARNING"},
}


def _quiet(level: str) -> bool:
    return logging.getLevelName(level.upper()) > logging.INFO


class _ConsoleHandler(logging.Handler):
    """One line per message on stdout, written through tqdm so the progress bar is redrawn below it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stdout)
            sys.stdout.flush()
        except Exception:  # a broken console must not stop training
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def configure_logging(cfg) -> None:
    trainer = cfg.trainer
    ours = logging.getLogger("rest")
    ours.setLevel(trainer.log_level.upper())
    if not any(isinstance(h, _ConsoleHandler) for h in ours.handlers):
        handler = _ConsoleHandler()
        handler.setFormatter(_Formatter())
        ours.addHandler(handler)
    ours.propagate = False
    for vendor, level in trainer.vendor_log_levels.items():
        os.environ.update(_VENDOR_ENV[vendor](level))
        logging.getLogger(vendor).setLevel(level.upper())
        if _quiet(level):
            for category in (DeprecationWarning, FutureWarning):
                warnings.filterwarnings("ignore", category=category, module=rf"{vendor}(\.|$)")
    if "transformers" in sys.modules:  # already imported: its progress bars read the environment at import
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(logging.getLevelName(trainer.vendor_log_levels.get("transformers", "warning").upper()))
        if _quiet(trainer.vendor_log_levels.get("transformers", "warning")):
            hf_logging.disable_progress_bar()
