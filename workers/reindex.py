"""The operator's side of a re-index (`vidstrata reindex`): start a job, cut over, roll back, drop the old rows.

The job's model lives in jobs.reindex; the per-video work in workers.tasks.reindex_video. The target encoders are
served by a Triton of their own (blue/green: the target model repository in a second Triton, whose address the job
records), so neither the model names nor the served Triton change while the job runs; the target rows go into
collections of a new prefix. A cutover moves the served generation (collections and Triton together) in one Redis
write, after removing from the target the rows of videos deleted meanwhile; a rollback moves it back the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from vidstrata.index.connection import connect_milvus
from vidstrata.index.migrations import BACKUP_SUFFIX
from vidstrata.index.schema import collection_names
from vidstrata.index.store import VideoIndex
from vidstrata.inference.factory import open_encoder
from vidstrata.jobs.reindex import Generation, JobConflict, JobState, ReindexJob, ReindexStore, generation_settings
from vidstrata.jobs.status import IngestState, StatusStore
from vidstrata.workers.celery_app import configure
from vidstrata.workers.settings import WorkerSettings
from vidstrata.workers.tasks import enqueue_reindex

PAGE = 500  # status records read and tasks queued per round trip


def _generation(settings: WorkerSettings, prefix: str, triton_url: str) -> Generation:
    """The generation of these collections and this Triton, with the versions and dimension its encoder serves."""
    encoder = open_encoder(triton_url, timeout_s=settings.triton_timeout_s)
    try:
        info = encoder.info()
    finally:
        encoder.close()
    return Generation(prefix, triton_url, info.visual_model, info.text_model, info.dim)


def served_generation(settings: WorkerSettings, jobs: ReindexStore) -> Generation:
    """The generation Search serves now: the one cut over last, or the settings' collections and Triton."""
    return jobs.serving() or _generation(settings, settings.milvus.collection_prefix, settings.triton.url)


def start(settings: WorkerSettings, target_triton_url: str, report: Callable[[str], None] = print) -> ReindexJob:
    """Start a job re-indexing every READY video (of every tenant: read from the served rows) for the encoders
    served at target_triton_url: creates the target collections (the target's dimension) and queues one task per
    video. JobConflict while another job is active or
    when the target serves the very versions Search serves."""
    jobs = ReindexStore(settings.redis.url, settings.redis.timeout_s)
    status = StatusStore(settings.redis.url, settings.redis.timeout_s)
    try:
        source = served_generation(settings, jobs)
        target = _generation(settings, "", target_triton_url)
        if (target.visual_model, target.text_model) == (source.visual_model, source.text_model):
            raise JobConflict(f"the encoders at {target_triton_url} serve the versions Search serves already "
                              f"({source.visual_model}): nothing to re-index")
        job = jobs.start(source, target_triton_url, settings.milvus.collection_prefix, target.visual_model,
                         target.text_model, target.dim)
        with VideoIndex(generation_settings(settings, job.target).milvus) as index:
            index.ensure_collections()
        sender = Celery("vidstrata-reindex")
        configure(sender, settings)
        queued, after = 0, ""
        with VideoIndex(generation_settings(settings, source).milvus) as served:
            # the served rows of every tenant, in id order, and their records: READY ones are re-indexed
            while rows := served.page_videos(after, PAGE):
                records = [r for r in status.get_many(row.video_id for row in rows).values()
                           if r.state == IngestState.READY]
                enqueue_reindex(jobs, job, records, sender=sender)
                queued, after = queued + len(records), rows[-1].video_id
        report(f"job {job.job_id}: {queued} videos queued, from {source.visual_model} ({source.triton_url}, "
               f"collections '{source.collection_prefix}*') to {target.visual_model} ({target_triton_url}, "
               f"collections '{job.target.collection_prefix}*')")
        return jobs.get(job.job_id) or job
    finally:
        jobs.close()
        status.close()


def remove_deleted(settings: WorkerSettings, generation: Generation) -> int:
    """Remove from a generation the videos whose status record is gone (deleted while it was not served); returns
    how many. Pages the video rows in id order, so it reads each row once however large the index."""
    status = StatusStore(settings.redis.url, settings.redis.timeout_s)
    removed, after = 0, ""
    try:
        with VideoIndex(generation_settings(settings, generation).milvus) as index:
            while rows := index.page_videos(after, PAGE):
                kept = status.get_many(r.video_id for r in rows)
                for row in rows:
                    if row.video_id not in kept:
                        removed += index.delete_video(row.video_id)
                after = rows[-1].video_id
    finally:
        status.close()
    return removed


def cutover(settings: WorkerSettings, accept_failures: bool = False) -> ReindexJob:
    """Serve the latest job's target generation (from COMPLETED, or ROLLED_BACK again). A job with failures cuts
    over only with accept_failures: those videos are not searchable under the new version until resubmitted."""
    jobs = ReindexStore(settings.redis.url, settings.redis.timeout_s)
    try:
        job = _latest(jobs)
        if job.failed and not accept_failures:
            raise JobConflict(f"job {job.job_id}: {job.failed} videos failed (see --status); they would not be "
                              "searchable after the cutover: resubmit or delete them, or pass --accept-failures")
        remove_deleted(settings, job.target)
        return jobs.move(job.job_id, [JobState.COMPLETED, JobState.ROLLED_BACK], JobState.CUT_OVER, job.target)
    finally:
        jobs.close()


def rollback(settings: WorkerSettings) -> ReindexJob:
    """Serve the latest job's source generation again, while its rows are kept."""
    jobs = ReindexStore(settings.redis.url, settings.redis.timeout_s)
    try:
        job = _latest(jobs)
        if job.old_dropped:
            raise JobConflict(f"job {job.job_id}: the previous generation's rows were dropped; nothing to go back to")
        remove_deleted(settings, job.source)
        return jobs.move(job.job_id, [JobState.CUT_OVER], JobState.ROLLED_BACK, job.source)
    finally:
        jobs.close()


def drop_old(settings: WorkerSettings, report: Callable[[str], None] = print) -> ReindexJob:
    """Drop the generation the latest job no longer serves (after a cutover: the source; after a rollback: the
    target) and the `__v1` backups a schema migration kept; the job then keeps only one generation."""
    jobs = ReindexStore(settings.redis.url, settings.redis.timeout_s)
    try:
        job = _latest(jobs)
        if job.state not in (JobState.CUT_OVER, JobState.ROLLED_BACK) or job.old_dropped:
            raise JobConflict(f"job {job.job_id} is {job.state.value}{' (dropped already)' if job.old_dropped else ''}"
                              ": --drop-old follows a --cutover or a --rollback")
        old = job.shadow
        names = collection_names(old.collection_prefix)
        backups = collection_names(settings.milvus.collection_prefix)
        candidates = [names.videos, names.clips, names.segments,
                      *(f"{name}{BACKUP_SUFFIX}" for name in (backups.videos, backups.clips, backups.segments))]
        client = connect_milvus(settings.milvus.milvus_uri, settings.milvus.milvus_token, settings.milvus.milvus_timeout_s)
        for name in candidates:
            if client.has_collection(name):
                client.drop_collection(name)
                report(f"dropped {name}")
        jobs.mark(job.job_id, old_dropped=1)
        return jobs.get(job.job_id) or job
    finally:
        jobs.close()


def _latest(jobs: ReindexStore) -> ReindexJob:
    job = jobs.latest()
    if job is None:
        raise JobConflict("there has been no re-index job: start one with `vidstrata reindex --to ...`")
    return job
