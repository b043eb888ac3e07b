"""Moments: the spans of a video that matched a query, from every level, scored on fixed scales.

A moment is a run of clips (the visual levels) or one timed speech or on-screen text segment. Its score is on its
level's fixed cosine scale (fusion.scaled / fusion.text_evidence), so it is a function of the video's own vectors
only: comparable across videos, levels and requests, the same among any other candidates, and what the confidence
thresholds (settings.confidence_thresholds) are calibrated on.

- a clip's score: the weighted mean of its cosine with the sentence scaled by clip_sentence's range and its best
  cosine with any phrase scaled by clip_phrase's range (the weights of those two levels; equal when both are 0). A
  clip moment grows from its best clip over the neighbours that score at least RUN_FRACTION of it, so a scene cut
  into several clips is one moment, while the same scene shown again later is another.
- an order-aware query's clip moment spans the monotonic alignment of its phrases (scoring.ScoredCandidates
  .ordered_spans), from the first phrase's clip to the last, scored with the aligned clip_phrase.
- a text segment's score: its cosine scaled by its level's range; under the floor it is no moment.
- a lexical match (gateway.lexical): the segment whose words matched, its BM25 score on the lexical scale
  (fusion.lexical_evidence); for a quoted phrase, the segment that holds it verbatim.

Moments of one video never overlap: the best is taken first, and each next one only where no earlier one lies.
A text level of weight 0 gives no moments; the clips always do (a video is its clips). Pure numpy, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from vidstrata.gateway.fusion import FusionConfig, on_scale, scaled
from vidstrata.gateway.query import Confidence
from vidstrata.gateway.scoring import ScoredCandidates

RUN_FRACTION = 0.9  # a neighbouring clip joins a moment when it scores at least this share of the moment's best clip
_OVERLAP_S = 1e-3  # spans that share less than this are apart (clips that only touch)


@dataclass(frozen=True)
class Moment:
    """One span of a video that matched: score 0..1 on its level's fixed scale (module docstring)."""

    video_id: str
    start_s: float
    end_s: float
    score: float
    level: str  # "clip" (the visual clip levels), a text level of spec.channels.TEXT_LEVELS, or "lexical"
    snippet: str = ""  # the matched speech or on-screen text; empty for a clip
    confidence: Confidence = Confidence.LOW


def confidence_of(score: float, thresholds: Mapping[str, float]) -> Confidence:
    """LOW, MEDIUM or HIGH by the deployment's thresholds on a moment score (settings.confidence_thresholds)."""
    if score >= thresholds["HIGH"]:
        return Confidence.HIGH
    if score >= thresholds["MEDIUM"]:
        return Confidence.MEDIUM
    return Confidence.LOW


def clip_scores(scored: ScoredCandidates, config: FusionConfig) -> np.ndarray:
    """Every candidate clip's score [N] on the fixed scales (module docstring), in ScoredCandidates' clip layout."""
    weights = np.array([config.weights["clip_sentence"], config.weights["clip_phrase"]], dtype=np.float64)
    if not weights.any():
        weights = np.ones(2)
    parts = (scaled(scored.clip_sentence, config.visual_ranges["clip_sentence"]),
             scaled(scored.clip_phrase, config.visual_ranges["clip_phrase"]))
    return (weights[0] * parts[0] + weights[1] * parts[1]) / weights.sum()


def _overlaps(taken: Sequence[Moment], start: float, end: float) -> bool:
    return any(min(end, m.end_s) - max(start, m.start_s) > _OVERLAP_S for m in taken)


def _clip_runs(video_id: str, spans: np.ndarray, scores: np.ndarray) -> list[Moment]:
    """One video's clip moments, best first: each a run of neighbouring clips around a best clip (RUN_FRACTION)."""
    free = np.ones(len(scores), dtype=bool)
    runs = []
    for peak in np.argsort(-scores, kind="stable"):
        if not free[peak]:
            continue
        low = high = int(peak)
        bar = RUN_FRACTION * scores[peak]
        while low > 0 and free[low - 1] and scores[low - 1] >= bar:
            low -= 1
        while high < len(scores) - 1 and free[high + 1] and scores[high + 1] >= bar:
            high += 1
        free[low:high + 1] = False
        runs.append(Moment(video_id, float(spans[low, 0]), float(spans[high, 1]), float(scores[peak]), "clip"))
    return runs


def video_moments(scored: ScoredCandidates, index: int, config: FusionConfig, clip_score: np.ndarray,
                  limit: int, thresholds: Mapping[str, float]) -> list[Moment]:
    """Up to `limit` non-overlapping moments of candidate `index`, best first (ties: earlier first), each with its
    confidence. `clip_score` is `clip_scores(scored, config)`, computed once for all candidates."""
    video_id = scored.video_ids[index]
    first, count = int(scored.clip_starts[index]), int(scored.clip_counts[index])
    spans, scores = scored.clip_spans[first:first + count], clip_score[first:first + count]
    found: list[Moment] = []
    if scored.ordered_spans is not None:  # its best sentence clip within the span, and the aligned phrases
        low, high = (int(i) - first for i in scored.ordered_spans[index])
        aligned = replace(scored, clip_phrase=scored.levels["clip_phrase"][index:index + 1],
                          clip_sentence=scored.clip_sentence[first + low:first + high + 1].max(keepdims=True))
        found.append(Moment(video_id, float(spans[low, 0]), float(spans[high, 1]),
                            float(clip_scores(aligned, config)[0]), "clip"))
    found += _clip_runs(video_id, spans, scores)
    for level, per_video in scored.segments.items():
        if not config.weights[level]:
            continue
        for segment in per_video[index]:
            score = float(on_scale(level, np.array([segment.score]), config)[0])
            if not np.isnan(score):
                found.append(Moment(video_id, segment.start_s, segment.end_s, score, level, segment.text))
    ordered = scored.ordered_spans is not None and bool(found) and found[0].level == "clip"
    span = found.pop(0) if ordered else None  # an order-aware query's clip moment: taken before any single clip
    found.sort(key=lambda m: (-m.score, m.start_s))
    if span is not None:
        found.insert(next((i for i, m in enumerate(found) if m.level == "clip" or m.score <= span.score), len(found)),
                     span)
    taken: list[Moment] = []
    for moment in found:
        if len(taken) == limit:
            break
        if not _overlaps(taken, moment.start_s, moment.end_s):
            taken.append(replace(moment, confidence=confidence_of(moment.score, thresholds)))
    return taken
