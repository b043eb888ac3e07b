"""Start the real Milvus servers: the Milvus Lite gRPC server (tests, `vidstrata up`) and the C++ 2.3.5 standalone
(benchmarks at scale, `vidstrata up` with VIDSTRATA_UP_MILVUS=standalone), each with the data folder it keeps between
runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vidstrata.index.connection import connect_milvus
from vidstrata.stack.process import ManagedProcess, ProcessFailed, children_of, free_port, port_open, process_rss


def milvus_lite_binary() -> str:
    """The `milvus-lite` script of this interpreter's environment, else the one on PATH."""
    local = Path(sys.executable).parent / "milvus-lite"
    if local.exists():
        return str(local)
    found = shutil.which("milvus-lite")
    if found is None:
        raise FileNotFoundError("milvus-lite is not installed (pip install milvus-lite)")
    return found


def milvus_answers(uri: str, timeout_s: float = 5.0) -> bool:
    """True when a Milvus at uri answers a real RPC, not just accepts TCP."""
    client = connect_milvus(uri, timeout_s=timeout_s)
    try:
        client.list_collections(timeout=timeout_s)
        return True
    finally:
        client.close()


def start_milvus_lite(
    data_dir: Path, port: int | None = None, timeout_s: float = 60.0
) -> tuple[ManagedProcess, str]:
    """Start `milvus-lite server` on loopback with its data in data_dir; returns the process and its URI.

    The server holds the data folder's lock, so many client processes (gateway, workers) can share it.
    """
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess(
        "milvus-lite",
        [milvus_lite_binary(), "server", "--data-dir", str(data_dir / "data"),
         "--host", "127.0.0.1", "--port", str(port)],
        log_path=data_dir / "milvus-lite.log",
    ).start()
    uri = f"http://127.0.0.1:{port}"
    try:
        # Probe TCP first: pymilvus logs a traceback for every refused RPC.
        proc.wait_ready(lambda: port_open(port) and milvus_answers(uri), timeout_s=timeout_s)
    except BaseException:
        proc.stop()
        raise
    return proc, uri


MILVUS_STANDALONE_VERSION = "2.3.5"  # PyPI `milvus`: a real C++ standalone build, no Docker (DESIGN §5)
MILVUS_STANDALONE_VENV = Path("build/milvus-venv")
# its pinned, hashed requirements (`make lock` writes them beside this module)
MILVUS_STANDALONE_LOCK = Path(__file__).with_name("requirements-milvus-standalone.txt")
ETCD_PEER_PORT = 2380  # fixed in the 2.3.5 build (milvus-server cannot move it): one standalone per machine


def standalone_installed(venv: Path = MILVUS_STANDALONE_VENV) -> bool:
    """True when PyPI `milvus` 2.3.5 is already installed in venv (so starting it needs no network)."""
    return (venv / "bin" / "milvus-server").exists() and (venv / f".milvus-{MILVUS_STANDALONE_VERSION}").exists()


def milvus_standalone_binary(venv: Path = MILVUS_STANDALONE_VENV) -> Path:
    """`milvus-server` of PyPI `milvus` 2.3.5, installed from its lock into a venv of its own on first use.

    A separate venv because that package pins old pymilvus-era dependencies the project must not inherit.
    Raises subprocess.CalledProcessError when pip cannot install it (no index reachable).
    """
    binary = venv / "bin" / "milvus-server"
    if standalone_installed(venv):
        return binary.resolve()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--require-hashes", "--no-deps",
                    "-r", str(MILVUS_STANDALONE_LOCK)], check=True)
    (venv / f".milvus-{MILVUS_STANDALONE_VERSION}").touch()
    return binary.resolve()


def is_running(pid: int) -> bool:
    """True while pid has a live thread: a Go process whose main thread exited shows 'Z' but may still run."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") or threads > 1


@dataclass
class MilvusStandalone:
    """A running 2.3.5 standalone: `milvus-server` (Python) and its engine child `milvus run standalone`."""

    process: ManagedProcess
    uri: str
    data_dir: Path

    def engine_pid(self) -> int | None:
        """PID of `milvus run standalone`, the child that holds the data (None once it is gone)."""
        for child in children_of(self.process.pid):
            if "milvus" in Path(f"/proc/{child}/comm").read_text(errors="replace"):
                return child
        return None

    def rss_bytes(self) -> int:
        """Resident memory of the engine (VmRSS), 0 when it is not running."""
        pid = self.engine_pid()
        return 0 if pid is None else process_rss(pid)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the engine by its own PID (it ignores SIGTERM): SIGINT, which it handles by flushing and exiting,
        then SIGKILL after timeout_s; then the `milvus-server` wrapper and its process group."""
        pid = self.engine_pid()
        if pid is not None:
            os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + timeout_s
            while is_running(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        self.process.stop(timeout_s=5.0)
        if pid is not None and is_running(pid):  # still alive (or left its group): by its own PID, for good
            os.kill(pid, signal.SIGKILL)
            while is_running(pid):
                time.sleep(0.1)


def launch_milvus_standalone(data_dir: Path, port: int | None = None,
                             venv: Path = MILVUS_STANDALONE_VENV) -> MilvusStandalone:
    """Start the C++ Milvus 2.3.5 standalone (installing it first if needed) with its data in data_dir, without
    waiting: `standalone_answers` says when it answers (`start_milvus_standalone` waits for that)."""
    if port_open(ETCD_PEER_PORT):
        raise ProcessFailed(f"port {ETCD_PEER_PORT} is taken: the 2.3.5 standalone's embedded etcd always listens there, "
                            "so another one is probably running on this machine; stop it, or use it (--milvus-uri)")
    port = port or free_port()
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess(
        "milvus-standalone",
        [str(milvus_standalone_binary(venv)), "--data", str(data_dir), "--proxy-port", str(port)],
        log_path=data_dir / "milvus-server.log",
    ).start()
    return MilvusStandalone(proc, f"http://127.0.0.1:{port}", data_dir)


def standalone_answers(server: MilvusStandalone) -> bool:
    """True once the standalone answers a real RPC (probing TCP first: pymilvus logs every refused RPC)."""
    port = int(server.uri.rsplit(":", 1)[1])
    return port_open(port) and milvus_answers(server.uri)


def start_milvus_standalone(data_dir: Path, port: int | None = None, timeout_s: float = 180.0,
                            venv: Path = MILVUS_STANDALONE_VENV) -> MilvusStandalone:
    """Start the C++ Milvus 2.3.5 standalone (installing it first if needed) with its data in data_dir.

    The data folder survives `stop()`: a later start with the same folder serves the same collections, so a
    benchmark loads its vectors once. Ready when a real RPC is answered (start-up takes 10-40 s).
    """
    server = launch_milvus_standalone(data_dir, port, venv)
    try:
        server.process.wait_ready(lambda: standalone_answers(server), timeout_s=timeout_s)
    except BaseException:
        server.stop()
        raise
    return server
