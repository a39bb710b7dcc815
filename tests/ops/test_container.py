"""The container image, built and run with a real Docker engine (issue 19 item 4).

No image registry is reachable from the CI machines, so nothing here pulls: the base is a Debian bookworm
root file system made with ``debootstrap`` (python3, python3-venv, python3-pip: Python 3.11) and loaded with
``docker import``, passed to the Dockerfile as ``BASE_IMAGE``; it is kept between runs under
``BASE_TAG``. The image is built with BuildKit and the host's CA bundle as the ``ca`` secret (pip inside the
build goes through this network's TLS-inspecting proxy). Then ``immunorad serve --demo`` runs in a
container; from the host, ``/healthz`` answers, DCMTK's ``storescu`` stores one instance, and every
process of the container runs as the image's non-root user. The image size and the build times are printed.

The test is marked ``container`` and runs only when that marker is selected (``pytest -m container``,
``make test-container``, .ci/run): it takes minutes and needs root. Selected, it never skips: a missing
tool is installed with apt (Debian's ``docker.io`` and ``debootstrap``) or the test fails.
Debian's docker client (/usr/bin/docker) is called by its full path: other docker clients found on these
machines cannot build with BuildKit.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.demo.cohort import case_datasets
from tests.rules import cases
from tests.support.dcmtk import storescu

pytestmark = pytest.mark.container

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
DEBOOTSTRAP = "/usr/sbin/debootstrap"
BASE_TAG = "immunorad-ci-base:bookworm-py311"
IMAGE_TAG = "immunorad:container-test"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_MIRROR = os.environ.get("IMMUNORAD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
IMAGE_UID = 10001  # the Dockerfile's USER


@pytest.fixture(scope="module", autouse=True)
def only_when_selected(request: pytest.FixtureRequest) -> None:
    if "container" not in (request.config.getoption("markexpr") or ""):
        pytest.skip(
            "container test: builds and runs the Docker image (minutes, root); "
            "select it with `pytest -m container` or `make test-container` (.ci/run does)"
        )


def run(argv: list[str], *, timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and completed.returncode != 0:
        pytest.fail(
            f"{' '.join(argv[:4])} ... exited {completed.returncode}\n{completed.stdout[-4000:]}\n"
            f"{completed.stderr[-4000:]}",
            pytrace=False,
        )
    return completed


def apt_install(*packages: str) -> None:
    if os.geteuid() != 0:
        pytest.fail(f"missing {', '.join(packages)}: install them (apt-get install {' '.join(packages)})")
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], timeout=600, env=environment)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], timeout=900, env=environment)


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[container] {line}", flush=True)


@pytest.fixture(scope="module")
def docker() -> Iterator[None]:
    """Debian's docker.io daemon: installed if missing, started if none runs (and stopped again then)."""
    missing = [p for p, path in (("docker.io", DOCKERD), ("debootstrap", DEBOOTSTRAP)) if not Path(path).exists()]
    if missing or not Path(DOCKER).exists():
        apt_install(*(missing or ["docker.io"]))
    daemon = None
    log = None
    if run([DOCKER, "info"], check=False, timeout=30).returncode != 0:
        log = tempfile.NamedTemporaryFile(prefix="dockerd-", suffix=".log", delete=False)
        daemon = subprocess.Popen([DOCKERD], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while run([DOCKER, "info"], check=False, timeout=30).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start: {Path(log.name).read_text()[-4000:]}", pytrace=False)
            time.sleep(1)
    try:
        yield
    finally:
        if daemon is not None:
            daemon.terminate()
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
            assert log is not None
            log.close()
            os.unlink(log.name)


def image_exists(tag: str) -> bool:
    return run([DOCKER, "image", "inspect", tag], check=False, timeout=30).returncode == 0


@pytest.fixture(scope="module")
def base_image(docker: None) -> tuple[str, str]:
    """A Debian bookworm base with Python 3.11, made locally once and kept under BASE_TAG."""
    if image_exists(BASE_TAG):
        return BASE_TAG, f"base image {BASE_TAG}: present, not rebuilt"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bookworm-") as folder:
        rootfs = Path(folder) / "rootfs"
        run(
            [
                DEBOOTSTRAP,
                "--variant=minbase",
                "--include=python3,python3-venv,python3-pip",
                "bookworm",
                str(rootfs),
                DEBIAN_MIRROR,
            ],
            timeout=1200,
        )
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run([DOCKER, "import", "-", BASE_TAG], stdin=tar.stdout, timeout=600)
        assert tar.wait(60) == 0
    return BASE_TAG, f"base image {BASE_TAG}: debootstrap + docker import in {time.monotonic() - started:.0f} s"


@pytest.fixture(scope="module")
def image(base_image: tuple[str, str]) -> tuple[str, list[str]]:
    base, base_note = base_image
    started = time.monotonic()
    run(
        [
            DOCKER,
            "build",
            "--build-arg",
            f"BASE_IMAGE={base}",
            "--secret",
            f"id=ca,src={HOST_CA_BUNDLE}",
            "--tag",
            IMAGE_TAG,
            str(REPO_ROOT),
        ],
        env=dict(os.environ, DOCKER_BUILDKIT="1"),
        timeout=1500,
    )
    size = int(run([DOCKER, "image", "inspect", "--format", "{{.Size}}", IMAGE_TAG]).stdout.strip())
    build_note = f"image {IMAGE_TAG}: docker build in {time.monotonic() - started:.0f} s, size {size / 1e6:.0f} MB"
    return IMAGE_TAG, [base_note, build_note]


@pytest.fixture
def container(image: tuple[str, list[str]], capsys: pytest.CaptureFixture[str]) -> Iterator[str]:
    tag, notes = image
    for note in notes:
        report(capsys, note)
    name = f"immunorad-test-{uuid.uuid4().hex[:8]}"
    run(
        [
            DOCKER,
            "run",
            "--detach",
            "--name",
            name,
            "--publish",
            "127.0.0.1::8080",
            "--publish",
            "127.0.0.1::11112",
            tag,
            "serve",
            "--demo",
        ]
    )
    try:
        yield name
    finally:
        run([DOCKER, "rm", "--force", name], check=False)
        assert run([DOCKER, "container", "inspect", name], check=False).returncode != 0, f"{name} still exists"


def host_port(container: str, port: int) -> int:
    published = run([DOCKER, "port", container, f"{port}/tcp"]).stdout.split()[0]
    return int(published.rsplit(":", 1)[1])


def wait_healthz(container: str, url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                assert json.loads(response.read()) == {"status": "ok"}
                assert response.status == 200
                return
        except OSError:
            state = run([DOCKER, "inspect", "--format", "{{.State.Status}}", container]).stdout.strip()
            if state != "running" or time.monotonic() > deadline:
                logs = run([DOCKER, "logs", container], check=False)
                pytest.fail(f"{url} never answered (container {state}):\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
            time.sleep(1)


def container_uids(container: str) -> dict[int, int]:
    """Host PID -> real UID of every process in the container, read from the host's /proc."""
    pids = run([DOCKER, "top", container, "-eo", "pid"]).stdout.split()[1:]
    uids = {}
    for pid in map(int, pids):
        status = Path(f"/proc/{pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        uids[pid] = int(uid_line.split()[1])
    return uids


def test_image_builds_and_serves_http_and_dicom_as_non_root(container: str, tmp_path: Path) -> None:
    http_port, dicom_port = host_port(container, 8080), host_port(container, 11112)

    wait_healthz(container, f"http://127.0.0.1:{http_port}/healthz")

    # One C-STORE from the host with DCMTK: the first instance of worked example E1.
    dataset = case_datasets(cases.E1, "MRN-CONTAINER")[0]
    path = tmp_path / "one.dcm"
    dataset.save_as(path, enforce_file_format=True)
    result = storescu("127.0.0.1", dicom_port, [path], extra=["-v"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Store Response (Success)" in result.stdout + result.stderr, result.stdout + result.stderr

    # Every process (tini, `immunorad serve`, its api/dicom/worker children) runs as the image's user.
    uids = container_uids(container)
    assert len(uids) >= 4, uids
    assert set(uids.values()) == {IMAGE_UID}, uids
    in_container = run([DOCKER, "exec", container, "id", "-u"]).stdout.strip()
    assert in_container == str(IMAGE_UID)
