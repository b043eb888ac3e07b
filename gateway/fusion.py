"""Late fusion of per-level scores into one score per candidate video.

Level scores are cosines on different scales (a video vector is a mean of clips, so its cosines are
compressed; clip cosines spread wider), so they are compared only after a per-query normalisation over
the candidates (WEIGHTED), or only through ranks (RRF, after M2HF-style late fusion). Pure numpy, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import numpy as np

# The levels scored for every candidate, in the order of the proto's LevelScores. The text levels (the best
# timed speech or on-screen text segment against the sentence) are NaN for a video that has none.
VISUAL_LEVELS = ("video_sentence", "clip_sentence", "clip_phrase")
TEXT_LEVELS = ("speech_sentence", "screen_text_sentence")
LEVELS = VISUAL_LEVELS + TEXT_LEVELS

Normalization = Literal["minmax", "zscore"]
TextRange = tuple[float, float]  # cosine [floor, ceiling] of one text level

# Each text level's cosine range, chosen on the calibration halves of `scenes` and `narrated` together
# (docs/scripts/joint_text_calibration.py, BENCHMARKS.md #14): on-screen text needs a higher floor than speech,
# since the words OCR reads in photos match unrelated captions at 0.2-0.35 (`scenes`), while a spoken paraphrase,
# misheard by Whisper, may score 0.3.
DEFAULT_TEXT_RANGES: dict[str, TextRange] = {"speech_sentence": (0.25, 0.5), "screen_text_sentence": (0.4, 0.5)}


class FusionMethod(StrEnum):
    """How level scores are combined."""

    WEIGHTED = "WEIGHTED"
    RRF = "RRF"


@dataclass(frozen=True)
class FusionConfig:
    """One query's fusion: the method, a weight per level in LEVELS, and the method's constants.

    The weights are checked once, here (ValueError), and completed with 0 for levels left out; `fuse` trusts them.
    """

    method: FusionMethod
    weights: Mapping[str, float]
    normalization: Normalization = "minmax"
    rrf_k: float = 60.0
    # Cosine range per text level: text-to-text cosines mean the same in every query (a paraphrase scores
    # about 0.3-0.7, an unrelated text under 0.15), so they are scaled by a fixed range instead of over the
    # candidates, where a single video with speech would always normalise to 1, however poor its match. Levels
    # left out keep DEFAULT_TEXT_RANGES.
    text_ranges: Mapping[str, TextRange] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", check_weights(self.weights))
        object.__setattr__(self, "text_ranges", check_text_ranges(self.text_ranges))


def check_text_ranges(ranges: Mapping[str, Sequence[float]]) -> dict[str, TextRange]:
    """A (floor, ceiling) for every text level (missing ones DEFAULT_TEXT_RANGES), or ValueError naming what is
    wrong: an unknown level, or a range that is not two cosines with floor < ceiling."""
    unknown = sorted(set(ranges) - set(TEXT_LEVELS))
    if unknown:
        raise ValueError(f"unknown text levels {unknown}; the text levels are {', '.join(TEXT_LEVELS)}")
    checked = dict(DEFAULT_TEXT_RANGES)
    for level, value in ranges.items():
        bounds = tuple(float(x) for x in value)
        if len(bounds) != 2 or not -1.0 <= bounds[0] < bounds[1] <= 1.0:
            raise ValueError(f"the cosine range of {level} must be [floor, ceiling] with -1 <= floor < ceiling <= 1, "
                             f"got {list(value)}")
        checked[level] = (bounds[0], bounds[1])
    return checked


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """A weight for every level (missing ones 0), or ValueError naming what is wrong."""
    unknown = sorted(set(weights) - set(LEVELS))
    if unknown:
        raise ValueError(f"unknown fusion levels {unknown}; the levels are {', '.join(LEVELS)}")
    for level, weight in weights.items():
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"fusion weight of {level} must be a finite number >= 0, got {weight}")
    if not any(weights.values()):
        raise ValueError("at least one fusion weight must be > 0")
    return {level: float(weights.get(level, 0.0)) for level in LEVELS}


def normalize(scores: np.ndarray, how: Normalization) -> np.ndarray:
    """Scores rescaled over this query's candidates, so levels on different scales can be summed.

    minmax maps to [0, 1] (all 1 when every candidate ties: a level that cannot tell them apart adds the
    same to each); zscore centres and scales by the standard deviation (all 0 on a tie). NaN (a level the
    candidate lacks) stays NaN and takes no part in the statistics.
    """
    scores = np.asarray(scores, dtype=np.float64)
    present = ~np.isnan(scores)
    if not present.any():
        return scores.copy()
    have = scores[present]
    if how == "minmax":
        low, span = have.min(), np.ptp(have)
        return (scores - low) / span if span > 0 else np.where(present, 1.0, np.nan)
    if how == "zscore":
        std = have.std()
        return (scores - have.mean()) / std if std > 0 else np.where(present, 0.0, np.nan)
    raise ValueError(f"unknown normalization {how!r}")


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks, best (largest) first; ties share the best rank of their group; NaN stays NaN."""
    scores = np.asarray(scores, dtype=np.float64)
    present = ~np.isnan(scores)
    ascending = np.sort(scores[present])
    ranked = np.full(scores.shape, np.nan)
    ranked[present] = ascending.size - np.searchsorted(ascending, scores[present], side="right") + 1
    return ranked


def text_evidence(scores: np.ndarray, text_range: TextRange) -> np.ndarray:
    """A text level's cosines scaled by its fixed range to [0, 1]; below the range's floor it is no evidence (NaN,
    as if the video had no such text: speech about something else neither helps nor sinks a video)."""
    low, high = text_range
    scores = np.asarray(scores, dtype=np.float64)
    scaled = np.clip((scores - low) / (high - low), 0.0, 1.0)
    return np.where(scores >= low, scaled, np.nan)


def contributions(levels: Mapping[str, np.ndarray], config: FusionConfig) -> dict[str, np.ndarray]:
    """Each weighted level's share of the fused score per candidate: weight * normalised score (WEIGHTED) or
    weight / (rrf_k + rank) (RRF); NaN where the candidate lacks the level, absent where every one does.
    Text levels are first scaled by `text_evidence` over their own range: WEIGHTED uses that scale, RRF ranks what
    is left."""
    weights = config.weights  # checked once, by FusionConfig
    sizes = {len(scores) for scores in levels.values()}
    if len(sizes) > 1:
        raise ValueError(f"every level needs one score per candidate, got sizes {sorted(sizes)}")
    shares = {}
    for level in LEVELS:
        if weights[level] == 0 or level not in levels:  # absent: no candidate has it
            continue
        scores = levels[level]
        if level in TEXT_LEVELS:
            scores = text_evidence(scores, config.text_ranges[level])
        if config.method == FusionMethod.RRF:
            shares[level] = weights[level] / (config.rrf_k + ranks(scores))
        elif level in TEXT_LEVELS:
            shares[level] = weights[level] * scores
        else:
            shares[level] = weights[level] * normalize(scores, config.normalization)
    return shares


def fuse(levels: Mapping[str, np.ndarray], config: FusionConfig) -> np.ndarray:
    """One fused score per candidate (larger is better) from each level's raw scores over the same candidates.

    WEIGHTED: sum of weight * normalised score, divided by the sum of the weights of the levels in `levels` (so
    minmax gives [0, 1]). RRF: sum of weight / (rrf_k + rank); ranks ignore score scales, so RRF needs no
    normalisation. A text level is evidence on a fixed scale (`text_evidence`): it only adds, and a video without speech or
    on-screen text (NaN) gets exactly what a video whose text does not match gets, nothing. So a missing level
    is never a penalty below the videos that have it but do not match; it only lets the ones that do match
    rise. Levels of zero weight may be absent from `levels`.
    """
    weights = config.weights
    shares = contributions(levels, config)
    size = len(next(iter(levels.values()))) if levels else 0
    fused = np.zeros(size, dtype=np.float64)
    for share in shares.values():
        fused += np.nan_to_num(share, nan=0.0)
    if config.method == FusionMethod.WEIGHTED:  # over the levels this query scored (e.g. none of text by image)
        scored = sum(weights[level] for level in LEVELS if level in levels)
        fused /= scored or 1.0
    return fused
