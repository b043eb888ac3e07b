"""Safe by default (issue 22, point 3): no API beyond loopback without a token, and `vidstrata up` binds every port of
its components to 127.0.0.1.

Listening addresses are read from /proc/net/tcp{,6}: what the kernel says the socket is bound to.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vidstrata.gateway.settings import GatewaySettings, UnauthenticatedExposure
from vidstrata.stack.process import ManagedProcess, free_port, port_open
from vidstrata.up import Stack, UpSettings

LISTEN = "0A"


def _address(hex_address: str) -> str:
    """/proc/net/tcp's address (little-endian words) as text; an IPv4-mapped one (a dual-stack socket bound to an
    IPv4 address) as that IPv4 address."""
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    address = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return str(address.ipv4_mapped or address)


def listening(port: int) -> set[str]:
    """The addresses something listens on at TCP `port` (0.0.0.0 / :: for every interface)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == LISTEN and int(port_hex, 16) == port:
                found.add(_address(address))
    return found


def _wait(condition, timeout_s: float = 60.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


# -- the gateway's exposure check ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_token(host):
    assert GatewaySettings(host=host, auth_token="").exposure_warning() is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "10.0.0.5", "gateway.example", "", "::ffff:127.0.0.1"])
def test_any_other_host_needs_a_token_or_an_explicit_allowance(host):
    with pytest.raises(UnauthenticatedExposure, match="refusing to serve the API on .* without authentication"):
        GatewaySettings(host=host, auth_token="").exposure_warning()
    assert GatewaySettings(host=host, auth_token="s3cret").exposure_warning() is None
    warning = GatewaySettings(host=host, auth_token="", allow_unauthenticated=True).exposure_warning()
    assert warning is not None and warning.startswith("UNAUTHENTICATED")


def _gateway(tmp_path: Path, port: int, **env: str) -> ManagedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VIDSTRATA_")}
    full.update(VIDSTRATA_GATEWAY_HOST="0.0.0.0", VIDSTRATA_GATEWAY_PORT=str(port), VIDSTRATA_GATEWAY_METRICS_PORT="0",
                VIDSTRATA_MILVUS_URI=f"http://127.0.0.1:{free_port()}", VIDSTRATA_TRITON_URL=f"127.0.0.1:{free_port()}",
                VIDSTRATA_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", PYTHONUNBUFFERED="1", **env)
    return ManagedProcess("gateway", [sys.executable, "-m", "vidstrata.gateway.app"], tmp_path / "gateway.log",
                          env=full).start()


def test_the_gateway_refuses_to_serve_every_address_without_a_token(tmp_path):
    port = free_port()
    process = _gateway(tmp_path, port)
    try:
        assert _wait(lambda: not process.alive()), "the gateway kept running"
        assert process.proc is not None and process.proc.returncode != 0
        log = process.log_tail()
        assert "refusing to serve the API on 0.0.0.0 without authentication: set VIDSTRATA_GATEWAY_AUTH_TOKEN" in log
        assert listening(port) == set()
    finally:
        process.stop()


def test_allowed_on_purpose_it_serves_and_says_so_loudly(tmp_path):
    port = free_port()
    process = _gateway(tmp_path, port, VIDSTRATA_GATEWAY_ALLOW_UNAUTHENTICATED="true")
    try:
        assert _wait(lambda: port_open(port) or not process.alive()) and process.alive(), process.log_tail()
        warning = next(line for line in process.log_tail(200).splitlines() if "UNAUTHENTICATED" in line)
        assert " WARNING " in warning and f"0.0.0.0:{port}" in warning
        assert listening(port) & {"0.0.0.0", "::"}
    finally:
        process.stop()


# -- `vidstrata up`: every port on loopback ------------------------------------------------------------------------


def test_up_tells_the_worker_to_bind_metrics_to_loopback_and_which_folders_it_may_read(tmp_path):
    stack = Stack(UpSettings(data_dir=tmp_path / "data", media_dir=tmp_path / "media"))
    env = stack.env()
    assert env["VIDSTRATA_WORKER_METRICS_HOST"] == "127.0.0.1"
    roots = env["VIDSTRATA_WORKER_LOCAL_ROOTS"].split(os.pathsep)
    assert str((tmp_path / "data" / "samples").resolve()) in roots and str((tmp_path / "media").resolve()) in roots
    from vidstrata.media.samples import sample_videos

    for path in sample_videos().values():  # what `up` ingests on its first run
        assert str(path.parent) in roots
    assert str(tmp_path / "data") not in roots  # the index, the queue and the logs are no videos
    stack = Stack(UpSettings(data_dir=tmp_path / "data"), child_env={"VIDSTRATA_WORKER_LOCAL_ROOTS": "/srv/videos"})
    assert stack.env()["VIDSTRATA_WORKER_LOCAL_ROOTS"].split(os.pathsep)[0] == "/srv/videos"


_SERVE = ("import sys, time\nfrom vidstrata.workers.metrics import serve_metrics\n"
          "serve_metrics(int(sys.argv[1]))\ntime.sleep(60)")


@pytest.mark.parametrize(("host", "expected"), [(None, {"0.0.0.0"}), ("127.0.0.1", {"127.0.0.1"})])
def test_worker_metrics_listen_where_the_setting_says(tmp_path, host, expected):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDSTRATA_")}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    if host is not None:
        env["VIDSTRATA_WORKER_METRICS_HOST"] = host
    process = subprocess.Popen([sys.executable, "-c", _SERVE, str(port)], env=env)
    try:
        assert _wait(lambda: listening(port) or process.poll() is not None, 30)
        assert listening(port) == expected
    finally:
        process.kill()
        process.wait()


@pytest.mark.e2e
def test_tritonserver_listens_on_loopback_only(triton):
    """http, grpc and metrics: the launcher `up`, the benchmarks and the tests share (the fixture is that launcher)."""
    for port in (triton.ports.http, triton.ports.grpc, triton.ports.metrics):
        assert _wait(lambda: listening(port), 60), port  # HTTP and metrics start just after gRPC answers ready
        assert listening(port) == {"127.0.0.1"}, (port, listening(port))
