"""StatusStore against a real redis-server: the ingest lifecycle, owned writes, the write lock, guards, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from vidstrata.jobs.errors import StatusUnavailable
from vidstrata.jobs.status import EVENTS_CHANNEL, IngestState, StatusEvent, StatusEvents, StatusStore, parse_event
from vidstrata.jobs.status import KEY_PREFIX, MAX_REASON_LENGTH, WRITE_LOCK_PREFIX
from vidstrata.stack.process import free_port
from tests.fixtures.redis import empty_status_store


@pytest.fixture
def store(redis_url: str) -> Iterator[StatusStore]:
    """A StatusStore on a database of its own, emptied first."""
    yield from empty_status_store(redis_url, 11)


def test_lifecycle(store: StatusStore) -> None:
    before = time.time()
    store.mark_pending("v1", "task-1", "file:///videos/v1.mp4", {"lang": "en"})
    pending = store.get("v1")
    assert pending is not None
    assert (pending.state, pending.task_id, pending.uri, pending.metadata, pending.progress) == (
        IngestState.PENDING, "task-1", "file:///videos/v1.mp4", {"lang": "en"}, 0.0
    )
    assert before <= pending.submitted_at <= pending.updated_at <= time.time()

    assert store.mark_running("v1", 42.5, "decode", task_id="task-1") is True
    running = store.get("v1")
    assert running is not None
    assert (running.state, running.progress, running.stage, running.task_id) == (
        IngestState.RUNNING, 42.5, "decode", "task-1"
    )
    assert running.submitted_at == pending.submitted_at

    assert store.mark_ready("v1", clip_count=7, duration_s=31.5, task_id="task-1") is True
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
    store.mark_running("v2", 10, "encode", task_id="task-1")
    assert store.mark_failed("v2", "decode error: " + "x" * 10_000, task_id="task-1") is True
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
    assert store.mark_running("ghost", 50, "encode", task_id="t") is False
    assert store.mark_ready("ghost", 1, 1.0, task_id="t") is False
    assert store.mark_failed("ghost", "late", task_id="t") is False
    assert store.mark_failed("ghost", "late") is False
    assert store.get("ghost") is None


def test_writes_of_a_replaced_task_are_dropped_and_the_owners_go_through(store: StatusStore) -> None:
    """The re-submit race: task-2's submission replaced task-1's while task-1 still ran."""
    store.mark_pending("race", "task-1", "u1", {})
    assert store.mark_running("race", 30, "embed", task_id="task-1") is True
    store.mark_pending("race", "task-2", "u2", {"v": "2"})  # the re-submit
    assert store.mark_running("race", 50, "embed", task_id="task-2") is True
    assert store.mark_ready("race", clip_count=3, duration_s=6.0, task_id="task-2") is True
    ready = store.get("race")

    # everything the replaced task still writes is dropped, and says so
    assert store.mark_running("race", 90, "embed", task_id="task-1") is False
    assert store.mark_ready("race", clip_count=9, duration_s=30.0, task_id="task-1") is False
    assert store.mark_failed("race", "internal error: late", task_id="task-1") is False
    assert store.get("race") == ready
    assert ready is not None and (ready.state, ready.task_id, ready.clip_count, ready.duration_s, ready.uri) == (
        IngestState.READY, "task-2", 3, 6.0, "u2"
    )

    # the owner's later writes still go through (a re-ingest by the same task: its retry notice, FAILED)
    assert store.mark_running("race", 0, "retry 1 of 8", task_id="task-2") is True
    assert store.mark_failed("race", "gave up", task_id="task-2") is True
    failed = store.get("race")
    assert failed is not None
    assert (failed.state, failed.task_id, failed.reason) == (IngestState.FAILED, "task-2", "gave up")


def test_the_gateway_may_fail_the_record_it_created_without_an_owner(store: StatusStore) -> None:
    store.mark_pending("q", "task-1", "u", {})
    assert store.mark_failed("q", "could not queue the ingest task") is True
    failed = store.get("q")
    assert failed is not None and (failed.state, failed.task_id) == (IngestState.FAILED, "task-1")


def test_an_owner_is_required(store: StatusStore) -> None:
    store.mark_pending("o", "task-1", "u", {})
    for task_id in ("", None, 7):
        with pytest.raises(ValueError, match="task_id must be a non-empty string"):
            store.mark_running("o", 1, "fetch", task_id=task_id)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="task_id"):
        store.mark_ready("o", 1, 1.0)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="task_id must be a non-empty string"):
        store.mark_pending("o", "", "u", {})
    assert store.get("o").state == IngestState.PENDING  # type: ignore[union-attr]


def test_the_write_lock_admits_one_task_at_a_time(store: StatusStore, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/11", decode_responses=True)
    events: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def old_writer() -> None:
        with store.write_lock("w", "task-1", ttl_s=30):
            events.append("task-1 in")
            holding.set()
            release.wait(10)
            events.append("task-1 out")

    thread = threading.Thread(target=old_writer)
    thread.start()
    assert holding.wait(10)
    assert client.get(WRITE_LOCK_PREFIX + "w") == "task-1"
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    with store.write_lock("w", "task-2", ttl_s=30):
        events.append("task-2 in")
        waited = time.monotonic() - started
    thread.join()
    assert events == ["task-1 in", "task-1 out", "task-2 in"]
    assert waited >= 0.25
    assert client.get(WRITE_LOCK_PREFIX + "w") is None


def test_the_write_lock_lapses_after_its_ttl_and_a_waiter_gives_up(store: StatusStore, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/11", decode_responses=True)
    client.set(WRITE_LOCK_PREFIX + "dead", "task-died", px=400)  # its holder's process died
    started = time.monotonic()
    with store.write_lock("dead", "task-2", ttl_s=5):
        assert 0.2 < time.monotonic() - started < 3
        assert client.get(WRITE_LOCK_PREFIX + "dead") == "task-2"
    client.set(WRITE_LOCK_PREFIX + "rerun", "task-1", px=60_000)  # task-1 died holding it; Celery runs it again
    started = time.monotonic()
    with store.write_lock("rerun", "task-1", ttl_s=5):
        assert time.monotonic() - started < 0.2
    assert client.get(WRITE_LOCK_PREFIX + "rerun") is None
    client.set(WRITE_LOCK_PREFIX + "busy", "task-1", px=60_000)
    with pytest.raises(StatusUnavailable, match="another task kept writing video 'busy'"):
        with store.write_lock("busy", "task-2", ttl_s=0.3):
            pass
    # an expired holder does not release the lock its successor holds
    with store.write_lock("taken", "task-1", ttl_s=0.2):
        time.sleep(0.3)
        with store.write_lock("taken", "task-2", ttl_s=5):
            pass
        client.set(WRITE_LOCK_PREFIX + "taken", "task-3", px=60_000)
    assert client.get(WRITE_LOCK_PREFIX + "taken") == "task-3"


def test_bad_input_is_a_value_error(store: StatusStore) -> None:
    with pytest.raises(ValueError, match="must match"):
        store.mark_pending("bad id", "t", "u", {})
    with pytest.raises(ValueError, match="metadata key"):
        store.mark_pending("v", "t", "u", {"a b": "x"})
    with pytest.raises(ValueError, match="metadata must be a dict"):
        store.mark_pending("v", "t", "u", "lang=en")  # type: ignore[arg-type]
    store.mark_pending("v", "t", "u", {})
    with pytest.raises(ValueError, match=r"progress must be in \[0.0, 100.0\]"):
        store.mark_running("v", 101, "encode", task_id="t")
    with pytest.raises(ValueError, match="progress must be a finite number"):
        store.mark_running("v", float("nan"), "encode", task_id="t")
    with pytest.raises(ValueError, match="clip_count must be an int"):
        store.mark_ready("v", -1, 1.0, task_id="t")
    with pytest.raises(ValueError, match="duration_s must be in"):
        store.mark_ready("v", 1, -1.0, task_id="t")
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


def test_each_write_moves_the_id_between_state_sets_and_publishes_the_record(store: StatusStore, redis_url: str) -> None:
    """ListVideos pages the state sets and WatchVideo follows the events: both are written by the same scripts."""
    url = f"{redis_url.rsplit('/', 1)[0]}/11"
    pubsub = redis.Redis.from_url(url, decode_responses=True).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(EVENTS_CHANNEL)
    pubsub.get_message(timeout=1)
    for video_id in ("c", "a", "b", "d"):
        store.mark_pending(video_id, f"t-{video_id}", "file:///x.mp4", {"k": video_id})
    assert store.mark_running("b", 10.0, "decode", task_id="t-b")
    assert store.mark_failed("d", "broken", task_id="t-d")
    assert store.mark_running("d", 20.0, "decode", task_id="someone-else") is False  # a dropped write moves nothing
    assert store.list_ids(list(IngestState), "", 10) == ["a", "b", "c", "d"]
    assert store.list_ids([IngestState.PENDING], "", 10) == ["a", "c"]
    assert store.list_ids([IngestState.PENDING, IngestState.FAILED], "a", 2) == ["c", "d"]
    assert store.list_ids([IngestState.RUNNING], "b", 10) == []
    assert set(store.get_many(["a", "b", "zz"])) == {"a", "b"}
    assert store.get_many(["b"])["b"].stage == "decode"
    events = []
    while (message := pubsub.get_message(timeout=1)) is not None:
        events.append(parse_event(message["data"]))
    assert [(e.video_id, e.status.state) for e in events if e.status] == [
        ("c", IngestState.PENDING), ("a", IngestState.PENDING), ("b", IngestState.PENDING), ("d", IngestState.PENDING),
        ("b", IngestState.RUNNING), ("d", IngestState.FAILED)]
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions) and store.get("d").revision == revisions[-1]  # type: ignore[union-attr]
    assert events[-1].status == store.get("d")
    assert store.delete("b") and not store.delete("b")
    deleted = parse_event(pubsub.get_message(timeout=1)["data"])  # type: ignore[index]
    assert (deleted.video_id, deleted.status) == ("b", None) and deleted.revision > revisions[-1]
    assert store.list_ids(list(IngestState), "", 10) == ["a", "c", "d"]
    pubsub.close()


def test_index_existing_adds_records_written_before_the_state_sets(store: StatusStore, redis_url: str) -> None:
    client = redis.Redis.from_url(f"{redis_url.rsplit('/', 1)[0]}/11", decode_responses=True)
    client.hset(KEY_PREFIX + "old", mapping={"state": "READY", "task_id": "t", "uri": "", "metadata": "{}"})
    store.mark_pending("new", "t2", "file:///x.mp4", {})
    assert store.list_ids(list(IngestState), "", 10) == ["new"]
    assert store.index_existing() == 2
    assert store.list_ids([IngestState.READY], "", 10) == ["old"] and store.list_ids([IngestState.PENDING], "", 10) == ["new"]
    assert store.index_existing() == 0  # once per Redis


async def _first_event(events: StatusEvents, store: StatusStore) -> StatusEvent:
    subscribed = asyncio.Event()
    listening = events.listen(subscribed)
    first = asyncio.ensure_future(listening.__anext__())
    await asyncio.wait_for(subscribed.wait(), 5)
    await asyncio.to_thread(store.mark_pending, "e", "t-e", "file:///e.mp4", {})
    try:
        return await asyncio.wait_for(first, 5)
    finally:
        await listening.aclose()
        await events.close()


def test_status_events_deliver_each_write_to_asyncio_listeners(store: StatusStore, redis_url: str) -> None:
    events = StatusEvents(f"{redis_url.rsplit('/', 1)[0]}/11", timeout_s=5.0)
    event = asyncio.run(_first_event(events, store))
    assert event.video_id == "e" and event.status is not None and event.status.state == IngestState.PENDING
