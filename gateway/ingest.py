"""The gateway's side of ingest: which modalities a submission asks for, send the Celery task, read the queue.

The gateway never imports workers: it sends the task by name (jobs.contract) to the queue the workers
consume. With the Redis broker that queue is the Redis list `ingest`: kombu LPUSHes new messages and
workers BRPOP from the other end, so the oldest waiting message is the list's last element. Each message
carries a header with its enqueue time, which is how the oldest message's age is known, and one with its tenant,
which is how DeleteTenant takes a tenant's waiting messages off the queue (one Lua script: atomic against the
workers' BRPOP, so each message is either taken by a worker or removed, never both).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import celery
import redis

from vidstrata.gateway.errors import InvalidArgument
from vidstrata.jobs.contract import DEFAULT_TENANT, INGEST_QUEUE, INGEST_TASK, MODALITIES, IngestPayload
from vidstrata.spec.channels import Channel
from vidstrata.spec.redaction import redact_uri

ENQUEUED_AT_HEADER = "vidstrata_enqueued_at"  # unix seconds, set by the gateway on every ingest message
TENANT_HEADER = "vidstrata_tenant"  # the tenant of the video, on every ingest message

# KEYS[1]: the queue list. ARGV: the tenant, TENANT_HEADER. Removes the waiting messages whose header names the tenant
# (kombu's message: JSON with a `headers` object); returns how many. It reads the whole list: Redis serves nothing
# else meanwhile (about a second per 100k waiting messages).
_REMOVE_TENANT = """
local removed = 0
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ok, message = pcall(cjson.decode, raw)
  if ok and type(message) == 'table' and type(message.headers) == 'table' and message.headers[ARGV[2]] == ARGV[1] then
    removed = removed + redis.call('LREM', KEYS[1], 1, raw)
  end
end
return removed
"""


def requested_modalities(switches: Mapping[str, bool] | None) -> list[str] | None:
    """The timed-text modalities (jobs.contract.MODALITIES) a submission asks its ingest for.

    `switches` are the modalities the submission switched on or off by name (a name left out is on); None, when it
    set none, leaves the choice to the deployment (VIDSTRATA_WORKER_SPEECH, VIDSTRATA_WORKER_SCREEN_TEXT). Either way
    the workers extract only what their deployment has switched on. `visual` cannot be off: InvalidArgument.
    """
    if switches is None:
        return None
    if not switches.get(Channel.VISUAL.value, True):
        raise InvalidArgument("modalities.visual cannot be off: the clips anchor every video in the index")
    return [name for name in MODALITIES if switches.get(name, True)]


class CeleryIngestQueue:
    """Sends ingest tasks through a Redis-backed Celery broker; thread-safe (kombu pools producers)."""

    def __init__(self, redis_url: str, timeout_s: float) -> None:
        self._app = celery.Celery("vidstrata-gateway", broker=redis_url, set_as_current=False)
        self._app.conf.update(
            broker_connection_timeout=timeout_s,
            broker_transport_options={"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s},
            task_serializer="json",
        )
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._remove_tenant = self._redis.register_script(_REMOVE_TENANT)

    def enqueue(self, task_id: str, video_id: str, uri: str, metadata: dict[str, str],
                modalities: list[str] | None = None, tenant: str = DEFAULT_TENANT) -> None:
        """Publish one ingest task of `tenant`'s video; raises (kombu/redis errors) when the broker cannot take it.

        Retries briefly (under a second): a dead broker must answer UNAVAILABLE fast, not hang the RPC.
        """
        wanted = tuple(modalities) if modalities is not None else None
        message = IngestPayload(video_id, uri, metadata, wanted, tenant=tenant).to_message()
        self._app.send_task(
            INGEST_TASK,
            args=[message],
            # what Celery's logs and monitors show of the task: the source redacted (the worker needs it whole)
            argsrepr=repr([{**message, "uri": redact_uri(uri)}]),
            queue=INGEST_QUEUE,
            task_id=task_id,
            headers={ENQUEUED_AT_HEADER: time.time(), TENANT_HEADER: tenant},
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.3},
        )

    def length(self) -> int:
        """Messages waiting in the queue (taken but unacknowledged ones are not counted)."""
        return int(self._redis.llen(INGEST_QUEUE))  # type: ignore[arg-type]

    def oldest_age_s(self) -> float:
        """Seconds the oldest waiting message has been queued; 0 when the queue is empty."""
        raw = self._redis.lindex(INGEST_QUEUE, -1)
        if raw is None:
            return 0.0
        enqueued_at = json.loads(raw)["headers"].get(ENQUEUED_AT_HEADER)  # type: ignore[arg-type]
        return max(0.0, time.time() - float(enqueued_at)) if enqueued_at is not None else 0.0

    def remove_tenant(self, tenant: str) -> int:
        """Take `tenant`'s waiting ingest messages off the queue (a task a worker already took is stopped by its
        missing status record instead); returns how many."""
        return int(self._remove_tenant(keys=[INGEST_QUEUE], args=[tenant, TENANT_HEADER]))

    def close(self) -> None:
        """Release broker and Redis connections."""
        self._app.close()
        self._redis.close()
