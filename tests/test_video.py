"""The one decoder (vidstrata.media.video): sampling plan, encoder-ready upright frames in real time, bounded memory,
and a clear reason for every unusable file."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from bench.faults import Fault, write_corpus
from vidstrata.media.synthetic import write_corrupt_copy, write_long_video, write_scene_video, write_tone_mp3
from vidstrata.spec.preprocess import center_crop_square
from vidstrata.media.video import BadVideo, VideoReader, memory_bound_bytes, sampling_interval
from tests.photos import load_photo


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


def test_sampling_interval_covers_the_duration_with_at_most_max_frames():
    assert sampling_interval(3600.0, 2.0, 100) == 36.0
    assert sampling_interval(10.0, 2.0, 100) == 0.5


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


# The fault kinds of issue 12, decoded without the service: each file's truth comes from bench.faults.


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Fault]:
    return {f.name: f for f in write_corpus(tmp_path_factory.mktemp("corpus"), load_photo)}


def frames_of(path: Path, **kwargs) -> tuple[VideoReader, np.ndarray, np.ndarray]:
    reader, batches = read(path, **kwargs)
    return reader, np.concatenate([b.timestamps for b in batches]), np.concatenate([b.frames for b in batches])


@pytest.mark.parametrize("name", ["rotated_90.mp4", "rotated_180.mp4", "rotated_270.mp4", "rotated_0_mirrored.mp4"])
def test_frames_are_upright_for_every_display_matrix(corpus, name):
    """Stored sideways (or mirrored) with a display matrix: the frames equal the upright photo's crop."""
    _, _, frames = frames_of(corpus[name].path)
    upright = np.asarray(Image.fromarray(load_photo("rocket")).convert("RGB").resize((640, 360)))
    reference = center_crop_square(upright, 224).astype(int)
    wrong = center_crop_square(np.ascontiguousarray(np.rot90(upright, 1)), 224).astype(int)
    assert np.abs(frames[0].astype(int) - reference).mean() < 6
    assert np.abs(frames[0].astype(int) - wrong).mean() > 20


def test_a_truncated_file_reports_the_frames_it_holds_and_says_it_ends_early(corpus):
    fault = corpus["truncated.mp4"]
    reader, times, _ = frames_of(fault.path)
    assert reader.stated_duration_s == pytest.approx(12.0)
    assert reader.duration_s == pytest.approx(fault.duration_s, abs=0.25) and reader.duration_s < 6
    assert times[-1] < reader.duration_s
    assert "ends early" in reader.note


def test_frames_without_timestamps_take_their_time_from_the_stream_rate(corpus):
    reader, times, _ = frames_of(corpus["raw.h264"].path)
    assert reader.duration_s == pytest.approx(6.0, abs=0.25)
    assert len(times) == 12 and np.all(np.diff(times) > 0.4)


def test_without_a_stated_duration_sampling_follows_the_measured_one(corpus):
    reader, times, _ = frames_of(corpus["live.webm"].path, max_frames=100, max_duration_s=10_800)
    assert reader.stated_duration_s is None
    assert reader.interval_s == 0.5 and len(times) == 24
    assert reader.duration_s == pytest.approx(12.0, abs=0.25)


def test_variable_frame_rate_is_sampled_in_real_time(corpus):
    _, times, _ = frames_of(corpus["vfr.mp4"].path)
    # 1 fps between 3 s and 7 s: one sample per frame there, every 0.5 s elsewhere
    np.testing.assert_allclose(times, [0, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 7.5, 8, 8.5, 9, 9.5], atol=0.04)


def test_memory_is_bounded_by_geometry_not_by_the_encoder_size(corpus, tmp_path):
    """A 2048x4 banner is cropped at its own size before scaling: one conversion is far below the bound."""
    tracemalloc.start()  # numpy's arrays (the converted frames) are traced; FFmpeg's own buffers are not
    try:
        reader, times, frames = frames_of(corpus["banner.mkv"].path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert frames.shape[1:] == (224, 224, 3) and len(times) == 8
    bound = memory_bound_bytes(2048 * 4, 224, 4, 4)
    assert bound < 16 * 1024**2  # this geometry's bound: a few MB, where upscaling first took gigabytes
    assert peak < bound, (peak, bound)
    with pytest.raises(BadVideo, match="frames are 2048x4 = 8192 pixels; the limit is 4096 pixels"):
        VideoReader(corpus["banner.mkv"].path, 224, 2.0, 1800, 3600.0, max_pixels=4096)


@pytest.mark.parametrize("name", ["moov_at_end.mp4", "ten_bit.mp4", "vp9.webm", "av1.mp4", "anim.gif",
                                  "odd_size.mkv", "tiny.mp4"])
def test_kinds_that_worked_keep_working(corpus, name):
    reader, times, frames = frames_of(corpus[name].path)
    assert reader.duration_s == pytest.approx(corpus[name].duration_s, abs=0.25)
    assert frames.shape[1:] == (224, 224, 3) and times[0] == 0.0


@pytest.mark.parametrize("name", ["rotated_90.mp4", "vfr.mp4", "raw.h264"])
def test_training_decodes_and_samples_exactly_as_ingest(corpus, name):
    from vidstrata.encoders.train_data import decode_frames

    reader, times, frames = frames_of(corpus[name].path, max_frames=64)
    train_frames, train_times, train_duration = decode_frames(corpus[name].path, 224, 2.0, 64)
    np.testing.assert_array_equal(train_frames, frames)
    np.testing.assert_array_equal(train_times, times)
    assert train_duration == reader.duration_s


# Issue 22: which stream is the video, and the rate of frames without timestamps.


def test_of_several_video_streams_the_main_one_is_indexed_and_the_note_says_which(corpus):
    """Stream 0 a 1 s 320x180 test pattern, stream 1 the 12 s 640x360 video flagged default: 12 s, not 1 s."""
    fault = corpus["two_video_streams.mkv"]
    with av.open(str(fault.path)) as container:
        assert [(s.width, s.height, bool(s.disposition & av.stream.Disposition.default))
                for s in container.streams.video] == [(320, 180, False), (640, 360, True)]
    reader, times, _ = frames_of(fault.path)
    assert reader.duration_s == pytest.approx(12.0, abs=0.25) and len(times) == 24
    assert reader.note == "indexed video stream 1 of 2 (640x360, default)" == reader.stream_note


def test_without_a_default_flag_the_largest_video_stream_is_indexed(tmp_path):
    """FFmpeg's order after the default flag: resolution. The small preview first, no flags: the large one."""
    from bench.faults import _frames, colour_bars, write_two_video_streams

    path = tmp_path / "no_default.mkv"
    write_two_video_streams(path, colour_bars((320, 180), 10), _frames(load_photo("rocket"), (640, 360), 30), 10,
                            default=-1)
    with av.open(str(path)) as container:
        assert not any(s.disposition & av.stream.Disposition.default for s in container.streams.video)
    reader, _, _ = frames_of(path)
    assert reader.duration_s == pytest.approx(3.0, abs=0.15)
    assert reader.note == "indexed video stream 1 of 2 (640x360)"


def test_a_single_video_stream_says_nothing_about_streams(corpus):
    reader, _, _ = frames_of(corpus["upright.mp4"].path)
    assert reader.stream_note == "" and reader.note == ""


def test_raw_h264_at_30_fps_is_timed_by_the_rate_its_bitstream_states(corpus):
    """360 frames at 30 fps (VUI timing info; the raw demuxer's average is its default 25): 12.0 s, not 14.4."""
    reader, times, _ = frames_of(corpus["raw_30fps.h264"].path)
    assert reader.duration_s == pytest.approx(12.0, abs=1 / 30)
    np.testing.assert_allclose(times, np.arange(24) * 0.5, atol=1 / 30)


@pytest.mark.parametrize("fps", [24, 25, 30, 60])
def test_raw_h264_streams_take_their_frame_rate_from_the_bitstream(tmp_path, fps):
    from bench.faults import _frames, write_video

    frames = 3 * fps
    path = tmp_path / f"raw_{fps}.h264"
    write_video(path, _frames(load_photo("rocket"), (64, 48), frames), fps, container_format="h264")
    with av.open(str(path)) as container:  # x264 writes VUI timing info: the stream states its rate
        assert container.streams.video[0].codec_context.framerate == fps
    reader, times, _ = frames_of(path)
    assert reader.stated_duration_s is None
    assert abs(reader.duration_s - frames / fps) <= 1 / fps
    assert times[-1] <= reader.duration_s


def test_the_default_flag_outranks_resolution(tmp_path):
    """A larger 1 s stream first, the 3 s video flagged default second: the default one, as FFmpeg chooses."""
    from bench.faults import _frames, colour_bars, write_two_video_streams

    path = tmp_path / "default_smaller.mkv"
    write_two_video_streams(path, colour_bars((640, 360), 10), _frames(load_photo("rocket"), (320, 180), 30), 10)
    reader, _, _ = frames_of(path)
    assert reader.duration_s == pytest.approx(3.0, abs=0.15)
    assert reader.note == "indexed video stream 1 of 2 (320x180, default)"


def test_a_cover_picture_is_never_the_video(corpus):
    """An MP3 with album art has a video stream, an attached picture: it is audio only, not a 1-frame video."""
    with av.open(str(corpus["audio_with_cover.mp3"].path)) as container:
        assert [bool(s.disposition & av.stream.Disposition.attached_pic) for s in container.streams.video] == [True]
    with pytest.raises(BadVideo, match="audio only"):
        read(corpus["audio_with_cover.mp3"].path)
