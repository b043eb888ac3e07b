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
one sorted set per state, `vidstrata:videos:<STATE>` (score 0, so ZRANGEBYLEX pages them in video_id order), stamp
it with a `revision` from one counter (`vidstrata:status-revision`: a later write has a larger one, whoever wrote it),
and PUBLISH the record as written on `vidstrata:status-events` (`StatusEvents` follows them). Writing the record,
moving its id between the sets and publishing are one script, so a lister or watcher never sees one without the
other. Records written before these sets existed are added by `index_existing`.
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


def _state_sets(state: IngestState) -> list[str]:
    """The state's id set first, then the other states' (the KEYS the scripts move an id between)."""
    return [STATE_SET_PREFIX + state.value] + [STATE_SET_PREFIX + s.value for s in IngestState if s != state]


# KEYS[1]: the video's hash; KEYS[2]: the new state's id set, KEYS[3..5] the other states'; KEYS[6]: the revision
# counter. ARGV: video_id, new state, mode ("create" or "update"), owner (the writer's task id; "" for an update that
# needs none), the events channel, field, value, ... An update writes only to an existing record whose task_id is the
# owner: the check and the write are one step, so no newer submission can come in between. The record as written
# is published as {"video_id": ..., "fields": [name, value, ...]}.
_TRANSITION = """
if ARGV[3] == 'update' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'task_id') ~= ARGV[4] then return 0 end
else
  redis.call('DEL', KEYS[1])
end
local revision = redis.call('INCR', KEYS[6])
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'revision', revision, unpack(ARGV, 6))
for i = 3, 5 do redis.call('ZREM', KEYS[i], ARGV[1]) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('PUBLISH', ARGV[5], cjson.encode({video_id = ARGV[1], fields = redis.call('HGETALL', KEYS[1])}))
return 1
"""

# KEYS[1]: the video's hash; KEYS[2..5]: the state id sets; KEYS[6]: the revision counter. ARGV: video_id, the events
# channel. Publishes {"video_id": ..., "deleted": revision} when there was a record.
_DELETE = """
for i = 2, 5 do redis.call('ZREM', KEYS[i], ARGV[1]) end
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
local revision = redis.call('INCR', KEYS[6])
redis.call('PUBLISH', ARGV[2], cjson.encode({video_id = ARGV[1], deleted = revision}))
return 1
"""

# KEYS[1]: the video's hash; KEYS[2..5]: the state id sets. ARGV: video_id. Puts an existing record's id in its
# state's set (index_existing: records written before the sets existed).
_INDEX = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
for i = 2, 5 do
  if KEYS[i] == ARGV[2] .. state then redis.call('ZADD', KEYS[i], 0, ARGV[1]) else redis.call('ZREM', KEYS[i], ARGV[1]) end
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
               fields: dict[str, str | int | float]) -> bool:
        check_video_id(video_id)
        args: list[str | int | float] = [video_id, state.value, mode, owner, EVENTS_CHANNEL, "updated_at", time.time()]
        for name, value in fields.items():
            args += [name, value]
        keys = [KEY_PREFIX + video_id, *_state_sets(state), REVISION_KEY]
        with _redis_errors(f"mark {video_id!r} {state.value}"):
            return bool(self._transition(keys=keys, args=args))

    @staticmethod
    def _owner(task_id: str) -> str:
        if not isinstance(task_id, str) or not task_id:
            raise ValueError(f"task_id must be a non-empty string, got {task_id!r}")
        return task_id

    def mark_pending(self, video_id: str, task_id: str, uri: str, metadata: dict[str, str],
                     tenant: str = DEFAULT_TENANT) -> None:
        """Start a fresh record for a submitted video of `tenant`, owned by task_id, replacing any earlier one
        (a re-submit)."""
        now = time.time()
        self._write(video_id, IngestState.PENDING, "create", "", {
            "task_id": self._owner(task_id), "uri": uri, "metadata": json.dumps(check_metadata(metadata)),
            "submitted_at": now, "progress": 0.0, "tenant": tenant,
        })

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

    def list_ids(self, states: Sequence[IngestState], after: str, limit: int) -> list[str]:
        """The first `limit` ids, in video_id order, after `after` ("" : from the start), of the records in these
        states: one ZRANGEBYLEX per state's set, merged. Only ids are read (the records may change meanwhile)."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        start = f"({after}" if after else "-"
        with _redis_errors(f"list the ids in {[s.value for s in states]}"):
            pipe = self._redis.pipeline(transaction=False)
            for state in states:
                pipe.zrangebylex(STATE_SET_PREFIX + state.value, start, "+", start=0, num=limit)
            found: list[list[str]] = pipe.execute()
        return sorted({video_id for ids in found for video_id in ids})[:limit]

    def index_existing(self, batch: int = 1000) -> int:
        """Put the ids of records written before the state sets existed into their sets, once per Redis (a marker
        key remembers it); returns the records seen (0 when it was done before). Safe beside writers: each record
        is indexed by a script that reads its state, and every later write moves its id itself."""
        with _redis_errors("index the existing records"):
            if self._redis.get(LISTING_VERSION_KEY):
                return 0
            seen = 0
            sets = [STATE_SET_PREFIX + s.value for s in IngestState]
            for keys in _chunks(self._redis.scan_iter(match=KEY_PREFIX + "*", count=batch), batch):
                pipe = self._redis.pipeline(transaction=False)
                for key in keys:
                    self._index(keys=[key, *sets], args=[key.removeprefix(KEY_PREFIX), STATE_SET_PREFIX], client=pipe)
                pipe.execute()
                seen += len(keys)
            self._redis.set(LISTING_VERSION_KEY, "1")
            return seen

    def delete(self, video_id: str) -> bool:
        """Remove the video's status (and announce it to watchers); True if it existed."""
        check_video_id(video_id)
        keys = [KEY_PREFIX + video_id, *(STATE_SET_PREFIX + s.value for s in IngestState), REVISION_KEY]
        with _redis_errors(f"delete {video_id!r}"):
            return bool(self._delete(keys=keys, args=[video_id, EVENTS_CHANNEL]))


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
