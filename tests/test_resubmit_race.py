"""Re-submitting a video while its first ingest still runs (issue 20): the newer submission owns the status.

The e2e tests hold the first task of a video at one point of its ingest (the source fetched, embedding at
~20 % and ~90 %, the index write), re-submit the video with another source, let the first task go, and
check that the new version is READY and stays READY once the first task has ended, and that the index holds
the new version. They run a real worker (`python -m vidstrata.workers.main`, two prefork children, so both tasks run at
once as in production) on the real Redis, Triton and Milvus of `ingest_stack`. The hold is a gate installed
in the worker's children through a `sitecustomize` on the worker's PYTHONPATH (the fixture writes it): the
first run that reaches an armed point waits there until the test lets it go.

The tests without the e2e mark run the task layer's retry, "internal error" and FAILED paths against the real
Redis only.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import celery
import pytest

from vidstrata.media.synthetic import write_long_video, write_scene_video
from vidstrata.jobs.status import IngestState, StatusStore, VideoStatus
from tests.fixtures.redis import empty_status_store
from tests.photos import load_photo
from vidstrata.workers import tasks
from vidstrata.workers.errors import SourceUnavailable
from vidstrata.workers.ingest import Ingestor

GATE_HOOK = '''
"""Test gates of tests/test_resubmit_race.py, loaded by the worker only (its PYTHONPATH).

An armed gate is the file GATES/<video_id>@<point>. The first run that reaches the point takes it (renames it
to <...>.held: atomic, so one run holds and later runs pass) and waits until the test deletes the .held file.
Points: fetch (the source fetched, before the next status write), embed-20 and embed-80 (before the first
embedding report at or past that percent), write (inside the index write, before the video's rows).
"""
import os
import time
from pathlib import Path

from celery.signals import worker_process_init

GATES = Path(os.environ["VIDSTRATA_TEST_GATES"])


def _hold(video_id, point):
    held = GATES / f"{video_id}@{point}.held"
    try:
        os.rename(GATES / f"{video_id}@{point}", held)
    except FileNotFoundError:
        return
    deadline = time.monotonic() + 120
    while held.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


@worker_process_init.connect(weak=False)
def _install(**_):
    # in each prefork child, once everything is imported (prometheus_client must not be imported early)
    import contextlib

    import vidstrata.workers.ingest as ingest_module
    from vidstrata.index.store import VideoIndex
    from vidstrata.jobs.status import StatusStore

    real_fetch, real_running, real_replace = ingest_module.fetch, StatusStore.mark_running, VideoIndex.replace_video

    @contextlib.contextmanager
    def fetch(uri, *args, **kwargs):
        with real_fetch(uri, *args, **kwargs) as path:
            _hold(Path(uri).stem, "fetch")
            yield path

    def mark_running(self, video_id, progress, stage, *args, **kwargs):
        for percent in (20, 80):
            if stage == "embed" and progress >= percent:
                _hold(video_id, f"embed-{percent}")
        return real_running(self, video_id, progress, stage, *args, **kwargs)

    def replace_video(self, video, *args, **kwargs):
        _hold(video.video_id, "write")
        return real_replace(self, video, *args, **kwargs)

    ingest_module.fetch, StatusStore.mark_running, VideoIndex.replace_video = fetch, mark_running, replace_video
'''


WRITE_WAIT_S = 5.0  # how long the write test holds the old task's index write with the new ingest waiting


class Gates:
    """The test's side of the gates in GATE_HOOK."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def arm(self, video_id: str, point: str) -> None:
        (self.folder / f"{video_id}@{point}").touch()

    def wait_held(self, video_id: str, point: str, status: StatusStore, timeout_s: float = 90.0) -> None:
        held = self.folder / f"{video_id}@{point}.held"
        deadline = time.monotonic() + timeout_s
        while not held.exists():
            if time.monotonic() > deadline:
                pytest.fail(f"the first ingest of {video_id} never reached {point}: {status.get(video_id)}")
            time.sleep(0.02)

    def release(self, video_id: str, point: str) -> None:
        (self.folder / f"{video_id}@{point}.held").unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------------------
# e2e: a real worker, real Redis, Triton and Milvus


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> Gates:
    folder = tmp_path_factory.mktemp("gates")
    (folder / "hook").mkdir()
    (folder / "hook" / "sitecustomize.py").write_text(textwrap.dedent(GATE_HOOK))
    return Gates(folder)


@pytest.fixture(scope="module")
def worker(ingest_stack, gates):  # noqa: ANN001, ANN201 - fixtures of tests/fixtures/worker.py
    """One worker with two prefork children (the old task holds one), the gates installed; speech and
    screen text off (the status and the index write are under test, not the text stages)."""
    with pytest.MonkeyPatch.context() as env:
        path = [str(gates.folder / "hook"), os.environ.get("PYTHONPATH", "")]
        env.setenv("PYTHONPATH", os.pathsep.join(filter(None, path)))
        env.setenv("VIDSTRATA_TEST_GATES", str(gates.folder))
        return ingest_stack.start_worker(concurrency="2", speech="false", screen_text="false",
                                         task_time_limit_s="150", visibility_timeout_s="300")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("resubmit")
    photos = [load_photo(name) for name in ("chelsea", "coffee", "rocket")]
    # the first version: 60 frames at the test's 2 fps, so embedding reports progress 8 times
    write_long_video(folder / "long.mp4", photos, duration_s=30, scene_s=10, fps=5)
    # the re-submitted version: short, another duration and other metadata
    write_scene_video(folder / "short.mp4", photos, [2.0, 2.0, 2.0])
    return folder


@pytest.fixture(scope="module")
def results(ingest_stack) -> Iterator[celery.Celery]:  # noqa: ANN001
    """Reads the tasks' results from the stack's Celery result backend (Redis)."""
    app = celery.Celery("resubmit-test", backend=ingest_stack.redis_url, set_as_current=False)
    yield app
    app.close()


def _ended(results: celery.Celery, task_id: str, timeout_s: float = 90.0) -> dict:
    outcome = results.AsyncResult(task_id).get(timeout=timeout_s, propagate=False)
    assert isinstance(outcome, dict), f"task {task_id} raised {outcome!r}"
    return outcome


def _wait_for(stack, video_id: str, done, timeout_s: float = 90.0) -> VideoStatus:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = stack.status.get(video_id)
        if record is not None and done(record):
            return record
        time.sleep(0.05)
    pytest.fail(f"{video_id}: gave up waiting after {timeout_s} s: {stack.status.get(video_id)}")


def _assert_new_version(stack, video_id: str, new_task: str) -> VideoStatus:  # noqa: ANN001
    record = stack.status.get(video_id)
    assert record is not None
    assert (record.state, record.task_id, record.duration_s, record.metadata) == (
        IngestState.READY, new_task, 6.0, {"version": "2"}
    ), record
    assert record.clip_count is not None and record.clip_count >= 1, record
    row = stack.index.get_videos([video_id])[video_id]
    assert (row.metadata, row.duration_s, row.clip_count) == ({"version": "2"}, 6.0, record.clip_count), row
    assert stack.stored(video_id) == (1, record.clip_count)
    return record


@pytest.mark.e2e
@pytest.mark.parametrize("point", ["fetch", "embed-20", "embed-80", "write"])
def test_a_resubmit_during_the_first_ingest_ends_ready_and_stays_ready(
    point, ingest_stack, worker, gates, videos, results  # noqa: ANN001
):
    stack = ingest_stack
    video_id = f"resubmit-{point}"
    old_source = videos / f"{video_id}.mp4"  # named for the video: the fetch gate knows only the source
    shutil.copyfile(videos / "long.mp4", old_source)
    gates.arm(video_id, point)
    old_task = stack.submit(video_id, str(old_source), {"version": "1"})
    gates.wait_held(video_id, point, stack.status)
    try:
        new_task = stack.submit(video_id, str(videos / "short.mp4"), {"version": "2"})
        if point == "write":
            # the old task holds the video's write lock: the new one gets as far as its own write, then waits for
            # it, so the new rows land after the old ones. Long enough to see it wait (not write and finish):
            _wait_for(stack, video_id, lambda r: r.task_id == new_task and (
                r.stage == "write" or r.state in (IngestState.READY, IngestState.FAILED)))
            deadline = time.monotonic() + WRITE_WAIT_S
            while time.monotonic() < deadline:
                record = stack.status.get(video_id)
                assert record is not None and record.state == IngestState.RUNNING, (
                    f"the new ingest finished while the old one was writing the index: {record}")
                time.sleep(0.1)
        else:
            record = _wait_for(stack, video_id, lambda r: r.state in (IngestState.READY, IngestState.FAILED))
            assert (record.state, record.task_id) == (IngestState.READY, new_task), record
    finally:
        gates.release(video_id, point)
    old = _ended(results, old_task)
    new = _ended(results, new_task)
    # both tasks have ended: the status is the new version's, READY, and the index holds the new version
    first = _assert_new_version(stack, video_id, new_task)
    assert (old["state"], new["state"]) == ("CANCELLED", "READY"), (old, new)
    assert "resubmitted" in old["reason"], old
    time.sleep(1.0)  # and it stays so
    assert _assert_new_version(stack, video_id, new_task) == first


# ------------------------------------------------------------------------------------------------------------
# the task layer's own writes (workers.tasks), against the real Redis


@pytest.fixture
def status(redis_url: str) -> Iterator[StatusStore]:
    yield from empty_status_store(redis_url, 12)


class _StubIndex:
    def __init__(self, on_delete=lambda: None) -> None:  # noqa: ANN001
        self.on_delete, self.deleted = on_delete, 0

    def delete_video(self, video_id: str) -> bool:
        self.deleted += 1
        self.on_delete()
        return True


class _StubIngestor:
    """What workers.tasks uses of an Ingestor, with the real status store and the real ownership checks."""

    write_lock_ttl_s = 5.0
    is_current = Ingestor.is_current
    _check_current = Ingestor._check_current

    def __init__(self, status: StatusStore, index: _StubIndex | None = None, run=None) -> None:  # noqa: ANN001
        self.status, self.index, self._run = status, index or _StubIndex(), run

    def run(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return self._run()


def _ready_resubmit(status: StatusStore, video_id: str) -> None:
    status.mark_pending(video_id, "task-2", "u2", {})
    assert status.mark_ready(video_id, 3, 6.0, task_id="task-2")


def test_the_retry_notice_of_a_replaced_task_is_dropped_and_it_does_not_retry(status):  # noqa: ANN001
    status.mark_pending("retry", "task-1", "u1", {})
    _ready_resubmit(status, "retry")
    before = status.get("retry")

    def no_retry(**_: object) -> None:
        raise AssertionError("a replaced task must not retry")

    task = SimpleNamespace(request=SimpleNamespace(id="task-1", retries=0), retry=no_retry)
    outcome = tasks._retry(task, _StubIngestor(status), "retry", SourceUnavailable("source down"))
    assert outcome["state"] == "CANCELLED"
    assert status.get("retry") == before


def test_the_owners_retry_notice_is_written(status):  # noqa: ANN001
    status.mark_pending("retry-own", "task-1", "u1", {})

    class Retry(Exception):
        pass

    def retry(**_: object) -> Exception:
        return Retry()

    task = SimpleNamespace(request=SimpleNamespace(id="task-1", retries=0), retry=retry)
    with pytest.raises(Retry):
        tasks._retry(task, _StubIngestor(status), "retry-own", SourceUnavailable("source down"))
    record = status.get("retry-own")
    assert record is not None and record.state == IngestState.RUNNING and record.stage.startswith("retry 1 of")


def test_failed_of_a_task_replaced_while_it_fails_is_dropped(status):  # noqa: ANN001
    """The record is replaced between _fail's ownership check and its FAILED (here: while it deletes)."""
    status.mark_pending("fail", "task-1", "u1", {})
    index = _StubIndex(on_delete=lambda: status.mark_pending("fail", "task-2", "u2", {}))
    outcome = tasks._fail(_StubIngestor(status, index), "fail", "task-1", "corrupt video stream")
    assert outcome["state"] == "CANCELLED"
    record = status.get("fail")
    assert record is not None and (record.state, record.task_id) == (IngestState.PENDING, "task-2")
    # the owner's FAILED goes through, and frees the write lock
    outcome = tasks._fail(_StubIngestor(status, index), "fail", "task-2", "corrupt video stream")
    assert outcome["state"] == "FAILED" and status.get("fail").state == IngestState.FAILED  # type: ignore[union-attr]


def test_an_internal_error_of_a_replaced_task_writes_nothing(status, monkeypatch):  # noqa: ANN001
    status.mark_pending("internal", "task-1", "u1", {})

    def run() -> None:  # the re-submit is READY before the first run fails unexpectedly
        _ready_resubmit(status, "internal")
        raise RuntimeError("boom")

    stub = _StubIngestor(status, run=run)
    monkeypatch.setattr(tasks._clients, "ingestor", lambda generation=None: stub)
    result = tasks.ingest_video.apply(args=["internal", "u1", {}], task_id="task-1")
    assert isinstance(result.result, RuntimeError)
    record = status.get("internal")
    assert record is not None and (record.state, record.task_id, record.reason) == (IngestState.READY, "task-2", "")
    # the owner's internal error is recorded
    status.mark_pending("internal", "task-3", "u3", {})
    failing = _StubIngestor(status, run=lambda: 1 / 0)
    monkeypatch.setattr(tasks._clients, "ingestor", lambda generation=None: failing)
    tasks.ingest_video.apply(args=["internal", "u3", {}], task_id="task-3")
    record = status.get("internal")
    assert record is not None and record.state == IngestState.FAILED
    assert record.reason == "internal error: ZeroDivisionError: division by zero"
