"""The ingest task as the gateway queues it, read back from a real Redis broker."""

from __future__ import annotations

import base64
import json
import uuid

import redis

from vidstrata.gateway.ingest import CeleryIngestQueue
from vidstrata.jobs.contract import INGEST_QUEUE, IngestPayload


def test_the_queued_task_carries_the_source_whole_and_shows_it_redacted(redis_url: str) -> None:
    """The worker needs the credentials; Celery's `argsrepr` (what its logs and monitors show, and what Redis keeps
    in its append-only file) must not have them (found by a new-user pass)."""
    url = f"{redis_url.rsplit('/', 1)[0]}/14"
    broker = redis.Redis.from_url(url)
    broker.delete(INGEST_QUEUE)
    queue = CeleryIngestQueue(url, timeout_s=5.0)
    task_id = uuid.uuid4().hex
    try:
        queue.enqueue(task_id, "v", "https://alice:s3cret@example.com/v.mp4?X-Amz-Signature=feedface", {})
        (raw,) = broker.lrange(INGEST_QUEUE, 0, -1)
    finally:
        queue.close()
        broker.delete(INGEST_QUEUE)
    message = json.loads(raw)
    assert "s3cret" not in message["headers"]["argsrepr"] and "feedface" not in message["headers"]["argsrepr"]
    args, _, _ = json.loads(base64.b64decode(message["body"]))
    assert IngestPayload.from_task_args(args).uri == "https://alice:s3cret@example.com/v.mp4?X-Amz-Signature=feedface"
