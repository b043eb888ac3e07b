"""Late fusion of per-level scores into one score per candidate video.

Level scores are cosines on different scales (a video vector is a mean of clips, so its cosines are
compressed; clip cosines spread wider), so they are compared only after a per-query normalisation over
the candidates (WEIGHTED), or only through ranks (RRF, after M2HF-style late fusion). Pure numpy, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import numpy as np

# The levels scored for every candidate, in the order of the proto's LevelScores.
LEVELS = ("video_sentence", "clip_sentence", "clip_phrase")

Normalization = Literal["minmax", "zscore"]


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", check_weights(self.weights))


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
    same to each); zscore centres and scales by the standard deviation (all 0 on a tie).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    if how == "minmax":
        low, span = scores.min(), np.ptp(scores)
        return (scores - low) / span if span > 0 else np.ones_like(scores)
    if how == "zscore":
        std = scores.std()
        return (scores - scores.mean()) / std if std > 0 else np.zeros_like(scores)
    raise ValueError(f"unknown normalization {how!r}")


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks, best (largest) first; ties share the best rank of their group."""
    scores = np.asarray(scores, dtype=np.float64)
    ascending = np.sort(scores)
    return (scores.size - np.searchsorted(ascending, scores, side="right") + 1).astype(np.float64)


def fuse(levels: Mapping[str, np.ndarray], config: FusionConfig) -> np.ndarray:
    """One fused score per candidate (larger is better) from each level's raw scores over the same candidates.

    WEIGHTED: sum of weight * normalised score, divided by the sum of weights (so minmax gives [0, 1]).
    RRF: sum of weight / (rrf_k + rank); ranks ignore score scales, so RRF needs no normalisation.
    """
    weights = config.weights
    sizes = {len(levels[level]) for level in LEVELS}
    if len(sizes) != 1:
        raise ValueError(f"every level needs one score per candidate, got sizes {sorted(sizes)}")
    fused = np.zeros(sizes.pop(), dtype=np.float64)
    for level in LEVELS:
        weight = weights[level]
        if weight == 0:
            continue
        if config.method == FusionMethod.RRF:
            fused += weight / (config.rrf_k + ranks(levels[level]))
        else:
            fused += weight * normalize(levels[level], config.normalization)
    if config.method == FusionMethod.WEIGHTED:
        fused /= sum(weights.values())
    return fused
