"""Per-process resources of the HTTP app (created lazily, after gunicorn forks its workers)."""

from __future__ import annotations

import os
import threading

from flask import current_app

from service.ops.config import Settings, ensure_api_token
from service.persistence.db import Database
from service.security.cds_fetch import BoundedFetcher


class AppContext:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db: Database | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._fetcher: BoundedFetcher | None = None
        self._fetcher_pid: int | None = None
        self.api_token = ensure_api_token(settings)

    @property
    def db(self) -> Database:
        with self._lock:
            if self._db is None or self._pid != os.getpid():
                self._db = Database(self.settings.database_url)
                self._pid = os.getpid()
            return self._db

    @property
    def fetcher(self) -> BoundedFetcher:
        """This process's pool for reads from an EHR's fhirServer (``service.security.cds_fetch``)."""
        with self._lock:
            if self._fetcher is None or self._fetcher_pid != os.getpid():
                self._fetcher = BoundedFetcher(
                    self.settings.cds_fetch_concurrency, self.settings.cds_fetch_timeout_seconds
                )
                self._fetcher_pid = os.getpid()
            return self._fetcher


def ctx() -> AppContext:
    return current_app.extensions["immunorad"]
