"""ReindexStore against a real redis-server: counts, states, ETA, failures kept with their ids, the serving switch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from vidstrata.jobs.reindex import Generation, JobConflict, JobState, ReindexStore

SOURCE = Generation("", "127.0.0.1:8001", "t1/f1", "t1", 384)


@pytest.fixture
def jobs(redis_url: str) -> Iterator[ReindexStore]:
    url = redis_url.rsplit("/", 1)[0] + "/12"
    redis.Redis.from_url(url).flushdb()
    store = ReindexStore(url, 5.0)
    yield store
    store.close()


def test_job_counts_eta_and_completion(jobs: ReindexStore) -> None:
    job = jobs.start(SOURCE, "127.0.0.1:9001", "", "t2/f1", "t2", 384)
    assert (job.job_id, job.state, job.target.collection_prefix, job.left) == ("r1", JobState.RUNNING, "r1_", 0)
    jobs.add_videos("r1", ["a", "b", "c"])
    jobs.add_videos("r1", ["a"])  # enqueued again (a re-submit): still one video
    jobs.record_done("r1", "a")
    jobs.record_failure("r1", "b", "source gone: /videos/b.mp4")
    jobs.record_done("r1", "zzz")  # not in the job: ignored
    job = jobs.get("r1")
    assert job is not None
    assert (job.total, job.done, job.failed, job.left, job.state) == (3, 1, 1, 1, JobState.RUNNING)
    assert job.failures == {"b": "source gone: /videos/b.mp4"} and job.eta_s > 0
    with pytest.raises(JobConflict):
        jobs.start(SOURCE, "x", "", "t3/f1", "t3", 384)
    jobs.record_done("r1", "c")
    job = jobs.latest()
    assert job is not None and (job.state, job.left, job.eta_s) == (JobState.COMPLETED, 0, 0.0)
    jobs.add_videos("r1", ["d"])  # submitted after completion: runs again
    assert jobs.get("r1").state == JobState.RUNNING  # type: ignore[union-attr]
    jobs.forget("r1", "d")  # deleted meanwhile
    assert jobs.get("r1").state == JobState.COMPLETED  # type: ignore[union-attr]


def test_cutover_and_rollback_switch_the_serving_generation(jobs: ReindexStore) -> None:
    assert jobs.serving() is None
    job = jobs.start(SOURCE, "127.0.0.1:9001", "", "t2/f1", "t2", 384)
    with pytest.raises(JobConflict, match="RUNNING"):
        jobs.move(job.job_id, [JobState.COMPLETED], JobState.CUT_OVER, job.target)
    assert jobs.serving() is None
    jobs.add_videos(job.job_id, ["a"])
    jobs.record_done(job.job_id, "a")
    job = jobs.move(job.job_id, [JobState.COMPLETED], JobState.CUT_OVER, job.target)
    assert (job.state, jobs.serving(), job.served, job.shadow) == (JobState.CUT_OVER, job.target, job.target, SOURCE)
    job = jobs.move(job.job_id, [JobState.CUT_OVER], JobState.ROLLED_BACK, job.source)
    assert (job.state, jobs.serving()) == (JobState.ROLLED_BACK, SOURCE)
