"""The worker survives a Redis restart while it holds unacknowledged tasks (kombu 5.7 used to end it)."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from vidstrata.gateway.ingest import CeleryIngestQueue
from vidstrata.jobs.status import IngestState, StatusStore
from vidstrata.stack.process import free_port
from vidstrata.stack.redis import find_or_install_redis, start_redis
from vidstrata.stack.worker import start_worker

pytestmark = pytest.mark.e2e


def _submit(status: StatusStore, queue: CeleryIngestQueue, video_id: str) -> None:
    task_id = str(uuid.uuid4())
    status.mark_pending(video_id, task_id, "/etc/hostname", {})
    queue.enqueue(task_id, video_id, "/etc/hostname", {})


def _wait_running(status: StatusStore, video_id: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = status.get(video_id)
        if record is not None and record.state == IngestState.RUNNING and "retry" in record.stage:
            return
        time.sleep(0.1)
    pytest.fail(f"{video_id} was never taken up: {status.get(video_id)}")


def test_a_redis_restart_does_not_end_the_worker(tmp_path):
    """Tasks wait in retry (Triton unreachable), so the worker holds them unacknowledged when Redis restarts."""
    binary, port = find_or_install_redis()[0], free_port()
    redis_process = start_redis(binary, tmp_path / "redis", port)
    url = f"redis://127.0.0.1:{port}/0"
    env = {**os.environ, "VIDSTRATA_REDIS_URL": url, "VIDSTRATA_TRITON_URL": f"127.0.0.1:{free_port()}",
           "VIDSTRATA_MILVUS_URI": f"http://127.0.0.1:{free_port()}", "VIDSTRATA_WORKER_RETRY_BACKOFF_S": "20",
           "VIDSTRATA_WORKER_RETRY_BACKOFF_MAX_S": "30", "VIDSTRATA_WORKER_TASK_TIME_LIMIT_S": "40",
           "VIDSTRATA_WORKER_VISIBILITY_TIMEOUT_S": "60", "VIDSTRATA_WORKER_METRICS_PORT": "0", "VIDSTRATA_WORKER_CONCURRENCY": "1"}
    worker = start_worker(env, tmp_path / "worker.log")
    status, queue = StatusStore(url, 5.0), CeleryIngestQueue(url, 5.0)
    try:
        _submit(status, queue, "held")
        _wait_running(status, "held")
        redis_process.stop()
        redis_process = start_redis(binary, tmp_path / "redis", port)
        _submit(status, queue, "after-restart")
        _wait_running(status, "after-restart")  # the worker reconnected and consumes again
        assert worker.alive(), worker.log_tail(60)
        assert "Unrecoverable error" not in worker.log_tail(400)
    finally:
        queue.close()
        status.close()
        worker.stop()
        redis_process.stop()
