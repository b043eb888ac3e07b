"""A re-index end to end on the real stack (Triton x2, a worker, Redis, Milvus Lite): every READY video written into
the target collections under the target's versions, a source that is gone reported with its video id, the search
rows of the served generation untouched during the job, cutover and rollback switching the served generation.

The second version is the same export served by a second Triton whose configs declare other digests (the encoders'
`model_version` parameters): a real second Triton and real model versions, with vectors equal to the first's.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vidstrata.index.store import VideoIndex
from vidstrata.jobs.reindex import JobState, ReindexStore, generation_settings
from vidstrata.media.samples import sample_videos
from vidstrata.stack.triton import TritonPorts
from vidstrata.workers import reindex as job_ops
from tests.fixtures.triton import TritonHandle


@pytest.fixture(scope="module")
def target_triton(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonHandle]:
    """A second Triton serving a copy of the repository whose text and frame configs declare new versions."""
    repository = tmp_path_factory.mktemp("target") / "repo"
    shutil.copytree(model_repository, repository)
    for model in ("text_encoder", "frame_encoder"):
        config = repository / model / "config.pbtxt"
        config.write_text(re.sub(r'(key: "model_version" value: \{ string_value: ")[^"]*', r"\g<1>beefbeefbeef0001",
                                 config.read_text()))
    handle = TritonHandle(None, TritonPorts.free(), repository, tmp_path_factory.mktemp("triton2"))  # type: ignore[arg-type]
    handle.start()
    yield handle
    handle.stop()


def test_reindex_cutover_rollback(ingest_stack, target_triton: TritonHandle, tmp_path: Path) -> None:  # noqa: ANN001
    stack = ingest_stack
    stack.start_worker()
    samples = sample_videos()
    gone = tmp_path / "gone.mp4"
    shutil.copy(samples["carphone"], gone)
    for video_id, path in (("bikes", samples["bikes"]), ("carphone", samples["carphone"]), ("gone", gone)):
        stack.submit(video_id, str(path))
    assert all(stack.wait(v, 180).state.value == "READY" for v in ("bikes", "carphone", "gone"))
    gone.unlink()
    before = stack.index.get_videos(["bikes", "carphone", "gone"])

    job = job_ops.start(stack.settings, target_triton.grpc_url, report=lambda line: None)
    assert job.state == JobState.RUNNING and job.total == 3
    assert job.target.visual_model.endswith("/beefbeefbeef0001") and job.source.visual_model != job.target.visual_model
    jobs = ReindexStore(stack.redis_url, 5.0)
    deadline = time.monotonic() + 300
    while (job := jobs.get(job.job_id)) is not None and job.state == JobState.RUNNING and time.monotonic() < deadline:
        assert stack.index.get_videos(["bikes", "carphone", "gone"]) .keys() == before.keys()  # served rows kept
        time.sleep(0.5)
    assert job is not None and (job.state, job.done, job.failed, job.left) == (JobState.COMPLETED, 2, 1, 0)
    assert list(job.failures) == ["gone"], job.failures  # the source that is gone, with its id and reason

    with VideoIndex(generation_settings(stack.settings, job.target).milvus) as target:
        rows = target.get_videos(["bikes", "carphone", "gone"])
    assert set(rows) == {"bikes", "carphone"}
    assert {r.visual_model for r in rows.values()} == {job.target.visual_model}
    assert {r.visual_model for r in stack.index.get_videos(["bikes"]).values()} == {job.source.visual_model}

    with pytest.raises(job_ops.JobConflict, match="failed"):
        job_ops.cutover(stack.settings)
    stack.status.delete("carphone")  # deleted before the cutover: removed from the target at the cutover
    job = job_ops.cutover(stack.settings, accept_failures=True)
    assert (job.state, jobs.serving()) == (JobState.CUT_OVER, job.target)
    with VideoIndex(generation_settings(stack.settings, job.target).milvus) as target:
        assert set(target.get_videos(["bikes", "carphone"])) == {"bikes"}
    job = job_ops.rollback(stack.settings)
    assert (job.state, jobs.serving()) == (JobState.ROLLED_BACK, job.source)
    jobs.close()
