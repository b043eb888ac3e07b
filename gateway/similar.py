"""Video-to-video search (SearchRequest.like_video_id): a stored video as the query, and how much of a copy of it a
hit is. The gateway and bench.near_duplicates (which calibrates near_duplicate_threshold) both use these, so the
threshold is chosen on the very score the gateway compares with it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vidstrata.gateway.query import QueryVectors
from vidstrata.gateway.scoring import ScoredCandidates
from vidstrata.index.store import ClipRecord


def like_query(video: np.ndarray, clips: Sequence[ClipRecord], most: int) -> QueryVectors:
    """A stored video as query vectors: its video vector [D] for the sentence, and its clips (time order, not empty;
    at most `most`, evenly spaced, first and last kept) as the phrases, named "clip <index>"."""
    picked = np.unique(np.linspace(0, len(clips) - 1, min(len(clips), most)).round().astype(int))
    return QueryVectors(video, [f"clip {clips[i].clip_index}" for i in picked], np.stack([clips[i].vector for i in picked]))


def copy_score(scored: ScoredCandidates, i: int) -> float:
    """How much candidate i (scored against a `like_query`) is a copy of the query video, a cosine in [-1, 1]: the
    larger of the mean best cosine of the query's clips among its clips (the clip_phrase level) and of its clips
    among the query's. The second direction is what a trimmed copy has: it holds only some of the query's clips, but
    each of its own has its twin there."""
    first, count = int(scored.clip_starts[i]), int(scored.clip_counts[i])
    return max(float(scored.levels["clip_phrase"][i]), float(scored.clip_phrase[first:first + count].mean()))
