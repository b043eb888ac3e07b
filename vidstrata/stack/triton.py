"""Start the real `tritonserver` bundled in nvidia-pytriton, with its python backend.

The stub must load this venv's numpy (<2), so the venv's bin goes first on PATH and the
interpreter's LIBDIR plus pytriton's bundled libs go on LD_LIBRARY_PATH.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from vidstrata.stack.process import ManagedProcess, free_port

STUB_PYTHON = "3.11"


class TritonNotInstalled(RuntimeError):
    """nvidia-pytriton (which ships the tritonserver binary) is missing."""


@dataclass(frozen=True)
class TritonPorts:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls) -> TritonPorts:
        return cls(free_port(), free_port(), free_port())


def _pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise TritonNotInstalled("nvidia-pytriton is not installed: pip install nvidia-pytriton==0.7.0") from exc
    return Path(pytriton.__file__).parent


def backend_directory(build_dir: Path) -> Path:
    """A backends folder with the python backend plus the stub for this Python version."""
    root = _pytriton_root() / "tritonserver"
    python = build_dir / "python"
    python.mkdir(parents=True, exist_ok=True)
    for source in (
        root / "backends" / "python" / "libtriton_python.so",
        root / "backends" / "python" / "triton_python_backend_utils.py",
        root / "python_backend_stubs" / STUB_PYTHON / "triton_python_backend_stub",
    ):
        target = python / source.name
        if not target.exists():
            target.symlink_to(source)
    return build_dir


def triton_environment() -> dict[str, str]:
    env = dict(os.environ)
    libs = [sysconfig.get_config_var("LIBDIR"), str(_pytriton_root().parent / "nvidia_pytriton.libs")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + [env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def start_tritonserver(repository: Path, work_dir: Path, ports: TritonPorts,
                       address: str = "127.0.0.1") -> ManagedProcess:
    """Launch tritonserver on `ports` (not yet waiting for readiness), all three listening on `address` only."""
    binary = _pytriton_root() / "tritonserver" / "bin" / "tritonserver"
    argv = [
        str(binary),
        "--model-repository", str(repository.resolve()),
        "--backend-directory", str(backend_directory(work_dir / "backends")),
        "--http-address", address, "--http-port", str(ports.http),
        "--grpc-address", address, "--grpc-port", str(ports.grpc),
        "--metrics-address", address, "--metrics-port", str(ports.metrics),
        "--allow-metrics", "true", "--allow-gpu-metrics", "false",
        "--exit-on-error", "true", "--strict-readiness", "true", "--log-verbose", "0",
    ]
    return ManagedProcess("tritonserver", argv, work_dir / "tritonserver.log", env=triton_environment()).start()
