"""Late fusion of per-level scores into one score per candidate video.

Level scores are cosines on different scales (a video vector is a mean of clips, so its cosines are
compressed; clip cosines spread wider). WEIGHTED puts each level on [0, 1] by a fixed cosine range of its own
(`normalization="ranges"`, the default: a video's score is a function of its own cosines only, so it and its rank
against any other video are the same whether a filter leaves 1, 2 or 100 candidates); "minmax" and "zscore"
rescale over this query's candidates instead, so they depend on which others are there. RRF fuses ranks among the
candidates (M2HF-style late fusion), so its order depends on the candidate set by construction; what explains a
hit (`evidence`) never does. Pure numpy, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import numpy as np

from vidstrata.spec.channels import LEVELS, LEXICAL_LEVELS, TEXT_LEVELS, VISUAL_LEVELS

# The levels scored for every candidate (spec.channels), in the order of the proto's LevelScores. The text levels
# (the best timed speech or on-screen text segment against the sentence) are NaN for a video that has none, and so is
# the lexical level (the best segment's BM25 score, gateway.lexical) for a video none of whose texts holds a term.

Normalization = Literal["ranges", "minmax", "zscore"]
NORMALIZATIONS: tuple[Normalization, ...] = ("ranges", "minmax", "zscore")
LevelRange = tuple[float, float]  # cosine [floor, ceiling] of one level
TextRange = LevelRange

# Each text level's cosine range, chosen on the calibration halves of `scenes` and `narrated` together
# (docs/scripts/joint_text_calibration.py, BENCHMARKS.md #14): on-screen text needs a higher floor than speech,
# since the words OCR reads in photos match unrelated captions at 0.2-0.35 (`scenes`), while a spoken paraphrase,
# misheard by Whisper, may score 0.3.
DEFAULT_TEXT_RANGES: dict[str, LevelRange] = {"speech_sentence": (0.25, 0.5), "screen_text_sentence": (0.4, 0.5)}

# Each visual level's cosine range for the default encoders (the MiniLM x EfficientNet-Lite0 bridge), chosen on the
# calibration halves of `scenes` and `narrated` (`python -m bench.calibration visual`, docs/eval.md): the floor is the
# 1st percentile of the level's cosines, the width 20 times its typical spread over one query's candidates. That
# spread is 0.03-0.04, but the bridge moves every cosine of a query by about 0.1 from one query to the next (how close
# the sentence lies to the pictures' narrow cone), so a range that leaves most queries unclipped is this wide. Another
# encoder (a CLIP checkpoint) spreads its cosines differently and needs its own (VIDSTRATA_GATEWAY_VISUAL_LEVEL_RANGES).
DEFAULT_VISUAL_RANGES: dict[str, LevelRange] = {
    "video_sentence": (0.05, 0.7), "clip_sentence": (0.07, 0.95), "clip_phrase": (0.06, 0.87),
}
# The visual ranges of a search by image: the whole cosine range, i.e. its raw cosines. The ranges above are for a
# sentence against pictures; an image against frames scores 0.9 and more with the default encoders (every photo lies
# in the same narrow cone), above every ceiling, where all candidates would tie at 1. An image query has no text
# levels to be weighed against, so the raw cosines rank it, and the same whatever the other candidates.
IMAGE_QUERY_RANGES: dict[str, LevelRange] = dict.fromkeys(VISUAL_LEVELS, (0.0, 1.0))

# The lexical level's scale: a BM25 score s is no evidence below LEXICAL_FLOOR (one common word: its idf is under 1)
# and s / (s + LEXICAL_HALF) above it, saturating towards 1. BM25 sums idf-weighted, length-normalised tf over the
# query's terms, and a rare term's idf is ln(N / df): about 3 in a collection of 30 texts, 11-12 among a million
# segments. So one rare term found once scores 0.5 (30 texts) to 0.8 (a million), two about 0.9: a code or a name
# matched verbatim weighs like a close paraphrase (a text level's ceiling), the query's common words alone far less.
# A fixed function of the video's own score, like the text levels' ranges, so comparable across videos and requests.
LEXICAL_FLOOR = 1.0
LEXICAL_HALF = 3.0


class FusionMethod(StrEnum):
    """How level scores are combined."""

    WEIGHTED = "WEIGHTED"
    RRF = "RRF"


@dataclass(frozen=True)
class FusionConfig:
    """One query's fusion: the method, a weight per level in LEVELS, and the method's constants.

    The weights and ranges are checked once, here (ValueError), and completed (weight 0, default range) for levels
    left out; `fuse` trusts them.
    """

    method: FusionMethod
    weights: Mapping[str, float]
    normalization: Normalization = "ranges"
    rrf_k: float = 60.0
    # Cosine range per text level: text-to-text cosines mean the same in every query (a paraphrase scores
    # about 0.3-0.7, an unrelated text under 0.15), so they are scaled by a fixed range instead of over the
    # candidates, where a single video with speech would always normalise to 1, however poor its match. Levels
    # left out keep DEFAULT_TEXT_RANGES.
    text_ranges: Mapping[str, LevelRange] = field(default_factory=dict)
    # Cosine range per visual level, the scale of WEIGHTED under normalization "ranges" and of `evidence` under
    # every method; levels left out keep DEFAULT_VISUAL_RANGES.
    visual_ranges: Mapping[str, LevelRange] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.normalization!r}; use one of {', '.join(NORMALIZATIONS)}")
        object.__setattr__(self, "weights", check_weights(self.weights))
        object.__setattr__(self, "text_ranges", check_text_ranges(self.text_ranges))
        object.__setattr__(self, "visual_ranges", check_visual_ranges(self.visual_ranges))


def _check_ranges(ranges: Mapping[str, Sequence[float]], levels: Sequence[str], defaults: Mapping[str, LevelRange],
                  kind: str) -> dict[str, LevelRange]:
    unknown = sorted(set(ranges) - set(levels))
    if unknown:
        raise ValueError(f"unknown {kind} levels {unknown}; the {kind} levels are {', '.join(levels)}")
    checked = dict(defaults)
    for level, value in ranges.items():
        bounds = tuple(float(x) for x in value)
        if len(bounds) != 2 or not -1.0 <= bounds[0] < bounds[1] <= 1.0:
            raise ValueError(f"the cosine range of {level} must be [floor, ceiling] with -1 <= floor < ceiling <= 1, "
                             f"got {list(value)}")
        checked[level] = (bounds[0], bounds[1])
    return checked


def check_text_ranges(ranges: Mapping[str, Sequence[float]]) -> dict[str, LevelRange]:
    """A (floor, ceiling) for every text level (missing ones DEFAULT_TEXT_RANGES), or ValueError naming what is
    wrong: an unknown level, or a range that is not two cosines with floor < ceiling."""
    return _check_ranges(ranges, TEXT_LEVELS, DEFAULT_TEXT_RANGES, "text")


def check_visual_ranges(ranges: Mapping[str, Sequence[float]]) -> dict[str, LevelRange]:
    """A (floor, ceiling) for every visual level (missing ones DEFAULT_VISUAL_RANGES), or ValueError as
    `check_text_ranges`."""
    return _check_ranges(ranges, VISUAL_LEVELS, DEFAULT_VISUAL_RANGES, "visual")


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


def normalize(scores: np.ndarray, how: Literal["minmax", "zscore"]) -> np.ndarray:
    """Scores rescaled over this query's candidates (normalization "minmax" or "zscore"), so they depend on the
    candidate set: a lone candidate is 1 (minmax) or 0 (zscore) whatever its cosine.

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


def scaled(scores: np.ndarray, level_range: LevelRange) -> np.ndarray:
    """Cosines mapped by a fixed range to [0, 1]: the floor and below 0, the ceiling and above 1; NaN stays NaN.
    Each score on its own, so a video's value never depends on the other candidates."""
    low, high = level_range
    scores = np.asarray(scores, dtype=np.float64)
    return np.clip((scores - low) / (high - low), 0.0, 1.0)


def text_evidence(scores: np.ndarray, text_range: LevelRange) -> np.ndarray:
    """A text level's cosines scaled by its fixed range to [0, 1]; below the range's floor it is no evidence (NaN,
    as if the video had no such text: speech about something else neither helps nor sinks a video)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.where(scores >= text_range[0], scaled(scores, text_range), np.nan)


def lexical_evidence(scores: np.ndarray) -> np.ndarray:
    """BM25 scores on 0..1 (LEXICAL_FLOOR, LEXICAL_HALF above); NaN below the floor or where the video has none."""
    scores = np.asarray(scores, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(scores >= LEXICAL_FLOOR, scores / (scores + LEXICAL_HALF), np.nan)


def on_scale(level: str, scores: np.ndarray, config: FusionConfig) -> np.ndarray:
    """A level's raw scores on its fixed 0..1 scale: a visual level's range (`scaled`), a text level's range
    (`text_evidence`: NaN below its floor), the lexical scale (`lexical_evidence`)."""
    if level in TEXT_LEVELS:
        return text_evidence(scores, config.text_ranges[level])
    if level in LEXICAL_LEVELS:
        return lexical_evidence(scores)
    return scaled(scores, config.visual_ranges[level])


def _check_sizes(levels: Mapping[str, np.ndarray]) -> None:
    sizes = {len(scores) for scores in levels.values()}
    if len(sizes) > 1:
        raise ValueError(f"every level needs one score per candidate, got sizes {sorted(sizes)}")


def evidence(levels: Mapping[str, np.ndarray], config: FusionConfig) -> dict[str, np.ndarray]:
    """Each weighted level's share on the fixed scales, whatever the method and normalisation: weight * the level's
    score on its scale (`on_scale`: `scaled` for a visual level, `text_evidence` for a text level, NaN below its
    floor or where the video lacks it, `lexical_evidence` for the lexical level). A function of each video's own scores only, so what explains a hit (scoring.explain)
    is the same among any candidates. Levels of weight 0 or absent from `levels` are left out."""
    _check_sizes(levels)
    shares = {}
    for level in LEVELS:
        if config.weights[level] == 0 or level not in levels:
            continue
        shares[level] = config.weights[level] * on_scale(level, levels[level], config)
    return shares


def contributions(levels: Mapping[str, np.ndarray], config: FusionConfig,
                  level_evidence: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Each weighted level's share of the fused score per candidate: `evidence` (WEIGHTED under "ranges"),
    weight * the score normalised over the candidates (WEIGHTED under "minmax" or "zscore", visual levels) or
    weight / (rrf_k + rank) (RRF); NaN where the candidate lacks the level, absent where every one does.
    Text levels are always first scaled by `text_evidence` over their own range: WEIGHTED uses that scale, RRF ranks
    what is left. `level_evidence`: `evidence(levels, config)` when the caller has it already (it explains hits
    with it too), so it is computed once per query."""
    weights = config.weights  # checked once, by FusionConfig
    shares = dict(level_evidence) if level_evidence is not None else evidence(levels, config)
    for level in shares:
        if config.method == FusionMethod.RRF:  # the raw scores' ranks; a text or the lexical level's above its floor
            ranked = levels[level] if level in VISUAL_LEVELS else on_scale(level, levels[level], config)
            shares[level] = weights[level] / (config.rrf_k + ranks(ranked))
        elif level in VISUAL_LEVELS and config.normalization != "ranges":
            shares[level] = weights[level] * normalize(levels[level], config.normalization)
    return shares


def fuse(levels: Mapping[str, np.ndarray], config: FusionConfig,
         level_evidence: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """One fused score per candidate (larger is better) from each level's raw scores over the same candidates.

    WEIGHTED: sum of weight * scaled score, divided by the sum of the weights of the levels in `levels` (so
    "ranges" and "minmax" give [0, 1]); under "ranges" each video's score depends on its own cosines only. RRF: sum
    of weight / (rrf_k + rank); ranks ignore score scales, so RRF needs no normalisation, and depend on the other
    candidates. A text level is evidence on a fixed scale (`text_evidence`): it only adds, and a video without
    speech or on-screen text (NaN) gets exactly what a video whose text does not match gets, nothing. So a missing
    level is never a penalty below the videos that have it but do not match; it only lets the ones that do match
    rise. Levels of zero weight may be absent from `levels`. `level_evidence`: as in `contributions`.
    """
    weights = config.weights
    shares = contributions(levels, config, level_evidence)
    size = len(next(iter(levels.values()))) if levels else 0
    fused = np.zeros(size, dtype=np.float64)
    for share in shares.values():
        fused += np.nan_to_num(share, nan=0.0)
    if config.method == FusionMethod.WEIGHTED:  # over the levels this query scored (e.g. none of text by image)
        scored = sum(weights[level] for level in LEVELS if level in levels)
        fused /= scored or 1.0
    return fused
