"""Ingest status of each video in Redis, shared by the gateway (submit, get) and the workers (progress).

It lives in jobs/ because gateway and workers may not import each other. Layout: one hash per video,
`vidstrata:video:<video_id>`, changed by Lua scripts so that "update only if it exists" is atomic. Needs a
single Redis (primary), not Redis Cluster, like the Celery broker. The URL and timeout come from `jobs.settings.RedisSettings` (`VIDSTRATA_REDIS_*`).

Only `mark_pending` creates a record (and wipes an earlier one). The other marks update an existing record,
last writer wins, and return False when there is none, so a worker that finishes after the video was
deleted cannot bring its status back.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

import redis

from jobs.errors import StatusError, StatusUnavailable
from spec.validation import check_metadata, check_video_id

KEY_PREFIX = "vidstrata:video:"
ATTEMPT_PREFIX = "vidstrata:attempts:"  # runs of a task that started and have not ended (their process died)
ATTEMPT_TTL_S = 7 * 24 * 3600
MAX_REASON_LENGTH = 4096  # longer failure reasons (tracebacks) are cut to this many characters


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


# KEYS[1]: the video's hash. ARGV: video_id, new state, mode ("create" or "update"), field, value, ...
_TRANSITION = """
local old = redis.call('HGET', KEYS[1], 'state')
if ARGV[3] == 'update' and not old then return 0 end
if ARGV[3] == 'create' then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'state', ARGV[2], unpack(ARGV, 4))
return 1
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

    def close(self) -> None:
        """Release the connection pool."""
        self._redis.close()

    def _write(self, video_id: str, state: IngestState, mode: str, fields: dict[str, str | int | float]) -> bool:
        check_video_id(video_id)
        args: list[str | int | float] = [video_id, state.value, mode, "updated_at", time.time()]
        for name, value in fields.items():
            args += [name, value]
        with _redis_errors(f"mark {video_id!r} {state.value}"):
            return bool(self._transition(keys=[KEY_PREFIX + video_id], args=args))

    def mark_pending(self, video_id: str, task_id: str, uri: str, metadata: dict[str, str]) -> None:
        """Start a fresh record for a submitted video, replacing any earlier one (a re-submit)."""
        now = time.time()
        self._write(video_id, IngestState.PENDING, "create", {
            "task_id": task_id, "uri": uri, "metadata": json.dumps(check_metadata(metadata)),
            "submitted_at": now, "progress": 0.0,
        })

    def mark_running(self, video_id: str, progress: float, stage: str) -> bool:
        """Report progress (0..100) and the current stage; False if the record no longer exists."""
        return self._write(video_id, IngestState.RUNNING, "update", {
            "progress": _finite(progress, "progress", 0.0, 100.0), "stage": stage,
        })

    def mark_ready(self, video_id: str, clip_count: int, duration_s: float, note: str = "") -> bool:
        """Record a finished ingest, with a note for the user in `reason` (e.g. the file ended early);
        False if the record no longer exists (the video was deleted meanwhile)."""
        if isinstance(clip_count, bool) or not isinstance(clip_count, int) or clip_count < 0:
            raise ValueError(f"clip_count must be an int >= 0, got {clip_count!r}")
        return self._write(video_id, IngestState.READY, "update", {
            "progress": 100.0, "stage": "done", "clip_count": clip_count,
            "duration_s": _finite(duration_s, "duration_s", 0.0), "reason": note[:MAX_REASON_LENGTH],
        })

    def mark_failed(self, video_id: str, reason: str) -> bool:
        """Record why ingest failed (cut to MAX_REASON_LENGTH); False if the record no longer exists."""
        return self._write(video_id, IngestState.FAILED, "update", {"reason": reason[:MAX_REASON_LENGTH]})

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
        if not raw:
            return None
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
        )

    def delete(self, video_id: str) -> bool:
        """Remove the video's status; True if it existed."""
        check_video_id(video_id)
        with _redis_errors(f"delete {video_id!r}"):
            return bool(self._redis.delete(KEY_PREFIX + video_id))
