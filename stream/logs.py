"""Logging by configuration: JSON lines for log collectors, and the ``--log-config`` file loader.

``config/logging.yaml`` names ``stream.logs.JsonFormatter``; the worker reads the file with
``load_logging_config`` and hands the dict to Faust, which gives it to ``logging.config.dictConfig``.
"""

from __future__ import annotations

import copy
import json
import logging
import logging.config
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stream.settings import ConfigError

__all__ = ["JsonFormatter", "load_logging_config"]

#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and is kept.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, so that collectors (Loki, Elasticsearch…) need no regex to parse logs."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_"))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def load_logging_config(path: Path) -> dict[str, Any]:
    """Read a dictConfig file (YAML, or JSON which is YAML too) and try it, or raise ``ConfigError``.

    Trying it here turns a bad handler or formatter into one clear line before the worker
    connects anywhere, instead of Faust's "CANNOT SETUP LOGGING" traceback once it runs.
    """
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"logging configuration {path} cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise ConfigError(f"logging configuration {path} is not valid YAML: {problem}") from None
    if not isinstance(config, dict) or config.get("version") != 1:
        raise ConfigError(f"logging configuration {path} must be a dictConfig mapping with `version: 1`")
    try:
        logging.config.dictConfig(copy.deepcopy(config))
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise ConfigError(f"logging configuration {path}: {exc}{cause}") from None
    return config
