"""Exact multi-level scores of candidate videos from their stored vectors (the rescoring stage).

ANN scores are approximate and exist only for the lists a video was found in, so every candidate is
scored again, exactly and at every level, from its video vector and all its clip vectors:

- video_sentence: cosine(video vector, sentence);
- clip_sentence:  max over the video's clips of cosine(clip, sentence);
- clip_phrase:    for each phrase the max over clips of cosine(clip, phrase), then the mean over phrases
                  (late interaction: each event of the query may be found in a different clip);
- best clip:      the clip with the highest (cosine(clip, sentence) + max over phrases cosine(clip, phrase)) / 2.
                  A clip usually shows one event, so it earns phrase evidence from the one phrase it matches
                  best; the sentence term breaks ties toward the clip closest to the whole query.

Cosines are taken on re-normalised stored vectors, so the scores are the same under COSINE and IP metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gateway.fusion import LEVELS
from gateway.query import QueryVectors
from index.store import ClipRecord


@dataclass(frozen=True)
class BestClip:
    """The span of a video that matched best, and its clip score."""

    start_s: float
    end_s: float
    score: float


@dataclass(frozen=True)
class ScoredCandidates:
    """Per-level raw scores of the candidates that still exist, aligned with video_ids."""

    video_ids: list[str]
    levels: dict[str, np.ndarray]  # level name (fusion.LEVELS) -> one score per video
    best_clips: list[BestClip]


def _cosines(stored: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Cosine of every stored row [N,D] with every query row [Q,D], as [N,Q].

    Rows are normalised after the product (N*Q divisions instead of N*D), and the queries go in as a
    contiguous [D,Q] matrix: BLAS takes a transposed view on a slow path (2 ms instead of 0.02 ms here).
    """
    unit_queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    products = stored @ np.ascontiguousarray(unit_queries.T)
    return products / np.maximum(np.sqrt(np.einsum("ij,ij->i", stored, stored)), 1e-12)[:, None]


def score_candidates(
    query: QueryVectors,
    video_ids: Sequence[str],
    videos: Mapping[str, np.ndarray],
    clips: Mapping[str, Sequence[ClipRecord]],
) -> ScoredCandidates:
    """Score each candidate that has a video vector [D] and trusted clips; others (deleted since the ANN search,
    or found only through a clip its video row does not trust) are dropped."""
    kept = [v for v in video_ids if v in videos and clips.get(v)]
    if not kept:
        return ScoredCandidates([], {level: np.zeros(0) for level in LEVELS}, [])
    all_clips = [clip for v in kept for clip in clips[v]]
    counts = np.array([len(clips[v]) for v in kept])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    # One matrix product for everything: rows are the videos then all their clips, columns the sentence then
    # each phrase. Small products like this are memory-bound; one call beats several.
    stored = np.stack([videos[v] for v in kept] + [clip.vector for clip in all_clips])
    cosines = _cosines(stored, np.vstack([query.sentence[None, :], query.phrase_vectors]).astype(np.float32))  # (V+C, 1+P)
    to_sentence, to_phrases = cosines[len(kept):, 0], cosines[len(kept):, 1:]
    clip_score = (to_sentence + to_phrases.max(axis=1)) / 2

    # Per-video maxima over each video's run of clips; reduceat needs non-empty runs, which `kept` ensures.
    best_per_video = np.maximum.reduceat(clip_score, starts)
    owner = np.repeat(np.arange(len(kept)), counts)
    at_max = np.flatnonzero(clip_score == best_per_video[owner])
    _, first = np.unique(owner[at_max], return_index=True)
    best = [all_clips[i] for i in at_max[first]]

    levels = {
        "video_sentence": cosines[: len(kept), 0].astype(np.float64),
        "clip_sentence": np.maximum.reduceat(to_sentence, starts).astype(np.float64),
        "clip_phrase": np.maximum.reduceat(to_phrases, starts, axis=0).mean(axis=1).astype(np.float64),
    }
    best_clips = [BestClip(c.start_s, c.end_s, float(s)) for c, s in zip(best, best_per_video.tolist(), strict=True)]
    return ScoredCandidates(kept, levels, best_clips)
