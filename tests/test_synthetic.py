"""The synthetic videos are what they claim: real H.264 with the stated scenes, sizes and keyframes."""

from __future__ import annotations

import av
import numpy as np
import pytest

from vidstrata.media.synthetic import ShapeEvent, write_long_video, write_scene_video, write_shapes_video, write_tone_mp3
from tests.photos import load_photo


def _probe(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(frame.time, frame.key_frame, frame.to_ndarray(format="rgb24")) for frame in container.decode(stream)]
        return stream.codec_context.name, stream.width, stream.height, frames


def test_scene_video_has_the_returned_spans_and_short_keyframe_interval(tmp_path):
    photos = [load_photo(name) for name in ("astronaut", "coffee", "chelsea")]
    spans = write_scene_video(tmp_path / "scenes.mp4", photos, [1.5, 2.0, 1.0], fps=10, size=(160, 120), gop=5)
    assert spans == [(0.0, 1.5), (1.5, 3.5), (3.5, 4.5)]
    codec, width, height, frames = _probe(tmp_path / "scenes.mp4")
    assert (codec, width, height, len(frames)) == ("h264", 160, 120, 45)
    assert [t for t, key, _ in frames if key] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0])
    pixels = [f for _, _, f in frames]
    within = np.abs(pixels[1].astype(int) - pixels[2]).mean()
    across = np.abs(pixels[14].astype(int) - pixels[15]).mean()  # the cut at 1.5 s
    assert 0 < within < across / 3, "frames move slightly within a scene and change completely at a cut"


def test_shapes_video_returns_captions_and_draws_the_colours(tmp_path):
    events = [ShapeEvent("circle", "red", "right", 1.0), ShapeEvent("square", "blue", "down", 1.0, background="white")]
    spans = write_shapes_video(tmp_path / "shapes.mp4", events, fps=10, size=(128, 96))
    assert [(s.start_s, s.end_s, s.caption) for s in spans] == [
        (0.0, 1.0, "a red circle moving right"), (1.0, 2.0, "a blue square moving down")]
    _, _, _, frames = _probe(tmp_path / "shapes.mp4")
    first, last = frames[5][2].reshape(-1, 3).astype(int), frames[15][2].reshape(-1, 3).astype(int)
    assert ((first[:, 0] > 150) & (first[:, 2] < 90)).mean() > 0.05, "red pixels in the first event"
    assert (last.min(1) > 200).mean() > 0.5, "a white background in the second"
    with pytest.raises(ValueError, match="colours"):
        write_shapes_video(tmp_path / "x.mp4", [ShapeEvent("circle", "purple", "left", 1.0)])


def test_long_video_is_224p_and_as_long_as_asked(tmp_path):
    photos = [load_photo("rocket"), load_photo("coins")]
    spans = write_long_video(tmp_path / "long.mp4", photos, duration_s=30, scene_s=10)
    assert spans == [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]
    with av.open(str(tmp_path / "long.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.frames) == (398, 224, 300)


def test_tone_mp3_is_audio_only(tmp_path):
    write_tone_mp3(tmp_path / "tone.mp3", duration_s=1.0)
    with av.open(str(tmp_path / "tone.mp3")) as container:
        assert [s.type for s in container.streams] == ["audio"]
        assert container.duration / av.time_base == pytest.approx(1.0, abs=0.1)


def test_a_variant_is_the_same_footage_trimmed_cropped_rescaled_and_re_encoded(tmp_path):
    import av

    from vidstrata.media.photos import load_photo
    from vidstrata.media.synthetic import write_scene_video, write_variant

    source, copy = tmp_path / "source.mp4", tmp_path / "copy.mp4"
    write_scene_video(source, [load_photo("moon"), load_photo("clock")], [2.0, 2.0], fps=10)
    write_variant(source, copy, start_s=1.0, end_s=3.0, crop=0.5, width=128, crf=35)
    with av.open(str(copy)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.frames) == (128, 20)
