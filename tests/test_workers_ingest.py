"""The ingest pipeline without Celery, on the real Triton, Milvus Lite and Redis: clips, re-ingest, delete."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from vidstrata.media.synthetic import write_scene_video
from vidstrata.jobs.status import IngestState, StatusStore
from vidstrata.inference.encoder import EncoderInfo, EncoderUnavailable
from vidstrata.inference.triton_encoder import TritonEncoder
from tests.photos import CAPTIONS, load_photo
from vidstrata.workers.errors import IngestCancelled, ModelMismatch
from vidstrata.workers.ingest import Ingestor

pytestmark = pytest.mark.e2e

SCENES = ["astronaut", "chelsea", "coffee", "rocket"]


class RecordingStatus(StatusStore):
    """The real status store, also remembering each progress report."""

    def __init__(self, redis_url: str, timeout_s: float) -> None:
        super().__init__(redis_url, timeout_s)
        self.reports: list[tuple[float, str]] = []

    def mark_running(self, video_id: str, progress: float, stage: str, *, task_id: str) -> bool:
        self.reports.append((progress, stage))
        return super().mark_running(video_id, progress, stage, task_id=task_id)


@pytest.fixture(scope="module")
def encoder(triton):
    enc = TritonEncoder(triton.grpc_url, frame_batch=8)
    yield enc
    enc.close()


@pytest.fixture
def ingestor(ingest_stack, encoder):
    return Ingestor(ingest_stack.settings, encoder, ingest_stack.index, RecordingStatus(ingest_stack.redis_url, 5.0))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    photos = {name: load_photo(name) for name in SCENES}
    four = write_scene_video(folder / "four.mp4", list(photos.values()), [3.0] * 4, fps=10)
    two = write_scene_video(folder / "two.mp4", [photos["coffee"], photos["chelsea"]], [2.5, 2.5], fps=10)
    return {"four": (folder / "four.mp4", four), "two": (folder / "two.mp4", two)}


def submit(ingestor: Ingestor, video_id: str) -> None:
    ingestor.status.mark_pending(video_id, "task-1", "test", {})


def test_clips_follow_the_scene_cuts_and_hold_their_scene(ingestor, videos, encoder, ingest_stack):
    path, spans = videos["four"]
    submit(ingestor, "scenes")
    summary = ingestor.run("scenes", str(path), {"lang": "en"}, task_id="task-1", tenant="acme")
    assert (summary.clip_count, summary.duration_s, summary.frames) == (4, 12.0, 24)
    assert set(summary.timings_s) == {"fetch", "decode", "embed", "speech", "speech_wait", "screen_text",
                                      "screen_text_wait", "write"}
    clips = ingest_stack.index.get_candidate_vectors(["scenes"]).clips["scenes"]
    step = 1 / ingest_stack.settings.sample_fps
    assert len(clips) == len(spans)
    for clip, (start, end) in zip(clips, spans):
        assert abs(clip.start_s - start) <= step and abs(clip.end_s - end) <= step, (clip, start, end)
    record = ingest_stack.status.get("scenes")
    assert (record.state, record.clip_count, record.duration_s, record.progress) == (IngestState.READY, 4, 12.0, 100.0)
    served = encoder.info()
    assert (record.visual_model, record.text_model) == (served.visual_model, served.text_model)  # indexed with these
    video = ingest_stack.index.get_videos(["scenes"])["scenes"]
    assert (video.clip_count, video.metadata, video.visual_model, video.tenant) == (
        4, {"lang": "en"}, served.visual_model, "acme")
    assert len(served.frame_model_version) == 16  # the frame graph's digest, from the frame encoder's config
    # Each clip's vector is its scene: the cat caption finds the cat scene.
    query = encoder.encode_text([CAPTIONS["chelsea"]]).sentence
    best = ingest_stack.index.search_clips_grouped(query, 1, 'video_id == "scenes"')[0][0]
    assert best.clip_index == SCENES.index("chelsea")


def test_a_task_asking_for_models_this_worker_does_not_serve_is_refused_before_any_work(ingestor, videos):
    submit(ingestor, "other-model")
    with pytest.raises(ModelMismatch, match="asks for model version 'another'"):
        ingestor.run("other-model", str(videos["two"][0]), {}, task_id="task-1", text_model="another")
    assert ingestor.status.reports == []


def test_progress_goes_through_the_stages_in_order(ingestor, videos):
    submit(ingestor, "progress")
    ingestor.run("progress", str(videos["two"][0]), {}, task_id="task-1")
    stages = [stage for _, stage in ingestor.status.reports]
    assert stages[:2] == ["fetch", "decode"] and stages[-1] == "write" and "embed" in stages
    progress = [p for p, _ in ingestor.status.reports]
    assert progress == sorted(progress) and progress[0] == 0.0 and progress[-1] == 90.0


def test_reingest_leaves_exactly_the_new_clips_and_delete_removes_all(ingestor, videos, ingest_stack):
    submit(ingestor, "again")
    ingestor.run("again", str(videos["four"][0]), {}, task_id="task-1")
    assert ingest_stack.stored("again") == (1, 4)
    submit(ingestor, "again")
    ingestor.run("again", str(videos["two"][0]), {}, task_id="task-1")
    assert ingest_stack.stored("again") == (1, 2)
    clips = ingest_stack.index.get_candidate_vectors(["again"]).clips["again"]
    assert [c.clip_index for c in clips] == [0, 1] and clips[-1].end_s == 5.0
    assert ingest_stack.index.delete_video("again")
    assert ingest_stack.stored("again") == (0, 0)


def test_a_deleted_or_resubmitted_video_is_not_written(ingestor, videos, ingest_stack):
    with pytest.raises(IngestCancelled, match="no status record"):
        ingestor.run("never-submitted", str(videos["two"][0]), {}, task_id="task-1")
    submit(ingestor, "resubmitted")
    with pytest.raises(IngestCancelled, match="resubmitted as task task-1"):
        ingestor.run("resubmitted", str(videos["two"][0]), {}, task_id="task-0")
    assert ingest_stack.stored("never-submitted") == ingest_stack.stored("resubmitted") == (0, 0)


class HeadedEncoder:
    """The real encoder, claiming a learned video head whose vectors are easy to recognise:
    clip c -> the c-th axis, the video -> the last axis. Remembers what it was asked; `error` makes the head fail."""

    def __init__(self, encoder: TritonEncoder, error: Exception | None = None) -> None:
        self.encoder, self.error = encoder, error
        self.calls: list[tuple[np.ndarray, np.ndarray, int]] = []

    def info(self) -> EncoderInfo:
        return replace(self.encoder.info(), video_head=True)

    def encode_frames(self, frames: np.ndarray, timeout_s: float | None = None) -> np.ndarray:
        return self.encoder.encode_frames(frames, timeout_s)

    def encode_video(
        self, frames: np.ndarray, clip_ids: np.ndarray, clip_count: int, timeout_s: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append((frames, clip_ids, clip_count))
        if self.error is not None:
            raise self.error
        axes = np.eye(frames.shape[1], dtype=np.float32)
        return axes[:clip_count], axes[-1]


def test_a_served_video_head_makes_the_clip_and_video_vectors_over_the_same_clips(ingestor, videos, encoder, ingest_stack):
    path = str(videos["four"][0])
    submit(ingestor, "parameter-free")
    ingestor.run("parameter-free", path, {}, task_id="task-1")
    headed = HeadedEncoder(encoder)
    with_head = Ingestor(ingest_stack.settings, headed, ingest_stack.index, ingestor.status)
    submit(with_head, "headed")
    assert with_head.run("headed", path, {}, task_id="task-1").clip_count == 4
    (frames, clip_ids, clip_count), = headed.calls
    clips = ingest_stack.index.get_candidate_vectors(["headed"]).clips["headed"]
    free_clips = ingest_stack.index.get_candidate_vectors(["parameter-free"]).clips["parameter-free"]
    assert [(c.start_s, c.end_s) for c in clips] == [(c.start_s, c.end_s) for c in free_clips]  # the spans stay
    assert frames.shape == (24, ingest_stack.settings.milvus.vector_dim) and clip_count == 4
    assert clip_ids.tolist() == sorted(clip_ids.tolist()) and np.bincount(clip_ids).min() > 0
    axes = np.eye(ingest_stack.settings.milvus.vector_dim, dtype=np.float32)
    for c, clip in enumerate(clips):
        np.testing.assert_allclose(clip.vector, axes[c], atol=1e-6)
    np.testing.assert_allclose(ingest_stack.index.get_videos(["headed"])["headed"].vector, axes[-1], atol=1e-6)


def test_a_failing_video_head_leaves_the_indexed_video_as_it_was(ingestor, videos, encoder, ingest_stack):
    submit(ingestor, "kept")
    ingestor.run("kept", str(videos["two"][0]), {}, task_id="task-1")
    before = ingest_stack.index.get_candidate_vectors(["kept"]).clips["kept"]
    failing = Ingestor(ingest_stack.settings, HeadedEncoder(encoder, EncoderUnavailable("video_head is loading")),
                       ingest_stack.index, ingestor.status)
    submit(failing, "kept")
    with pytest.raises(EncoderUnavailable, match="loading"):
        failing.run("kept", str(videos["four"][0]), {}, task_id="task-1")
    after = ingest_stack.index.get_candidate_vectors(["kept"]).clips["kept"]
    assert ingest_stack.stored("kept") == (1, 2)
    for old, new in zip(before, after, strict=True):
        assert (old.start_s, old.end_s) == (new.start_s, new.end_s)
        np.testing.assert_array_equal(old.vector, new.vector)
