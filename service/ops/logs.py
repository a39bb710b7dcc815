"""Structured JSON logs without PHI (style.md, contract §2 IMMUNORAD_LOG_LEVEL), and what a person sees.

Two modes (IMMUNORAD_LOG_FORMAT):

- ``human`` (default, a terminal): the JSON log goes to ``var/log/immunorad.log``; the terminal shows only the
  short summary ``immunorad serve`` prints and our own warnings and errors as one readable line each. Third-party
  chatter (highdicom's INFO lines, pynetdicom, gunicorn) stays in the file.
- ``json`` (the container default, set in the Dockerfile and the Helm chart): every JSON line to stderr, where
  the container runtime collects it.

Patient and study keys are written only as pseudonyms: a keyed hash (HMAC-SHA256) whose key comes from
IMMUNORAD_PSEUDONYM_KEY or is generated once into var/pseudonym-key. Log calls pass identifiers through
``pseudonym()``; free text from inputs (names, comments) is never logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import overload

_KEY: bytes | None = None


def configure_pseudonyms(key: str, var_dir: Path) -> None:
    global _KEY
    if key:
        _KEY = key.encode()
        return
    path = var_dir / "pseudonym-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(secrets.token_hex(32))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    _KEY = path.read_text().strip().encode()


@overload
def pseudonym(value: str) -> str: ...
@overload
def pseudonym(value: None) -> None: ...
@overload
def pseudonym(value: str | None) -> str | None: ...


def pseudonym(value: str | None) -> str | None:
    """A stable, non-reversible key for logs and exports (``p-`` + 12 hex digits)."""
    if value is None:
        return None
    key = _KEY or b"immunorad-unconfigured"
    return "p-" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:12]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            # Type and place only: exception messages can quote data (SQL parameters, identifiers).
            error, trace = record.exc_info[1], record.exc_info[2]
            while trace is not None and trace.tb_next is not None:
                trace = trace.tb_next
            where = f"{trace.tb_frame.f_code.co_filename.rsplit('/', 2)[-1]}:{trace.tb_lineno}" if trace else ""
            entry["exc"] = f"{type(error).__module__}.{type(error).__name__} at {where}"
        return json.dumps(entry, default=str)


TO_FILE_ONLY = {"terminal": False}
"""``extra`` of a record the terminal must not repeat (its caller prints its own line for a person)."""
OUR_LOGGERS = ("immunorad", "service", "dicom_listener", "fhir_mappings", "rules", "bench")
"""Top-level logger names of our own code: the only ones a person sees on the terminal in ``human`` mode."""
LOG_FORMATS = ("human", "json")


class HumanFormatter(logging.Formatter):
    """``immunorad: warning: message (key=value, …)`` — one line, the structured fields kept short."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        extra = ", ".join(f"{key}={value}" for key, value in fields.items())
        line = f"immunorad: {record.levelname.lower()}: {record.getMessage()}" + (f" ({extra})" if extra else "")
        if record.exc_info and record.exc_info[1] is not None:
            line += f" [{type(record.exc_info[1]).__name__}; details in the log file]"
        return line


def log_file(var_dir: Path) -> Path:
    """Where ``human`` mode writes the JSON log."""
    return var_dir / "log" / "immunorad.log"


def configure_logging(level: str = "INFO", log_format: str = "json", var_dir: Path | None = None) -> None:
    """JSON to stderr (``json``), or JSON to ``var/log/immunorad.log`` plus our warnings on the terminal
    (``human``; needs ``var_dir``)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if log_format == "human" and var_dir is not None:
        path = log_file(var_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(path, encoding="utf-8")
        to_file.setFormatter(JsonFormatter())
        root.addHandler(to_file)
        terminal = logging.StreamHandler(sys.stderr)
        terminal.setLevel(logging.WARNING)
        terminal.addFilter(
            lambda record: record.name.split(".")[0] in OUR_LOGGERS and getattr(record, "terminal", True)
        )
        terminal.setFormatter(HumanFormatter())
        root.addHandler(terminal)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    # pynetdicom logs dataset contents (patient names) at DEBUG/INFO: keep it at WARNING. highdicom narrates
    # every attribute it copies at INFO.
    for name in ("pynetdicom", "urllib3", "highdicom"):
        logging.getLogger(name).setLevel(logging.WARNING)


def log(logger: logging.Logger, level: int, message: str, **fields: object) -> None:
    logger.log(level, message, extra={"fields": fields})
