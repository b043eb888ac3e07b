"""Start the gRPC gateway (`python -m vidstrata.gateway.app`) and tell when it serves.

"Serving" means grpc.health.v1 answers SERVING on the API port: the gateway's first probe found Triton and
Milvus. `vidstrata up`, the benchmarks and the test fixtures all start it here.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vidstrata.stack.process import ManagedProcess, free_port, port_open

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class GatewayProcess:
    """A running gateway: its process, API address, metrics port and the environment it was given."""

    process: ManagedProcess
    address: str
    metrics_port: int
    env: dict[str, str]

    def health(self, service: str = "", credentials: grpc.ChannelCredentials | None = None,
               target_name: str | None = None, timeout_s: float = 2.0) -> int:
        """grpc.health.v1 status of `service` ("" for the whole server): a HealthCheckResponse.ServingStatus.

        Raises grpc.RpcError when the port does not answer.
        """
        options = [("grpc.ssl_target_name_override", target_name)] if target_name else []
        channel = (grpc.secure_channel(self.address, credentials, options) if credentials
                   else grpc.insecure_channel(self.address))
        with channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        return reply.status

    def serving(self, **channel: object) -> bool:
        """True when health says SERVING; False while it says otherwise or does not answer."""
        try:
            return self.health(**channel) == health_pb2.HealthCheckResponse.SERVING  # type: ignore[arg-type]
        except grpc.RpcError:
            return False

    def wait_serving(self, timeout_s: float = 120.0, **channel: object) -> None:
        """Block until SERVING; ProcessFailed (with the log tail) if it exits or time runs out."""
        self.process.wait_ready(lambda: self.serving(**channel), timeout_s)

    def metrics(self) -> str:
        """The text of its Prometheus /metrics page."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            return reply.read().decode()

    def stop(self) -> None:
        self.process.stop()


def start_gateway(env: Mapping[str, str], log_path: Path, port: int = 0, metrics_port: int = 0,
                  host: str = "127.0.0.1", wait_serving: bool = True, timeout_s: float = 120.0) -> GatewayProcess:
    """Start a gateway with `env` (the VIDSTRATA_* settings of its dependencies) on `port` and `metrics_port`
    (0: a free one each).

    Returns once it listens on both ports, and also once it is SERVING when `wait_serving` (a TLS gateway
    cannot be probed in plaintext: pass False and call wait_serving with credentials). On failure the process
    is stopped and ProcessFailed carries its log tail.
    """
    port, metrics_port = port or free_port(), metrics_port or free_port()
    full_env = dict(env, VIDSTRATA_GATEWAY_HOST=host, VIDSTRATA_GATEWAY_PORT=str(port),
                    VIDSTRATA_GATEWAY_METRICS_PORT=str(metrics_port), PYTHONUNBUFFERED="1")
    process = ManagedProcess("gateway", [sys.executable, "-m", "vidstrata.gateway.app"], log_path, env=full_env,
                             cwd=REPO_ROOT).start()
    handle = GatewayProcess(process, f"127.0.0.1:{port}", metrics_port, full_env)
    try:
        process.wait_ready(lambda: port_open(port) and port_open(metrics_port), timeout_s)
        if wait_serving:
            handle.wait_serving(max(1.0, timeout_s))
    except BaseException:
        process.stop()
        raise
    return handle

