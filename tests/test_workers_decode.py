"""Streaming decode: sampling plan, encoder-ready frames, and a clear reason for every unusable file."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from bench.synthetic import write_corrupt_copy, write_long_video, write_scene_video, write_tone_mp3
from spec.preprocess import center_crop_square
from tests.photos import load_photo
from workers.decode import VideoReader, sampling_interval
from workers.errors import BadVideo


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("decode") / "scenes.mp4"
    write_scene_video(path, [load_photo("astronaut"), load_photo("coffee")], [3.0, 3.0], fps=10, size=(320, 240))
    return path


def read(path: Path, sample_fps: float = 2.0, max_frames: int = 1800, max_duration_s: float = 3600.0, batch: int = 4):
    with VideoReader(path, 224, sample_fps, max_frames, max_duration_s) as reader:
        batches = list(reader.batches(batch))
        return reader, batches


def test_samples_at_the_rate_in_small_batches_of_encoder_frames(scenes):
    reader, batches = read(scenes)
    assert (reader.duration_s, reader.interval_s, reader.expected_frames) == (6.0, 0.5, 12)
    assert [len(b.frames) for b in batches] == [4, 4, 4]
    times = np.concatenate([b.timestamps for b in batches])
    np.testing.assert_allclose(times, np.arange(12) * 0.5, atol=1e-6)
    assert all(b.frames.dtype == np.uint8 and b.frames.shape[1:] == (224, 224, 3) for b in batches)


def test_frames_match_the_shared_preprocessing(scenes):
    _, batches = read(scenes)
    with av.open(str(scenes)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    reference = center_crop_square(first, 224).astype(int)
    assert np.abs(batches[0].frames[0].astype(int) - reference).mean() < 3


def test_a_long_video_is_sampled_sparser_to_stay_under_the_cap_and_cover_it_all(tmp_path):
    path = tmp_path / "long.mp4"
    write_long_video(path, [load_photo("rocket")], duration_s=60, scene_s=60, fps=5)
    reader, batches = read(path, sample_fps=2.0, max_frames=20)
    times = np.concatenate([b.timestamps for b in batches])
    assert reader.interval_s == 3.0 and len(times) == 20
    assert times[0] == 0.0 and times[-1] == pytest.approx(57.0)


def test_sampling_interval_without_a_known_duration_assumes_the_longest_allowed():
    assert sampling_interval(None, 2.0, 100, 3600.0) == 36.0
    assert sampling_interval(10.0, 2.0, 100, 3600.0) == 0.5


def _video_without_frames(path: Path) -> None:
    """An AVI with an H.264 stream header and no frames (AVI, unlike MP4, keeps an empty stream)."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()


def test_unusable_files_fail_with_a_clear_reason(scenes, tmp_path):
    (tmp_path / "text.mp4").write_text("hello, I am not a video\n")
    (tmp_path / "empty.mp4").touch()
    write_tone_mp3(tmp_path / "tone.mp3")
    _video_without_frames(tmp_path / "noframes.avi")
    write_corrupt_copy(scenes, tmp_path / "garbled.mp4")
    cases = {
        "text.mp4": "not a video",
        "empty.mp4": "not a video",
        "tone.mp3": "audio only",
        "noframes.avi": "no decodable video frames",
        "garbled.mp4": "corrupt video stream after",
    }
    for name, reason in cases.items():
        with pytest.raises(BadVideo, match=reason):
            read(tmp_path / name)


def test_too_long_is_rejected_before_decoding(scenes):
    with pytest.raises(BadVideo, match="video is 6 s long; the limit is 5 s"):
        VideoReader(scenes, 224, 2.0, 1800, 5.0)
