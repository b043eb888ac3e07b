"""Fusion of level scores: fixed ranges and normalisation, ranks, weighted sum and RRF, why a hit matched, and that
none of it depends on which other candidates a filter leaves (pure numpy, no servers)."""

from __future__ import annotations

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from vidstrata.gateway.fusion import (
    DEFAULT_TEXT_RANGES, DEFAULT_VISUAL_RANGES, FusionConfig, FusionMethod, check_text_ranges, check_visual_ranges,
    check_weights, contributions, evidence, fuse, normalize, ranks, scaled,
)
from vidstrata.gateway.moments import clip_scores, video_moments
from vidstrata.gateway.scoring import BestClip, ScoredCandidates
from vidstrata.index.segments import SegmentHit, SegmentRecord
from vidstrata.spec.channels import LEVELS, LEXICAL_LEVELS, TEXT_LEVELS, VISUAL_LEVELS

THRESHOLDS = {"MEDIUM": 0.45, "HIGH": 0.7}


def _candidates(ids, levels, best_clips, segments) -> ScoredCandidates:
    """Candidates of one clip each (the best clip, scoring the video's clip levels) and at most one text segment per
    text level (scoring the video's text level), as score_candidates lays them out."""
    n = len(ids)
    hits = {level: [[SegmentHit(s.video_id, s.kind, s.index, s.start_s, s.end_s, s.text, float(levels[level][i]))]
                    if s is not None and not np.isnan(levels[level][i]) else [] for i, s in enumerate(found)]
            for level, found in segments.items()}
    return ScoredCandidates(
        list(ids), levels, best_clips, hits,
        clip_spans=np.array([(c.start_s, c.end_s) for c in best_clips]).reshape(n, 2),
        clip_sentence=np.asarray(levels["clip_sentence"], dtype=np.float64),
        clip_phrase=np.asarray(levels["clip_phrase"], dtype=np.float64),
        clip_starts=np.arange(n), clip_counts=np.ones(n, dtype=np.int64))


def _explain(scored: ScoredCandidates, config: FusionConfig) -> list:
    """Why each candidate matched: its first moment, as the service answers."""
    clip_score = clip_scores(scored, config)
    return [video_moments(scored, i, config, clip_score, 3, THRESHOLDS)[0] for i in range(len(scored.video_ids))]


def test_minmax_maps_to_unit_range_and_ties_to_one():
    np.testing.assert_allclose(normalize(np.array([0.2, 0.4, 0.3]), "minmax"), [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(normalize(np.array([0.7, 0.7]), "minmax"), [1.0, 1.0])
    assert normalize(np.array([]), "minmax").size == 0


def test_zscore_centres_and_scales_and_ties_to_zero():
    z = normalize(np.array([1.0, 2.0, 3.0]), "zscore")
    assert z.mean() == pytest.approx(0.0) and z.std() == pytest.approx(1.0)
    np.testing.assert_array_equal(normalize(np.array([5.0, 5.0, 5.0]), "zscore"), [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="normalization"):
        normalize(np.array([1.0]), "rank")  # type: ignore[arg-type]


def test_ranks_are_one_based_best_first_and_ties_share_the_best_rank():
    np.testing.assert_array_equal(ranks(np.array([0.1, 0.9, 0.5, 0.9])), [4, 1, 3, 1])


def _levels(video_sentence, clip_sentence, clip_phrase):
    return {"video_sentence": np.array(video_sentence), "clip_sentence": np.array(clip_sentence),
            "clip_phrase": np.array(clip_phrase)}


RANGES = {"video_sentence": (0.2, 0.4), "clip_sentence": (0.1, 0.5), "clip_phrase": (0.0, 0.8)}


def test_weighted_fusion_scales_each_level_by_its_own_fixed_range():
    levels = _levels([0.30, 0.35, 0.1], [0.9, 0.3, 0.1], [0.4, 0.2, -0.1])
    config = FusionConfig(FusionMethod.WEIGHTED, {"video_sentence": 1, "clip_sentence": 1, "clip_phrase": 2},
                          visual_ranges=RANGES)
    # video 0.3 in [0.2, 0.4]: 0.5; clip-sentence 0.9 above its ceiling: 1; clip-phrase 0.4 in [0, 0.8]: 0.5
    np.testing.assert_allclose(fuse(levels, config), [(0.5 + 1 + 2 * 0.5) / 4, (0.75 + 0.5 + 2 * 0.25) / 4, 0.0])
    np.testing.assert_allclose(scaled(np.array([0.0, 0.3, 0.6, np.nan]), (0.1, 0.5)), [0.0, 0.5, 1.0, np.nan])


def test_weighted_fusion_of_one_candidate_is_its_own_score_not_one():
    """A lone candidate is scored on the same scale as among others: min-max over one video made it 1 (or 0)."""
    config = FusionConfig(FusionMethod.WEIGHTED, {level: 1.0 for level in VISUAL_LEVELS}, visual_ranges=RANGES)
    alone = fuse(_levels([0.3], [0.3], [0.2]), config)
    np.testing.assert_allclose(alone, [(0.5 + 0.5 + 0.25) / 3])
    among = fuse(_levels([0.3, 0.1, 0.4], [0.3, 0.9, 0.5], [0.2, 0.0, 0.8]), config)
    assert among[0] == alone[0]


def test_minmax_and_zscore_stay_available_and_depend_on_the_candidates():
    # video_sentence spreads only 0.01 but is normalised to the same [0, 1] as the wide clip levels.
    levels = _levels([0.30, 0.31], [0.9, 0.1], [0.9, 0.1])
    config = FusionConfig(FusionMethod.WEIGHTED, {"video_sentence": 1.0, "clip_sentence": 0.0, "clip_phrase": 0.0},
                          normalization="minmax")
    np.testing.assert_allclose(fuse(levels, config), [0.0, 1.0])
    balanced = FusionConfig(FusionMethod.WEIGHTED, {"video_sentence": 1, "clip_sentence": 1, "clip_phrase": 2},
                            normalization="minmax")
    np.testing.assert_allclose(fuse(levels, balanced), [0.75, 0.25])
    np.testing.assert_allclose(fuse(_levels([0.2], [0.5], [0.4]), balanced), [1.0])  # one candidate: always 1
    assert fuse(_levels([0.2], [0.5], [0.4]), FusionConfig(FusionMethod.WEIGHTED, {"clip_phrase": 1.0},
                                                          normalization="zscore"))[0] == 0.0
    with pytest.raises(ValueError, match="unknown normalization 'rank'"):
        FusionConfig(FusionMethod.WEIGHTED, {"clip_phrase": 1.0}, normalization="rank")  # type: ignore[arg-type]


def test_the_default_normalisation_is_the_fixed_ranges():
    config = FusionConfig(FusionMethod.WEIGHTED, {"clip_phrase": 1.0})
    assert config.normalization == "ranges" and config.visual_ranges == DEFAULT_VISUAL_RANGES


def test_rrf_sums_weight_over_k_plus_rank():
    levels = _levels([0.9, 0.1, 0.5], [0.1, 0.9, 0.5], [0.2, 0.3, 0.1])
    config = FusionConfig(FusionMethod.RRF, {"video_sentence": 1, "clip_sentence": 1, "clip_phrase": 0.5}, rrf_k=10)
    expected = [1 / 11 + 1 / 13 + 0.5 / 12, 1 / 13 + 1 / 11 + 0.5 / 11, 1 / 12 + 1 / 12 + 0.5 / 13]
    np.testing.assert_allclose(fuse(levels, config), expected)


def test_rrf_ignores_score_scale():
    config = FusionConfig(FusionMethod.RRF, {level: 1.0 for level in LEVELS})
    small = fuse(_levels([0.1, 0.2], [0.1, 0.2], [0.1, 0.2]), config)
    large = fuse(_levels([10, 200], [1, 2], [0.001, 0.002]), config)
    np.testing.assert_allclose(small, large)


def test_fusion_of_no_candidates_is_empty():
    assert fuse(_levels([], [], []), FusionConfig(FusionMethod.WEIGHTED, {"clip_phrase": 1.0})).size == 0


def test_levels_must_have_one_score_per_candidate():
    with pytest.raises(ValueError, match="one score per candidate"):
        fuse(_levels([0.1, 0.2], [0.1], [0.1, 0.2]), FusionConfig(FusionMethod.RRF, {"clip_phrase": 1.0}))


@pytest.mark.parametrize("weights, message", [
    ({"frame_word": 1.0}, "unknown fusion levels"),
    ({"clip_phrase": -1.0}, ">= 0"),
    ({"clip_phrase": float("nan")}, "finite"),
    ({"clip_phrase": 0.0}, "at least one"),
])
def test_bad_weights_are_rejected_with_a_reason(weights, message):
    with pytest.raises(ValueError, match=message):
        check_weights(weights)


def test_missing_levels_weigh_zero():
    assert check_weights({"clip_phrase": 2}) == {"video_sentence": 0.0, "clip_sentence": 0.0, "clip_phrase": 2.0,
                                                 "speech_sentence": 0.0, "screen_text_sentence": 0.0, "lexical": 0.0}


def test_a_level_a_video_lacks_is_not_a_zero():
    """Speech is evidence on a fixed scale that only adds: a silent video (NaN) scores what a video whose speech
    does not match scores (below the floor of its text range), so it keeps the rank its visual levels earn."""
    levels = _levels([0.30, 0.31, 0.32, 0.32], [0.5, 0.6, 0.7, 0.7], [0.5, 0.6, 0.7, 0.7])
    levels["speech_sentence"] = np.array([0.65, 0.40, np.nan, 0.05])  # 3: speech about something else
    weights = {"video_sentence": 1.0, "clip_sentence": 1.0, "clip_phrase": 1.0, "speech_sentence": 3.0}
    weighted = fuse(levels, FusionConfig(FusionMethod.WEIGHTED, weights, text_ranges={"speech_sentence": (0.15, 0.65)},
                                         visual_ranges=RANGES))
    visual = [0.5 + 1 + 0.625, 0.55 + 1 + 0.75, 0.6 + 1 + 0.875, 0.6 + 1 + 0.875]
    np.testing.assert_allclose(weighted, [(visual[0] + 3) / 6, (visual[1] + 1.5) / 6, visual[2] / 6, visual[3] / 6])
    assert weighted[2] == weighted[3]  # silent == speech that does not match: not sunk
    rrf = fuse(levels, FusionConfig(FusionMethod.RRF, weights, rrf_k=1.0))
    assert rrf[2] == rrf[3] and rrf[0] > rrf[2]
    np.testing.assert_allclose(rrf[0], 1 / 5 + 1 / 5 + 1 / 5 + 3 / 2)  # best speech: rank 1 of the two with any


def test_one_video_with_a_poor_text_match_is_not_lifted_to_the_top():
    """Scaled over the candidates, the only video with on-screen text would normalise to 1 whatever it says."""
    levels = _levels([0.3, 0.3], [0.3, 0.35], [0.3, 0.35])
    levels["screen_text_sentence"] = np.array([0.16, np.nan])
    fused = fuse(levels, FusionConfig(FusionMethod.WEIGHTED, {"clip_sentence": 1.0, "screen_text_sentence": 1.0}))
    assert fused[1] > fused[0]


def test_why_names_the_level_that_gives_a_hit_most_of_its_score():
    """Three videos with the same pictures: the one whose speech matches is explained by its speech segment."""
    said = SegmentRecord("b", "speech", 0, 4.0, 6.5, "fresh bread comes out of the oven")
    scored = _candidates(
        ["a", "b", "c"],
        {"video_sentence": np.array([0.3, 0.3, 0.3]), "clip_sentence": np.array([0.5, 0.5, 0.5]),
         "clip_phrase": np.array([0.5, 0.5, 0.5]), "speech_sentence": np.array([0.1, 0.5, np.nan])},
        [BestClip(0.0, 4.0, 0.5)] * 3,
        {"speech_sentence": [SegmentRecord("a", "speech", 0, 1.0, 2.0, "a train"), said, None]},
    )
    weights = {"video_sentence": 0.3, "clip_sentence": 0.4, "clip_phrase": 0.3, "speech_sentence": 1.0}
    matches = _explain(scored, FusionConfig(FusionMethod.WEIGHTED, weights, visual_ranges=RANGES))
    assert [m.level for m in matches] == ["clip", "speech_sentence", "clip"]  # clip share 0.4 + 0.3 * 0.625 < 1
    assert (matches[1].start_s, matches[1].end_s, matches[1].snippet) == (4.0, 6.5, said.text)


def test_each_text_level_is_scaled_by_its_own_range():
    """A cosine of 0.3 is speech evidence under speech's range and no evidence under a higher on-screen text floor
    (a photo's printed words matching an unrelated caption), for both methods."""
    levels = _levels([0.3, 0.3, 0.3], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    levels["speech_sentence"] = np.array([0.3, np.nan, np.nan])
    levels["screen_text_sentence"] = np.array([np.nan, 0.3, 0.5])
    ranges = {"speech_sentence": (0.2, 0.5), "screen_text_sentence": (0.35, 0.6)}
    weights = {"clip_sentence": 1.0, "speech_sentence": 2.0, "screen_text_sentence": 2.0}
    shares = contributions(levels, FusionConfig(FusionMethod.WEIGHTED, weights, text_ranges=ranges))
    np.testing.assert_allclose(shares["speech_sentence"], [2 * 0.1 / 0.3, np.nan, np.nan])
    np.testing.assert_allclose(shares["screen_text_sentence"], [np.nan, np.nan, 2 * 0.15 / 0.25])
    shared = contributions(levels, FusionConfig(FusionMethod.WEIGHTED, weights,
                                                text_ranges=dict.fromkeys(TEXT_LEVELS, (0.2, 0.5))))
    assert shared["screen_text_sentence"][1] > 0, "under speech's range the same 0.3 would count"
    rrf = contributions(levels, FusionConfig(FusionMethod.RRF, weights, rrf_k=1.0, text_ranges=ranges))
    np.testing.assert_allclose(rrf["screen_text_sentence"], [np.nan, np.nan, 2 / 2])  # the only one left: rank 1


def test_visual_ranges_default_per_level_and_reject_unknown_levels_and_empty_ranges():
    assert check_visual_ranges({"clip_phrase": [0.0, 0.6]}) == DEFAULT_VISUAL_RANGES | {"clip_phrase": (0.0, 0.6)}
    with pytest.raises(ValueError, match=r"unknown visual levels \['speech_sentence'\]"):
        check_visual_ranges({"speech_sentence": (0.2, 0.5)})
    for bad in ((0.5, 0.5), (0.6, 0.4), (0.2,)):
        with pytest.raises(ValueError, match="clip_phrase must be \\[floor, ceiling\\]"):
            FusionConfig(FusionMethod.WEIGHTED, {"clip_phrase": 1.0}, visual_ranges={"clip_phrase": bad})


def test_text_ranges_default_per_level_and_reject_unknown_levels_and_empty_ranges():
    assert FusionConfig(FusionMethod.WEIGHTED, {"clip_phrase": 1.0}).text_ranges == DEFAULT_TEXT_RANGES
    partial = check_text_ranges({"screen_text_sentence": [0.35, 0.6]})
    assert partial == {"speech_sentence": DEFAULT_TEXT_RANGES["speech_sentence"], "screen_text_sentence": (0.35, 0.6)}
    with pytest.raises(ValueError, match=r"unknown text levels \['speech'\]"):
        check_text_ranges({"speech": (0.2, 0.5)})
    with pytest.raises(ValueError, match="unknown text levels"):
        FusionConfig(FusionMethod.WEIGHTED, {"clip_phrase": 1.0}, text_ranges={"clip_phrase": (0.2, 0.5)})
    for bad in ((0.5, 0.5), (0.6, 0.4), (-2.0, 0.5), (0.2,), (0.1, 0.2, 0.3)):
        with pytest.raises(ValueError, match="screen_text_sentence must be \\[floor, ceiling\\]"):
            check_text_ranges({"screen_text_sentence": bad})


def test_why_follows_each_text_level_s_own_floor():
    """The same cosine (0.35) explains a hit as speech above speech's floor, and not as on-screen text under its."""

    def why(level: str) -> str:
        levels = {"video_sentence": np.array([0.3, 0.3]), "clip_sentence": np.array([0.2, 0.2]),
                  "clip_phrase": np.array([0.2, 0.2]), level: np.array([0.35, np.nan])}
        segment = SegmentRecord("a", "speech" if level == "speech_sentence" else "screen_text", 0, 1.0, 2.0, "words")
        scored = _candidates(["a", "b"], levels, [BestClip(0.0, 4.0, 0.5)] * 2, {level: [segment, None]})
        ranges = {"speech_sentence": (0.25, 0.5), "screen_text_sentence": (0.4, 0.5)}
        config = FusionConfig(FusionMethod.WEIGHTED, {"clip_sentence": 1.0, level: 2.0}, text_ranges=ranges,
                              visual_ranges=RANGES)
        return _explain(scored, config)[0].level  # speech (0.35 - 0.25) / 0.25 = 0.4 against the clip's 0.25

    assert why("speech_sentence") == "speech_sentence"
    assert why("screen_text_sentence") == "clip"


# -- independence of the candidate set (issue 20) ------------------------------------------------------------


def _cafe_tour(with_others: bool) -> ScoredCandidates:
    """"when does the place open" as the README's sample index scores it (cafe_tour: its caption "open daily from 7
    am" at 0-5 s, coffee pictures 4-12 s); with the other sample videos or alone (a filter on its video_id)."""
    rows = {"cafe_tour": [0.125, 0.142, 0.125, 0.274, 0.625, np.nan],
            "carphone": [0.131, 0.131, 0.112, np.nan, np.nan, np.nan],
            "bikes": [0.118, 0.118, 0.101, np.nan, 0.086, np.nan],
            "bigbuckbunny": [0.104, 0.104, 0.095, np.nan, np.nan, np.nan]}
    ids = list(rows) if with_others else ["cafe_tour"]
    segments = {"speech_sentence": SegmentRecord("cafe_tour", "speech", 1, 4.8, 8.3, "the barista pours steamed milk"),
                "screen_text_sentence": SegmentRecord("cafe_tour", "screen_text", 0, 0.0, 5.0, "open daily from 7 am")}
    return _candidates(
        ids, {level: np.array([rows[v][k] for v in ids]) for k, level in enumerate(LEVELS)},
        [BestClip(4.0, 12.0, 0.15) if v == "cafe_tour" else BestClip(0.0, 4.0, 0.12) for v in ids],
        {level: [segments[level] if v == "cafe_tour" else None for v in ids] for level in TEXT_LEVELS})


@pytest.mark.parametrize("method", list(FusionMethod))
def test_when_does_the_place_open_is_the_on_screen_text_with_or_without_a_filter(method):
    config = FusionConfig(method, {"video_sentence": 0.3, "clip_sentence": 0.4, "clip_phrase": 0.3,
                                   "speech_sentence": 2.0, "screen_text_sentence": 2.0})
    among, alone = _explain(_cafe_tour(True), config)[0], _explain(_cafe_tour(False), config)[0]
    assert (among.level, among.start_s, among.end_s, among.snippet) == ("screen_text_sentence", 0.0, 5.0,
                                                                         "open daily from 7 am")
    assert alone == among
    if method == FusionMethod.WEIGHTED:
        assert fuse(_cafe_tour(False).levels, config)[0] == fuse(_cafe_tour(True).levels, config)[0]


_cosine = st.floats(-0.2, 0.95, allow_nan=False)
_text = st.one_of(st.just(float("nan")), _cosine)
_bm25 = st.one_of(st.just(float("nan")), st.floats(0.0, 40.0, allow_nan=False))
_row = st.tuples(_cosine, _cosine, _cosine, _text, _text, _bm25)
_weight = st.sampled_from([0.0, 0.1, 0.3, 0.5, 1.0, 2.0, 4.0])


@st.composite
def _pools(draw):
    """Candidates (2-12 rows of level scores, ties likely), fusion weights, and a subset of the candidates (what a
    filter leaves) that keeps at least the first one."""
    rows = draw(st.lists(st.one_of(_row, st.just((0.3, 0.4, 0.35, 0.3, 0.45, 4.0))), min_size=2, max_size=12))
    weights = dict(zip(LEVELS, draw(st.tuples(*[_weight] * len(LEVELS))), strict=True))
    if not any(weights.values()):
        weights["clip_phrase"] = 1.0
    kept = [0] + [i for i in range(1, len(rows)) if draw(st.booleans())]
    return rows, weights, kept


def _scored(rows, ids) -> ScoredCandidates:
    return _candidates(
        [f"v{i}" for i in ids], {level: np.array([rows[i][k] for i in ids]) for k, level in enumerate(LEVELS)},
        [BestClip(float(i), i + 1.0, 0.5) for i in ids],
        {level: [SegmentRecord(f"v{i}", level, 0, 10.0 + i + k, 11.0 + i + k, f"{level} {i}") for i in ids]
         for k, level in enumerate(TEXT_LEVELS + LEXICAL_LEVELS)})


@settings(max_examples=300, deadline=None)
@given(_pools())
def test_a_videos_score_order_and_why_do_not_change_when_other_candidates_come_or_go(pool):
    """WEIGHTED (default normalisation): every kept video keeps its fused score to the bit, so any two keep their
    order, and keeps its why, whichever other candidates a filter adds or removes."""
    rows, weights, kept = pool
    everyone = list(range(len(rows)))
    config = FusionConfig(FusionMethod.WEIGHTED, weights)
    full, part = fuse(_scored(rows, everyone).levels, config), fuse(_scored(rows, kept).levels, config)
    np.testing.assert_array_equal(part, full[kept])
    for a, i in enumerate(kept):
        for b, j in enumerate(kept):
            assert (part[a] > part[b]) == (full[i] > full[j])
    assert _explain(_scored(rows, kept), config) == [_explain(_scored(rows, everyone), config)[i] for i in kept]


@settings(max_examples=300, deadline=None)
@given(_pools())
def test_under_rrf_a_videos_why_does_not_change_when_other_candidates_come_or_go(pool):
    """RRF's score is a sum over ranks among the candidates, so it (and, with three or more, an order) may change
    with the set; the moment that explains a video is its own evidence, the same as WEIGHTED's, in any set."""
    rows, weights, kept = pool
    everyone = list(range(len(rows)))
    rrf, weighted = FusionConfig(FusionMethod.RRF, weights), FusionConfig(FusionMethod.WEIGHTED, weights)
    whole = _explain(_scored(rows, everyone), rrf)
    assert _explain(_scored(rows, kept), rrf) == [whole[i] for i in kept]
    assert whole == _explain(_scored(rows, everyone), weighted)


def test_evidence_is_each_levels_weighted_share_on_its_fixed_scale():
    levels = _levels([0.3, 0.5], [0.3, 0.0], [0.4, 0.8])
    levels["speech_sentence"] = np.array([0.375, 0.1])
    weights = {"video_sentence": 1.0, "clip_sentence": 2.0, "clip_phrase": 0.0, "speech_sentence": 2.0}
    shares = evidence(levels, FusionConfig(FusionMethod.RRF, weights, visual_ranges=RANGES))
    assert set(shares) == {"video_sentence", "clip_sentence", "speech_sentence"}
    np.testing.assert_allclose(shares["video_sentence"], [0.5, 1.0])
    np.testing.assert_allclose(shares["clip_sentence"], [1.0, 0.0])
    np.testing.assert_allclose(shares["speech_sentence"], [1.0, np.nan])  # (0.375 - 0.25) / 0.25; under the floor


def test_rrf_ranks_the_raw_visual_cosines_not_their_clipped_scale():
    """Two videos above a level's ceiling are equal on its fixed scale but still ranked apart by RRF."""
    config = FusionConfig(FusionMethod.RRF, {"clip_sentence": 1.0}, rrf_k=1.0, visual_ranges=RANGES)
    np.testing.assert_allclose(fuse(_levels([0.3, 0.3], [0.9, 0.8], [0.1, 0.1]), config), [1 / 2, 1 / 3])


def test_the_lexical_level_is_bm25_squashed_to_0_1_and_absent_below_its_floor():
    from vidstrata.gateway.fusion import LEXICAL_FLOOR, LEXICAL_HALF, lexical_evidence

    scores = np.array([np.nan, 0.0, LEXICAL_FLOOR - 1e-9, LEXICAL_HALF, 1e9])
    found = lexical_evidence(scores)
    assert np.isnan(found[:3]).all()
    assert found[3] == pytest.approx(0.5) and found[4] == pytest.approx(1.0)
    config = FusionConfig(FusionMethod.WEIGHTED, {"clip_sentence": 1.0, "lexical": 1.0}, visual_ranges=RANGES)
    levels = {level: np.array([0.5, 0.5]) for level in VISUAL_LEVELS} | {"lexical": np.array([LEXICAL_HALF, np.nan])}
    fused = fuse(levels, config)
    assert fused[0] > fused[1]  # a word match only adds; no text is no penalty below a video whose text does not match
    assert fuse(levels | {"lexical": np.array([LEXICAL_HALF, 0.5])}, config)[1] == fused[1]
