"""The fault corpus (bench.faults) through the real worker, Triton, Redis and Milvus Lite: every file and
every misbehaving source ends as it should (status, reason, duration, clip spans, upright vectors), and the
worker child's peak memory stays within the decoder's stated bound."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from bench.faults import Fault, write_corpus
from vidstrata.jobs.status import IngestState
from vidstrata.media.video import memory_bound_bytes
from tests.photos import load_photo

pytestmark = pytest.mark.e2e

TOLERANCE_S = 0.25
# Python, gRPC, pymilvus and the codecs' own contexts, on top of the decode's frame memory bound.
LIBRARY_ALLOWANCE_BYTES = 160 * 1024**2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Fault]:
    return write_corpus(tmp_path_factory.mktemp("corpus"), load_photo)


def _peak_rss(pid: int) -> int:
    """VmHWM of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


# Misbehaving HTTP sources (tests.fixtures.worker's media server): path -> (READY?, duration_s, reason substring).
HTTP_SOURCES = {
    "status/404": (False, None, "HTTP 404"),
    "loop": (False, None, "too many redirects"),
    "page": (False, None, "not a video (Content-Type text/html)"),
    "slow": (False, None, "download took longer than the limit of 5 s"),
    "brotli/moov_at_end.mp4": (False, None, "compressed (br)"),
    "flaky/moov_at_end.mp4": (True, 3.0, ""),  # half the bytes the first time: retried, then whole
    "gzip/moov_at_end.mp4": (True, 3.0, ""),
}
WORKER = {"fetch_deadline_s": "5", "max_worker_deaths": "2"}


def _http_id(path: str) -> str:
    return "http-" + path.replace("/", "-").replace(".", "-")


@pytest.fixture(scope="module")
def worker(ingest_stack):
    return ingest_stack.start_worker(**WORKER)


@pytest.fixture(scope="module")
def outcomes(ingest_stack, worker, corpus, media_server):
    """Ingest every corpus file and HTTP source (one worker child); the statuses, and the child's peak RSS
    after a first video and after all."""
    by_name = {f.name: f for f in corpus}
    ingest_stack.submit("warmup", str(by_name["upright.mp4"].path))
    ingest_stack.wait("warmup", timeout_s=120)
    (child,) = worker.pool_pids()
    baseline = _peak_rss(child)
    (media_server.root / "moov_at_end.mp4").write_bytes(by_name["moov_at_end.mp4"].path.read_bytes())
    for fault in corpus:
        ingest_stack.submit(fault.path.stem, str(fault.path))
    for path in HTTP_SOURCES:
        ingest_stack.submit(_http_id(path), media_server.url(path))
    statuses = {f.name: ingest_stack.wait(f.path.stem, timeout_s=120) for f in corpus}
    statuses |= {path: ingest_stack.wait(_http_id(path), timeout_s=120) for path in HTTP_SOURCES}
    assert worker.pool_pids() == [child], "the worker child died during the corpus"
    return statuses, baseline, _peak_rss(child)


def test_every_file_ends_as_it_should(ingest_stack, corpus, outcomes):
    statuses, _, _ = outcomes
    wrong = []
    for fault in corpus:
        status = statuses[fault.name]
        want = IngestState.READY if fault.ready else IngestState.FAILED
        if status.state != want or fault.reason not in status.reason:
            wrong.append(f"{fault.name}: {status.state} {status.reason!r}, want {want} {fault.reason!r}")
            continue
        if not fault.ready:
            assert ingest_stack.stored(fault.path.stem) == (0, 0), fault.name
            continue
        clips = ingest_stack.index.get_candidate_vectors([fault.path.stem]).clips
        spans = [(c.start_s, c.end_s) for c in clips[fault.path.stem]]
        if abs(status.duration_s - fault.duration_s) > TOLERANCE_S or len(spans) != len(fault.spans) or any(
            abs(a - b) > TOLERANCE_S for got, true in zip(spans, fault.spans) for a, b in zip(got, true)
        ):
            wrong.append(f"{fault.name}: {status.duration_s} s, clips {spans}; want {fault.duration_s} s, {fault.spans}")
    for path, (ready, duration_s, reason) in HTTP_SOURCES.items():
        status = statuses[path]
        if status.state != (IngestState.READY if ready else IngestState.FAILED) or reason not in status.reason:
            wrong.append(f"{path}: {status.state} {status.reason!r}, want ready={ready} {reason!r}")
        elif ready and abs(status.duration_s - duration_s) > TOLERANCE_S:
            wrong.append(f"{path}: {status.duration_s} s, want {duration_s} s")
    assert not wrong, "\n".join(wrong)


def test_rotated_videos_are_embedded_upright(ingest_stack, corpus, outcomes):
    names = [f.path.stem for f in corpus if f.name.startswith("rotated_")] + ["upright", "sideways"]
    videos = ingest_stack.index.get_videos(names)
    upright, sideways = videos["upright"].vector, videos["sideways"].vector
    for name in names[:-2]:
        vector = videos[name].vector
        # the encoder maps all photos into a narrow cone, so compare distances: upright is 10x nearer than sideways
        assert 10 * (1 - float(vector @ upright)) < 1 - float(vector @ sideways), name


def test_peak_memory_stays_within_the_stated_bound(ingest_stack, corpus, outcomes):
    """The banner (2048x4) once took 2.9 GB; now the child's peak grows by at most the decode bound."""
    _, baseline, peak = outcomes
    settings = ingest_stack.settings
    largest = max(640 * 360, 2048 * 4)  # the corpus's largest frame
    bound = memory_bound_bytes(largest, 224, settings.frame_batch, settings.decode_queue_batches)
    assert peak - baseline <= bound + LIBRARY_ALLOWANCE_BYTES, (baseline, peak, bound)


def _wait_stage(stack, video_id: str, stage: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = stack.status.get(video_id)
        if record is not None and record.state == IngestState.RUNNING and record.stage == stage:
            return
        time.sleep(0.05)
    pytest.fail(f"{video_id} never reached stage {stage}: {stack.status.get(video_id)}")


def _download_folders(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"vidstrata-fetch-{pid}-*"))


def test_a_failed_reingest_removes_the_earlier_version(ingest_stack, worker, corpus, outcomes):
    """One rule: FAILED is not searchable. GetVideo's FAILED and Search agree, and the reason says so."""
    by_name = {f.name: f for f in corpus}
    ingest_stack.submit("reingest", str(by_name["upright.mp4"].path))
    assert ingest_stack.wait("reingest").state == IngestState.READY
    assert ingest_stack.stored("reingest") == (1, 1)
    ingest_stack.submit("reingest", str(by_name["not_a_video.mp4"].path))
    record = ingest_stack.wait("reingest")
    assert record.state == IngestState.FAILED and "earlier version of this video was removed" in record.reason
    assert ingest_stack.stored("reingest") == (0, 0)


def test_deleting_a_video_stops_its_download_and_frees_the_worker(ingest_stack, worker, media_server, outcomes):
    ingest_stack.submit("deleted-slow", media_server.url("slow"))
    _wait_stage(ingest_stack, "deleted-slow", "fetch")
    assert ingest_stack.status.delete("deleted-slow")
    ingest_stack.submit("after-delete", media_server.url("gzip/moov_at_end.mp4"))
    assert ingest_stack.wait("after-delete", timeout_s=60).state == IngestState.READY
    assert "ingest of deleted-slow cancelled" in worker.process.log_tail(400)


def test_a_video_that_keeps_killing_its_worker_fails_and_leaves_nothing_on_disk(ingest_stack, worker, media_server,
                                                                                outcomes):
    """SIGKILL the child twice mid-download (max_worker_deaths 2): the third delivery FAILS it with the reason,
    and each replacement child removes the download folder its dead predecessor left."""
    ingest_stack.submit("killer", media_server.url("slow"))
    for _ in range(2):
        _wait_stage(ingest_stack, "killer", "fetch")
        (child,) = worker.pool_pids()
        deadline = time.monotonic() + 10
        while not _download_folders(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _download_folders(child), "the download folder is named after its process"
        os.kill(child, signal.SIGKILL)
        while worker.pool_pids() in ([], [child]):
            time.sleep(0.05)
    record = ingest_stack.wait("killer", timeout_s=60)
    assert record.state == IngestState.FAILED and "worker died 2 times on this video" in record.reason, record
    assert not _download_folders(child)
