"""The Celery app of the ingest workers, and all of its configuration.

Delivery is at-least-once: a task is acknowledged only when it ends (acks_late), a task whose process
died goes back to the queue (reject_on_worker_lost), and a worker reserves one task per process at a
time. A task held by a worker that vanished whole (SIGKILL, node loss) comes back when its
visibility timeout runs out; the ingest itself is idempotent, so a second run leaves one copy.
"""

from __future__ import annotations

import functools

import logging

import redis
from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger
from kombu.transport import redis as kombu_redis

from vidstrata.jobs.contract import INGEST_QUEUE, INGEST_TASK, REINDEX_TASK
from vidstrata.spec.redaction import install_log_redaction
from vidstrata.workers.settings import TIME_LIMIT_GRACE_S, WorkerSettings

log = logging.getLogger(__name__)


class _QoS(kombu_redis.QoS):
    """kombu's Redis QoS, except that failing to hand back unacknowledged messages when the broker connection
    is lost does not end the worker.

    kombu 5.7 restores them through the connection being torn down, which raises (AttributeError: 'NoneType'
    object has no attribute 'hostname', or a redis ConnectionError) and stops the worker with "Unrecoverable
    error" on every Redis restart. The messages are still in Redis's unacked hash, and come back to a worker
    after visibility_timeout_s, so nothing is lost by skipping the restore.
    """

    def restore_unacked(self, client: object = None) -> None:
        try:
            super().restore_unacked(client)
        except (AttributeError, redis.RedisError) as exc:
            log.warning("could not hand back %d unacknowledged tasks on a lost broker connection (%s); "
                        "Redis redelivers them after the visibility timeout", len(self._delivered), exc)
            self._delivered.clear()

    def ack(self, delivery_tag: str) -> None:
        """Acknowledge; when the broker connection was torn down under it (a Redis restart: kombu raises
        AttributeError "'NoneType' object has no attribute 'client'" and the worker's main process exits), the task
        stays in the unacked hash and runs again after the visibility timeout, which ingest's owned, idempotent
        writes allow, instead of ending the worker."""
        self._settle(delivery_tag, requeue=False)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """As `ack`: a reject that cannot reach Redis leaves the message to be redelivered."""
        self._settle(delivery_tag, requeue)

    def _settle(self, delivery_tag: str, requeue: bool) -> None:
        try:
            if requeue:
                super().reject(delivery_tag, requeue=True)
            else:
                super().ack(delivery_tag)
        except (AttributeError, redis.RedisError) as exc:
            log.warning("could not settle task %s on a lost broker connection (%s); Redis redelivers it after the "
                        "visibility timeout", delivery_tag, exc)
            self._delivered.pop(delivery_tag, None)


class _Channel(kombu_redis.Channel):
    QoS = _QoS


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with `_QoS`: the worker survives a Redis restart."""

    Channel = _Channel


@functools.cache
def worker_settings() -> WorkerSettings:
    """This process's settings, read from the environment on first use: importing the worker builds nothing."""
    return WorkerSettings()


def configure(app: Celery, settings: WorkerSettings) -> None:
    """Give `app` the delivery, routing and time-limit configuration of `settings`."""
    app.conf.update(
        broker_url=settings.redis.url,
        broker_transport="vidstrata.workers.celery_app:RedisTransport",
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
        task_routes={INGEST_TASK: {"queue": INGEST_QUEUE}, REINDEX_TASK: {"queue": INGEST_QUEUE}},
        task_soft_time_limit=settings.task_time_limit_s,
        task_time_limit=settings.task_time_limit_s + TIME_LIMIT_GRACE_S,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=24 * 3600,
    )


# The ingest task registers on this app; its configuration is loaded when Celery first needs it.
app = Celery("vidstrata", include=["vidstrata.workers.tasks"])


@app.on_configure.connect
def _configure(sender: Celery, **_: object) -> None:
    configure(sender, worker_settings())


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger: logging.Logger, **_: object) -> None:
    """Credentials in source URLs never reach the worker's log: Celery's own lines quote task results and errors."""
    install_log_redaction(logger)
