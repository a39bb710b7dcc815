"""``immunorad`` — the one console command (contract §1).

immunorad serve [--demo]      all roles in one process group (HTTP API, DICOM listener, worker)
immunorad api | dicom | worker one role each, for scaling out
immunorad migrate             apply database migrations
immunorad demo [--url URL]    send the synthetic cohort through the real interfaces
immunorad reassess [--patient ID | --all]
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from service.ops.config import Settings, ensure_api_token, load_settings
from service.ops.logs import TO_FILE_ONLY, configure_logging, configure_pseudonyms, log_file

logger = logging.getLogger("immunorad")


def _setup(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format, settings.var_dir)
    configure_pseudonyms(settings.pseudonym_key, settings.var_dir)


def cmd_migrate(settings: Settings, _args) -> int:
    from service.persistence.db import migrate

    migrate(settings.database_url)
    logger.info("migrations applied")
    return 0


def cmd_api(settings: Settings, _args) -> int:
    from gunicorn.app.base import BaseApplication

    from service.api import create_app
    from service.api.limits import answer_limits_as_operation_outcome, request_line_limit
    from service.ops.http_worker import ApiWorker
    from service.security.auth import startup_warnings

    if refused := _cannot_listen("HTTP", settings.http_host, settings.http_port):
        return refused
    ensure_api_token(settings)
    ApiWorker.max_body_bytes = settings.max_request_bytes
    for warning in startup_warnings(settings):
        logger.warning(warning)

    class Gunicorn(BaseApplication):
        def load_config(self):
            # gthread (service.ops.http_worker.ApiWorker): each worker process serves up to ``threads`` requests at
            # once; a connection holds a thread only once its request head has fully arrived, and its body must
            # keep a minimum rate, so slow clients and slow outbound calls (each bounded, see service.security.cds_fetch)
            # cannot take every worker (contract §9.5).
            self.cfg.set("bind", f"{settings.http_host}:{settings.http_port}")
            self.cfg.set("workers", max(1, settings.gunicorn_workers))
            self.cfg.set("worker_class", "service.ops.http_worker.ApiWorker")
            self.cfg.set("threads", max(1, settings.gunicorn_threads))
            self.cfg.set("timeout", max(10, settings.gunicorn_timeout_seconds))
            self.cfg.set("keepalive", max(1, settings.gunicorn_keepalive_seconds))
            self.cfg.set("graceful_timeout", 20)
            # Request line and header limits (gunicorn's defaults, stated): an oversized head is refused at once.
            self.cfg.set("limit_request_line", 8190)
            self.cfg.set("limit_request_fields", 100)
            self.cfg.set("accesslog", None)
            self.cfg.set("loglevel", "warning")
            if settings.log_format == "human":  # gunicorn's own lines join our JSON log, not the terminal
                self.cfg.set("errorlog", str(log_file(settings.var_dir)))
            self.cfg.set("preload_app", False)
            self.cfg.set("limit_request_line", request_line_limit(settings))
            self.cfg.set("post_worker_init", answer_limits_as_operation_outcome)

        def load(self):
            from service.api.ui import warm

            app = create_app(settings)
            warm(app)
            return app

    Gunicorn().run()
    return 0


def _cannot_listen(what: str, host: str, port: int) -> int | None:
    """Exit status 1 after one clear line when the role's port cannot be listened on (busy, not permitted)."""
    from service.ops.serve import bind_problem

    problem = bind_problem(host, port)
    if problem is None:
        return None
    print(f"immunorad: cannot start: the {what} port {host}:{port} is {problem}", file=sys.stderr, flush=True)
    return 1


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def cmd_dicom(settings: Settings, args) -> int:
    from dicom_listener.scp import ListenerConfig, start_listener
    from service.ingest.dicom_ingest import DicomIngest
    from service.ops.shared_port import Siblings
    from service.persistence.db import Database

    sibling = getattr(args, "sibling", False)
    if not sibling and (refused := _cannot_listen("DICOM", settings.dicom_host, settings.dicom_port)):
        return refused
    db = Database(settings.database_url, pool_size=10)
    config = ListenerConfig(
        ae_title=settings.ae_title,
        host=settings.dicom_host,
        port=settings.dicom_port,
        allowed_calling_aets=settings.allowed_calling_aets,
        tls_cert=settings.dicom_tls_cert,
        tls_key=settings.dicom_tls_key,
        tls_ca=settings.dicom_tls_ca,
        reuse_port=settings.dicom_processes > 1,
    )
    ingest = DicomIngest(db, settings)
    server = start_listener(config, ingest, on_refused=ingest.association_refused)
    logger.info(
        "DICOM listener started",
        extra={
            "fields": {
                "port": settings.dicom_port,
                "ae": settings.ae_title,
                "tls": bool(settings.dicom_tls_cert),
                "processes": settings.dicom_processes,
            }
        },
    )
    stop = _stop_on_signals()
    if sibling:  # one of the processes the first one started (service.ops.shared_port): it ends with its parent
        Siblings.follow_parent(stop)
        server.shutdown()
        return 0
    siblings = Siblings(settings.dicom_processes - 1)
    role_http = None
    if settings.role_http_port:
        from service.ops.role_http import start_role_http

        role_http = start_role_http(
            settings.dicom_host if settings.dicom_host != "127.0.0.1" else "0.0.0.0",  # noqa: S104 -- the dicom role's probe port must answer the kubelet on the pod address
            settings.role_http_port,
            db,
            lambda: {"database": db.ping(), "dicom-listener": True},
        )
    failed = siblings.supervise(stop)
    server.shutdown()
    if role_http:
        role_http.shutdown()
    return 1 if failed else 0


def cmd_worker(settings: Settings, _args) -> int:
    from service.assessment.worker import Worker
    from service.persistence.db import Database

    db = Database(settings.database_url)
    worker = Worker(settings, db)
    role_http = None
    if settings.role_http_port:
        from service.ops.role_http import start_role_http

        role_http = start_role_http("0.0.0.0", settings.role_http_port, db, lambda: {"database": db.ping()})  # noqa: S104 -- the worker's probe port must answer the kubelet on the pod address
    stop = _stop_on_signals()
    worker.run(stop)
    if role_http:
        role_http.shutdown()
    return 0


def cmd_serve(settings: Settings, args) -> int:
    """Every role as a child process, restarted if it dies; SIGTERM stops them all (``service.ops.serve``)."""
    from service.ops.serve import serve

    return serve(settings, demo=getattr(args, "demo", False), stop=_stop_on_signals())


def cmd_demo(settings: Settings, args) -> int:
    from service.demo.cohort import run_demo

    url = args.url or f"http://{settings.http_host}:{settings.http_port}"
    token = args.token or ensure_api_token(settings)
    run_demo(
        base_url=url,
        token=token,
        dicom_host=args.dicom_host or settings.dicom_host,
        dicom_port=args.dicom_port or settings.dicom_port,
        ae_title=settings.ae_title,
        patient_id_system=settings.patient_id_system,
    )
    print(f"Demo cohort sent. Look at {url}/ui/patients (sign in with the API token).", flush=True)
    return 0


def cmd_reassess(settings: Settings, args) -> int:
    from service.assessment.reassess import reassess

    return reassess(settings, patient=args.patient, everyone=args.all, force=args.force, workers=args.workers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="immunorad", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="all roles (HTTP API, DICOM listener, worker) on this machine")
    serve.add_argument("--demo", action="store_true", help="send the synthetic demo cohort once the service is up")
    for name, text in (
        ("api", "the HTTP API under gunicorn"),
        ("dicom", "the DICOM C-STORE listener (IMMUNORAD_DICOM_PROCESSES processes sharing its port)"),
        ("worker", "the evaluation worker and EHR outbox"),
        ("migrate", "apply database migrations"),
    ):
        role = sub.add_parser(name, help=text)
        if name == "dicom":
            role.add_argument("--sibling", action="store_true", help=argparse.SUPPRESS)
    demo = sub.add_parser("demo", help="send the synthetic cohort to a running service")
    demo.add_argument("--url", help="base URL of the service's HTTP API (default from the environment)")
    demo.add_argument("--token", help="API token (default: IMMUNORAD_API_TOKEN or var/api-token)")
    demo.add_argument("--dicom-host")
    demo.add_argument("--dicom-port", type=int)
    reassess = sub.add_parser("reassess", help="re-evaluate with the current rule base and show what changed")
    target = reassess.add_mutually_exclusive_group(required=True)
    target.add_argument("--patient", help="our patient id or the patient identifier (MRN)")
    target.add_argument("--all", action="store_true")
    reassess.add_argument("--force", action="store_true", help="record a version even when nothing changed")
    reassess.add_argument("--workers", type=int, default=1, help="parallel processes (PostgreSQL)")
    args = parser.parse_args(argv)
    settings = load_settings()
    _setup(settings)
    if args.command in ("api", "serve"):
        from service.security.auth import AuthConfigError, check_settings

        try:
            check_settings(settings)
        except AuthConfigError as refused:
            print(f"immunorad: refusing to start: {refused}", file=sys.stderr, flush=True)
            return 2
    handlers = {
        "migrate": cmd_migrate,
        "api": cmd_api,
        "dicom": cmd_dicom,
        "worker": cmd_worker,
        "serve": cmd_serve,
        "demo": cmd_demo,
        "reassess": cmd_reassess,
    }
    try:
        return handlers[args.command](settings, args) or 0
    except Exception as error:
        # One line for the person (a path and the OS's reason for a file or socket problem, else the type only:
        # messages can quote data); the log keeps the type and the place.
        logger.exception("command failed", extra={"fields": {"command": args.command}, **TO_FILE_ONLY})
        reason = type(error).__name__
        if isinstance(error, OSError) and error.strerror:
            reason = f"{error.strerror}" + (f": {error.filename}" if error.filename else "")
        print(f"immunorad: {args.command} failed: {reason}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
