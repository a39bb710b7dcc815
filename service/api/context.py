"""Per-process resources of the HTTP app (created lazily, after gunicorn forks its workers)."""

from __future__ import annotations

import os
import threading

from flask import current_app

from service.config import Settings, ensure_api_token
from service.db import Database


class AppContext:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db: Database | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self.api_token = ensure_api_token(settings)

    @property
    def db(self) -> Database:
        with self._lock:
            if self._db is None or self._pid != os.getpid():
                self._db = Database(self.settings.database_url)
                self._pid = os.getpid()
            return self._db


def ctx() -> AppContext:
    return current_app.extensions["immunorad"]
