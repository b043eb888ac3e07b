"""Run an ingest worker: `python -m vidstrata.workers.main [celery worker options]` (and `vidstrata worker`)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from vidstrata.jobs.contract import INGEST_QUEUE
from vidstrata.workers.settings import WorkerSettings


def prepare_metrics_dir() -> Path:
    """Make PROMETHEUS_MULTIPROC_DIR an empty folder (a fresh temp one if unset).

    Must run before prometheus_client is imported, and each start must wipe it: files of an earlier
    run's processes would otherwise be summed into this run's counters.
    """
    folder = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="vidstrata-metrics-"))
    if folder.exists():
        for entry in folder.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder


def main(argv: list[str] | None = None) -> None:
    """Start a Celery worker consuming INGEST_QUEUE with settings from VIDSTRATA_* (extra argv goes to Celery)."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the worker set up its multiprocess folder")
    settings = WorkerSettings()
    prepare_metrics_dir()
    from vidstrata.workers.celery_app import app

    app.worker_main([
        "worker",
        "--queues", INGEST_QUEUE,
        "--concurrency", str(settings.concurrency),
        "--hostname", f"ingest-{os.getpid()}@%h",
        "--loglevel", "INFO",
        # No worker-to-worker chatter: tasks are independent, and start-up is faster without it.
        "--without-gossip", "--without-mingle",
        *(argv if argv is not None else sys.argv[1:]),
    ])



if __name__ == "__main__":
    main()
