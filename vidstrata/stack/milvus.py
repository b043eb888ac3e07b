"""Start the real Milvus Lite gRPC server; shared by the test fixture and `vidstrata up`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from index.store import connect_milvus
from vidstrata.stack.process import ManagedProcess, free_port, port_open


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
