"""The one video decoder: ingest (the frame encoder's samples and the on-screen text stage's frames) and
training (encoders.train_data) read frames through it.

A video is read in the file's real geometry and real time:

- geometry: frames are turned upright by the display matrix the container states (any multiple of 90°,
  mirrored or not), the sample aspect ratio is honoured, and each frame is *reduced before it is converted*:
  a frame larger than the encoder's input is scaled down to fit, a smaller one is centre-cropped at its own
  size and only the square is scaled up. So converting one frame never needs more than
  `max(3·W·H, 3·S²)` bytes next to the decoded W×H frame, whatever the aspect ratio, and frames above
  `max_pixels` are rejected before decoding (`memory_bound_bytes` states the bound);
- time: a frame's time is its presentation timestamp; a frame without one (a raw H.264 elementary stream)
  is placed one frame period (from the stream's rate) after the previous one. Where the header states no
  duration (a live WebM as MediaRecorder writes it, a raw stream) the packets are read once, without
  decoding, to measure it, so sampling never depends on a duration the file does not state. The reported
  `duration_s` is the end of the last decoded frame, so a truncated file reports what it really holds, and
  `note` says when it is shorter than its header claims.

Frames are decoded one at a time and only sampled ones are converted, so memory holds one batch of
encoder-sized frames however long the video. Everything that makes a file unusable is a `BadVideo`.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Self

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType

DECODER_VERSION = 3  # bump when decoded frames or times change: training's feature caches key on it
_EPS_S = 1e-3  # timestamps are rounded to the stream's time base; a sample due at t accepts a frame at t - 1 ms
_TRUNCATION_TOLERANCE_S = 1.0  # a file whose frames end this much before its stated duration ends early
DEFAULT_MAX_PIXELS = 4096 * 2160  # 4K DCI: the largest frame decoded by default (8.8 Mpx)
_FALLBACK_RATE = Fraction(25)  # frame period used only when frames lack timestamps and the stream states no rate
# FFmpeg's own frame-size guard (the codec option max_pixels) sits this far above max_pixels: it counts the
# width rounded up to the stride alignment (at most 63 more columns), so a frame our rule admits always passes.
_GUARD_SLACK_PIXELS = 64 * 65536


class BadVideo(ValueError):
    """The submitted video can never be ingested as it is (missing, too large, not a video, corrupt):
    fail at once with this message as the reason, and retry nothing."""


@dataclass(frozen=True)
class FrameBatch:
    """Consecutive sampled frames: seconds from the start of the video, and uint8 RGB [n,S,S,3]."""

    timestamps: np.ndarray
    frames: np.ndarray


def sampling_interval(duration_s: float, sample_fps: float, max_frames: int) -> float:
    """Seconds between samples: 1/sample_fps, widened so at most max_frames cover the whole duration_s."""
    return max(1.0 / sample_fps, duration_s / max_frames)


def memory_bound_bytes(max_pixels: int, image_size: int, batch: int, queued_batches: int) -> int:
    """Upper bound (bytes) of the frame memory one decode holds, for frames of at most max_pixels (W·H) and
    encoder inputs of image_size² (S²): FFmpeg's decoded frames (at most 16 frame threads and 16 reference
    frames, each at worst 6 bytes a pixel: 16-bit 4:4:4), one RGB conversion of max(W·H, S²) pixels and its
    crop, and the sampled batches of S×S RGB (queued ones plus the one filling and the one being embedded)."""
    decoded = (16 + 16) * max_pixels * 6
    converted = 2 * 3 * max(max_pixels, image_size**2)
    batches = (queued_batches + 2) * batch * image_size**2 * 3
    return decoded + converted + batches


def guarded_open_options(max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, str]:
    """Options for `av.open` (and a stream's codec_context.options) under which FFmpeg refuses (EINVAL) to
    allocate a video frame above max_pixels. Every `av.open` of an untrusted file needs them, even to read its
    audio: avformat_find_stream_info decodes a first video frame of any size when the header states no pixel
    format (PNG or MJPEG in MOV), 432 MB for a 1.8 MB file of 12000x12000 PNGs."""
    return {"max_pixels": str(max_pixels + _GUARD_SLACK_PIXELS)}


def _fit(width: int, height: int, size: int) -> tuple[int, int]:
    """Width and height that make the shorter side `size`, keeping the aspect ratio."""
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def display_rotation(frame: av.VideoFrame) -> tuple[int, bool]:
    """(quarter turns counter-clockwise, then mirrored left-right) that show the frame upright.

    Read from the frame's display matrix (FFmpeg attaches the container's to each decoded frame). The
    matrix is a rotation R, or R times a horizontal flip (negative determinant): undo the flip, and R's
    angle is atan2(c, a) (libavutil/display.h layout, 16.16 fixed point).
    """
    matrix = _display_matrix(frame)
    if matrix is None:
        return 0, False
    a, b, _, c, d, _, _, _, _ = matrix
    mirrored = a * d - b * c < 0
    if mirrored:
        a, c = -a, -c
    return round(math.degrees(math.atan2(c, a)) / 90) % 4, mirrored


def _display_matrix(frame: av.VideoFrame) -> tuple[float, ...] | None:
    """The frame's 3x3 display matrix (row-major, as floats), or None when it states none.

    Looked up by type through the Mapping protocol, the one API every supported PyAV shares: iterating
    `side_data` gave the entries up to 18.1.0 and gives their types from 18.1.1 on.
    """
    data = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    if data is None:
        return None
    raw = bytes(data)
    return tuple(np.frombuffer(raw[:36], dtype=np.int32).astype(np.float64) / 65536.0) if len(raw) >= 36 else None


class VideoSource:
    """An open video stream in real geometry and time: every decoded frame with its time, and a way to turn one
    upright. Stages that choose their own frames (on-screen text) read through it; `VideoReader` adds the
    encoder's sampling plan. Use as a context manager.

    After `frames` is exhausted, `duration_s` is the end of the last decoded frame and `note` says whether
    the file ended before its stated duration.
    """

    def __init__(self, path: Path, max_duration_s: float, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.max_duration_s = max_duration_s
        self.max_pixels = max_pixels
        self.note = ""
        self.stream_note = ""  # which video stream was indexed, when the file has several
        self._path = path
        try:
            # max_pixels reaches the decoder avformat_find_stream_info opens to learn the pixel format (PNG or
            # MJPEG in MOV): without it that probe decodes a whole first frame, whatever its size, before any check
            self._container = av.open(str(path), metadata_errors="ignore", options=self._guard())
        except av.error.FFmpegError as exc:
            raise BadVideo(f"not a video: the file is not a media container FFmpeg can read ({exc.strerror})") from exc
        try:
            self._stream = self._video_stream()
            self._stream.codec_context.options = {**self._stream.codec_context.options, **self._guard()}
            self._check_geometry(*self._stated_size())
            self._period = self._frame_period()
            self.stated_duration_s = self._stated_duration()
            self.duration_s = (
                self.stated_duration_s if self.stated_duration_s is not None else self._measured_duration()
            )
            if self.duration_s > max_duration_s:
                raise BadVideo(f"video is {self.duration_s:.0f} s long; the limit is {max_duration_s:.0f} s")
        except BaseException:
            self._container.close()
            raise
        self.rotation, self.mirrored = 0, False  # read from the first decoded frame's display matrix

    def _video_stream(self) -> av.VideoStream:
        streams = self._container.streams
        if not streams.video:
            found = sorted({s.type for s in streams})
            if "audio" in found:
                raise BadVideo("audio only: the file has no video stream")
            raise BadVideo(f"no video stream (found: {', '.join(found) or 'no streams at all'})")
        stream = self._main_video_stream(streams.video)
        if stream.codec_context is None:
            raise BadVideo("unreadable video stream: FFmpeg cannot identify its codec (a corrupt or unsupported file)")
        if not stream.codec_context.codec.is_decoder:
            raise BadVideo(f"unsupported video codec {stream.codec_context.name!r}")
        stream.thread_type = "AUTO"
        return stream

    def _main_video_stream(self, videos: tuple[av.VideoStream, ...] | list[av.VideoStream]) -> av.VideoStream:
        """The main video stream, chosen as FFmpeg's av_find_best_stream does: never a cover picture or thumbnail
        track; among the rest a decodable one, then the one flagged default, then the most pixels, then the
        highest bitrate, then the first. With several, `stream_note` (and so `note`) says which was indexed."""
        skip = av.stream.Disposition.attached_pic | av.stream.Disposition.timed_thumbnails
        candidates = [s for s in videos if not (s.disposition & skip)]
        if not candidates:
            has_audio = any(s.type == "audio" for s in self._container.streams)
            raise BadVideo(("audio only: " if has_audio else "no video stream: ")
                           + "the file's only picture is a cover image or thumbnail, not a video")

        def rank(s: av.VideoStream) -> tuple[bool, bool, int, int, int]:
            ctx = s.codec_context
            decodable = ctx is not None and ctx.codec.is_decoder
            pixels = (ctx.width * ctx.height) if ctx is not None else 0
            return (decodable, bool(s.disposition & av.stream.Disposition.default), pixels, s.bit_rate or 0, -s.index)

        stream = max(candidates, key=rank)
        if len(videos) > 1:  # numbered among the video streams from 0, as ffmpeg's -map 0:v:N
            ctx = stream.codec_context
            size = f"{ctx.width}x{ctx.height}" if ctx is not None else "unknown size"
            flag = ", default" if stream.disposition & av.stream.Disposition.default else ""
            self.stream_note = f"indexed video stream {list(videos).index(stream)} of {len(videos)} ({size}{flag})"
            self.note = self.stream_note
        return stream

    def _guard(self) -> dict[str, str]:
        return guarded_open_options(self.max_pixels)

    def _stated_size(self) -> tuple[int, int]:
        """The stream's frame size as its header states it, with no frame decoded.

        When the open's probe decode was refused by the guard, FFmpeg forgets the header's size: it is read again
        from a second open whose probe may use no decoder at all (codec_whitelist), so it only parses the header.
        (0, 0) when the header states none: then the guard refuses the first frame before it is allocated.
        """
        ctx = self._stream.codec_context
        if ctx.width and ctx.height:
            return ctx.width, ctx.height
        try:
            with av.open(str(self._path), metadata_errors="ignore", options={"codec_whitelist": "none"}) as probe:
                stream = probe.streams[self._stream.index]
                return stream.codec_context.width, stream.codec_context.height
        except (av.error.FFmpegError, IndexError):
            return 0, 0

    def _check_geometry(self, width: int, height: int) -> None:
        if width * height > self.max_pixels:
            raise BadVideo(
                f"frames are {width}x{height} = {width * height} pixels; the limit is {self.max_pixels} pixels"
            )

    def _frame_period(self) -> float:
        """Seconds per frame for frames that carry no timestamp: the rate the stream states (FFmpeg's guessed
        rate, ffprobe's r_frame_rate: the bitstream's timing info for a raw H.264 stream), then the codec's,
        and the demuxer's average only when nothing states one (a raw stream's demuxer defaults it to 25)."""
        for rate in (self._stream.guessed_rate, self._stream.codec_context.framerate, self._stream.average_rate):
            if rate and rate > 0:
                return float(1 / rate)
        return float(1 / _FALLBACK_RATE)

    def _stated_duration(self) -> float | None:
        """The duration the header states for the video stream (or the container), if any."""
        if self._stream.duration is not None and self._stream.time_base is not None:
            return float(self._stream.duration * self._stream.time_base)
        estimated = self._container.format.name in {"h264", "hevc", "mpegvideo", "m4v", "rawvideo", "ivf"}
        if self._container.duration is not None and not estimated:  # raw streams' is a guess from the bitrate
            return self._container.duration / av.time_base
        return None

    def _measured_duration(self) -> float:
        """Duration from a demux pass (no decoding): the end of the last packet, or packets x frame period."""
        start, end, count = None, 0.0, 0
        try:
            # no decoder at all (codec_whitelist): the open's probe would otherwise decode a frame of any size
            with av.open(str(self._path), metadata_errors="ignore", options={"codec_whitelist": "none"}) as container:
                stream = container.streams[self._stream.index]
                for packet in container.demux(stream):
                    if packet.size == 0:
                        continue
                    count += 1
                    if packet.pts is None or packet.time_base is None:
                        continue
                    t = float(packet.pts * packet.time_base)
                    start = t if start is None else min(start, t)
                    length = float(packet.duration * packet.time_base) if packet.duration else self._period
                    end = max(end, t + length)
        except av.error.FFmpegError:
            pass  # a damaged tail: what was read so far is the measure, decoding reports the damage
        return max(end - (start or 0.0), count * self._period)

    def _sample_aspect_width(self, frame: av.VideoFrame) -> int:
        """The frame's width in square pixels (the stream's sample aspect ratio applied)."""
        sar = self._stream.sample_aspect_ratio or Fraction(1)
        return max(1, round(frame.width * sar))

    def _turn_upright(self, rgb: np.ndarray) -> np.ndarray:
        """rgb [H,W,3] turned and mirrored as the display matrix of the first decoded frame says."""
        upright = np.rot90(rgb, self.rotation)
        return np.ascontiguousarray(upright[:, ::-1] if self.mirrored else upright)

    def upright(self, frame: av.VideoFrame, max_side: int) -> np.ndarray:
        """The whole frame as uint8 RGB [H,W,3], upright and in square pixels, its longer side at most max_side.

        For readers of the whole picture (OCR), where `VideoReader`'s centre crop would cut text off. Reduced
        before converted, like the encoder's input: swscale scales it down, then it is turned.
        """
        self._check_geometry(frame.width, frame.height)
        width = self._sample_aspect_width(frame)
        scale = min(1.0, max_side / max(width, frame.height))
        fit_w, fit_h = (max(2, int(side * scale) // 2 * 2) for side in (width, frame.height))
        return self._turn_upright(frame.reformat(width=fit_w, height=fit_h, format="rgb24").to_ndarray())

    def frames(self) -> Iterator[tuple[float, av.VideoFrame]]:
        """Every decoded frame with its time (s from the start); FFmpeg errors and frames past max_duration_s
        become BadVideo. Frames without a timestamp follow the previous one by one frame period.

        The first frame's display matrix sets `rotation` and `mirrored`; once exhausted, `duration_s` is the
        end of the last frame and `note` says whether the file ends before its header says.
        """
        start: float | None = None
        if self._stream.start_time is not None and self._stream.time_base is not None:
            start = float(self._stream.start_time * self._stream.time_base)
        last: float | None = None
        end = 0.0
        decoded = self._container.decode(self._stream)
        while True:
            try:
                frame = next(decoded)
            except (StopIteration, av.error.EOFError):
                break
            except av.error.FFmpegError as exc:
                ctx = self._stream.codec_context
                if exc.errno == errno.EINVAL and not (ctx.width and ctx.height):
                    raise BadVideo(  # the guard refused a frame before allocating it, and FFmpeg forgot its size
                        f"frames are larger than the limit of {self.max_pixels} pixels (FFmpeg refused to decode "
                        f"one after {last or 0.0:.1f} s)") from exc
                raise BadVideo(f"corrupt video stream after {last or 0.0:.1f} s: {exc.strerror}") from exc
            self._check_geometry(frame.width, frame.height)  # a header that lied: before any conversion
            length = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else self._period
            if frame.time is None:
                t = 0.0 if last is None else last + self._period
            else:
                if start is None:
                    start = frame.time
                t = max(0.0, frame.time - start)
                if last is not None and t < last:  # out of order or repeated timestamps: keep time monotonic
                    t = last
            if t > self.max_duration_s:
                raise BadVideo(f"video is longer than the limit of {self.max_duration_s:.0f} s")
            if last is None:
                self.rotation, self.mirrored = display_rotation(frame)
            last = t
            end = max(end, t + length)
            yield t, frame
        if last is None:
            return
        stated = self.stated_duration_s
        if stated is not None and end < stated - _TRUNCATION_TOLERANCE_S:
            early = f"the file ends early: frames end at {end:.1f} s of the {stated:.1f} s its header states"
            self.note = "; ".join(n for n in (self.stream_note, early) if n)
        self.duration_s = end

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoReader(VideoSource):
    """An open video with the encoder's sampling plan: its duration and a generator of encoder-sized frame
    batches. Use as a context manager."""

    def __init__(
        self, path: Path, image_size: int, sample_fps: float, max_frames: int, max_duration_s: float,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(path, max_duration_s, max_pixels)
        self.image_size = image_size
        self.max_frames = max_frames
        self.interval_s = sampling_interval(self.duration_s, sample_fps, max_frames)
        self.expected_frames = min(max_frames, max(1, math.ceil(self.duration_s / self.interval_s)))

    def _to_input(self, frame: av.VideoFrame) -> np.ndarray:
        """The frame upright, its shorter side scaled to image_size (square pixels), centre-cropped.

        Reduced before converted: a large frame is scaled down in FFmpeg's swscale first (bilinear, like
        `spec.preprocess.center_crop_square`, mean pixel difference about 1/255, at a tenth of its cost);
        a small one is converted at its own size, cropped to its centre square, and only that is scaled up.
        """
        self._check_geometry(frame.width, frame.height)
        size = self.image_size
        width = self._sample_aspect_width(frame)
        if min(width, frame.height) >= size:
            fit_w, fit_h = _fit(width, frame.height, size)
            rgb = frame.reformat(width=fit_w, height=fit_h, format="rgb24", interpolation="BILINEAR").to_ndarray()
            top, left = (fit_h - size) // 2, (fit_w - size) // 2
            square = rgb[top : top + size, left : left + size]
        else:
            rgb = frame.reformat(width=width, height=frame.height, format="rgb24").to_ndarray()
            side = min(width, frame.height)
            top, left = (frame.height - side) // 2, (width - side) // 2
            crop = np.ascontiguousarray(rgb[top : top + side, left : left + side])
            square = av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(
                width=size, height=size, interpolation="BILINEAR"
            ).to_ndarray()
        return self._turn_upright(square)

    def batches(self, size: int) -> Iterator[FrameBatch]:
        """Sampled frames in batches of `size` (the last may be smaller); BadVideo if none can be decoded.

        Decodes to the end even past max_frames, so `duration_s` is the end of the last frame.
        """
        times: list[float] = []
        frames: list[np.ndarray] = []
        taken, due = 0, 0.0
        for t, frame in self.frames():
            if taken == self.max_frames or t + _EPS_S < due:
                continue
            times.append(t)
            frames.append(self._to_input(frame))
            taken += 1
            due = (math.floor((t + _EPS_S) / self.interval_s) + 1) * self.interval_s
            if len(frames) == size:
                yield FrameBatch(np.asarray(times), np.stack(frames))
                times, frames = [], []
        if frames:
            yield FrameBatch(np.asarray(times), np.stack(frames))
        elif taken == 0:
            raise BadVideo("no decodable video frames")
