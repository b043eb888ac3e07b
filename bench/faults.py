"""The fault corpus: awkward but real video files, one (or more) per kind users report, with the truth.

Every file is made here with PyAV from the scikit-image photos (no binary blobs in the repository), small
enough for CI: `write_corpus(folder)` returns one `Fault` per file with what a correct ingest produces
(READY with duration and clip spans, or FAILED with a reason), so tests and the chaos run check outcomes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from vidstrata.media.synthetic import Span, write_scene_video, write_tone_mp3

Photo = Callable[[str], np.ndarray]


@dataclass(frozen=True)
class Fault:
    """One corpus file and the outcome a correct ingest gives it.

    duration_s and spans (seconds) for READY; reason: a substring of the FAILED reason, or of a READY's note.
    upright: the photo the (single-scene) video shows upright, for the embedding check.
    """

    name: str
    path: Path
    ready: bool
    duration_s: float | None = None
    spans: list[Span] = field(default_factory=list)
    reason: str = ""
    upright: str = ""


def _frames(photo: np.ndarray, size: tuple[int, int], count: int, seed: int = 0) -> Iterator[np.ndarray]:
    """`count` frames of the photo resized to size (w, h), with light noise so no two are equal."""
    rgb = np.asarray(Image.fromarray(photo).convert("RGB").resize(size))
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield np.clip(rgb + rng.normal(0, 2.0, rgb.shape), 0, 255).astype(np.uint8)


def write_video(
    path: Path, frames: Iterator[np.ndarray], fps: int, codec: str = "libx264", pix_fmt: str = "yuv420p",
    container_format: str | None = None, options: dict[str, str] | None = None, rotation: int = 0,
    hflip: bool = False, pts: list[int] | None = None, time_base: Fraction | None = None,
) -> None:
    """Encode RGB frames; `rotation` (degrees counter-clockwise) and hflip set the display matrix, `pts` (in
    time_base units) makes a variable frame rate, `options` go to the muxer (movflags, live...)."""
    first = next(frames)
    height, width = first.shape[:2]
    with av.open(str(path), "w", format=container_format, options=options or {}) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            stream.codec_context.options = {"preset": "ultrafast"}
        if time_base is not None:
            stream.codec_context.time_base = time_base
        if rotation or hflip:
            stream.set_display_rotation(rotation, hflip=hflip)
        for i, rgb in enumerate([first, *frames]):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def colour_bars(size: tuple[int, int], count: int) -> Iterator[np.ndarray]:
    """`count` frames of colour bars at size (w, h), a bar moving one step a frame (a typical preview track)."""
    width, height = size
    bars = np.array([[192, 192, 192], [192, 192, 0], [0, 192, 192], [0, 192, 0], [192, 0, 192], [192, 0, 0],
                     [0, 0, 192]], dtype=np.uint8)
    base = bars[np.arange(width) * len(bars) // width][None].repeat(height, axis=0)
    for i in range(count):
        yield np.roll(base, i * 4, axis=1).copy()


def write_two_video_streams(path: Path, first: Iterator[np.ndarray], second: Iterator[np.ndarray], fps: int,
                            default: int = 1) -> None:
    """Two video streams (libx264) in one Matroska file; only stream `default` carries the default flag."""
    frames = [list(first), list(second)]
    with av.open(str(path), "w") as container:
        streams = []
        for i, rgbs in enumerate(frames):
            stream = container.add_stream("libx264", rate=Fraction(fps))
            stream.height, stream.width = rgbs[0].shape[:2]
            stream.pix_fmt = "yuv420p"
            stream.codec_context.options = {"preset": "ultrafast"}
            stream.disposition = av.stream.Disposition.default if i == default else av.stream.Disposition(0)
            streams.append(stream)
        for stream, rgbs in zip(streams, frames):
            for rgb in rgbs:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            container.mux(stream.encode())


def write_mp3_with_cover(path: Path, cover: np.ndarray, seconds: float = 1.0) -> None:
    """A song as music libraries store it: an MP3 (silence) with its cover art as an attached-picture stream."""
    with av.open(str(path), "w", format="mp3") as container:
        audio = container.add_stream("libmp3lame", rate=44100)
        art = container.add_stream("mjpeg", rate=1)
        art.height, art.width = cover.shape[:2]
        art.pix_fmt, art.disposition = "yuvj420p", av.stream.Disposition.attached_pic
        container.mux(art.encode(av.VideoFrame.from_ndarray(cover, format="rgb24")))
        container.mux(art.encode())
        for i in range(int(seconds * 44100 / 1152)):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1152
            container.mux(audio.encode(frame))
        container.mux(audio.encode())


def write_png_bomb(path: Path, side: int = 12000, count: int = 4, fps: int = 1) -> None:
    """A decompression bomb: a MOV of `count` black side x side RGB PNG frames, about 1.8 MB for 12000 x 12000
    but 432 MB a decoded frame. One frame is encoded (a few seconds) and its packet muxed `count` times."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = side, side, "rgb24"
        packets = list(stream.encode(av.VideoFrame.from_ndarray(np.zeros((side, side, 3), np.uint8), format="rgb24")))
        for i in range(count):
            for packet in packets:
                packet.stream, packet.pts, packet.dts = stream, i, i
                container.mux(packet)


def truncate(source: Path, target: Path, fraction: float) -> float:
    """Copy the first `fraction` of source's bytes; returns the end (s) of the last frame wholly kept.

    Assumes no B-frames (ultrafast x264), so a frame decodes once its own packet is whole.
    """
    data = source.read_bytes()
    cut = int(len(data) * fraction)
    target.write_bytes(data[:cut])
    end = 0.0
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size and packet.pos is not None and packet.pos + packet.size <= cut and packet.pts is not None:
                end = max(end, float((packet.pts + packet.duration) * packet.time_base))
    return end


def write_corpus(folder: Path, photo: Photo) -> list[Fault]:
    """Write every corpus file into folder; returns them with their truth. Takes a few seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    faults: list[Fault] = []

    def add(name: str, ready: bool, **kwargs: object) -> Path:
        path = folder / name
        faults.append(Fault(name, path, ready, **kwargs))  # type: ignore[arg-type]
        return path

    rocket = photo("rocket")
    # 1. rotation: the photo stored turned 90° clockwise, with a display matrix turning it back
    #    (what `ffmpeg -metadata:s:v:0 rotate=270` writes), and the other quarter turns and a mirror.
    for degrees, hflip, stored in ((90, False, np.rot90(rocket, -1)), (180, False, np.rot90(rocket, 2)),
                                   (-90, False, np.rot90(rocket, 1)), (0, True, rocket[:, ::-1])):
        name = f"rotated_{degrees % 360}{'_mirrored' if hflip else ''}.mp4"
        h, w = stored.shape[:2]
        size = (640, 360) if w > h else (360, 640)
        write_video(add(name, True, duration_s=2.0, spans=[(0.0, 2.0)], upright="rocket"),
                    _frames(np.ascontiguousarray(stored), size, 20), 10, rotation=degrees, hflip=hflip)
    # their references: the same photo encoded upright, and stored sideways with no matrix (what was embedded)
    write_video(add("upright.mp4", True, duration_s=2.0, spans=[(0.0, 2.0)], upright="rocket"),
                _frames(rocket, (640, 360), 20), 10)
    write_video(add("sideways.mp4", True, duration_s=2.0, spans=[(0.0, 2.0)]),
                _frames(np.ascontiguousarray(np.rot90(rocket, -1)), (360, 640), 20), 10)
    # 2. truncated: a 12 s faststart mp4 (moov in front) cut to half its bytes.
    full = folder / "full_faststart.mp4"
    write_video(full, _frames(rocket, (320, 240), 120), 10, options={"movflags": "faststart"})
    end = truncate(full, folder / "truncated.mp4", 0.5)
    full.unlink()
    faults.append(Fault("truncated.mp4", folder / "truncated.mp4", True, end, [(0.0, end)], "ends early", "rocket"))
    # 3. frames without timestamps: a raw H.264 elementary stream (Annex B), 6 s at 25 fps.
    write_video(add("raw.h264", True, duration_s=6.0, spans=[(0.0, 6.0)], upright="rocket"),
                _frames(rocket, (320, 240), 150), 25, container_format="h264")
    # 4. no duration in the header: VP9 WebM written as a live stream (MediaRecorder's uploads), 12 s.
    write_video(add("live.webm", True, duration_s=12.0, spans=[(0.0, 12.0)], upright="rocket"),
                _frames(rocket, (160, 120), 120), 10, codec="libvpx-vp9", container_format="webm",
                options={"live": "1"})
    # 5. variable frame rate: 3 s at 30 fps, 4 s at 1 fps, 3 s at 30 fps; three scenes, three clips.
    scenes = [photo(n) for n in ("astronaut", "coffee", "chelsea")]
    stamps = list(range(0, 90)) + [90 + 30 * i for i in range(4)] + list(range(210, 300))
    vfr = [*_frames(scenes[0], (320, 240), 90), *_frames(scenes[1], (320, 240), 4), *_frames(scenes[2], (320, 240), 90)]
    write_video(add("vfr.mp4", True, duration_s=10.0, spans=[(0.0, 3.0), (3.0, 7.0), (7.0, 10.0)]),
                iter(vfr), 30, pts=stamps, time_base=Fraction(1, 30))
    # 6. memory follows geometry: a 2048x4 banner, ffv1, 40 frames at 10 fps.
    write_video(add("banner.mkv", True, duration_s=4.0, spans=[(0.0, 4.0)]),
                _frames(rocket, (2048, 4), 40), 10, codec="ffv1", pix_fmt="yuv444p")
    # 7. several video streams (issue 22): stream 0 a 1 s 320x180 test pattern, not default; stream 1 the 12 s
    #    640x360 video, flagged default. The main one is indexed, and the note says which.
    write_two_video_streams(add("two_video_streams.mkv", True, duration_s=12.0, spans=[(0.0, 12.0)],
                                reason="indexed video stream 1 of 2 (640x360, default)", upright="rocket"),
                            colour_bars((320, 180), 10), _frames(rocket, (640, 360), 120), 10)
    # 8. frames without timestamps at a rate other than the raw demuxer's default of 25 (issue 22): 360 frames
    #    at 30 fps, the rate stated in the H.264 VUI timing info; 12 s, not 360 / 25 = 14.4 s.
    write_video(add("raw_30fps.h264", True, duration_s=12.0, spans=[(0.0, 12.0)], upright="rocket"),
                _frames(rocket, (320, 240), 360), 30, container_format="h264")
    # 9. a decompression bomb (issue 22): four 12000x12000 PNG frames in 1.8 MB of MOV. Refused from the header's
    #    size before any frame is decoded (it once took the worker child to 1.5 GB before it was refused).
    write_png_bomb(add("png_bomb.mov", False, reason="frames are 12000x12000 = 144000000 pixels; the limit is"))
    # Kinds that already worked, kept working.
    write_video(add("moov_at_end.mp4", True, duration_s=3.0, spans=[(0.0, 3.0)], upright="rocket"),
                _frames(rocket, (320, 240), 30), 10)
    write_video(add("ten_bit.mp4", True, duration_s=3.0, spans=[(0.0, 3.0)], upright="rocket"),
                _frames(rocket, (320, 240), 30), 10, pix_fmt="yuv420p10le")
    write_video(add("vp9.webm", True, duration_s=3.0, spans=[(0.0, 3.0)], upright="rocket"),
                _frames(rocket, (160, 120), 30), 10, codec="libvpx-vp9")
    write_video(add("av1.mp4", True, duration_s=2.0, spans=[(0.0, 2.0)], upright="rocket"),
                _frames(rocket, (160, 128), 20), 10, codec="libsvtav1", options={})
    write_video(add("anim.gif", True, duration_s=2.0, spans=[(0.0, 2.0)], upright="rocket"),
                _frames(rocket, (96, 72), 20), 10, codec="gif", pix_fmt="rgb8")
    write_video(add("odd_size.mkv", True, duration_s=2.0, spans=[(0.0, 2.0)]),
                _frames(rocket, (33, 17), 20), 10, codec="ffv1", pix_fmt="yuv444p")
    write_video(add("tiny.mp4", True, duration_s=1.0, spans=[(0.0, 1.0)]), _frames(rocket, (16, 16), 10), 10)
    write_scene_video(add("two_scenes.mp4", True, duration_s=6.0, spans=[(0.0, 3.0), (3.0, 6.0)]),
                      [photo("astronaut"), photo("coffee")], [3.0, 3.0], fps=10)
    write_tone_mp3(add("audio_only.mp3", False, reason="audio only"))
    # a cover picture is not a video stream (issue 22): an MP3 whose only picture is its album art
    write_mp3_with_cover(add("audio_with_cover.mp3", False, reason="audio only"),
                         np.asarray(Image.fromarray(rocket).convert("RGB").resize((320, 320))))
    with av.open(str(add("zero_frames.avi", False, reason="no decodable video frames")), "w", format="avi") as c:
        stream = c.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    add("not_a_video.mp4", False, reason="not a video").write_text("hello, I am not a video\n")
    add("empty.mp4", False, reason="empty file").touch()
    return faults
