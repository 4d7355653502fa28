"""The console: our messages one line each on stdout; vendors at their configured level, also through the
environment their worker processes read when they import them."""

import logging
import os
import warnings

import pytest

from rest.config.load import load_config
from rest.console import configure_logging


@pytest.fixture(autouse=True)
def restore_logging():
    """configure_logging sets process-wide state; other tests (caplog) need the defaults back."""
    names = ("rest", "vllm", "ray", "transformers", "torch")
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers), logging.getLogger(n).propagate)
             for n in names}
    with warnings.catch_warnings():
        yield
    for name, (level, handlers, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate


def test_our_messages_print_and_vendors_are_quiet_by_default(monkeypatch, capsys):
    for name in ("VLLM_LOGGING_LEVEL", "RAY_LOGGER_LEVEL", "TRANSFORMERS_VERBOSITY", "TORCH_CPP_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    configure_logging(load_config(["trainer.vendor_log_levels.ray=warning"]))
    logging.getLogger("rest.trainer.loop").info("resumed from x at step 2")
    logging.getLogger("rest.trainer.loop").warning("step 3: validation failed")
    logging.getLogger("rest.trainer.loop").debug("hidden at trainer.log_level=info")
    logging.getLogger("vllm.model_executor").warning("hidden: vLLM logs errors only")
    assert capsys.readouterr().out == "resumed from x at step 2\nwarning: step 3: validation failed\n"
    assert os.environ["VLLM_LOGGING_LEVEL"] == "ERROR" and os.environ["TORCH_CPP_LOG_LEVEL"] == "ERROR"
    assert os.environ["RAY_LOGGER_LEVEL"] == "warning"
    assert logging.getLogger("ray").level == logging.WARNING
