"""What every benchmark shares: statistics, the machine and versions, temporary databases, role processes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("IMMUNORAD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# -- results -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Series:
    """Repeated measurements of one figure (one value per run)."""

    name: str
    unit: str
    values: list[float]
    higher_is_better: bool = True
    note: str = ""

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "unit": self.unit,
            "values": self.values,
            "min": self.min,
            "median": self.median,
            "max": self.max,
            "note": self.note,
        }


@dataclasses.dataclass
class Goal:
    what: str
    measured: str
    target: str
    met: bool | None
    """None: not measurable in this run (said why in ``measured``)."""


@dataclasses.dataclass
class Section:
    key: str
    title: str
    setup: list[str] = dataclasses.field(default_factory=list)
    series: list[Series] = dataclasses.field(default_factory=list)
    tables: list[tuple[list[str], list[list[str]]]] = dataclasses.field(default_factory=list)
    goals: list[Goal] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def add(self, series: Series) -> Series:
        self.series.append(series)
        return series

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "title": self.title,
            "setup": self.setup,
            "series": [s.as_dict() for s in self.series],
            "tables": self.tables,
            "goals": [dataclasses.asdict(g) for g in self.goals],
            "notes": self.notes,
            "seconds": self.seconds,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def fmt(value: float, digits: int = 1) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


# -- the machine -----------------------------------------------------------------------------------------


def _first_line(args: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(args), capture_output=True, text=True, timeout=20)
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.SubprocessError):
        return "not found"


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    versions = {}
    for dist in (
        "pydicom",
        "pynetdicom",
        "highdicom",
        "SQLAlchemy",
        "psycopg",
        "Flask",
        "gunicorn",
        "durable-rules",
        "fhir.resources",
        "hypothesis",
    ):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:  # noqa: BLE001 -- any failure to read the metadata is reported as "not installed"
            versions[dist] = "not installed"
    import sqlite3

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(),
        "dcmtk": _first_line(["storescu", "--version"]).replace("$", "").strip(),
        "packages": versions,
        "load_before": os.getloadavg(),
        "cpu_check_before": cpu_check(),
    }


def cpu_check(rounds: int = 5) -> float:
    """Milliseconds (median of ``rounds``, wall clock) of a fixed pure-Python loop: how fast this machine runs our
    kind of code right now. Taken before and after a run, it tells runs on other machines, or on a busy host, apart."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i * i % 7
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def postgres_version() -> str:
    try:
        with pg_admin() as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:  # noqa: BLE001 -- the results table records any failure by its type
        return f"unreachable ({type(exc).__name__})"


# -- databases -------------------------------------------------------------------------------------------


def pg_admin():
    import psycopg

    return psycopg.connect(
        POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True, connect_timeout=5
    )


def pg_url(name: str) -> str:
    return f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"


@contextlib.contextmanager
def postgres_database(
    prefix: str = "immunorad_bench", *, template: str | None = None, migrate: bool = True
) -> Iterator[str]:
    """A fresh PostgreSQL database (migrated, or copied from ``template``), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    url = pg_url(name)
    try:
        if migrate and template is None:
            from service.persistence.db import migrate as run_migrations

            run_migrations(url)
        yield url
    finally:
        with pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def sqlite_database(folder: Path) -> Iterator[str]:
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'immunorad.db'}"
    from service.persistence.db import migrate

    migrate(url)
    yield url


@contextlib.contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    if backend == "postgresql":
        with postgres_database() as url:
            yield url
    else:
        with sqlite_database(folder) as url:
            yield url


def count_rows(url: str, table: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar())
    finally:
        engine.dispose()


# -- processes -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def role_env(url: str, var_dir: Path, **extra: str) -> dict:
    """Production defaults (worker poll 0.5 s, settle 10 s, INFO logs), on the given database."""
    env = dict(os.environ)
    env.update(
        {
            "IMMUNORAD_DATABASE_URL": url,
            "IMMUNORAD_VAR_DIR": str(var_dir),
            "IMMUNORAD_API_TOKEN": "bench-token",
            "IMMUNORAD_PSEUDONYM_KEY": "bench-pseudonym-key",
            "TCP_NODELAY": "1",
        }
    )
    env.update(extra)
    return env


class Role:
    """One ``immunorad <role>`` process with its log in ``var_dir``."""

    def __init__(self, role: str, env: dict, var_dir: Path) -> None:
        var_dir.mkdir(parents=True, exist_ok=True)
        self.role = role
        self.log = var_dir / f"{role}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", role],
            env=env,
            cwd=REPO,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the role: every live process of its session (the role's own, gunicorn's
        workers, the DICOM listener's sibling processes) and the children they reaped."""
        return tree_cpu(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            import signal

            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def process_cpu_seconds(stat: str) -> float:
    """User + system CPU time from a ``/proc/PID/stat`` line, the process's reaped children included."""
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(settle: float = 0.25) -> float | None:
    """CPU time of every PostgreSQL server process on this machine (the postmaster's count includes the backends
    that have exited), or None when none is visible (a server elsewhere).

    A backend that just exited counts nowhere until the postmaster has reaped it: read again until two readings
    ``settle`` seconds apart agree (or for at most 5 s)."""
    previous = _postgres_cpu_now()
    deadline = time.monotonic() + 5
    while previous is not None and time.monotonic() < deadline:
        time.sleep(settle)
        current = _postgres_cpu_now()
        if current == previous:
            break
        previous = current
    return previous


def process_stats() -> Iterator[tuple[str, int, str]]:
    """(command name, session id, the whole ``/proc/<pid>/stat`` line) of every live process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        yield stat[stat.index("(") + 1 : stat.rindex(")")], int(stat.rsplit(")", 1)[1].split()[3]), stat


def tree_cpu(session_id: int) -> float:
    """CPU seconds of every live process in the session ``session_id`` (a role and the processes it started)."""
    return sum(process_cpu_seconds(stat) for _, session, stat in process_stats() if session == session_id)


def _postgres_cpu_now() -> float | None:
    cpu = [process_cpu_seconds(stat) for name, _, stat in process_stats() if name in ("postgres", "postmaster")]
    return sum(cpu) if cpu else None


def tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"immunorad-bench-{prefix}-"))


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def dump(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1, default=str))
