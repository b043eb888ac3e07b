"""StatusStore against a real redis-server: the ingest lifecycle, counts, guards and failures."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from jobs.errors import StatusUnavailable
from jobs.status import IngestState, StatusStore
from jobs.status import KEY_PREFIX, MAX_REASON_LENGTH
from vidstrata.stack.process import free_port


@pytest.fixture
def store(redis_url: str) -> Iterator[StatusStore]:
    """A StatusStore on a database of its own (other tests use db 0 of the same server), emptied first."""
    url = redis_url.rsplit("/", 1)[0] + "/11"
    redis.Redis.from_url(url).flushdb()
    status = StatusStore(url, timeout_s=5.0)
    yield status
    status.close()


def test_lifecycle(store: StatusStore) -> None:
    before = time.time()
    store.mark_pending("v1", "task-1", "file:///videos/v1.mp4", {"lang": "en"})
    pending = store.get("v1")
    assert pending is not None
    assert (pending.state, pending.task_id, pending.uri, pending.metadata, pending.progress) == (
        IngestState.PENDING, "task-1", "file:///videos/v1.mp4", {"lang": "en"}, 0.0
    )
    assert before <= pending.submitted_at <= pending.updated_at <= time.time()

    assert store.mark_running("v1", 42.5, "decode") is True
    running = store.get("v1")
    assert running is not None
    assert (running.state, running.progress, running.stage, running.task_id) == (
        IngestState.RUNNING, 42.5, "decode", "task-1"
    )
    assert running.submitted_at == pending.submitted_at

    assert store.mark_ready("v1", clip_count=7, duration_s=31.5) is True
    ready = store.get("v1")
    assert ready is not None
    assert (ready.state, ready.clip_count, ready.duration_s, ready.progress, ready.reason) == (
        IngestState.READY, 7, 31.5, 100.0, ""
    )

    assert store.delete("v1") is True
    assert store.delete("v1") is False
    assert store.get("v1") is None


def test_failure_then_resubmit_starts_clean(store: StatusStore) -> None:
    store.mark_pending("v2", "task-1", "s3://b/v2.mp4", {})
    store.mark_running("v2", 10, "encode")
    assert store.mark_failed("v2", "decode error: " + "x" * 10_000) is True
    failed = store.get("v2")
    assert failed is not None and failed.state == IngestState.FAILED
    assert failed.reason.startswith("decode error") and len(failed.reason) == MAX_REASON_LENGTH

    store.mark_pending("v2", "task-2", "s3://b/v2.mp4", {"lang": "fr"})
    again = store.get("v2")
    assert again is not None
    assert (again.state, again.task_id, again.reason, again.stage, again.metadata) == (
        IngestState.PENDING, "task-2", "", "", {"lang": "fr"}
    )


def test_updates_never_resurrect_a_deleted_video(store: StatusStore) -> None:
    assert store.mark_running("ghost", 50, "encode") is False
    assert store.mark_ready("ghost", 1, 1.0) is False
    assert store.mark_failed("ghost", "late") is False
    assert store.get("ghost") is None


def test_bad_input_is_a_value_error(store: StatusStore) -> None:
    with pytest.raises(ValueError, match="must match"):
        store.mark_pending("bad id", "t", "u", {})
    with pytest.raises(ValueError, match="metadata key"):
        store.mark_pending("v", "t", "u", {"a b": "x"})
    with pytest.raises(ValueError, match="metadata must be a dict"):
        store.mark_pending("v", "t", "u", "lang=en")  # type: ignore[arg-type]
    store.mark_pending("v", "t", "u", {})
    with pytest.raises(ValueError, match=r"progress must be in \[0.0, 100.0\]"):
        store.mark_running("v", 101, "encode")
    with pytest.raises(ValueError, match="progress must be a finite number"):
        store.mark_running("v", float("nan"), "encode")
    with pytest.raises(ValueError, match="clip_count must be an int"):
        store.mark_ready("v", -1, 1.0)
    with pytest.raises(ValueError, match="duration_s must be in"):
        store.mark_ready("v", 1, -1.0)
    with pytest.raises(ValueError, match="must match"):
        store.get("x" * 200)
    assert store.get("v") is not None and store.get("v").state == IngestState.PENDING  # type: ignore[union-attr]


def test_stored_keys_use_the_documented_prefix(store: StatusStore, redis_url: str) -> None:
    store.mark_pending("k1", "t", "u", {})
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/11", decode_responses=True)
    assert client.hget(KEY_PREFIX + "k1", "state") == "PENDING"


def test_unreachable_redis_raises_status_unavailable() -> None:
    store = StatusStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=1)
    with pytest.raises(StatusUnavailable, match="Redis get 'v' failed"):
        store.get("v")
    with pytest.raises(StatusUnavailable):
        store.mark_pending("v", "t", "u", {})
    with pytest.raises(StatusUnavailable):
        store.delete("v")
