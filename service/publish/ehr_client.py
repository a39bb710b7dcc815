"""HTTP client for the EHR's FHIR base (IMMUNORAD_EHR_FHIR_URL): delivery of transaction Bundles and reads.

Authentication: a static bearer token (IMMUNORAD_EHR_TOKEN), or SMART Backend Services
(client_credentials with a signed JWT assertion) when IMMUNORAD_EHR_CLIENT_ID and IMMUNORAD_EHR_PRIVATE_KEY
are set — see ``service.publish.smart``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import requests

from service.ops.config import Settings
from service.publish.errors import DeliveryError

CONNECT_TIMEOUT = 5.0


def encode_bundle(bundle: dict[str, Any]) -> bytes:
    """The bytes sent for a Bundle (ASCII JSON): what the outbox's ``sent_sha256`` is the hash of."""
    return json.dumps(bundle).encode()


class EhrClient:
    def __init__(self, settings: Settings) -> None:
        if not settings.ehr_fhir_url:
            raise ValueError("IMMUNORAD_EHR_FHIR_URL is not set")
        self.base = settings.ehr_fhir_url.rstrip("/")
        self.settings = settings
        self.timeout = (CONNECT_TIMEOUT, settings.ehr_timeout_seconds)
        self.session = requests.Session()
        self._smart = None
        if settings.ehr_client_id and settings.ehr_private_key:
            from service.publish.smart import SmartBackendAuth

            self._smart = SmartBackendAuth(settings, self.session)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/fhir+json; charset=utf-8", "Accept": "application/fhir+json"}
        if self._smart is not None:
            headers["Authorization"] = f"Bearer {self._smart.token()}"
        elif self.settings.ehr_token:
            headers["Authorization"] = f"Bearer {self.settings.ehr_token}"
        return headers

    def post_bundle(self, bundle: dict[str, Any] | bytes) -> int:
        """POST one transaction Bundle (or its encoding, ``encode_bundle``) to the base; the status code on success,
        ``DeliveryError`` otherwise."""
        body = bundle if isinstance(bundle, bytes) else encode_bundle(bundle)
        try:
            response = self.session.post(self.base, data=body, headers=self._headers(), timeout=self.timeout)
        except requests.RequestException as exc:
            raise DeliveryError(f"EHR unreachable: {type(exc).__name__}") from exc
        if response.status_code == 401 and self._smart is not None:
            self._smart.invalidate()
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"EHR answered {response.status_code}: {response.text[:200]}", response.status_code)
        return response.status_code

    def is_own_url(self, url: object) -> bool:
        """Whether ``url`` is under the configured base (same scheme, host and port, path below the base's)."""
        if not isinstance(url, str):
            return False
        base, other = urlsplit(self.base), urlsplit(url)
        return (
            (other.scheme, other.netloc) == (base.scheme, base.netloc)
            and (other.path.rstrip("/") + "/").startswith(base.path.rstrip("/") + "/")
            and "/../" not in other.path + "/"
        )

    def search(self, resource_type: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """A FHIR search, following ``next`` links; returns the matched resources."""
        url: str | None = f"{self.base}/{resource_type}"
        resources: list[dict[str, Any]] = []
        query: dict[str, str] | None = params
        pages = 0
        while url and pages < 50:
            try:
                response = self.session.get(url, params=query, headers=self._headers(), timeout=self.timeout)
            except requests.RequestException as exc:
                raise DeliveryError(f"EHR unreachable: {type(exc).__name__}") from exc
            if response.status_code == 401 and self._smart is not None:
                self._smart.invalidate()
            if response.status_code != 200:
                raise DeliveryError(f"EHR search answered {response.status_code}", response.status_code)
            bundle = response.json()
            resources += [
                e["resource"]
                for e in bundle.get("entry", [])
                if "resource" in e and (e.get("search") or {}).get("mode", "match") == "match"
            ]
            url = next((link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"), None)
            if url is not None and not self.is_own_url(url):
                # Our credential goes with every page: never to another server than the configured EHR.
                raise DeliveryError("EHR search paging link points away from IMMUNORAD_EHR_FHIR_URL")
            query = None
            pages += 1
        return resources
