"""Confidence thresholds: the moment scores at which a hit becomes MEDIUM and HIGH, chosen on the calibration half of
an eval's queries and reported on the held-out half (`vidstrata eval --calibrate`).

A hit is as sure as its first moment (SearchHit.confidence): its score is on fixed scales (gateway.moments), so one
threshold means the same in every response. A threshold is the lowest score at which the hits scoring at least that
much are relevant (the query's target, or another video it describes equally) at least a target share of the time:
precision, read off the calibration half. Where no score reaches a target the band stays empty (threshold 1.0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bench.datasets import Query
from bench.metrics import Response

# Precision each band promises: a HIGH hit is relevant 9 times in 10, a MEDIUM one 6 in 10.
PRECISION_TARGETS: dict[str, float] = {"MEDIUM": 0.6, "HIGH": 0.9}
MIN_SUPPORT = 5  # a threshold needs at least this many calibration hits at or above it


@dataclass(frozen=True)
class ScoredHit:
    """One hit of one query: its first moment's score and whether the query describes the video."""

    score: float
    relevant: bool


def scored_hits(queries: Iterable[Query], responses: Mapping[str, Response]) -> list[ScoredHit]:
    """Every hit of these queries' responses, by its first moment's score (hits without moments are skipped)."""
    found = []
    for query in queries:
        for hit in responses[query.text].hits:
            moments = getattr(hit, "moments", ())
            if moments:
                found.append(ScoredHit(float(moments[0].score), hit.video_id in query.relevant))
    return found


def threshold_for(hits: Sequence[ScoredHit], precision: float, min_support: int = MIN_SUPPORT) -> float:
    """The lowest score s such that the hits scoring >= s are relevant with at least `precision` and number at least
    `min_support`; 1.0 when no score qualifies."""
    if not hits:
        return 1.0
    order = sorted(hits, key=lambda h: -h.score)
    relevant = np.cumsum([h.relevant for h in order])
    best = 1.0
    for i, hit in enumerate(order):  # hits scoring >= order[i].score are order[: i + 1] (ties: the last of the run)
        if i + 1 < len(order) and order[i + 1].score == hit.score:
            continue
        if i + 1 >= min_support and relevant[i] / (i + 1) >= precision:
            best = hit.score
    return float(best)


def choose_thresholds(hits: Sequence[ScoredHit], targets: Mapping[str, float] = PRECISION_TARGETS) -> dict[str, float]:
    """MEDIUM and HIGH for these calibration hits (MEDIUM never above HIGH)."""
    high = threshold_for(hits, targets["HIGH"])
    return {"MEDIUM": min(threshold_for(hits, targets["MEDIUM"]), high), "HIGH": high}


def band_report(hits: Sequence[ScoredHit], thresholds: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Per band (LOW, MEDIUM, HIGH): how many hits fall in it and their precision (None when empty)."""
    bands: dict[str, list[bool]] = {"LOW": [], "MEDIUM": [], "HIGH": []}
    for hit in hits:
        band = "HIGH" if hit.score >= thresholds["HIGH"] else "MEDIUM" if hit.score >= thresholds["MEDIUM"] else "LOW"
        bands[band].append(hit.relevant)
    return {band: {"hits": len(found), "precision": (sum(found) / len(found)) if found else None}
            for band, found in bands.items()}
