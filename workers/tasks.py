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

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_init, worker_process_init

from vidstrata.index.errors import IndexUnavailable
from vidstrata.jobs.errors import StatusUnavailable
from vidstrata.jobs.contract import INGEST_QUEUE, INGEST_TASK, REINDEX_TASK, IngestPayload, PayloadError
from vidstrata.jobs.reindex import Generation, JobState, ReindexJob, ReindexStore, generation_settings
from vidstrata.jobs.status import IngestState, StatusStore, VideoStatus
from vidstrata.index.schema import ModelVersions
from vidstrata.index.store import VideoIndex
from vidstrata.inference.encoder import Encoder, EncoderInputError, EncoderUnavailable
from vidstrata.inference.factory import open_encoder
from vidstrata.workers import metrics
from vidstrata.workers.celery_app import app, worker_settings
from vidstrata.workers.settings import WorkerSettings
from vidstrata.workers.errors import BadVideo, IngestCancelled, ModelMismatch, SourceUnavailable
from vidstrata.workers.fetch import remove_leftovers
from vidstrata.workers.ingest import Ingestor

log = logging.getLogger(__name__)

TRANSIENT = (EncoderUnavailable, IndexUnavailable, StatusUnavailable, SourceUnavailable)
PERMANENT = (BadVideo, EncoderInputError, ModelMismatch)


def _encoder(settings: WorkerSettings) -> Encoder:
    return open_encoder(settings.triton.url, timeout_s=settings.triton_timeout_s, frame_batch=settings.frame_batch,
                        max_inflight=settings.embed_inflight)


class _Clients:
    """This process's connections, made on first use in the prefork child (gRPC channels must not cross a fork):
    one Ingestor per generation it has written (the served one, and during a re-index the one beside it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ingestors: dict[Generation | None, Ingestor] = {}
        self._jobs: ReindexStore | None = None

    def ingestor(self, generation: Generation | None = None) -> Ingestor:
        """The Ingestor writing `generation` (None: the process's settings) with that generation's encoder."""
        key = None if generation is None else Generation(generation.collection_prefix, generation.triton_url)
        with self._lock:
            if key not in self._ingestors:
                settings = generation_settings(worker_settings(), generation)
                self._ingestors[key] = Ingestor(settings, _encoder(settings), VideoIndex(settings.milvus),
                                                StatusStore(settings.redis.url, settings.redis.timeout_s))
            return self._ingestors[key]

    def jobs(self) -> ReindexStore:
        with self._lock:
            if self._jobs is None:
                settings = worker_settings()
                self._jobs = ReindexStore(settings.redis.url, settings.redis.timeout_s)
            return self._jobs

    def reset_encoder(self) -> None:
        """Drop the Triton clients, so the next attempt dials afresh instead of waiting out gRPC's reconnect backoff."""
        with self._lock:
            for ingestor in self._ingestors.values():
                old, ingestor.encoder = ingestor.encoder, _encoder(ingestor.settings)
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
    try:
        ingestor = _clients.ingestor(_clients.jobs().serving())  # the generation Search serves
    except StatusUnavailable as exc:
        raise self.retry(exc=exc, countdown=backoff_s(self.request.retries)) from exc
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
    _write_beside(payload)
    return {"state": "READY", **asdict(summary)}


def enqueue_reindex(jobs: ReindexStore, job: ReindexJob, records: list[VideoStatus], side: str = "target",
                    sender: Celery = app) -> None:
    """One re-index task per video into the job's `side` generation ("target" or "source"), under its versions,
    sent by `sender` (another process's app: the CLI's); a target task of a job still re-indexing counts in the
    job's progress."""
    generation = job.target if side == "target" else job.source
    if side == "target" and job.state in (JobState.RUNNING, JobState.COMPLETED):
        jobs.add_videos(job.job_id, [r.video_id for r in records])
    for record in records:
        payload = IngestPayload(record.video_id, record.uri, record.metadata, tenant=record.tenant,
                                visual_model=generation.visual_model, text_model=generation.text_model)
        sender.send_task(REINDEX_TASK, args=[payload.to_message(), job.job_id, side], queue=INGEST_QUEUE)


def _write_beside(payload: IngestPayload) -> None:
    """While a re-index job keeps two generations, a video just ingested into the served one is re-indexed into the
    other too (so it is right under both versions, whichever is served after a cutover or rollback)."""
    try:
        job = _clients.jobs().latest()
        if job is None or not job.active:
            return
        record = _clients.ingestor().status.get(payload.video_id)
        if record is not None and record.state == IngestState.READY:
            enqueue_reindex(_clients.jobs(), job, [record], "target" if job.shadow == job.target else "source")
    except StatusUnavailable as exc:
        log.warning("video %s is READY but could not be queued for the re-index job: %s", payload.video_id, exc)


def _reindex_outcome(jobs: ReindexStore, job_id: str, video_id: str, counted: bool, state: str,
                     reason: str = "") -> dict[str, Any]:
    if counted:
        if state == "READY":
            jobs.record_done(job_id, video_id)
        elif state == "FAILED":
            jobs.record_failure(job_id, video_id, reason)
        else:
            jobs.forget(job_id, video_id)
    metrics.REINDEXED.labels(outcome=state.lower()).inc()
    if state == "FAILED":
        log.warning("re-index of %s in job %s FAILED: %s", video_id, job_id, reason)
    return {"video_id": video_id, "job_id": job_id, "state": state, "reason": reason}


@app.task(name=REINDEX_TASK, bind=True, max_retries=None)
def reindex_video(self: Task, message: dict[str, Any], job_id: str, side: str = "target") -> dict[str, Any]:
    """Re-index one READY video into one generation of job `job_id` (jobs.reindex): its rows written under that
    generation's versions by its encoder, its status record untouched. A video deleted or being ingested again is
    left out (its new ingest queues it again); one that cannot be re-indexed (its source is gone) is a failure of
    the job with its reason."""
    payload = IngestPayload.from_task_args([message])
    video_id, settings = payload.video_id, worker_settings()
    jobs = _clients.jobs()
    try:
        job = jobs.get(job_id)
        if job is None or not job.active:
            return {"video_id": video_id, "job_id": job_id, "state": "CANCELLED", "reason": "the job is over"}
        write, read = (job.target, job.source) if side == "target" else (job.source, job.target)
        counted = side == "target" and job.state in (JobState.RUNNING, JobState.COMPLETED)
        ingestor = _clients.ingestor(write)
        record = ingestor.status.get(video_id)
        if record is None:
            ingestor.index.delete_video(video_id)  # deleted: gone from this generation too
            return _reindex_outcome(jobs, job_id, video_id, counted, "CANCELLED", "deleted")
        if record.state != IngestState.READY:
            return _reindex_outcome(jobs, job_id, video_id, counted, "CANCELLED", "being ingested again")
        try:
            ingestor.reindex(record, self.request.id, ModelVersions(write.visual_model, write.text_model),
                             reuse_from=_clients.ingestor(read).index)
        except IngestCancelled as exc:
            return _reindex_outcome(jobs, job_id, video_id, counted, "CANCELLED", str(exc))
        except PERMANENT as exc:
            return _reindex_outcome(jobs, job_id, video_id, counted, "FAILED", str(exc))
        except SoftTimeLimitExceeded:
            return _reindex_outcome(jobs, job_id, video_id, counted, "FAILED",
                                    f"took longer than the limit of {settings.task_time_limit_s:.0f} s")
    except TRANSIENT as exc:
        if isinstance(exc, EncoderUnavailable):
            _clients.reset_encoder()
        if self.request.retries >= settings.retry_max:
            return _reindex_outcome(jobs, job_id, video_id, side == "target", "FAILED",
                                    f"gave up after {settings.retry_max} retries: {exc}")
        raise self.retry(exc=exc, countdown=backoff_s(self.request.retries)) from exc
    return _reindex_outcome(jobs, job_id, video_id, counted, "READY")


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
