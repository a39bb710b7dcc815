"""Reads from an EHR's ``fhirServer`` during a CDS Hooks call, kept off the HTTP request threads (contract §9.5).

A CDS Hooks call without the prefetched Patient may be answered by reading ``{fhirServer}/Patient/{patientId}``
with the access token the EHR granted (CDS Hooks 2.0 §"FHIR Resource Access"). That read goes to another
system on the network; if it is slow or silent it must not take the API with it. So:

- only the configured FHIR base of the call's verified issuer is ever contacted (``service.security.auth.cds_fhir_server``);
  the id is one URL path segment (percent-encoded, ``/`` included), redirects are not followed;
- the read runs in a small per-process thread pool (IMMUNORAD_CDS_FETCH_CONCURRENCY slots); when every slot is
  busy the call is refused at once (``FetchRefused``) instead of queueing;
- the request thread waits at most IMMUNORAD_CDS_FETCH_TIMEOUT_SECONDS for the answer, connect, headers and body
  together; a read that outlives it keeps its pool slot (not a request thread) until its socket times out;
- bodies over ``MAX_BODY_BYTES`` are not read.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from typing import Any
from urllib.parse import quote

import requests

MAX_BODY_BYTES = 1024 * 1024
"""A Patient resource is a few kilobytes; anything larger than this is not one."""


class FetchRefused(Exception):
    """The resource could not be read in time (or at all); the reason is safe to log (no URL, no PHI)."""


def resource_url(base: str, resource_type: str, resource_id: str) -> str:
    """``{base}/{type}/{id}`` with the id as exactly one path segment (``../`` cannot climb out of it)."""
    return f"{base.rstrip('/')}/{resource_type}/{quote(resource_id, safe='')}"


class BoundedFetcher:
    """A few reads at a time, each with a hard deadline for the caller."""

    def __init__(self, concurrency: int, deadline_seconds: float) -> None:
        self.deadline = deadline_seconds
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, concurrency), thread_name_prefix="cds-fetch"
        )

    def get_json(self, url: str, headers: dict[str, str]) -> dict[str, Any]:
        """The JSON object at ``url`` (HTTP 200), or ``FetchRefused``."""
        if not self._slots.acquire(blocking=False):
            raise FetchRefused("every EHR read slot is busy")
        try:
            future = self._pool.submit(self._get, url, headers)
        except RuntimeError as exc:
            self._slots.release()
            raise FetchRefused("the read pool is shut down") from exc
        future.add_done_callback(lambda _future: self._slots.release())
        try:
            return future.result(timeout=self.deadline)
        except concurrent.futures.TimeoutError as exc:
            raise FetchRefused("the EHR did not answer in time") from exc

    def _get(self, url: str, headers: dict[str, str]) -> dict[str, Any]:
        started = time.monotonic()
        try:
            with requests.get(
                url, headers=headers, timeout=(self.deadline, self.deadline), stream=True, allow_redirects=False
            ) as response:
                if response.status_code != 200:
                    raise FetchRefused(f"the EHR answered {response.status_code}")
                body = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise FetchRefused("the EHR's answer is too large")
                    if time.monotonic() - started > self.deadline:
                        raise FetchRefused("the EHR did not answer in time")
        except requests.RequestException as exc:
            raise FetchRefused(f"the EHR could not be read ({type(exc).__name__})") from exc
        try:
            value = json.loads(bytes(body))
        except ValueError as exc:
            raise FetchRefused("the EHR's answer is not JSON") from exc
        if not isinstance(value, dict):
            raise FetchRefused("the EHR's answer is not a JSON object")
        return value
