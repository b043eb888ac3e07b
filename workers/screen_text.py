"""The on-screen text stage of ingest: a bounded set of frames -> Triton OCR -> normalised, merged, timed text.

OCR costs 0.3-0.6 s a frame on 2 CPU cores, so few frames are read: the shared decoder (vidstrata.media.video: upright
by the display matrix, real time, bounded frame size) decodes the video as a stream, and this stage looks at
`sample_fps` frames a second through a colour histogram of a 64x64 thumbnail (16 bins per channel); a frame is
read when the picture changed since the last one read (half the L1 distance of the normalised histograms above
`change_threshold`: camera pans move it by ~0.03, cuts and new captions by 0.2 and more), the first frame
always, and never more than `max_per_minute` a minute (a change that comes too soon is read once the budget
allows).
Clips are cut at picture changes, so every clip gets at least one read frame unless the cap is hit. Of the lines
Triton reads, only those the deployment's `LineFilter` keeps become text (spec.screen_text: confident enough, and
not cut by the frame's sides). What a read frame shows is taken to stay until the next read frame; equal texts in
a row merge into one span (spec.screen_text). The OCR itself runs in Triton, never here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from vidstrata.inference.screen_text import TritonScreenText
from vidstrata.inference.speech import TimedText
from vidstrata.spec.contract import SCREEN_TEXT_MIN_SIDE
from vidstrata.spec.screen_text import LineFilter, Sighting, merge_sightings
from vidstrata.media.video import VideoSource

THUMBNAIL = 64
HISTOGRAM_BINS = 16


def colour_histogram(frame: av.VideoFrame) -> np.ndarray:
    """Normalised per-channel colour histogram [3 * HISTOGRAM_BINS] of a thumbnail: blind to pans, not to cuts."""
    pixels = frame.reformat(width=THUMBNAIL, height=THUMBNAIL, format="rgb24").to_ndarray()
    counts = [np.bincount(pixels[:, :, c].reshape(-1) // (256 // HISTOGRAM_BINS), minlength=HISTOGRAM_BINS)
              for c in range(3)]
    histogram = np.concatenate(counts).astype(np.float32)
    return histogram / histogram.sum()


def pick_frames(video: VideoSource, sample_fps: float, max_per_minute: int, change_threshold: float,
                max_side: int) -> Iterator[tuple[float, np.ndarray]]:
    """(presentation second, upright RGB frame with its longer side at most max_side) of each frame worth
    reading, decoded by the shared decoder (vidstrata.media.video), so a phone video's rotation is undone before OCR."""
    min_gap_s = 60.0 / max_per_minute
    next_sample, last_seen, last_pick, pending = 0.0, None, -np.inf, False
    for t, frame in video.frames():
        if t + 1e-6 < next_sample:
            continue
        next_sample = t + 1.0 / sample_fps
        seen = colour_histogram(frame)
        changed = last_seen is None or float(np.abs(seen - last_seen).sum()) / 2 > change_threshold
        pending = pending or changed
        if changed:
            last_seen = seen
        if pending and t - last_pick >= min_gap_s - 1e-6:
            rgb = video.upright(frame, max_side)
            if min(rgb.shape[:2]) >= SCREEN_TEXT_MIN_SIDE:  # a sliver (a 2048x4 banner) holds no legible text
                yield t, rgb
            last_pick, pending, last_seen = t, False, seen


def read_screen_text(path: Path, reader: TritonScreenText, sample_fps: float, max_per_minute: int,
                     change_threshold: float, max_side: int, max_duration_s: float, max_pixels: int,
                     line_filter: LineFilter, batch: int = 4) -> list[TimedText]:
    """The timed on-screen text of a video (the lines `line_filter` keeps); empty when it shows none (or has no
    frame worth reading)."""
    times: list[float] = []
    lines: list[tuple[str, ...]] = []
    pending: list[tuple[float, np.ndarray]] = []

    def flush() -> None:
        for (t, _), found in zip(pending, reader.read([f for _, f in pending]), strict=True):
            times.append(t)
            lines.append(line_filter.lines(found))
        pending.clear()

    with VideoSource(path, max_duration_s, max_pixels) as video:
        for t, frame in pick_frames(video, sample_fps, max_per_minute, change_threshold, max_side):
            pending.append((t, frame))
            if len(pending) == batch:
                flush()
        flush()
        end_s = video.duration_s  # the end of the last decoded frame: the last read frame's text lasts until then
    if not times:  # no frame worth reading (no picture change, or every frame a sliver)
        return []
    ends = times[1:] + [max(end_s, times[-1] + 1.0 / sample_fps)]
    sightings = [Sighting(t, until, found) for t, until, found in zip(times, ends, lines, strict=True)]
    return [TimedText(s.start_s, s.end_s, s.text) for s in merge_sightings(sightings)]
