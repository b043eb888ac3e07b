"""Frames -> clips -> video: the one aggregation that ingest and training both use.

Parameter-free adaptive temporal clustering (after HCMI's aggregation of correlated frames): a cut
goes where the frames before and after a point stop resembling each other, measured against this
video's own typical change, so static videos get few clips, busy ones more, and long ones are split.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class SegmentationParams:
    window: int = 2  # sampling intervals of time averaged on each side of a candidate cut (robust to one noisy frame)
    sensitivity: float = 4.0  # cut when novelty > median + sensitivity * MAD of this video's novelties
    # and above this floor, so a static video is not cut on noise. 0.005: the default encoder maps every photo into a
    # narrow cone (cut novelty 0.005-0.03, within-scene <0.002); 0.02 missed half the real cuts (docs/evaluation.md).
    min_novelty: float = 0.005
    min_clip_s: float = 1.0
    max_clip_s: float = 30.0  # longer clips are split evenly


@dataclass(frozen=True)
class Clip:
    start_index: int  # first frame, inclusive
    end_index: int  # last frame, exclusive
    start_s: float
    end_s: float
    vector: np.ndarray  # unit-norm mean of its frames


@dataclass(frozen=True)
class VideoAggregate:
    clips: list[Clip]
    vector: np.ndarray  # unit-norm mean of the clip vectors: each scene counts once, however long

    def clip_ids(self) -> np.ndarray:
        """The clip of each frame [N] int64: the segmentation as a learned video head takes it."""
        return np.repeat(np.arange(len(self.clips), dtype=np.int64), [c.end_index - c.start_index for c in self.clips])

    def with_vectors(self, clip_vectors: np.ndarray, video_vector: np.ndarray) -> VideoAggregate:
        """The same clips and spans with other vectors (a learned video head's)."""
        if len(clip_vectors) != len(self.clips):
            raise ValueError(f"{len(clip_vectors)} clip vectors for {len(self.clips)} clips")
        return VideoAggregate([replace(c, vector=v) for c, v in zip(self.clips, clip_vectors)], video_vector)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def novelty(frames: np.ndarray, timestamps: np.ndarray, window_s: float) -> np.ndarray:
    """novelty[i]: 1 - cosine between the mean of the frames up to i and the mean of those after it, each side
    taking the frames within window_s seconds of the boundary (at least the one next to it).

    In seconds, not frames: where a variable-rate video is sampled sparser, a window still spans the same
    time, so a slow scene is not cut into pieces by windows that reach into its neighbours.
    """
    n = len(frames)
    cumulative = np.concatenate([np.zeros((1, frames.shape[1])), np.cumsum(frames, axis=0)])
    scores = np.zeros(max(n - 1, 0))
    for i in range(n - 1):
        boundary = timestamps[i + 1]
        lo = min(i, int(np.searchsorted(timestamps, boundary - window_s - 1e-6, side="left")))
        hi = max(i + 2, int(np.searchsorted(timestamps, boundary + window_s - 1e-6, side="left")))
        left = cumulative[i + 1] - cumulative[lo]
        right = cumulative[min(hi, n)] - cumulative[i + 1]
        scores[i] = 1.0 - float(_unit(left) @ _unit(right))
    return scores


def segment(frames: np.ndarray, timestamps: np.ndarray, duration_s: float, params: SegmentationParams) -> list[tuple[int, int]]:
    """Frame index ranges [start, end) of the clips."""
    n = len(frames)
    # the window in seconds: `window` sampling intervals (the typical gap between samples)
    step = float(np.median(np.diff(timestamps))) if n > 1 else 0.0
    scores = novelty(frames, timestamps, params.window * step)
    cuts: list[int] = []  # a cut at i starts a clip at frame i + 1
    if len(scores):
        median = float(np.median(scores))
        mad = float(np.median(np.abs(scores - median)))
        threshold = max(params.min_novelty, median + params.sensitivity * mad)
        for i in np.argsort(-scores):
            if scores[i] <= threshold:
                break
            start_time = timestamps[i + 1]
            chosen = [0.0, duration_s] + [timestamps[c + 1] for c in cuts]
            if all(abs(start_time - t) >= params.min_clip_s for t in chosen):
                cuts.append(int(i))
    bounds = [0] + sorted(c + 1 for c in cuts) + [n]
    ranges: list[tuple[int, int]] = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        span = _end_time(timestamps, end, duration_s) - timestamps[start]
        pieces = max(1, int(np.ceil(span / params.max_clip_s)))
        # even pieces of time (not of frame counts), each starting at the first frame at or after its start
        starts = timestamps[start] + span * np.arange(1, pieces) / pieces
        inner = start + np.searchsorted(timestamps[start:end], starts - 1e-6, side="left")
        edges = np.unique(np.concatenate([[start], inner, [end]]))
        ranges += [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return ranges


def _end_time(timestamps: np.ndarray, end: int, duration_s: float) -> float:
    """A clip ends where the next clip's first frame starts, or at the end of the video."""
    return float(timestamps[end]) if end < len(timestamps) else float(max(duration_s, timestamps[-1]))


def aggregate_video(
    frames: np.ndarray, timestamps: np.ndarray, duration_s: float, params: SegmentationParams | None = None
) -> VideoAggregate:
    """Cluster adjacent frame vectors [N,D] (sampled at `timestamps`) into clips, then one video vector."""
    if len(frames) == 0:
        raise ValueError("a video needs at least one frame vector")
    if len(frames) != len(timestamps):
        raise ValueError(f"{len(frames)} frame vectors but {len(timestamps)} timestamps")
    params = params or SegmentationParams()
    frames = _unit(np.asarray(frames, dtype=np.float64))
    timestamps = np.asarray(timestamps, dtype=np.float64)
    clips = [
        Clip(start, end, float(timestamps[start]), _end_time(timestamps, end, duration_s),
             _unit(frames[start:end].mean(0)).astype(np.float32))
        for start, end in segment(frames, timestamps, duration_s, params)
    ]
    video = _unit(np.mean([c.vector for c in clips], axis=0)).astype(np.float32)
    return VideoAggregate(clips, video)
