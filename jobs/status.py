"""Ingest status of each video in Redis, shared by the gateway (submit, get) and the workers (progress).

It lives in jobs/ because gateway and workers may not import each other. Layout: one hash per video,
`vidstrata:video:<video_id>`, changed by Lua scripts so that "update only if it exists and names the writer"
is atomic. Needs a single Redis (primary), not Redis Cluster, like the Celery broker. The URL and timeout come from `jobs.settings.RedisSettings` (`VIDSTRATA_REDIS_*`).

Only `mark_pending` creates a record (and wipes an earlier one): the gateway's create, unconditional, and the
record names the task that will ingest this submission. Every other mark is a write of that task and is a
compare-and-set: it updates the record only while the record exists and still names the writer's task id,
and otherwise is dropped and returns False. So a worker that finishes after the video was deleted cannot
bring its status back, and the task of a replaced submission (the video id was submitted again while it
ran) cannot write over the status of the new one; a task whose write was dropped stops.

`write_lock` makes the index write of one video one task at a time, so an ingest that checked it still owns
the record before writing can be neither overtaken by nor overwrite the write of a newer submission.

Listing and watching (the gateway's ListVideos and WatchVideo): the same scripts that change a record keep its id in
one sorted set per tenant and state, `vidstrata:videos:<STATE>` for the default tenant and
`vidstrata:videos:<tenant>:<STATE>` for a named one (score 0, so ZRANGEBYLEX pages them in video_id order), stamp
it with a `revision` from one counter (`vidstrata:status-revision`: a later write has a larger one, whoever wrote it),
and PUBLISH the record as written on `vidstrata:status-events` (`StatusEvents` follows them). Writing the record,
moving its id between the sets and publishing are one script, so a lister or watcher never sees one without the
other. Records written before these sets existed are added by `index_existing`.

Tenants: a record keeps its video's tenant, and a video id is global: `mark_pending` refuses (VideoIdTaken) to
replace a record of another tenant, in the same script that would replace it. The scripts find a record's state
sets from its stored tenant (the set keys are built in the script, which a single Redis allows), so a worker's
write needs no tenant. `delete_tenant` removes every record of one tenant.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

import redis
import redis.asyncio

from vidstrata.jobs.contract import DEFAULT_TENANT
from vidstrata.jobs.errors import StatusError, StatusUnavailable
from vidstrata.spec.validation import check_metadata, check_video_id

log = logging.getLogger(__name__)

KEY_PREFIX = "vidstrata:video:"
WRITE_LOCK_PREFIX = "vidstrata:writing:"  # the task writing the video's rows to the index (write_lock)
WRITE_LOCK_POLL_S = 0.05  # how often a task waiting for write_lock asks again
ATTEMPT_PREFIX = "vidstrata:attempts:"  # runs of a task that started and have not ended (their process died)
ATTEMPT_TTL_S = 7 * 24 * 3600
MAX_REASON_LENGTH = 4096  # longer failure reasons (tracebacks) are cut to this many characters
STATE_SET_PREFIX = "vidstrata:videos:"  # + state: the ids of the records in that state (score 0: by id)
REVISION_KEY = "vidstrata:status-revision"  # counts every write of any record: a record's `revision`
EVENTS_CHANNEL = "vidstrata:status-events"  # every write and delete, as StatusEvent JSON (see _TRANSITION)
LISTING_VERSION_KEY = "vidstrata:listing-indexed"  # set once index_existing has added the older records


class IngestState(StrEnum):
    """Where a video is in ingest."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    READY = "READY"
    FAILED = "FAILED"


@dataclass(frozen=True)
class VideoStatus:
    """One video's ingest status as stored; fields of later states are None or empty until reached."""

    video_id: str
    state: IngestState
    task_id: str
    uri: str
    metadata: dict[str, str]
    submitted_at: float
    updated_at: float
    progress: float = 0.0
    stage: str = ""
    clip_count: int | None = None
    duration_s: float | None = None
    reason: str = ""
    revision: int = 0  # of the write that made this version (0: written before revisions existed)
    tenant: str = DEFAULT_TENANT  # whose video ("" : the default tenant; records before tenants are the default's)
    visual_model: str = ""  # the model versions the video was indexed with (READY; "" before, or before versions)
    text_model: str = ""


def state_set_prefix(tenant: str) -> str:
    """The prefix of one tenant's state sets (+ state): the default tenant keeps the sets of before tenants."""
    return STATE_SET_PREFIX + (f"{tenant}:" if tenant != DEFAULT_TENANT else "")


# The Lua part shared by the scripts: the state sets of the record's tenant (ARGV[prefix] + tenant + ':' + state).
_SETS = """
local states = {%s}
local function prefix_of(base, tenant)
  if tenant ~= '' then return base .. tenant .. ':' end
  return base
end
""" % ", ".join(f"'{s.value}'" for s in IngestState)

# KEYS[1]: the video's hash; KEYS[2]: the revision counter. ARGV: video_id, new state, mode ("create" or "update"),
# owner (the writer's task id; "" for an update that needs none), the events channel, STATE_SET_PREFIX, the tenant (a
# create's; an update keeps the record's), field, value, ... An update writes only to an existing record whose task_id
# is the owner: the check and the write are one step, so no newer submission can come in between. A create refuses
# (-1) to replace a record of another tenant. The record as written is published as
# {"video_id": ..., "fields": [name, value, ...]}.
_TRANSITION = _SETS + """
local tenant
if ARGV[3] == 'update' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'task_id') ~= ARGV[4] then return 0 end
  tenant = redis.call('HGET', KEYS[1], 'tenant') or ''
else
  tenant = ARGV[7]
  if redis.call('EXISTS', KEYS[1]) == 1 and (redis.call('HGET', KEYS[1], 'tenant') or '') ~= tenant then return -1 end
  redis.call('DEL', KEYS[1])
end
local prefix = prefix_of(ARGV[6], tenant)
local revision = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'revision', revision, 'tenant', tenant, unpack(ARGV, 8))
for _, state in ipairs(states) do redis.call('ZREM', prefix .. state, ARGV[1]) end
redis.call('ZADD', prefix .. ARGV[2], 0, ARGV[1])
redis.call('PUBLISH', ARGV[5], cjson.encode({video_id = ARGV[1], fields = redis.call('HGETALL', KEYS[1])}))
return 1
"""

# KEYS[1]: the video's hash; KEYS[2]: the revision counter. ARGV: video_id, the events channel, STATE_SET_PREFIX, the
# tenant whose record it must be ("*": any). Publishes {"video_id": ..., "deleted": revision} when there was a record
# (of that tenant). A missing record's id is removed from the default tenant's sets (a stale id).
_DELETE = _SETS + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  for _, state in ipairs(states) do redis.call('ZREM', ARGV[3] .. state, ARGV[1]) end
  return 0
end
local tenant = redis.call('HGET', KEYS[1], 'tenant') or ''
if ARGV[4] ~= '*' and ARGV[4] ~= tenant then return 0 end
local prefix = prefix_of(ARGV[3], tenant)
for _, state in ipairs(states) do redis.call('ZREM', prefix .. state, ARGV[1]) end
redis.call('DEL', KEYS[1])
local revision = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], cjson.encode({video_id = ARGV[1], deleted = revision}))
return 1
"""

# KEYS[1]: the video's hash. ARGV: video_id, STATE_SET_PREFIX. Puts an existing record's id in its tenant's state set
# (index_existing: records written before the sets existed).
_INDEX = _SETS + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
local prefix = prefix_of(ARGV[2], redis.call('HGET', KEYS[1], 'tenant') or '')
for _, s in ipairs(states) do
  if s == state then redis.call('ZADD', prefix .. s, 0, ARGV[1]) else redis.call('ZREM', prefix .. s, ARGV[1]) end
end
return 1
"""

# KEYS[1]: the video's write lock. ARGV: task id, time to live (ms). Taken when free or already the task's own
# (the same task run again after its process died holding it).
_LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS[1]: the video's write lock. ARGV: task id. Released only by its holder (it may have expired and been taken).
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@contextmanager
def _redis_errors(action: str) -> Iterator[None]:
    """Turn redis errors into StatusUnavailable (retryable) or StatusError."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StatusUnavailable(f"Redis {action} failed: {exc}") from exc
    except redis.RedisError as exc:
        raise StatusError(f"Redis {action} failed: {exc}") from exc


def _finite(value: float, what: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{what} must be in [{low}, {high}], got {value!r}")
    return float(value)


class VideoIdTaken(ValueError):
    """A submission names a video id another tenant's record holds (a video id is global)."""


class StatusStore:
    """Read and write ingest status records; safe to share between threads (redis-py pools connections)."""

    def __init__(self, redis_url: str, timeout_s: float) -> None:
        self._redis = redis.Redis.from_url(
            redis_url, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._transition = self._redis.register_script(_TRANSITION)
        self._lock = self._redis.register_script(_LOCK)
        self._unlock = self._redis.register_script(_UNLOCK)
        self._delete = self._redis.register_script(_DELETE)
        self._index = self._redis.register_script(_INDEX)

    def close(self) -> None:
        """Release the connection pool."""
        self._redis.close()

    def _write(self, video_id: str, state: IngestState, mode: str, owner: str,
               fields: dict[str, str | int | float], tenant: str = DEFAULT_TENANT) -> bool:
        check_video_id(video_id)
        args: list[str | int | float] = [video_id, state.value, mode, owner, EVENTS_CHANNEL, STATE_SET_PREFIX, tenant,
                                         "updated_at", time.time()]
        for name, value in fields.items():
            args += [name, value]
        with _redis_errors(f"mark {video_id!r} {state.value}"):
            written = int(self._transition(keys=[KEY_PREFIX + video_id, REVISION_KEY], args=args))
        if written < 0:
            raise VideoIdTaken(f"video id {video_id!r} is taken: choose another")
        return bool(written)

    @staticmethod
    def _owner(task_id: str) -> str:
        if not isinstance(task_id, str) or not task_id:
            raise ValueError(f"task_id must be a non-empty string, got {task_id!r}")
        return task_id

    def mark_pending(self, video_id: str, task_id: str, uri: str, metadata: dict[str, str],
                     tenant: str = DEFAULT_TENANT) -> None:
        """Start a fresh record for a submitted video of `tenant`, owned by task_id, replacing any earlier one of the
        same tenant (a re-submit); VideoIdTaken when another tenant's record holds the id."""
        now = time.time()
        self._write(video_id, IngestState.PENDING, "create", "", {
            "task_id": self._owner(task_id), "uri": uri, "metadata": json.dumps(check_metadata(metadata)),
            "submitted_at": now, "progress": 0.0,
        }, tenant)

    def mark_running(self, video_id: str, progress: float, stage: str, *, task_id: str) -> bool:
        """Report task_id's progress (0..100) and current stage; False, and nothing written, if the record no
        longer exists or names another task (a newer submission)."""
        return self._write(video_id, IngestState.RUNNING, "update", self._owner(task_id), {
            "progress": _finite(progress, "progress", 0.0, 100.0), "stage": stage,
        })

    def mark_ready(self, video_id: str, clip_count: int, duration_s: float, note: str = "", *, task_id: str,
                   visual_model: str = "", text_model: str = "") -> bool:
        """Record task_id's finished ingest, with a note for the user in `reason` (e.g. the file ended early) and the
        model versions its rows were written with; False, and nothing written, if the record no longer exists (the
        video was deleted meanwhile) or names another task."""
        if isinstance(clip_count, bool) or not isinstance(clip_count, int) or clip_count < 0:
            raise ValueError(f"clip_count must be an int >= 0, got {clip_count!r}")
        return self._write(video_id, IngestState.READY, "update", self._owner(task_id), {
            "progress": 100.0, "stage": "done", "clip_count": clip_count,
            "duration_s": _finite(duration_s, "duration_s", 0.0), "reason": note[:MAX_REASON_LENGTH],
            "visual_model": visual_model, "text_model": text_model,
        })

    def mark_failed(self, video_id: str, reason: str, *, task_id: str | None = None) -> bool:
        """Record why task_id's ingest failed (cut to MAX_REASON_LENGTH); False, and nothing written, if the
        record no longer exists or names another task.

        task_id None skips the owner check: only for the creator of the record marking the submission it has
        just made (the gateway, when the task could not be queued); a task always gives its id.
        """
        owner = "" if task_id is None else self._owner(task_id)
        return self._write(video_id, IngestState.FAILED, "update", owner, {"reason": reason[:MAX_REASON_LENGTH]})

    @contextmanager
    def write_lock(self, video_id: str, task_id: str, ttl_s: float) -> Iterator[None]:
        """Hold video_id's index-write lock for task_id for the block: one task at a time writes a video's rows.

        Waits while another task holds it; the lock lapses ttl_s after it was taken (make it the longest a
        task can live, so it outlives no holder that died), so waiting longer than ttl_s means it keeps being
        taken by others: StatusUnavailable (retry later). Taken again at once by the same task_id.
        """
        check_video_id(video_id)
        key, owner = WRITE_LOCK_PREFIX + video_id, self._owner(task_id)
        ttl_ms = max(1, math.ceil(_finite(ttl_s, "ttl_s", 0.0) * 1000))
        deadline = time.monotonic() + ttl_s
        while True:
            with _redis_errors(f"lock {video_id!r} for writing"):
                if self._lock(keys=[key], args=[owner, ttl_ms]):
                    break
            if time.monotonic() >= deadline:
                raise StatusUnavailable(f"another task kept writing video {video_id!r} for over {ttl_s:g} s")
            time.sleep(WRITE_LOCK_POLL_S)
        try:
            yield
        finally:
            try:
                with _redis_errors(f"unlock {video_id!r}"):
                    self._unlock(keys=[key], args=[owner])
            except StatusError as exc:  # StatusUnavailable too: the lock lapses after ttl_s
                log.warning("could not release the write lock of %r: %s", video_id, exc)

    def open_attempt(self, task_id: str) -> int:
        """Count one more start of task_id; returns the starts not yet closed, this one included.

        A run closes its attempt however it ends (ready, failed, retry); only a run whose process died
        leaves it open, so the count minus one is how often this task has killed its worker.
        """
        key = ATTEMPT_PREFIX + task_id
        with _redis_errors(f"count the attempts of task {task_id}"):
            pipe = self._redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, ATTEMPT_TTL_S)
            return int(pipe.execute()[0])

    def close_attempt(self, task_id: str) -> None:
        """The run of task_id ended in its own process (see open_attempt)."""
        with _redis_errors(f"close the attempt of task {task_id}"):
            self._redis.delete(ATTEMPT_PREFIX + task_id)

    def get(self, video_id: str) -> VideoStatus | None:
        """The video's status, or None if it was never submitted or was deleted."""
        check_video_id(video_id)
        with _redis_errors(f"get {video_id!r}"):
            raw: dict[str, str] = self._redis.hgetall(KEY_PREFIX + video_id)  # type: ignore[assignment]
        return _parse_record(video_id, raw) if raw else None

    def get_many(self, video_ids: Iterable[str]) -> dict[str, VideoStatus]:
        """The statuses of these videos in one round trip; ids without a record are absent."""
        ids = list(dict.fromkeys(video_ids))
        for video_id in ids:
            check_video_id(video_id)
        if not ids:
            return {}
        with _redis_errors(f"get {len(ids)} records"):
            pipe = self._redis.pipeline(transaction=False)
            for video_id in ids:
                pipe.hgetall(KEY_PREFIX + video_id)
            raws: list[dict[str, str]] = pipe.execute()
        return {v: _parse_record(v, raw) for v, raw in zip(ids, raws, strict=True) if raw}

    def list_ids(self, states: Sequence[IngestState], after: str, limit: int,
                 tenant: str = DEFAULT_TENANT) -> list[str]:
        """The first `limit` ids, in video_id order, after `after` ("" : from the start), of `tenant`'s records in
        these states: one ZRANGEBYLEX per state's set, merged. Only ids are read (the records may change meanwhile)."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        start = f"({after}" if after else "-"
        prefix = state_set_prefix(tenant)
        with _redis_errors(f"list the ids in {[s.value for s in states]}"):
            pipe = self._redis.pipeline(transaction=False)
            for state in states:
                pipe.zrangebylex(prefix + state.value, start, "+", start=0, num=limit)
            found: list[list[str]] = pipe.execute()
        return sorted({video_id for ids in found for video_id in ids})[:limit]

    def count(self, state: IngestState, tenant: str = DEFAULT_TENANT) -> int:
        """How many of `tenant`'s records are in `state`."""
        with _redis_errors(f"count the {state.value} records"):
            return int(self._redis.zcard(state_set_prefix(tenant) + state.value))  # type: ignore[arg-type]

    def index_existing(self, batch: int = 1000) -> int:
        """Put the ids of records written before the state sets existed into their sets, once per Redis (a marker
        key remembers it); returns the records seen (0 when it was done before). Safe beside writers: each record
        is indexed by a script that reads its state, and every later write moves its id itself."""
        with _redis_errors("index the existing records"):
            if self._redis.get(LISTING_VERSION_KEY):
                return 0
            seen = 0
            for keys in _chunks(self._redis.scan_iter(match=KEY_PREFIX + "*", count=batch), batch):
                pipe = self._redis.pipeline(transaction=False)
                for key in keys:
                    self._index(keys=[key], args=[key.removeprefix(KEY_PREFIX), STATE_SET_PREFIX], client=pipe)
                pipe.execute()
                seen += len(keys)
            self._redis.set(LISTING_VERSION_KEY, "1")
            return seen

    def delete(self, video_id: str, tenant: str | None = None) -> bool:
        """Remove the video's status (and announce it to watchers); True if it existed (as a record of `tenant`, when
        given: another tenant's record is left alone)."""
        check_video_id(video_id)
        args = [video_id, EVENTS_CHANNEL, STATE_SET_PREFIX, "*" if tenant is None else tenant]
        with _redis_errors(f"delete {video_id!r}"):
            return bool(self._delete(keys=[KEY_PREFIX + video_id, REVISION_KEY], args=args))

    def delete_tenant(self, tenant: str, batch: int = 1000) -> int:
        """Remove every status record of `tenant` (each announced to its watchers, as `delete` does); returns how
        many. Its workers' later writes are dropped (no record), so its running tasks stop (jobs.status's owner rule)."""
        prefix, deleted = state_set_prefix(tenant), 0
        with _redis_errors(f"delete the records of tenant {tenant!r}"):
            for state in IngestState:
                while ids := self._redis.zrange(prefix + state.value, 0, batch - 1):
                    pipe = self._redis.pipeline(transaction=False)
                    for video_id in ids:
                        self._delete(keys=[KEY_PREFIX + video_id, REVISION_KEY],
                                     args=[video_id, EVENTS_CHANNEL, STATE_SET_PREFIX, tenant], client=pipe)
                        pipe.zrem(prefix + state.value, video_id)  # a stale id, or one another tenant now holds
                    deleted += sum(int(n) for n in pipe.execute()[::2])
        return deleted


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _parse_record(video_id: str, raw: dict[str, str]) -> VideoStatus:
    """A record's hash fields as a VideoStatus."""
    return VideoStatus(
        video_id=video_id,
        state=IngestState(raw["state"]),
        task_id=raw.get("task_id", ""),
        uri=raw.get("uri", ""),
        metadata=json.loads(raw.get("metadata", "{}")),
        submitted_at=float(raw.get("submitted_at", 0.0)),
        updated_at=float(raw.get("updated_at", 0.0)),
        progress=float(raw.get("progress", 0.0)),
        stage=raw.get("stage", ""),
        clip_count=int(raw["clip_count"]) if "clip_count" in raw else None,
        duration_s=float(raw["duration_s"]) if "duration_s" in raw else None,
        reason=raw.get("reason", ""),
        revision=int(raw.get("revision", 0)),
        tenant=raw.get("tenant", DEFAULT_TENANT),
        visual_model=raw.get("visual_model", ""),
        text_model=raw.get("text_model", ""),
    )


@dataclass(frozen=True)
class StatusEvent:
    """One write of a record as published: the record as written, or None when it was deleted."""

    video_id: str
    status: VideoStatus | None
    revision: int


def parse_event(data: str | bytes) -> StatusEvent:
    """A message of EVENTS_CHANNEL (ValueError when it is not one)."""
    try:
        event = json.loads(data)
        video_id = event["video_id"]
        if "deleted" in event:
            return StatusEvent(video_id, None, int(event["deleted"]))
        flat = event["fields"]
        status = _parse_record(video_id, dict(zip(flat[::2], flat[1::2], strict=True)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a status event: {data[:200]!r}") from exc
    return StatusEvent(video_id, status, status.revision)


class StatusEvents:
    """Every record write and delete, as they happen (Redis pub/sub on EVENTS_CHANNEL), for asyncio watchers.

    Pub/sub delivers at most once: a message sent while the connection is down is lost, so a watcher must also
    read the record now and then.
    """

    def __init__(self, redis_url: str, timeout_s: float) -> None:
        self._redis = redis.asyncio.Redis.from_url(redis_url, socket_connect_timeout=timeout_s)
        self._timeout_s = timeout_s

    async def listen(self, subscribed: asyncio.Event | None = None) -> AsyncIterator[StatusEvent]:
        """The events from now on; sets `subscribed` once Redis confirmed the subscription. Raises StatusUnavailable
        when the connection fails (listen again to resubscribe)."""
        try:
            async with self._redis.pubsub() as pubsub:
                await asyncio.wait_for(pubsub.subscribe(EVENTS_CHANNEL), self._timeout_s)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=self._timeout_s)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        if subscribed is not None:
                            subscribed.set()
                    elif message["type"] == "message":
                        try:
                            yield parse_event(message["data"])
                        except ValueError as exc:
                            log.warning("%s", exc)
        except (redis.ConnectionError, redis.TimeoutError, asyncio.TimeoutError, OSError) as exc:
            raise StatusUnavailable(f"Redis subscription to {EVENTS_CHANNEL} failed: {exc}") from exc

    async def close(self) -> None:
        """Release the connections."""
        await self._redis.aclose()
