"""Configuration from the environment (contract §2). Every setting is optional and documented here."""

from __future__ import annotations

import datetime as dt
import functools
import os
import secrets
import socket
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import overload

from rules.plausibility import PlausibilityLimits


@overload
def _env(name: str) -> str | None: ...
@overload
def _env(name: str, default: str) -> str: ...
@overload
def _env(name: str, default: str | None) -> str | None: ...


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _int(name: str, default: int) -> int:
    value = _env(name)
    return default if value is None else int(value)


def _bool(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    var_dir: Path
    """IMMUNORAD_VAR_DIR (default ``var``): the SQLite file, the generated API token and pseudonym key, optional pixel files."""
    database_url: str
    """IMMUNORAD_DATABASE_URL: SQLAlchemy URL of the database; the default is a SQLite file in IMMUNORAD_VAR_DIR,
    ``postgresql+psycopg://user@host/db`` in production."""
    http_host: str = "127.0.0.1"
    """IMMUNORAD_HTTP_HOST: address the HTTP API (FHIR, /api, /ui, CDS Hooks) listens on."""
    http_port: int = 8080
    """IMMUNORAD_HTTP_PORT: port of the HTTP API."""
    dicom_host: str = "127.0.0.1"
    """IMMUNORAD_DICOM_HOST: address the DICOM C-STORE listener binds."""
    dicom_port: int = 11112
    """IMMUNORAD_DICOM_PORT: port of the DICOM C-STORE listener."""
    ae_title: str = "IMMUNORAD"
    """IMMUNORAD_AE_TITLE: our AE title; associations calling another AE title are rejected."""
    allowed_calling_aets: tuple[str, ...] = ()
    """IMMUNORAD_ALLOWED_CALLING_AETS: calling AE titles accepted (comma list); empty = any (contract §2)."""
    dicom_tls_cert: str | None = None
    """IMMUNORAD_DICOM_TLS_CERT: PEM certificate of the listener; with the key, DICOM runs over TLS."""
    dicom_tls_key: str | None = None
    """IMMUNORAD_DICOM_TLS_KEY: PEM private key of the listener certificate."""
    dicom_tls_ca: str | None = None
    """IMMUNORAD_DICOM_TLS_CA: CA bundle for client certificates; when set, senders must present one (mutual TLS)."""
    study_settle_seconds: float = 10.0
    """IMMUNORAD_STUDY_SETTLE_SECONDS: a study is evaluated this long after its last received instance
    (C-STORE has no "study complete"), also when images arrive without a report."""
    evaluate_coalesce_seconds: float = 0.0
    """IMMUNORAD_EVALUATE_COALESCE_SECONDS: a patient's evaluation queued by intake (DICOM SR and SEG, a settled
    study, FHIR) waits this long for more of the patient's inputs, restarted by each; 0 (default) = evaluate at once,
    so the report of a study sent now reaches the EHR within the second. Set it (e.g. 2) while loading history: a
    backfill then evaluates each patient about once instead of once per report (bench/RESULTS.md, backfill)."""
    evaluate_coalesce_max_seconds: float = 30.0
    """IMMUNORAD_EVALUATE_COALESCE_MAX_SECONDS: the wait ends at the latest this long after the first of those
    inputs, however steadily more arrive."""
    ehr_fhir_url: str | None = None
    """IMMUNORAD_EHR_FHIR_URL: the EHR's FHIR R4 base; results are delivered there. Unset: kept and served locally."""
    ehr_token: str | None = None
    """IMMUNORAD_EHR_TOKEN: static bearer token for the EHR (SMART Backend Services settings replace it)."""
    ehr_client_id: str | None = None
    """IMMUNORAD_EHR_CLIENT_ID: SMART Backend Services client id (with IMMUNORAD_EHR_PRIVATE_KEY)."""
    ehr_private_key: str | None = None
    """IMMUNORAD_EHR_PRIVATE_KEY: path of the PEM key signing the client assertion (RS384/ES384)."""
    ehr_key_id: str | None = None
    """IMMUNORAD_EHR_KEY_ID: ``kid`` of our key in the client assertion (SMART Backend Services)."""
    ehr_scope: str = "system/DiagnosticReport.write system/Observation.write system/Flag.write"
    """IMMUNORAD_EHR_SCOPE: scopes requested from the EHR token endpoint (SMART Backend Services)."""
    ehr_timeout_seconds: float = 30.0
    """IMMUNORAD_EHR_TIMEOUT_SECONDS: read timeout of one delivery; a delivery's lease outlasts it."""
    retry_backoff_seconds: float = 2.0
    """IMMUNORAD_RETRY_BACKOFF_SECONDS: first wait before a failed delivery or job is retried; each further
    failure doubles it (±20 % jitter), up to 15 minutes."""
    dicom_processes: int = 1
    """IMMUNORAD_DICOM_PROCESSES: listener processes sharing the DICOM port (``SO_REUSEPORT``; the kernel spreads
    the associations among them). One process decodes on one core at a time (Python's GIL), so on a host with
    several cores and several sending associations more processes take more instances per second
    (``bench/RESULTS.md``). ``immunorad dicom`` starts the others and stops them with itself; from 1 to 16."""
    dicom_lock_wait_seconds: float = 15.0
    """IMMUNORAD_DICOM_LOCK_WAIT_SECONDS: longest wait of a C-STORE for a row another transaction holds
    (PostgreSQL ``lock_timeout``) before it answers 0xA700 so that the sender retries that instance. Senders
    commonly abort the whole association after 30 s without a response (pynetdicom's default)."""
    ehr_token_url: str | None = None
    """IMMUNORAD_EHR_TOKEN_URL: the EHR's OAuth token endpoint; unset = discovered from
    ``{IMMUNORAD_EHR_FHIR_URL}/.well-known/smart-configuration`` (SMART Backend Services)."""
    ehr_jku: str | None = None
    """IMMUNORAD_EHR_JKU: the JWKS URL registered with the EHR for our key, sent as the assertion's ``jku`` header."""
    ehr_context_pull: bool = True
    """IMMUNORAD_EHR_CONTEXT_PULL (default ``true``): fetch therapy, procedures, labs and Patient from the EHR for a
    patient who has no therapy line posted to us (needs IMMUNORAD_EHR_FHIR_URL)."""
    ehr_pull_interval_seconds: float = 3600.0
    """IMMUNORAD_EHR_PULL_INTERVAL_SECONDS (default 3600): at most one context pull per patient in this interval."""
    api_auth: tuple[str, ...] = ("token",)
    """IMMUNORAD_API_AUTH (default ``token``): comma list of accepted bearer credentials on /fhir /api /ui —
    ``token`` (the static API token) and/or ``jwt`` (access tokens checked against IMMUNORAD_API_JWKS_URL)."""
    api_jwks_url: str | None = None
    """IMMUNORAD_API_JWKS_URL: JWKS of the authorisation server that issues access tokens (``jwt`` mode)."""
    api_jwt_issuer: str | None = None
    """IMMUNORAD_API_JWT_ISSUER: required ``iss`` of access tokens (``jwt`` mode)."""
    api_jwt_audience: str | None = None
    """IMMUNORAD_API_JWT_AUDIENCE: required ``aud`` of access tokens (default ``{base_url}/fhir``)."""
    api_jwt_algorithms: tuple[str, ...] = ("RS256", "RS384", "ES256", "ES384")
    """IMMUNORAD_API_JWT_ALGORITHMS: accepted signature algorithms (asymmetric only; ``none``/HS* are never accepted)."""
    cds_auth: str = "jwt"
    """IMMUNORAD_CDS_AUTH (default ``jwt``, contract §9.5): every CDS Hooks service and feedback call must carry a
    JWT signed by an issuer in IMMUNORAD_CDS_ISSUERS (CDS Hooks 2.0 security); with no issuer configured those
    calls are answered 401 (discovery stays open) and the API says so at start. ``none`` accepts unsigned calls and
    is allowed only when IMMUNORAD_HTTP_HOST is a loopback address (a demo on one machine): otherwise the API
    refuses to start."""
    cds_issuers: tuple[tuple[str, str], ...] = ()
    """IMMUNORAD_CDS_ISSUERS: allow-list of CDS clients, comma-separated ``iss|jwks_url`` pairs; a JWT's ``jku``
    header, when present, must be one of the JWKS URLs allowed for its ``iss``."""
    cds_fhir_servers: tuple[tuple[str, str], ...] = ()
    """IMMUNORAD_CDS_FHIR_SERVERS: comma-separated ``iss|fhir_base`` pairs — the FHIR base of each CDS client. A
    call's ``fhirServer`` is contacted (to read the Patient when it was not prefetched) only when it equals the
    base configured for the verified issuer of the call's JWT; any other ``fhirServer`` is never contacted."""
    cds_fetch_timeout_seconds: float = 3.0
    """IMMUNORAD_CDS_FETCH_TIMEOUT_SECONDS (default 3): deadline of one read from an EHR's ``fhirServer`` during a
    CDS Hooks call (connect, answer and body together); past it the call is answered 412 as without prefetch."""
    cds_fetch_concurrency: int = 4
    """IMMUNORAD_CDS_FETCH_CONCURRENCY (default 4): reads from ``fhirServer`` in flight at once per API process (a
    small thread pool beside the request threads); a call finding them all busy is answered 412 at once, so a
    slow or silent EHR can hold at most this many request threads, each no longer than the deadline."""
    api_token: str | None = None
    """IMMUNORAD_API_TOKEN: bearer token required on /fhir, /api and /ui; unset: generated on first start
    into ``var/api-token`` (read it there)."""
    ui_session_hours: float = 8.0
    """IMMUNORAD_UI_SESSION_HOURS (default 8): how long a page sign-in (API token or SMART launch) lasts."""
    smart_client_id: str | None = None
    """IMMUNORAD_SMART_CLIENT_ID: our client id at the EHR for SMART App Launch (EHR launch of the patient page)."""
    smart_client_secret: str | None = None
    """IMMUNORAD_SMART_CLIENT_SECRET: only for an EHR that registered us as a confidential (symmetric) client;
    unset = a public client protected by PKCE."""
    smart_issuers: tuple[str, ...] = ()
    """IMMUNORAD_SMART_ISSUERS: comma list of the EHR FHIR base URLs (``iss``) allowed to launch us; no other
    ``iss`` is ever contacted."""
    smart_scope: str = "launch openid fhirUser patient/Patient.rs"
    """IMMUNORAD_SMART_SCOPE: scopes asked for at an EHR launch (the Patient in context is read to find ours)."""
    patient_id_system: str = "urn:immunorad:mrn"
    """IMMUNORAD_PATIENT_ID_SYSTEM: the FHIR ``Patient.identifier.system`` that DICOM PatientID corresponds to."""
    fhir_canonical: str = "http://immunorad.org/fhir"
    """IMMUNORAD_FHIR_CANONICAL: base of the project's own CodeSystem URLs in what we emit."""
    log_level: str = "INFO"
    """IMMUNORAD_LOG_LEVEL: level of the JSON logs (which carry no PHI; where they go: IMMUNORAD_LOG_FORMAT)."""
    log_format: str = "human"
    """IMMUNORAD_LOG_FORMAT (default ``human``): ``human`` writes the JSON log to ``var/log/immunorad.log`` and
    shows a person a short summary and our warnings; ``json`` writes every JSON line to stderr (the container
    default, set in the Dockerfile and the Helm chart)."""
    gunicorn_workers: int = 2
    """IMMUNORAD_GUNICORN_WORKERS (default 2): gunicorn worker processes of the API."""
    gunicorn_threads: int = 8
    """IMMUNORAD_GUNICORN_THREADS (default 8): request threads per worker (``service.ops.http_worker.ApiWorker``, a
    gunicorn ``gthread`` worker). A connection holds a thread only once its whole request has arrived (read in the
    worker's event loop, with a deadline for the head and a minimum rate for the body); a slow outbound call holds
    one thread, not a whole worker."""
    gunicorn_timeout_seconds: int = 60
    """IMMUNORAD_GUNICORN_TIMEOUT_SECONDS (default 60): a worker silent for this long is killed and replaced."""
    gunicorn_keepalive_seconds: int = 5
    """IMMUNORAD_GUNICORN_KEEPALIVE_SECONDS (default 5): idle keep-alive connections are closed after this."""
    role_http_port: int = 0
    """IMMUNORAD_ROLE_HTTP_PORT: health/metrics port of the dicom and worker roles (0 = off)."""
    keep_pixel_data: bool = False
    """IMMUNORAD_KEEP_PIXEL_DATA: write received images to var/dicom (contract §3: not kept unless configured)."""
    pixel_retention_days: int = 30
    """IMMUNORAD_PIXEL_RETENTION_DAYS (default 30, contract §9.6): CT, MR and PET pixel data is kept this long (in the
    database, zlib-compressed) so that a DICOM SEG arriving after its series can be measured; then the worker drops
    it, and a SEG over that series is listed with the reason. 0 keeps none."""
    radiomics_max_voxels: int = 8_000_000
    """IMMUNORAD_RADIOMICS_MAX_VOXELS (contract §9.6): a lesion segment with more voxels gets no radiomic features
    (listed as not computed with that reason) — a 256³ box holds ~4.4 M voxels of an inscribed ellipsoid."""
    radiomics_time_limit_seconds: int = 600
    """IMMUNORAD_RADIOMICS_TIME_LIMIT_SECONDS: wall-clock bound of one lesion's feature extraction (child process)."""
    radiomics_memory_limit_mb: int = 4096
    """IMMUNORAD_RADIOMICS_MEMORY_LIMIT_MB: address-space bound (RLIMIT_AS) of the feature-extraction child process."""
    radiomics_bin_width: float = 25.0
    """IMMUNORAD_RADIOMICS_BIN_WIDTH: IBSI fixed bin size for texture and histogram features, in the image's
    intensity unit (HU on CT)."""
    signatures_dir: str | None = None
    """IMMUNORAD_SIGNATURES_DIR: a folder of signature model cards (``*.yaml``, docs/SIGNATURES.md) used in addition to
    the ones shipped in ``service/features/signatures/``."""
    public_url: str | None = None
    """IMMUNORAD_PUBLIC_URL: the base URL clients reach the service at (e.g. ``https://immunorad.hospital.org``),
    from which every absolute URL in an answer is built: FHIR ``fullUrl``, ``Location``, paging links, CDS Hooks
    card links. Default ``http://{IMMUNORAD_HTTP_HOST}:{IMMUNORAD_HTTP_PORT}`` (a wildcard host replaced by this
    machine's name). Never taken from a request's ``Host`` header (contract §9.1)."""
    worker_poll_seconds: float = 0.5
    """IMMUNORAD_WORKER_POLL_SECONDS: how often an idle worker looks for due jobs and deliveries."""
    rule_overrides: dict = field(default_factory=dict)
    """IMMUNORAD_RULE_FLAGS: overrides of the clinical policy flags ([D] policies of docs/clinical), comma-separated
    ``flag=value``, e.g. ``recist.sticky_pr=false,irecist.nl_reset_min_decrease_mm=5``; the flags are listed below."""
    primary_criterion: str = "iRECIST"
    """IMMUNORAD_PRIMARY_CRITERION: the criterion the mCODE CancerDiseaseStatus and the report impression
    summarise (falls back to the disease family's immunotherapy criterion when it does not apply)."""
    alert_not_evaluable: bool = False
    """IMMUNORAD_ALERT_NOT_EVALUABLE: an ``info`` card (and Flag) for "hyperprogression could not be evaluated",
    for research sites; off by default, the report states it (contract §9.4)."""
    default_cancer_type: str | None = None
    """IMMUNORAD_DEFAULT_CANCER_TYPE: ``solid`` | ``lymphoma`` | ``glioma`` when no FHIR Condition says it."""
    default_pet_tracer: str = "fdg"
    """IMMUNORAD_DEFAULT_PET_TRACER: the tracer of a PET scan that states none (contract §9.3); the report says it
    was assumed. A key of ``rules.pet_tracers.TRACERS`` (``fdg``, ``psma-11``…)."""
    pseudonym_key: str = ""
    """IMMUNORAD_PSEUDONYM_KEY: key of the keyed hash that pseudonymises patient and study keys in logs and
    exports; unset: generated on first start into ``var/pseudonym-key``."""
    max_request_bytes: int = 10 * 1024 * 1024
    """IMMUNORAD_MAX_REQUEST_BYTES (default 10 MiB): largest request body, with a Content-Length or chunked (the
    limit is enforced while the body is read); larger ones are answered 413."""
    max_url_bytes: int = 8000
    """IMMUNORAD_MAX_URL_BYTES (default 8000): longest request target (path and query); longer ones are answered 414.
    gunicorn's request-line limit is set just above it (its ceiling is 8190 bytes), so at most ~8150."""
    max_lesion_mm: Decimal = Decimal(500)
    """IMMUNORAD_MAX_LESION_MM (default 500): a longer lesion diameter is refused as implausible (contract §9.2)."""
    max_suv: Decimal = Decimal(100)
    """IMMUNORAD_MAX_SUV (default 100): a higher SUV/SUL is refused as implausible (contract §9.2)."""
    fhir_max_bundle_entries: int = 200
    """IMMUNORAD_FHIR_MAX_BUNDLE_ENTRIES (default 200): most entries in one transaction or batch Bundle; more is a
    413 OperationOutcome (send several Bundles). One Bundle is one write transaction: on SQLite every C-STORE waits
    while it runs, so this bounds that wait well below IMMUNORAD_DICOM_LOCK_WAIT_SECONDS and the senders' own
    timeouts. Measured: 200 tumour-measurement entries (one patient's 20 lesions × 10 scans) take about 1 s of CPU;
    500 held SQLite's write lock 8-19 s on a loaded 2-core machine."""
    instance_id: str = field(default_factory=lambda: f"{os.uname().nodename}:{os.getpid()}")

    @property
    def api_token_file(self) -> Path:
        return self.var_dir / "api-token"

    @property
    def base_url(self) -> str:
        """The base of absolute URLs in answers (see ``public_url``), without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.http_host
        if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a wildcard bind address is no URL host: name the machine
            host = _machine_name()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.http_port}"

    @property
    def fhir_base_url(self) -> str:
        """The FHIR service base (``{base_url}/fhir``)."""
        return f"{self.base_url}/fhir"

    @property
    def plausibility(self) -> PlausibilityLimits:
        return PlausibilityLimits(max_lesion_mm=self.max_lesion_mm, max_suv=self.max_suv)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@functools.lru_cache(maxsize=1)
def _machine_name() -> str:
    return socket.getfqdn()


def _list(name: str, default: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in (_env(name, default) or "").split(",") if item.strip())


def _parse_pairs(
    text: str | None, name: str = "IMMUNORAD_CDS_ISSUERS", what: str = "jwks_url"
) -> tuple[tuple[str, str], ...]:
    """``iss|url,iss2|url2`` → ((iss, url), …); an issuer may appear with several URLs."""
    pairs = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        issuer, separator, url = item.strip().partition("|")
        if not separator or not issuer.strip() or not url.strip():
            raise ValueError(f"{name} entries must be iss|{what}")
        pairs.append((issuer.strip(), url.strip()))
    return tuple(pairs)


def _parse_flags(text: str | None) -> dict:
    flags: dict = {}
    for item in (text or "").split(","):
        if "=" not in item:
            continue
        key, raw = (part.strip() for part in item.split("=", 1))
        lowered = raw.lower()
        value: object
        if lowered in ("true", "false"):
            value = lowered == "true"
        else:
            try:
                value = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    value = raw
        flags[key] = value
    return flags


def load_settings() -> Settings:
    var_dir = Path(_env("IMMUNORAD_VAR_DIR", "var"))
    database_url = _env("IMMUNORAD_DATABASE_URL", f"sqlite:///{var_dir / 'immunorad.db'}")
    return Settings(
        var_dir=var_dir,
        database_url=database_url,
        http_host=_env("IMMUNORAD_HTTP_HOST", "127.0.0.1"),
        http_port=_int("IMMUNORAD_HTTP_PORT", 8080),
        dicom_host=_env("IMMUNORAD_DICOM_HOST", "127.0.0.1"),
        dicom_port=_int("IMMUNORAD_DICOM_PORT", 11112),
        ae_title=_env("IMMUNORAD_AE_TITLE", "IMMUNORAD"),
        allowed_calling_aets=tuple(
            a.strip() for a in (_env("IMMUNORAD_ALLOWED_CALLING_AETS", "") or "").split(",") if a.strip()
        ),
        dicom_tls_cert=_env("IMMUNORAD_DICOM_TLS_CERT"),
        dicom_tls_key=_env("IMMUNORAD_DICOM_TLS_KEY"),
        dicom_tls_ca=_env("IMMUNORAD_DICOM_TLS_CA"),
        study_settle_seconds=float(_env("IMMUNORAD_STUDY_SETTLE_SECONDS", "10")),
        evaluate_coalesce_seconds=float(_env("IMMUNORAD_EVALUATE_COALESCE_SECONDS", "0")),
        evaluate_coalesce_max_seconds=float(_env("IMMUNORAD_EVALUATE_COALESCE_MAX_SECONDS", "30")),
        ehr_fhir_url=(_env("IMMUNORAD_EHR_FHIR_URL") or None),
        ehr_token=_env("IMMUNORAD_EHR_TOKEN"),
        ehr_client_id=_env("IMMUNORAD_EHR_CLIENT_ID"),
        ehr_private_key=_env("IMMUNORAD_EHR_PRIVATE_KEY"),
        ehr_key_id=_env("IMMUNORAD_EHR_KEY_ID"),
        ehr_scope=_env("IMMUNORAD_EHR_SCOPE", Settings.ehr_scope),
        ehr_timeout_seconds=float(_env("IMMUNORAD_EHR_TIMEOUT_SECONDS", "30")),
        retry_backoff_seconds=float(_env("IMMUNORAD_RETRY_BACKOFF_SECONDS", "2")),
        dicom_processes=min(16, max(1, _int("IMMUNORAD_DICOM_PROCESSES", 1))),
        dicom_lock_wait_seconds=float(_env("IMMUNORAD_DICOM_LOCK_WAIT_SECONDS", "15")),
        ehr_token_url=_env("IMMUNORAD_EHR_TOKEN_URL"),
        ehr_jku=_env("IMMUNORAD_EHR_JKU"),
        ehr_context_pull=_bool("IMMUNORAD_EHR_CONTEXT_PULL", True),
        ehr_pull_interval_seconds=float(_env("IMMUNORAD_EHR_PULL_INTERVAL_SECONDS", "3600")),
        api_auth=_list("IMMUNORAD_API_AUTH", "token"),
        api_jwks_url=_env("IMMUNORAD_API_JWKS_URL"),
        api_jwt_issuer=_env("IMMUNORAD_API_JWT_ISSUER"),
        api_jwt_audience=_env("IMMUNORAD_API_JWT_AUDIENCE"),
        api_jwt_algorithms=_list("IMMUNORAD_API_JWT_ALGORITHMS", ",".join(Settings.api_jwt_algorithms)),
        cds_auth=(_env("IMMUNORAD_CDS_AUTH", "jwt") or "jwt").strip().lower(),
        cds_issuers=_parse_pairs(_env("IMMUNORAD_CDS_ISSUERS")),
        cds_fhir_servers=_parse_pairs(_env("IMMUNORAD_CDS_FHIR_SERVERS"), "IMMUNORAD_CDS_FHIR_SERVERS", "fhir_base"),
        cds_fetch_timeout_seconds=float(_env("IMMUNORAD_CDS_FETCH_TIMEOUT_SECONDS", "3")),
        cds_fetch_concurrency=_int("IMMUNORAD_CDS_FETCH_CONCURRENCY", 4),
        api_token=_env("IMMUNORAD_API_TOKEN"),
        ui_session_hours=float(_env("IMMUNORAD_UI_SESSION_HOURS", "8")),
        smart_client_id=_env("IMMUNORAD_SMART_CLIENT_ID"),
        smart_client_secret=_env("IMMUNORAD_SMART_CLIENT_SECRET"),
        smart_issuers=tuple(i.rstrip("/") for i in _list("IMMUNORAD_SMART_ISSUERS", "")),
        smart_scope=_env("IMMUNORAD_SMART_SCOPE", Settings.smart_scope),
        patient_id_system=_env("IMMUNORAD_PATIENT_ID_SYSTEM", "urn:immunorad:mrn"),
        fhir_canonical=_env("IMMUNORAD_FHIR_CANONICAL", "http://immunorad.org/fhir").rstrip("/"),
        log_level=_env("IMMUNORAD_LOG_LEVEL", "INFO"),
        log_format=(_env("IMMUNORAD_LOG_FORMAT", "human") or "human").strip().lower(),
        gunicorn_workers=_int("IMMUNORAD_GUNICORN_WORKERS", 2),
        gunicorn_threads=_int("IMMUNORAD_GUNICORN_THREADS", 8),
        gunicorn_timeout_seconds=_int("IMMUNORAD_GUNICORN_TIMEOUT_SECONDS", 60),
        gunicorn_keepalive_seconds=_int("IMMUNORAD_GUNICORN_KEEPALIVE_SECONDS", 5),
        role_http_port=_int("IMMUNORAD_ROLE_HTTP_PORT", 0),
        keep_pixel_data=_bool("IMMUNORAD_KEEP_PIXEL_DATA", False),
        pixel_retention_days=_int("IMMUNORAD_PIXEL_RETENTION_DAYS", 30),
        radiomics_max_voxels=_int("IMMUNORAD_RADIOMICS_MAX_VOXELS", 8_000_000),
        radiomics_time_limit_seconds=_int("IMMUNORAD_RADIOMICS_TIME_LIMIT_SECONDS", 600),
        radiomics_memory_limit_mb=_int("IMMUNORAD_RADIOMICS_MEMORY_LIMIT_MB", 4096),
        radiomics_bin_width=float(_env("IMMUNORAD_RADIOMICS_BIN_WIDTH", "25")),
        signatures_dir=_env("IMMUNORAD_SIGNATURES_DIR"),
        public_url=_env("IMMUNORAD_PUBLIC_URL"),
        worker_poll_seconds=float(_env("IMMUNORAD_WORKER_POLL_SECONDS", "0.5")),
        rule_overrides=_parse_flags(_env("IMMUNORAD_RULE_FLAGS")),
        primary_criterion=_env("IMMUNORAD_PRIMARY_CRITERION", "iRECIST"),
        alert_not_evaluable=_bool("IMMUNORAD_ALERT_NOT_EVALUABLE", False),
        default_cancer_type=_env("IMMUNORAD_DEFAULT_CANCER_TYPE"),
        default_pet_tracer=_env("IMMUNORAD_DEFAULT_PET_TRACER", "fdg"),
        pseudonym_key=_env("IMMUNORAD_PSEUDONYM_KEY", ""),
        max_request_bytes=_int("IMMUNORAD_MAX_REQUEST_BYTES", 10 * 1024 * 1024),
        max_lesion_mm=Decimal(_env("IMMUNORAD_MAX_LESION_MM", "500")),
        max_suv=Decimal(_env("IMMUNORAD_MAX_SUV", "100")),
        fhir_max_bundle_entries=_int("IMMUNORAD_FHIR_MAX_BUNDLE_ENTRIES", 200),
        max_url_bytes=_int("IMMUNORAD_MAX_URL_BYTES", 8000),
    )


def today() -> dt.date:
    """The service's "today" for the plausibility gate: the UTC calendar date (a scan may be dated up to one day
    after it, which absorbs time zones ahead of UTC)."""
    return dt.datetime.now(dt.UTC).date()


def ensure_api_token(settings: Settings) -> str:
    """IMMUNORAD_API_TOKEN, or the token generated on first start and kept in var/api-token (contract §2)."""
    if settings.api_token:
        return settings.api_token
    path = settings.api_token_file
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(token + "\n")
    os.chmod(tmp, 0o600)
    try:
        # Several processes may start at once: the first rename wins, the others read it back.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()
