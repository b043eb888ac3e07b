"""ListVideos and WatchVideo (issue 23, point 7) through the real gateway, worker, Redis, Triton and Milvus Lite.

Listing: index rows written as a worker writes them, status records as the gateway and workers write them (most
without a worker, so that a hundred videos cost no ingest), pages concatenated while videos come and go. Watching:
a real ingest and a bad file through the worker, and the stream's ends (finished, unknown, deadline, cancel, cap).
"""

from __future__ import annotations

import re
import threading
import time

import grpc
import numpy as np
import pytest
import redis
from typer.testing import CliRunner

from tests.fixtures.gateway import start_gateway
from tests.photos import load_photo
from vidstrata.client.commands import app
from vidstrata.index.store import ClipRecord, VideoRecord
from vidstrata.jobs.status import KEY_PREFIX
from vidstrata.media.synthetic import write_scene_video
from vidstrata.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.e2e

Video = search_pb2.Video


@pytest.fixture(scope="module")
def stack(ingest_stack, triton, milvus_uri, tmp_path_factory):
    """One worker and one gateway (at most 2 watchers, polling every 0.5 s) on the module's Redis and collections."""
    worker = ingest_stack.start_worker()
    gateway = start_gateway(tmp_path_factory.mktemp("gw"), triton.grpc_url, milvus_uri, ingest_stack.redis_url,
                            collection_prefix=ingest_stack.env["VIDSTRATA_MILVUS_COLLECTION_PREFIX"],
                            max_watchers="2", watch_poll_s="0.5", max_top_k="50")
    channel = grpc.insecure_channel(gateway.address)
    yield ingest_stack, worker, gateway, search_pb2_grpc.VideoSearchStub(channel)
    channel.close()
    gateway.stop()


def _index(ingest_stack, video_id: str, kind: str = "a") -> None:
    """An indexed video (one clip) as a worker writes it, with no status record."""
    vector = np.random.default_rng(len(video_id)).standard_normal(ingest_stack.settings.milvus.vector_dim).astype(np.float32)
    vector /= np.linalg.norm(vector)
    ingest_stack.index.replace_video(VideoRecord(video_id, vector, 2.0, 1, {"kind": kind}, created_at=1.7e9),
                                     [ClipRecord(video_id, 0, 0.0, 2.0, vector)])


def _list(stub, **request) -> search_pb2.ListVideosResponse:
    return stub.ListVideos(search_pb2.ListVideosRequest(**request), timeout=10)


def _invalid(call) -> str:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value
    return raised.value.details()


def test_pages_concatenate_to_the_whole_list_while_videos_come_and_go(stack):
    ingest_stack, _, _, stub = stack
    status = ingest_stack.status
    # in the index only, in three writes (Milvus Lite segments); queued, running, failed; and both: the record wins
    for batch in ("r0", "r1", "r2"):
        for i in range(12):
            _index(ingest_stack, f"list-{batch}{i:02d}", kind="b" if i % 3 == 0 else "a")
    for i in range(15):
        status.mark_pending(f"list-p{i:02d}", f"task-p{i}", "file:///x.mp4", {"kind": "b"})
    status.mark_pending("list-q", "task-q", "file:///q.mp4", {})
    assert status.mark_running("list-q", 40.0, "embed", task_id="task-q")
    status.mark_pending("list-f", "task-f", "file:///f.mp4", {})
    assert status.mark_failed("list-f", "no video stream", task_id="task-f")
    status.mark_pending("list-r005", "task-again", "file:///again.mp4", {})  # re-ingest of an indexed video
    assert status.mark_running("list-r005", 10.0, "decode", task_id="task-again")
    before = {v.video_id for v in _list(stub, page_size=50).videos} | {
        v.video_id for v in _list(stub, page_size=50, page_token=_list(stub, page_size=50).next_page_token).videos}
    assert len(before) == 36 + 15 + 2 and "list-r005" in before

    seen: list[str] = []
    added, deleted_early, deleted_late = ["list-a0", "list-r105x", "list-zz"], "list-r211", "list-p03"
    token, pages = "", 0
    while True:
        page = _list(stub, page_size=7, page_token=token)
        seen += [v.video_id for v in page.videos]
        assert len(page.videos) == 7 or not page.next_page_token
        pages += 1
        if pages == 2:  # between pages: videos come (before and after the cursor) and go (seen, and not yet seen)
            _index(ingest_stack, added[1])
            status.mark_pending(added[2], "task-zz", "file:///zz.mp4", {})
            _index(ingest_stack, added[0])
            stub.DeleteVideo(search_pb2.DeleteVideoRequest(video_id=deleted_early), timeout=10)
            stub.DeleteVideo(search_pb2.DeleteVideoRequest(video_id=deleted_late), timeout=10)
            assert deleted_late in seen and deleted_early not in seen
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)), seen  # in order, no duplicate
    assert before - {deleted_early} <= set(seen)  # no gap: everything that lived through the listing
    assert deleted_early not in seen and "list-r105x" in seen and "list-zz" in seen  # added after the cursor: listed
    assert "list-a0" not in seen  # added before it: the listing has passed it
    by_id = {v.video_id: v for v in _list(stub, page_size=50, page_token="").videos}
    assert by_id["list-r005"].status == Video.RUNNING and by_id["list-r005"].stage == "decode"
    assert by_id["list-f"].status == Video.FAILED and by_id["list-f"].reason == "no video stream"
    assert by_id["list-a0"].status == Video.READY and by_id["list-a0"].clip_count == 1


def test_status_and_filter_narrow_the_list_and_bad_requests_are_invalid_argument(stack):
    ingest_stack, _, _, stub = stack
    for i in range(3):
        _index(ingest_stack, f"sf-b{i}", kind="b")
        ingest_stack.status.mark_pending(f"sf-p{i}", f"t{i}", "file:///x.mp4", {"kind": "b"})
    _index(ingest_stack, "sf-running", kind="b")
    ingest_stack.status.mark_pending("sf-running", "tr", "file:///x.mp4", {"kind": "b"})

    def listed(**request) -> list[str]:
        ids, token = [], ""
        while True:
            page = _list(stub, page_size=2, page_token=token, **request)
            ids += [v.video_id for v in page.videos if v.video_id.startswith("sf-")]
            token = page.next_page_token
            if not token:
                return ids

    assert listed(status=Video.PENDING) == ["sf-p0", "sf-p1", "sf-p2", "sf-running"]
    ready_b = listed(status=Video.READY, filter='meta.kind == "b"')
    assert ready_b == ["sf-b0", "sf-b1", "sf-b2"]  # sf-running's row matches, but its record says PENDING
    assert listed(filter='meta.kind == "b" and video_id < "sf-b2"') == ["sf-b0", "sf-b1"]  # a filter lists READY ones
    assert all(v.status == Video.READY for v in _list(stub, status=Video.READY, page_size=50).videos)

    assert "READY videos only" in _invalid(lambda: _list(stub, status=Video.PENDING, filter='meta.kind == "b"'))
    assert "page_size" in _invalid(lambda: _list(stub, page_size=0))
    assert "page_size" in _invalid(lambda: _list(stub, page_size=51))  # max_top_k of this gateway
    assert "position" in _invalid(lambda: _list(stub, filter="kind = b"))
    token = _list(stub, page_size=1).next_page_token
    payload, mac = token.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + mac
    assert "page_token is not valid" in _invalid(lambda: _list(stub, page_size=1, page_token=forged))
    assert "page_token is not valid" in _invalid(lambda: _list(stub, page_size=1, page_token=token,
                                                               status=Video.FAILED))  # another request's token
    assert "page_token is not valid" in _invalid(lambda: _list(stub, page_size=1, page_token="garbage"))


def _states(stream) -> list[tuple[str, str]]:
    return [(Video.Status.Name(v.status), v.stage) for v in stream]


def test_watch_follows_a_real_ingest_from_pending_to_ready(stack, tmp_path):
    ingest_stack, _, _, stub = stack
    path = tmp_path / "watched.mp4"
    write_scene_video(path, [load_photo("coffee"), load_photo("rocket")], [1.5, 1.5], fps=10)
    # the record first and the task only once the stream is on, so that the stream starts at PENDING for sure
    task_id = "watch-task"
    ingest_stack.status.mark_pending("watched", task_id, str(path), {})
    stream = stub.WatchVideo(search_pb2.WatchVideoRequest(video_id="watched"), timeout=60)
    first = next(stream)
    assert first.status == Video.PENDING
    ingest_stack.queue.enqueue(task_id, "watched", str(path), {})
    rest = list(stream)  # ends by itself at READY
    states = _states([first, *rest])
    assert states[-1] == ("READY", "done") and rest[-1].clip_count >= 1, states
    running = [stage for state, stage in states if state == "RUNNING"]
    assert len(set(running)) >= 2, states  # several stages, each change sent
    assert [s for s, _ in states] == sorted((s for s, _ in states), key=["PENDING", "RUNNING", "READY"].index)
    # a finished video: its state at once, then the end
    started = time.monotonic()
    assert _states(stub.WatchVideo(search_pb2.WatchVideoRequest(video_id="watched"), timeout=10)) == [("READY", "done")]
    assert time.monotonic() - started < 2


def test_watch_ends_failed_with_the_reason_for_a_bad_file(stack, tmp_path):
    _, _, _, stub = stack
    path = tmp_path / "bad.mp4"
    path.write_bytes(b"this is not a video" * 100)
    stub.SubmitVideo(search_pb2.SubmitVideoRequest(video_id="watch-bad", uri=str(path)), timeout=10)
    videos = list(stub.WatchVideo(search_pb2.WatchVideoRequest(video_id="watch-bad"), timeout=60))
    assert videos[-1].status == Video.FAILED and videos[-1].reason, videos[-1]
    assert all(v.status != Video.READY for v in videos)


def test_watch_of_an_unknown_video_is_not_found(stack):
    _, _, _, stub = stack
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.WatchVideo(search_pb2.WatchVideoRequest(video_id="never-submitted"), timeout=10))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.WatchVideo(search_pb2.WatchVideoRequest(video_id="bad id!"), timeout=10))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _watchers(gateway) -> float:
    return float(re.search(r"^vidstrata_gateway_watchers (\S+)$", gateway.metrics(), re.M).group(1))


def _wait_watchers(gateway, count: int) -> None:
    """Until the gateway streams `count` WatchVideo calls (a cancelled or expired one ends within moments)."""
    deadline = time.monotonic() + 5
    while _watchers(gateway) != count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _watchers(gateway) == count


def test_watch_without_an_event_polls_and_ends_by_deadline_cancel_or_delete_within_the_cap(stack):
    ingest_stack, _, gateway, stub = stack
    status = ingest_stack.status
    status.mark_pending("idle", "task-idle", "file:///idle.mp4", {})  # queued nowhere: it stays PENDING
    # the deadline ends a stream that never finishes
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.WatchVideo(search_pb2.WatchVideoRequest(video_id="idle"), timeout=1.5))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _wait_watchers(gateway, 0)  # the server ends the stream at the deadline too
    # two watchers (the cap); a third is refused; a write without its event (Redis lost it) still arrives, by poll
    first = stub.WatchVideo(search_pb2.WatchVideoRequest(video_id="idle"), timeout=30)
    second = stub.WatchVideo(search_pb2.WatchVideoRequest(video_id="idle"), timeout=30)
    assert next(first).status == Video.PENDING and next(second).status == Video.PENDING
    with pytest.raises(grpc.RpcError) as raised:
        next(stub.WatchVideo(search_pb2.WatchVideoRequest(video_id="idle"), timeout=10))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "VIDSTRATA_GATEWAY_MAX_WATCHERS" in raised.value.details()
    redis.Redis.from_url(ingest_stack.redis_url).hset(KEY_PREFIX + "idle", mapping={"state": "RUNNING", "stage": "quiet"})
    started = time.monotonic()
    polled = next(first)
    assert (polled.status, polled.stage) == (Video.RUNNING, "quiet") and time.monotonic() - started < 2
    first.cancel()  # a client that goes away frees its place
    assert status.mark_running("idle", 50.0, "embed", task_id="task-idle") is True
    assert (next(second).stage) in ("quiet", "embed")
    _wait_watchers(gateway, 1)
    third = stub.WatchVideo(search_pb2.WatchVideoRequest(video_id="idle"), timeout=30)
    assert next(third).status == Video.RUNNING
    stub.DeleteVideo(search_pb2.DeleteVideoRequest(video_id="idle"), timeout=10)  # deleted while watched
    for stream in (second, third):
        with pytest.raises(grpc.RpcError) as raised:
            list(stream)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    _wait_watchers(gateway, 0)


def test_ingest_wait_follows_through_watch_video(stack, tmp_path):
    _, _, gateway, _ = stack
    good = tmp_path / "cli.mp4"
    write_scene_video(good, [load_photo("rocket")], [1.0], fps=10)
    bad = tmp_path / "cli-bad.mp4"
    bad.write_bytes(b"\0" * 64)
    result = CliRunner().invoke(app, ["ingest", str(good), str(bad), "--wait", "--gateway", gateway.address])
    assert result.exit_code == 1, result.output  # one failed
    assert "1 ready, 1 failed" in result.output
    assert re.search(r"cli\.mp4 \(\w+\): ready", result.output), result.output  # a line per change, as it came
    assert re.search(r"cli-bad\.mp4 \(\w+\): failed", result.output), result.output
    threads = [t.name for t in threading.enumerate() if t.name.startswith("watch-")]
    assert not threads, threads  # every stream's thread ended with its video
