"""Several listener processes on one DICOM port (IMMUNORAD_DICOM_PROCESSES, issue 18 item 5), as real processes.

``immunorad dicom`` binds the port with ``SO_REUSEPORT`` and starts the other processes, which bind it the same way;
the kernel hands each new association to one of them. Checked here with DCMTK as the sender, one association per
instance: both processes listen on the port, both store instances (their JSON log lines carry their process id),
every instance is stored once; the siblings stop with the first process on SIGTERM, and by themselves when it is
killed outright (no listener outlives its role).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest

from service.demo.sr_writer import build_ct_image
from service.persistence.models import Instance
from tests.dicom_listener.test_scp import count
from tests.support.dcmtk import storescu
from tests.support.processes import ServiceProcesses

pytestmark = pytest.mark.slow


def listening_pids(port: int) -> set[int]:
    """The processes holding a listening TCP socket on ``port`` (from /proc: the socket inodes of each process's
    descriptors against the LISTEN entries of /proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            pids.add(int(entry.name))
    return pids


def stored_by(log: Path) -> list[int]:
    """The process id of each "instance stored" line of the listener's JSON log."""
    pids = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "instance stored":
            pids.append(entry["pid"])
    return pids


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        ds = build_ct_image(
            patient_id="SHARED-1",
            patient_name="SHARED^PORT",
            study_instance_uid="1.2.826.0.1.3680043.8.498.77.1",
            study_date=dt.date(2024, 1, 8),
            series_instance_uid="1.2.826.0.1.3680043.8.498.77.2",
            sop_instance_uid=f"1.2.826.0.1.3680043.8.498.77.3.{i + 1}",
            instance_number=i + 1,
        )
        path = folder / f"ct{i}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def test_two_listener_processes_share_the_port_and_both_store(db_url, db, tmp_path):
    service = ServiceProcesses(
        db_url=db_url, var_dir=tmp_path / "var", roles=("dicom",), extra_env={"IMMUNORAD_DICOM_PROCESSES": "2"}
    )
    service.start()
    try:
        first = service.processes["dicom"].pid
        assert wait_until(lambda: len(listening_pids(service.dicom_port)) == 2), listening_pids(service.dicom_port)
        pids = listening_pids(service.dicom_port)
        assert first in pids
        (sibling,) = pids - {first}
        assert b"--sibling" in Path(f"/proc/{sibling}/cmdline").read_bytes()

        # 24 associations, four at a time, one new instance each: the kernel spreads them over both processes
        # (by a hash of each connection's addresses; all 24 on one process would have odds of 2 in 2**24).
        files = images(tmp_path / "in", 24)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda f: storescu("127.0.0.1", service.dicom_port, [f]), files))
        assert [r.returncode for r in results] == [0] * 24, [r.stderr for r in results if r.returncode]
        assert count(db, Instance) == 24
        served = stored_by(service.log_path("dicom"))
        assert len(served) == 24 and set(served) == {first, sibling}, served
    finally:
        service.stop()
    # SIGTERM to the role's process group stopped both.
    assert not listening_pids(service.dicom_port)


def test_the_siblings_stop_when_the_first_process_is_killed(backend, db_url, tmp_path):
    if backend != "sqlite":
        pytest.skip("process management: the database plays no part (run once, on SQLite)")
    service = ServiceProcesses(
        db_url=db_url, var_dir=tmp_path / "var", roles=("dicom",), extra_env={"IMMUNORAD_DICOM_PROCESSES": "3"}
    )
    service.start()
    try:
        first = service.processes["dicom"].pid
        assert wait_until(lambda: len(listening_pids(service.dicom_port)) == 3)
        siblings = listening_pids(service.dicom_port) - {first}
        os.kill(first, signal.SIGKILL)  # the first process only, not its group: nobody stops the siblings
        service.processes["dicom"].wait(timeout=10)
        assert wait_until(lambda: not listening_pids(service.dicom_port)), listening_pids(service.dicom_port)
        assert wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in siblings))
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", service.dicom_port), timeout=1):
            pass
    finally:
        service.stop()
