"""The Celery app of the ingest workers, and all of its configuration.

Delivery is at-least-once: a task is acknowledged only when it ends (acks_late), a task whose process
died goes back to the queue (reject_on_worker_lost), and a worker reserves one task per process at a
time. A task held by a worker that vanished whole (SIGKILL, node loss) comes back when its
visibility timeout runs out; the ingest itself is idempotent, so a second run leaves one copy.
"""

from __future__ import annotations

from celery import Celery

from jobs.contract import INGEST_QUEUE, INGEST_TASK
from workers.settings import TIME_LIMIT_GRACE_S, WorkerSettings


def create_app(settings: WorkerSettings) -> Celery:
    """A Celery app for these settings, with the ingest task registered under INGEST_TASK."""
    app = Celery("vidstrata", include=["workers.tasks"])
    app.conf.update(
        broker_url=settings.redis.url,
        result_backend=settings.redis.url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # kombu looks for expired unacked tasks only every interval * throttle seconds (10 * 10 by
            # default); a throttle of 1 makes it every restore_interval_s.
            "unacked_restore_interval": settings.restore_interval_s,
            "unacked_restore_throttle": 1,
        },
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.concurrency,
        task_routes={INGEST_TASK: {"queue": INGEST_QUEUE}},
        task_soft_time_limit=settings.task_time_limit_s,
        task_time_limit=settings.task_time_limit_s + TIME_LIMIT_GRACE_S,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=24 * 3600,
    )
    return app


settings = WorkerSettings()
app = create_app(settings)
