"""Structured JSON logs without PHI (style.md, contract §2 IMMUNORAD_LOG_LEVEL).

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


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # pynetdicom logs dataset contents (patient names) at DEBUG/INFO: keep it at WARNING.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def log(logger: logging.Logger, level: int, message: str, **fields: object) -> None:
    logger.log(level, message, extra={"fields": fields})
