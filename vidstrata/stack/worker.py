"""Start an ingest worker (`python -m vidstrata.workers.main`) as a supervised process group."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from vidstrata.stack.process import ManagedProcess

READY_LINE = " ready."  # what Celery logs once the worker consumes its queues


def start_worker(env: Mapping[str, str], log_path: Path, timeout_s: float = 120.0) -> ManagedProcess:
    """`python -m vidstrata.workers.main` with `env`, returned once it consumes the ingest queue.

    Readiness is read from the part of `log_path` written after this start, so a log shared by restarts
    (as `vidstrata up` keeps) cannot report an earlier run's ready line. Raises ProcessFailed with the log tail
    if the worker exits or is not ready within timeout_s.
    """
    offset = log_path.stat().st_size if log_path.exists() else 0

    def ready() -> bool:
        with open(log_path, "rb") as log:
            log.seek(offset)
            return READY_LINE in log.read().decode(errors="replace")

    process = ManagedProcess("worker", [sys.executable, "-m", "vidstrata.workers.main"], log_path, env=dict(env)).start()
    try:
        process.wait_ready(ready, timeout_s)
    except BaseException:
        process.stop()
        raise
    return process
