"""Confidence thresholds chosen for a precision (bench.confidence), on hand-made scores."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bench.confidence import ScoredHit, band_report, choose_thresholds, threshold_for


def test_the_threshold_is_the_lowest_score_whose_hits_above_reach_the_precision():
    hits = [ScoredHit(s, r) for s, r in [(0.9, True), (0.8, True), (0.75, True), (0.7, True), (0.65, True),
                                         (0.6, False), (0.5, True), (0.4, False), (0.3, False), (0.2, False)]]
    assert threshold_for(hits, 0.9) == 0.65  # 5 of the 6 at or above 0.6 are relevant: 0.83 < 0.9
    assert threshold_for(hits, 0.8) == 0.5  # 6 of 7
    assert threshold_for(hits, 1.0) == 0.65
    assert threshold_for(hits, 1.0, min_support=6) == 1.0


def test_no_hits_or_no_precision_leaves_the_band_empty():
    assert threshold_for([], 0.5) == 1.0
    assert threshold_for([ScoredHit(0.9, False)] * 10, 0.5) == 1.0


@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), max_size=60))
def test_medium_never_above_high_and_the_bands_hold_every_hit(rows):
    hits = [ScoredHit(s, r) for s, r in rows]
    chosen = choose_thresholds(hits)
    assert 0 <= chosen["MEDIUM"] <= chosen["HIGH"] <= 1
    report = band_report(hits, chosen)
    assert sum(band["hits"] for band in report.values()) == len(hits)
    high = [h for h in hits if h.score >= chosen["HIGH"]]
    if chosen["HIGH"] < 1.0:
        assert sum(h.relevant for h in high) / len(high) >= 0.9
