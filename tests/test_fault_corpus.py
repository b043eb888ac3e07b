"""The fault corpus (bench.faults) through the real worker, Triton, Redis and Milvus Lite: every file and
every misbehaving source ends as it should (status, reason, duration, clip spans, upright vectors), and the
worker child's peak memory stays within the decoder's stated bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.faults import Fault, write_corpus
from jobs.status import IngestState
from spec.video import memory_bound_bytes
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


@pytest.fixture(scope="module")
def outcomes(ingest_stack, corpus):
    """Ingest every corpus file (one worker process, one child); the statuses, and the child's RSS before and after."""
    worker = ingest_stack.start_worker()
    ingest_stack.submit("warmup", str(corpus[[f.name for f in corpus].index("upright.mp4")].path))
    ingest_stack.wait("warmup", timeout_s=120)
    (child,) = worker.pool_pids()
    baseline = _peak_rss(child)
    for fault in corpus:
        ingest_stack.submit(fault.path.stem, str(fault.path))
    statuses = {f.name: ingest_stack.wait(f.path.stem, timeout_s=120) for f in corpus}
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
        videos, clips = ingest_stack.index.get_videos_with_clips([fault.path.stem])
        spans = [(c.start_s, c.end_s) for c in clips[fault.path.stem]]
        if abs(status.duration_s - fault.duration_s) > TOLERANCE_S or len(spans) != len(fault.spans) or any(
            abs(a - b) > TOLERANCE_S for got, true in zip(spans, fault.spans) for a, b in zip(got, true)
        ):
            wrong.append(f"{fault.name}: {status.duration_s} s, clips {spans}; want {fault.duration_s} s, {fault.spans}")
    assert not wrong, "\n".join(wrong)


def test_rotated_videos_are_embedded_upright(ingest_stack, corpus, outcomes):
    names = [f.path.stem for f in corpus if f.name.startswith("rotated_")] + ["upright", "sideways"]
    videos = ingest_stack.index.get_videos(names)
    upright, sideways = videos["upright"].vector, videos["sideways"].vector
    for name in names[:-2]:
        vector = videos[name].vector
        assert float(vector @ upright) > 0.98, name
        assert float(vector @ upright) > float(vector @ sideways) + 0.01, name


def test_peak_memory_stays_within_the_stated_bound(ingest_stack, corpus, outcomes):
    """The banner (2048x4) once took 2.9 GB; now the child's peak grows by at most the decode bound."""
    _, baseline, peak = outcomes
    settings = ingest_stack.settings
    largest = max(640 * 360, 2048 * 4)  # the corpus's largest frame
    bound = memory_bound_bytes(largest, 224, settings.frame_batch, settings.decode_queue_batches)
    assert peak - baseline <= bound + LIBRARY_ALLOWANCE_BYTES, (baseline, peak, bound)
