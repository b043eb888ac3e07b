"""The ingest Celery task: a thin layer over `workers.ingest` that decides between retry and FAILED.

Contract with the gateway: it calls `StatusStore.mark_pending(video_id, task_id, ...)` first and then
`send_task(INGEST_TASK, args=[IngestPayload(...).to_message()], task_id=task_id, queue=INGEST_QUEUE)`. The record
names the task that owns it, and every status write of a task (progress, retry notices, READY, FAILED,
"internal error") is dropped unless the record still names that task (`jobs.status`). A task whose record
is gone (the video was deleted) or names another task id (it was resubmitted) stops as CANCELLED and
writes nothing more, wherever it notices: before it starts, at a dropped write, or before a retry.

- Transient failures (Triton, Milvus, Redis or the source unreachable) retry with exponential backoff and
  jitter, up to `retry_max` times, then FAILED.
- Permanent ones (the video itself is bad) are FAILED at once with the reason; nothing is written.
- Redelivery after a crash reruns the whole ingest; `VideoIndex.replace_video` makes that one copy. Each run
  opens an attempt in Redis and closes it however it ends, so open attempts count the runs that took their
  process down: past `max_worker_deaths` the video is FAILED ("worker died N times on this video").
- FAILED means not searchable: a failed re-ingest also removes the earlier version from the index.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import asdict
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_init, worker_process_init

from vidstrata.index.errors import IndexUnavailable
from vidstrata.jobs.errors import StatusUnavailable
from vidstrata.jobs.contract import INGEST_TASK, IngestPayload, PayloadError
from vidstrata.jobs.status import StatusStore
from vidstrata.index.store import VideoIndex
from vidstrata.inference.encoder import Encoder, EncoderInputError, EncoderUnavailable
from vidstrata.inference.factory import open_encoder
from vidstrata.workers import metrics
from vidstrata.workers.celery_app import app, worker_settings
from vidstrata.workers.errors import BadVideo, IngestCancelled, ModelMismatch, SourceUnavailable
from vidstrata.workers.fetch import remove_leftovers
from vidstrata.workers.ingest import Ingestor

log = logging.getLogger(__name__)

TRANSIENT = (EncoderUnavailable, IndexUnavailable, StatusUnavailable, SourceUnavailable)
PERMANENT = (BadVideo, EncoderInputError, ModelMismatch)


def _encoder() -> Encoder:
    settings = worker_settings()
    return open_encoder(settings.triton.url, timeout_s=settings.triton_timeout_s, frame_batch=settings.frame_batch,
                        max_inflight=settings.embed_inflight)


class _Clients:
    """This process's connections, made on first use in the prefork child (gRPC channels must not cross a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ingestor: Ingestor | None = None

    def ingestor(self) -> Ingestor:
        with self._lock:
            if self._ingestor is None:
                settings = worker_settings()
                self._ingestor = Ingestor(settings, _encoder(), VideoIndex(settings.milvus),
                                          StatusStore(settings.redis.url, settings.redis.timeout_s))
            return self._ingestor

    def reset_encoder(self) -> None:
        """Drop the Triton client, so the next attempt dials afresh instead of waiting out gRPC's reconnect backoff."""
        with self._lock:
            if self._ingestor is not None:
                old, self._ingestor.encoder = self._ingestor.encoder, _encoder()
                old.close()


_clients = _Clients()


def backoff_s(retries: int) -> float:
    """Delay before retry number retries+1: doubling from retry_backoff_s up to the cap, half of it jittered."""
    settings = worker_settings()
    ceiling = min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2**retries)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _cancelled(video_id: str, task_id: str) -> dict[str, Any]:
    log.info("ingest of %s cancelled: its status record is gone or names a newer task than %s", video_id, task_id)
    return {"video_id": video_id, "state": "CANCELLED",
            "reason": "the video was deleted, or a newer submission replaced this one"}


def _fail(ingestor: Ingestor, video_id: str, task_id: str, reason: str) -> dict[str, Any]:
    """FAILED with the reason, and no earlier version left in the index: a video that GetVideo calls FAILED
    is not searchable (a failed re-ingest removes the last good version). A newer submission is left alone:
    under the video's write lock, so its own index write cannot come between the check and the delete."""
    with ingestor.status.write_lock(video_id, task_id, ingestor.write_lock_ttl_s):
        if not ingestor.is_current(video_id, task_id):
            return _cancelled(video_id, task_id)
        if ingestor.index.delete_video(video_id):
            reason += " (the earlier version of this video was removed from the index)"
        if not ingestor.status.mark_failed(video_id, reason, task_id=task_id):
            return _cancelled(video_id, task_id)  # replaced meanwhile: the newer ingest writes the index again
    metrics.TASKS.labels(outcome="failed").inc()
    log.warning("ingest of %s FAILED: %s", video_id, reason)
    return {"video_id": video_id, "state": "FAILED", "reason": reason}


def _retry(self: Task, ingestor: Ingestor, video_id: str, exc: Exception) -> dict[str, Any]:
    """Retry a transient failure with backoff, or FAILED once retry_max retries are spent; no retry for a
    task whose record is gone or names a newer submission (its retry notice is dropped)."""
    settings = worker_settings()
    if isinstance(exc, EncoderUnavailable):
        _clients.reset_encoder()
    attempt = self.request.retries + 1
    if attempt > settings.retry_max:
        return _fail(ingestor, video_id, self.request.id, f"gave up after {settings.retry_max} retries: {exc}")
    delay = backoff_s(self.request.retries)
    notice = f"retry {attempt} of {settings.retry_max} in {delay:.0f} s: {exc}"
    try:
        if not ingestor.status.mark_running(video_id, 0.0, notice, task_id=self.request.id):
            return _cancelled(video_id, self.request.id)
    except StatusUnavailable:
        pass  # Redis is what failed: the retry itself will report
    metrics.TASKS.labels(outcome="retried").inc()
    log.warning("ingest of %s: %s; retry %d of %d in %.1f s", video_id, exc, attempt, settings.retry_max, delay)
    raise self.retry(exc=exc, countdown=delay) from exc


@app.task(name=INGEST_TASK, bind=True, max_retries=None)  # retries are counted against retry_max below
def ingest_video(self: Task, *args: Any) -> dict[str, Any]:
    """Ingest one video from its payload (jobs.contract.IngestPayload, any version a gateway may have queued);
    returns the summary, or the reason it failed, was cancelled or could not be read."""
    try:
        payload = IngestPayload.from_task_args(args)
    except PayloadError as exc:
        log.error("ingest task %s not run: %s", self.request.id, exc)
        metrics.TASKS.labels(outcome="failed").inc()
        return {"state": "REJECTED", "reason": str(exc)}
    video_id, uri, metadata = payload.video_id, payload.uri, dict(payload.metadata)
    modalities = list(payload.modalities) if payload.modalities is not None else None
    settings = worker_settings()
    ingestor = _clients.ingestor()
    status = ingestor.status
    opened = False
    try:
        try:
            starts = status.open_attempt(self.request.id)
            opened = True
            if starts > settings.max_worker_deaths:
                return _fail(ingestor, video_id, self.request.id,
                             f"worker died {starts - 1} times on this video (killed, or out of memory); not run again")
            record = status.get(video_id)
            if record is not None and self.request.retries == 0 and not self.request.delivery_info.get("redelivered"):
                metrics.QUEUE_WAIT.observe(max(0.0, time.time() - record.submitted_at))
            summary = ingestor.run(video_id, uri, metadata, task_id=self.request.id, modalities=modalities,
                                   tenant=payload.tenant, visual_model=payload.visual_model,
                                   text_model=payload.text_model)
        except IngestCancelled as exc:
            log.info("ingest of %s cancelled: %s", video_id, exc)
            return {"video_id": video_id, "state": "CANCELLED", "reason": str(exc)}
        except PERMANENT as exc:
            return _fail(ingestor, video_id, self.request.id, str(exc))
        except SoftTimeLimitExceeded:
            return _fail(ingestor, video_id, self.request.id,
                         f"ingest took longer than the limit of {settings.task_time_limit_s:.0f} s")
    except TRANSIENT as exc:  # also from _fail's own index and status calls
        return _retry(self, ingestor, video_id, exc)
    except Exception as exc:
        ingestor.status.mark_failed(video_id, f"internal error: {type(exc).__name__}: {exc}", task_id=self.request.id)
        raise
    finally:
        if opened:
            try:
                status.close_attempt(self.request.id)
            except StatusUnavailable:
                pass  # the attempt key expires; a later run counts one death too many at worst
    for stage, seconds in summary.timings_s.items():
        metrics.STAGE_DURATION.labels(stage=stage).observe(seconds)
    metrics.FRAMES.inc(summary.frames)
    metrics.TASKS.labels(outcome="ready").inc()
    if record is not None:  # run() cancels a video without a record, so only a racing re-submit leaves None
        metrics.LAG.observe(max(0.0, time.time() - record.submitted_at))
    return {"state": "READY", **asdict(summary)}


@worker_process_init.connect
def _remove_leftovers(**_: Any) -> None:
    """A new prefork child (at start, or replacing one that died) removes what dead processes left on disk."""
    removed = remove_leftovers()
    if removed:
        log.warning("removed %d download folders left by processes that died", removed)


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    """Start /metrics in the worker's main process, which outlives (and sums) its prefork children."""
    settings = worker_settings()
    if settings.metrics_port:
        metrics.serve_metrics(settings.metrics_port)
