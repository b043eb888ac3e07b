"""Re-index jobs and the serving generation, in Redis: what `vidstrata reindex` starts and cuts over, the workers
advance, and the gateway reports (GetStats.reindex) and serves from.

A *generation* is one complete index under one model version: a collection prefix (index.schema.collection_names)
and the Triton that serves the encoders whose vectors it holds. A re-index builds the next generation beside the
served one (new collections, a second Triton: blue/green), then a cutover makes it the served one. Which generation
is served is one Redis hash, `vidstrata:serving` (absent: each process's own settings): the gateway and the workers
read it and switch collections and encoder together, so a Search sees one generation, never a mix (an alias switch
in Milvus could not move the query encoder with it).

One hash per job, `vidstrata:reindex:job:<id>`, with the two generations, the versions, the times and the counts;
the videos of the job in sets beside it (`...:videos` enqueued, `...:done`) and the failures in a hash (`...:failed`,
video id -> reason), so a video counted twice (enqueued again by a re-submit) is still one video. Every change of a
count is one Lua script (the sets, the state RUNNING <-> COMPLETED and `updated_at` move together), so a reader
never sees done + failed > total. `vidstrata:reindex:latest` names the newest job; one job at a time is active.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import redis

from vidstrata.jobs.errors import StatusError
from vidstrata.jobs.status import _redis_errors

JOB_PREFIX = "vidstrata:reindex:job:"
LATEST_KEY = "vidstrata:reindex:latest"
COUNTER_KEY = "vidstrata:reindex:counter"
SERVING_KEY = "vidstrata:serving"
MAX_FAILURES_SHOWN = 20  # GetStats and the CLI show the first ones; `failures()` reads them all
S = TypeVar("S")


class JobState(StrEnum):
    """Where a re-index job is (GetStatsResponse.reindex.state)."""

    RUNNING = "RUNNING"  # videos left to re-index; Search serves the source generation
    COMPLETED = "COMPLETED"  # every video done or failed: ready to cut over
    CUT_OVER = "CUT_OVER"  # the target generation is served; the source is kept for a rollback
    ROLLED_BACK = "ROLLED_BACK"  # the source generation is served again; the target is kept
    FAILED = "FAILED"  # given up (the reason in `note`); the source stays served


class JobConflict(StatusError):
    """The job cannot make this move (another job is active; a cutover before completion; rows already dropped)."""


@dataclass(frozen=True)
class Generation:
    """One complete index: its collections' prefix, the Triton serving its encoders, their versions and dimension."""

    collection_prefix: str
    triton_url: str
    visual_model: str = ""
    text_model: str = ""
    dim: int = 0


@dataclass(frozen=True)
class ReindexJob:
    """One job as stored. `total` counts the distinct videos enqueued so far (a video submitted during the job adds
    one); left = total - done - failed."""

    job_id: str
    state: JobState
    source: Generation
    target: Generation
    started_at: float
    updated_at: float
    total: int = 0
    done: int = 0
    failed: int = 0
    note: str = ""
    old_dropped: bool = False
    failures: dict[str, str] = field(default_factory=dict)  # the first MAX_FAILURES_SHOWN, video id -> reason

    @property
    def left(self) -> int:
        return max(0, self.total - self.done - self.failed)

    @property
    def eta_s(self) -> float:
        """Seconds left at the rate so far (videos finished per second since the start); 0 when unknown or done."""
        finished, elapsed = self.done + self.failed, self.updated_at - self.started_at
        if self.state != JobState.RUNNING or not finished or elapsed <= 0 or not self.left:
            return 0.0
        return self.left * elapsed / finished

    @property
    def active(self) -> bool:
        """Whether both generations are kept up to date (a submission writes both): until the old rows are dropped."""
        return self.state in (JobState.RUNNING, JobState.COMPLETED, JobState.CUT_OVER, JobState.ROLLED_BACK) \
            and not self.old_dropped

    @property
    def served(self) -> Generation:
        """The generation Search answers from while this job is the latest."""
        return self.target if self.state == JobState.CUT_OVER else self.source

    @property
    def shadow(self) -> Generation:
        """The generation kept beside the served one (written by submissions too)."""
        return self.source if self.state == JobState.CUT_OVER else self.target


def generation_settings(settings: S, generation: Generation | None) -> S:
    """A process's settings (gateway or worker: a pydantic model with `milvus` and `triton` parts) for one
    generation: its collections' prefix and dimension, and its Triton; None: the settings as they are."""
    if generation is None:
        return settings
    parts: Any = settings
    return parts.model_copy(update={  # type: ignore[no-any-return]
        "milvus": parts.milvus.model_copy(update={"collection_prefix": generation.collection_prefix,
                                                  "vector_dim": generation.dim or parts.milvus.vector_dim}),
        "triton": parts.triton.model_copy(update={"url": generation.triton_url}),
    })


def _keys(job_id: str) -> list[str]:
    base = JOB_PREFIX + job_id
    return [base, base + ":videos", base + ":done", base + ":failed"]


# KEYS: the job hash, its videos, done and failed. ARGV: the move ("add", "done", "failed", "recount"), now, video id,
# reason. A video not enqueued in the job counts neither done nor failed (its task outlived a forget).
# "add" enqueues a video (again): it leaves done and failed, so it counts as left until its new task ends.
# A job RUNNING with nothing left becomes COMPLETED; a COMPLETED job given a video runs again.
_COUNT = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if ARGV[1] == 'recount' then
elseif ARGV[1] == 'add' then
  redis.call('SADD', KEYS[2], ARGV[3])
  redis.call('SREM', KEYS[3], ARGV[3])
  redis.call('HDEL', KEYS[4], ARGV[3])
elseif redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 0 then
  return 0
elseif ARGV[1] == 'done' then
  redis.call('SADD', KEYS[3], ARGV[3])
  redis.call('HDEL', KEYS[4], ARGV[3])
else
  redis.call('SREM', KEYS[3], ARGV[3])
  redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
end
local left = redis.call('SCARD', KEYS[2]) - redis.call('SCARD', KEYS[3]) - redis.call('HLEN', KEYS[4])
if state == 'RUNNING' and left <= 0 then state = 'COMPLETED' end
if state == 'COMPLETED' and left > 0 then state = 'RUNNING' end
redis.call('HSET', KEYS[1], 'state', state, 'updated_at', ARGV[2])
return 1
"""

# KEYS: the job hash, the serving hash. ARGV: allowed states (comma list), the new state, the generation to serve
# (JSON) or "", now. Moves the state only from an allowed one, and writes what is served in the same step.
_MOVE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == state then allowed = true end end
if not allowed then return state end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated_at', ARGV[4])
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3]) end
return 'ok'
"""


class ReindexStore:
    """Read and change re-index jobs and the serving generation; safe to share between threads."""

    def __init__(self, redis_url: str, timeout_s: float) -> None:
        self._redis = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=timeout_s,
                                           socket_connect_timeout=timeout_s)
        self._count = self._redis.register_script(_COUNT)
        self._move = self._redis.register_script(_MOVE)

    def close(self) -> None:
        """Release the connection pool."""
        self._redis.close()

    # -- the serving generation -----------------------------------------------------------------------

    def serving(self) -> Generation | None:
        """The generation Search and ingest use; None: none was ever cut over (each process's settings)."""
        with _redis_errors("read the serving generation"):
            raw = self._redis.get(SERVING_KEY)
        return Generation(**json.loads(raw)) if raw else None  # type: ignore[arg-type]

    # -- jobs ---------------------------------------------------------------------------------------

    def start(self, source: Generation, target_triton_url: str, target_prefix_base: str,
              visual_model: str, text_model: str, dim: int) -> ReindexJob:
        """A new RUNNING job from `source` to the encoders at target_triton_url, written into collections of a
        prefix of its own (`<base>r<n>_`); JobConflict while another job is active (RUNNING, COMPLETED, or cut over
        or rolled back with both generations kept)."""
        latest = self.latest()
        if latest is not None and latest.active:
            raise JobConflict(f"re-index job {latest.job_id} is {latest.state.value}; finish it first "
                              "(--cutover then --drop-old, or --rollback then --drop-old)")
        with _redis_errors("start a re-index job"):
            number = int(self._redis.incr(COUNTER_KEY))  # type: ignore[arg-type]
            job_id = f"r{number}"
            target = Generation(f"{target_prefix_base}{job_id}_", target_triton_url, visual_model, text_model, dim)
            now = time.time()
            pipe = self._redis.pipeline()
            pipe.hset(_keys(job_id)[0], mapping={
                "state": JobState.RUNNING.value, "source": json.dumps(asdict(source)),
                "target": json.dumps(asdict(target)), "started_at": now, "updated_at": now, "note": "",
                "old_dropped": 0})
            pipe.set(LATEST_KEY, job_id)
            pipe.execute()
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> ReindexJob | None:
        """One job with its counts and first failures; None when there is no such job."""
        keys = _keys(job_id)
        with _redis_errors(f"read re-index job {job_id}"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.hgetall(keys[0])
            pipe.scard(keys[1])
            pipe.scard(keys[2])
            pipe.hlen(keys[3])
            pipe.hscan(keys[3], 0, count=MAX_FAILURES_SHOWN)
            raw, total, done, failed, (_, failures) = pipe.execute()
        if not raw:
            return None
        return ReindexJob(
            job_id=job_id, state=JobState(raw["state"]), source=Generation(**json.loads(raw["source"])),
            target=Generation(**json.loads(raw["target"])), started_at=float(raw["started_at"]),
            updated_at=float(raw["updated_at"]), total=int(total), done=int(done), failed=int(failed),
            note=raw.get("note", ""), old_dropped=raw.get("old_dropped") == "1",
            failures=dict(list(failures.items())[:MAX_FAILURES_SHOWN]))

    def latest(self) -> ReindexJob | None:
        """The newest job, or None when there has been none."""
        with _redis_errors("read the latest re-index job"):
            job_id = self._redis.get(LATEST_KEY)
        return self.get(str(job_id)) if job_id else None

    def failures(self, job_id: str) -> dict[str, str]:
        """Every failure of the job: video id -> reason."""
        with _redis_errors(f"read the failures of job {job_id}"):
            return dict(self._redis.hgetall(_keys(job_id)[3]))  # type: ignore[arg-type]

    def add_videos(self, job_id: str, video_ids: Iterable[str]) -> None:
        """Count these videos as enqueued (again): left until their tasks report."""
        self._counts(job_id, "add", video_ids)

    def record_done(self, job_id: str, video_id: str) -> None:
        """The video is re-indexed (a failure recorded earlier for it is cleared)."""
        self._counts(job_id, "done", [video_id])

    def record_failure(self, job_id: str, video_id: str, reason: str) -> None:
        """The video could not be re-indexed, and why (a source that is gone): reported, never dropped."""
        self._counts(job_id, "failed", [video_id], reason)

    def forget(self, job_id: str, video_id: str) -> None:
        """The video left the job (deleted meanwhile): it is neither done, failed nor left."""
        keys = _keys(job_id)
        with _redis_errors(f"forget {video_id!r} in job {job_id}"):
            pipe = self._redis.pipeline()
            pipe.srem(keys[1], video_id)
            pipe.srem(keys[2], video_id)
            pipe.hdel(keys[3], video_id)
            pipe.execute()
        self._counts(job_id, "recount", [""])

    def _counts(self, job_id: str, move: str, video_ids: Iterable[str], reason: str = "") -> None:
        keys, now = _keys(job_id), time.time()
        with _redis_errors(f"count {move} in job {job_id}"):
            pipe = self._redis.pipeline(transaction=False)
            for video_id in video_ids:
                self._count(keys=keys, args=[move, now, video_id, reason], client=pipe)
            results = pipe.execute()
        if any(r == -1 for r in results):
            raise JobConflict(f"there is no re-index job {job_id}")

    def move(self, job_id: str, allowed: Iterable[JobState], to: JobState, serve: Generation | None) -> ReindexJob:
        """Move the job to state `to` from one of `allowed`, and serve `serve` in the same step (None: unchanged);
        JobConflict from any other state."""
        args = [",".join(s.value for s in allowed), to.value, json.dumps(asdict(serve)) if serve else "", time.time()]
        with _redis_errors(f"move job {job_id} to {to.value}"):
            answer = self._move(keys=[_keys(job_id)[0], SERVING_KEY], args=args)
        if answer == "missing":
            raise JobConflict(f"there is no re-index job {job_id}")
        if answer != "ok":
            raise JobConflict(f"job {job_id} is {answer}; this needs {' or '.join(s.value for s in allowed)}")
        job = self.get(job_id)
        assert job is not None
        return job

    def mark(self, job_id: str, **fields: str | int) -> None:
        """Set the job's note or old_dropped."""
        with _redis_errors(f"mark job {job_id}"):
            self._redis.hset(_keys(job_id)[0], mapping={**fields, "updated_at": time.time()})
