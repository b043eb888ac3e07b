"""Synthetic videos with known content and known scene cuts, shared by tests, eval and benchmarks.

Every writer encodes H.264 with PyAV and a short keyframe interval, and returns the ground truth
(scene spans, and captions for the shapes video), so ingest results can be checked against it.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

Span = tuple[float, float]
Shape = Literal["circle", "square", "triangle"]
Motion = Literal["left", "right", "up", "down"]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 210, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle")
SHAPE_COLORS = tuple(c for c in COLORS if c != "black")  # shapes cross a black frame
_DIRECTIONS: dict[str, tuple[float, float]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


@dataclass(frozen=True)
class ShapeEvent:
    """One scene of the shapes video: a coloured shape crossing a plain background."""

    shape: Shape
    color: str
    motion: Motion
    duration_s: float
    background: str = "black"

    @property
    def caption(self) -> str:
        return f"a {self.color} {self.shape} moving {self.motion}"


@dataclass(frozen=True)
class ShapeSpan:
    start_s: float
    end_s: float
    caption: str


def _encode(path: Path, frames: Iterator[np.ndarray], size: tuple[int, int], fps: int, gop: int,
            audio: Audio | None = None) -> None:
    """Write RGB frames as H.264 (yuv420p) with a keyframe at least every `gop` frames, and `audio` as AAC."""
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"H.264 with yuv420p needs an even size, got {width}x{height}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.options = {"preset": "ultrafast", "x264-params": f"keyint={gop}:min-keyint={gop}"}
        sound = None
        if audio is not None:  # every stream exists before the first packet is written
            sound = container.add_stream("aac", rate=audio.rate)
            sound.layout = "mono"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
        if sound is not None and audio is not None:
            for start in range(0, len(audio.samples), 1024):  # AAC's frame size
                chunk = audio.samples[None, start : start + 1024]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = audio.rate, start
                container.mux(sound.encode(frame))
            container.mux(sound.encode())


@dataclass(frozen=True)
class Audio:
    """A mono track: float32 samples in [-1, 1] at `rate` Hz."""

    samples: np.ndarray
    rate: int


def speak(text: str, voice: str = "en-us", words_per_minute: int = 160) -> Audio:
    """`text` spoken by Debian's espeak-ng (no personal data, no network): mono float32 at its 22050 Hz.

    Raises FileNotFoundError when espeak-ng is not installed (`make system-deps` installs it).
    """
    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError("espeak-ng is not installed: apt-get install espeak-ng (make system-deps)")
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "--stdout", text],
                         check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16)
        return Audio((pcm / 32768.0).astype(np.float32), reader.getframerate())


def narration_track(lines: Sequence[tuple[float, str]], duration_s: float, rate: int = 22050) -> tuple[Audio, list[Span]]:
    """A track of `duration_s` seconds with each (start second, sentence) spoken from its start, silence between.

    Returns the track and each line's spoken span; a line that runs past the next line's start or the end
    raises ValueError (make the scenes longer).
    """
    track = np.zeros(int(duration_s * rate), np.float32)
    spans: list[Span] = []
    for i, (start_s, text) in enumerate(lines):
        voice = speak(text)
        if voice.rate != rate:
            raise ValueError(f"espeak-ng spoke at {voice.rate} Hz, the track is {rate} Hz")
        begin, end = int(start_s * rate), int(start_s * rate) + len(voice.samples)
        limit = int(lines[i + 1][0] * rate) if i + 1 < len(lines) else len(track)
        if end > limit:
            raise ValueError(f"line {i} ({len(voice.samples) / rate:.1f} s) does not fit before {limit / rate:.1f} s")
        track[begin:end] = voice.samples
        spans.append((begin / rate, end / rate))
    return Audio(track, rate), spans


def _spans(frame_counts: Sequence[int], fps: int) -> list[Span]:
    bounds = np.concatenate([[0], np.cumsum(frame_counts)]) / fps
    return [(float(a), float(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _frame_counts(durations_s: Sequence[float], fps: int) -> list[int]:
    return [max(1, round(d * fps)) for d in durations_s]


def _cover(photo: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize so the photo covers width x height (keeping its aspect), without cropping yet."""
    image = Image.fromarray(photo).convert("RGB")
    scale = max(width / image.width, height / image.height)
    return np.asarray(image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale)))))


def render_caption(canvas: np.ndarray, text: str, visible_width: int) -> np.ndarray:
    """The canvas with `text` in white on a dark band across its middle, wrapped to the visible width."""
    image = Image.fromarray(canvas).convert("RGB")
    draw = ImageDraw.Draw(image)
    size = max(12, canvas.shape[0] // 11)
    font = ImageFont.load_default(size=size)
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > visible_width * 0.8:
            lines.append(line)
            trial = word
        line = trial
    lines.append(line)
    top = canvas.shape[0] // 2 - len(lines) * size * 3 // 4
    draw.rectangle((0, top - size // 2, image.width, top + len(lines) * size * 3 // 2 + size // 2), fill=(20, 20, 30))
    for i, row in enumerate(lines):
        draw.text((visible_width * 0.12, top + i * size * 3 // 2), row, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def write_scene_video(
    path: Path,
    photos: Sequence[np.ndarray],
    durations_s: Sequence[float],
    fps: int = 10,
    size: tuple[int, int] = (320, 240),
    gop: int = 10,
    noise: float = 2.0,
    seed: int = 0,
    audio: Audio | None = None,
    captions: Sequence[str | None] | None = None,
) -> list[Span]:
    """One scene per photo (a slow pan across it, plus pixel noise so no two frames are equal), with an
    optional audio track (e.g. `narration_track`) and optional on-screen text per scene (`captions`, None for
    none: white text on a dark band, word-wrapped, as slides and lower thirds show it).

    Returns each scene's (start_s, end_s): the true cuts an ingest's clips should follow.
    """
    if len(photos) != len(durations_s) or not photos:
        raise ValueError(f"need one duration per photo, got {len(photos)} photos and {len(durations_s)} durations")
    width, height = size
    counts = _frame_counts(durations_s, fps)
    rng = np.random.default_rng(seed)

    if captions is not None and len(captions) != len(photos):
        raise ValueError(f"need one caption (or None) per photo, got {len(captions)} for {len(photos)} photos")

    def frames() -> Iterator[np.ndarray]:
        for scene, (photo, count) in enumerate(zip(photos, counts)):
            # 10% larger than the frame, so the window can pan across it.
            canvas = _cover(photo, round(width * 1.1), round(height * 1.1))
            if captions is not None and captions[scene]:
                canvas = render_caption(canvas, captions[scene], width)
            dx, dy = canvas.shape[1] - width, canvas.shape[0] - height
            for i in range(count):
                t = i / max(count - 1, 1)
                x, y = round(dx * t), round(dy * (1 - t) / 2)
                frame = canvas[y : y + height, x : x + width]
                if noise:
                    jitter = rng.normal(0.0, noise, frame.shape)
                    frame = np.clip(frame + jitter, 0, 255).astype(np.uint8)
                yield np.ascontiguousarray(frame)

    _encode(path, frames(), size, fps, gop, audio)
    return _spans(counts, fps)


def _shape_mask(shape: Shape, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if shape == "square":
        return (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    # Upward triangle: below its apex line pair, above its base.
    return (yy <= cy + r) & (yy - (cy - r) >= 2 * np.abs(xx - cx))


def write_shapes_video(
    path: Path,
    events: Sequence[ShapeEvent],
    fps: int = 10,
    size: tuple[int, int] = (320, 240),
    gop: int = 10,
) -> list[ShapeSpan]:
    """One coloured shape per event, crossing the frame in its direction; returns each event's span and caption."""
    if not events:
        raise ValueError("need at least one event")
    for event in events:
        if event.color not in COLORS or event.background not in COLORS:
            raise ValueError(f"colours must be among {', '.join(COLORS)}; got {event.color!r} on {event.background!r}")
    width, height = size
    counts = _frame_counts([e.duration_s for e in events], fps)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = min(width, height) / 6

    def frames() -> Iterator[np.ndarray]:
        for event, count in zip(events, counts):
            ux, uy = _DIRECTIONS[event.motion]
            background = np.empty((height, width, 3), np.uint8)
            background[:] = COLORS[event.background]
            for i in range(count):
                t = i / max(count - 1, 1) - 0.5  # -0.5 .. 0.5: the shape crosses the centre mid-event
                cx, cy = width / 2 + ux * t * (width - 2 * r), height / 2 + uy * t * (height - 2 * r)
                frame = background.copy()
                frame[_shape_mask(event.shape, xx, yy, cx, cy, r)] = COLORS[event.color]
                yield frame

    _encode(path, frames(), size, fps, gop)
    return [ShapeSpan(a, b, e.caption) for (a, b), e in zip(_spans(counts, fps), events)]


def write_long_video(
    path: Path,
    photos: Sequence[np.ndarray],
    duration_s: float = 600.0,
    scene_s: float = 20.0,
    fps: int = 10,
    height: int = 224,
) -> list[Span]:
    """A long 16:9 video (224p by default) cycling through the photos, one scene every `scene_s`.

    Noise-free pans keep encoding fast (a 10-minute video takes seconds), for benchmarks and memory tests.
    """
    width = round(height * 16 / 9 / 2) * 2
    scenes = max(1, round(duration_s / scene_s))
    durations = [duration_s / scenes] * scenes
    cycled = [photos[i % len(photos)] for i in range(scenes)]
    return write_scene_video(path, cycled, durations, fps=fps, size=(width, height), gop=2 * fps, noise=0.0)


def write_tone_mp3(path: Path, duration_s: float = 2.0, rate: int = 44100) -> None:
    """An audio-only MP3 (a sine tone): a real media file that has no video stream."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libmp3lame", rate=rate)
        stream.layout = "mono"
        samples = np.sin(2 * np.pi * 440 * np.arange(int(duration_s * rate)) / rate).astype(np.float32)
        for start in range(0, len(samples), 1152):
            chunk = samples[start : start + 1152][None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def write_corrupt_copy(source: Path, target: Path, seed: int = 1) -> None:
    """A copy of an MP4 with bytes flipped in its middle (the media data) but its index intact:
    it opens as a video and then fails to decode, as a damaged upload does."""
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(seed)
    for i in range(len(data) // 10, len(data) // 2, 200):
        data[i] ^= int(rng.integers(1, 256))
    target.write_bytes(bytes(data))


def write_variant(source: Path, target: Path, *, start_s: float = 0.0, end_s: float | None = None,
                  crop: float = 1.0, width: int | None = None, crf: int = 23, fps: int | None = None) -> None:
    """A copy of a video as an upload of the same footage elsewhere would be: its frames from start_s to end_s (a trim),
    the centre `crop` share of each side kept (a re-crop), resized to `width` (a rescale, height in proportion) and
    re-encoded as H.264 at `crf` (and `fps`, default the source's); no audio. For near-duplicate tests and calibration."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        rate = fps or int(round(float(stream.average_rate or 25)))
        frames = []
        for frame in container.decode(stream):
            t = float(frame.time or 0.0)
            if t < start_s or (end_s is not None and t >= end_s):
                continue
            rgb = frame.to_ndarray(format="rgb24")
            h, w = rgb.shape[:2]
            ch, cw = int(h * crop) // 2 * 2, int(w * crop) // 2 * 2
            frames.append(np.ascontiguousarray(rgb[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]))
    if not frames:
        raise ValueError(f"{source}: no frames between {start_s} and {end_s} s")
    h, w = frames[0].shape[:2]
    size = (width, int(h * width / w) // 2 * 2) if width else (w, h)
    target.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(target), "w") as container:
        out = container.add_stream("libx264", rate=Fraction(rate))
        out.width, out.height, out.pix_fmt = size[0], size[1], "yuv420p"
        out.codec_context.options = {"preset": "ultrafast", "crf": str(crf)}
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(width=size[0], height=size[1])
            container.mux(out.encode(frame))
        container.mux(out.encode())
