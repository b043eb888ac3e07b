"""Fusion of level scores: normalisation, ranks, weighted sum and RRF (pure numpy, no servers)."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.fusion import (
    DEFAULT_TEXT_RANGES, LEVELS, TEXT_LEVELS, FusionConfig, FusionMethod, check_text_ranges, check_weights,
    contributions, fuse, normalize, ranks,
)


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


def test_weighted_fusion_normalises_each_level_so_scales_do_not_matter():
    # video_sentence spreads only 0.01 but is normalised to the same [0, 1] as the wide clip levels.
    levels = _levels([0.30, 0.31], [0.9, 0.1], [0.9, 0.1])
    config = FusionConfig(FusionMethod.WEIGHTED, {"video_sentence": 1.0, "clip_sentence": 0.0, "clip_phrase": 0.0})
    np.testing.assert_allclose(fuse(levels, config), [0.0, 1.0])
    balanced = FusionConfig(FusionMethod.WEIGHTED, {"video_sentence": 1, "clip_sentence": 1, "clip_phrase": 2})
    np.testing.assert_allclose(fuse(levels, balanced), [0.75, 0.25])


def test_weighted_fusion_of_one_candidate_is_one():
    config = FusionConfig(FusionMethod.WEIGHTED, {level: 1.0 for level in LEVELS})
    np.testing.assert_allclose(fuse(_levels([0.2], [0.5], [0.4]), config), [1.0])


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
                                                 "speech_sentence": 0.0, "screen_text_sentence": 0.0}


def test_a_level_a_video_lacks_is_not_a_zero():
    """Speech is evidence on a fixed scale that only adds: a silent video (NaN) scores what a video whose speech
    does not match scores (below the floor of its text range), so it keeps the rank its visual levels earn."""
    levels = _levels([0.30, 0.31, 0.32, 0.32], [0.5, 0.6, 0.7, 0.7], [0.5, 0.6, 0.7, 0.7])
    levels["speech_sentence"] = np.array([0.65, 0.40, np.nan, 0.05])  # 3: speech about something else
    weights = {"video_sentence": 1.0, "clip_sentence": 1.0, "clip_phrase": 1.0, "speech_sentence": 3.0}
    weighted = fuse(levels, FusionConfig(FusionMethod.WEIGHTED, weights, text_ranges={"speech_sentence": (0.15, 0.65)}))
    np.testing.assert_allclose(weighted, [3 / 6, (1.5 + 1.5) / 6, 3 / 6, 3 / 6])
    assert weighted[2] == weighted[3]  # silent == speech that does not match: not sunk
    rrf = fuse(levels, FusionConfig(FusionMethod.RRF, weights, rrf_k=1.0))
    assert rrf[2] == rrf[3] and rrf[0] > rrf[2]
    np.testing.assert_allclose(rrf[0], 1 / 5 + 1 / 5 + 1 / 5 + 3 / 2)  # best speech: rank 1 of the two with any


def test_one_video_with_a_poor_text_match_is_not_lifted_to_the_top():
    """Scaled over the candidates, the only video with on-screen text would normalise to 1 whatever it says."""
    levels = _levels([0.3, 0.3], [0.5, 0.6], [0.5, 0.6])
    levels["screen_text_sentence"] = np.array([0.16, np.nan])
    fused = fuse(levels, FusionConfig(FusionMethod.WEIGHTED, {"clip_sentence": 1.0, "screen_text_sentence": 1.0}))
    assert fused[1] > fused[0]


def test_why_names_the_level_that_sets_a_hit_apart():
    """Three videos with the same pictures: the one whose speech matches is explained by its speech segment."""
    from gateway.scoring import BestClip, ScoredCandidates, explain
    from index.segments import SegmentRecord

    said = SegmentRecord("b", "speech", 0, 4.0, 6.5, "fresh bread comes out of the oven")
    scored = ScoredCandidates(
        ["a", "b", "c"],
        {"video_sentence": np.array([0.3, 0.3, 0.3]), "clip_sentence": np.array([0.5, 0.5, 0.5]),
         "clip_phrase": np.array([0.5, 0.5, 0.5]), "speech_sentence": np.array([0.1, 0.5, np.nan])},
        [BestClip(0.0, 4.0, 0.5)] * 3,
        {"speech_sentence": [SegmentRecord("a", "speech", 0, 1.0, 2.0, "a train"), said, None]},
    )
    weights = {"video_sentence": 0.3, "clip_sentence": 0.4, "clip_phrase": 0.3, "speech_sentence": 1.0}
    matches = explain(scored, FusionConfig(FusionMethod.WEIGHTED, weights))
    assert [m.level for m in matches] == ["clip", "speech_sentence", "clip"]
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
    """The same cosine (0.3) explains a hit as speech under speech's floor, and not as on-screen text above its."""
    from gateway.scoring import BestClip, ScoredCandidates, explain
    from index.segments import SegmentRecord

    def why(level: str) -> str:
        levels = {"video_sentence": np.array([0.3, 0.3]), "clip_sentence": np.array([0.5, 0.5]),
                  "clip_phrase": np.array([0.5, 0.5]), level: np.array([0.3, np.nan])}
        segment = SegmentRecord("a", "speech" if level == "speech_sentence" else "screen_text", 0, 1.0, 2.0, "words")
        scored = ScoredCandidates(["a", "b"], levels, [BestClip(0.0, 4.0, 0.5)] * 2, {level: [segment, None]})
        ranges = {"speech_sentence": (0.25, 0.5), "screen_text_sentence": (0.4, 0.5)}
        config = FusionConfig(FusionMethod.WEIGHTED, {"clip_sentence": 1.0, level: 2.0}, text_ranges=ranges)
        return explain(scored, config)[0].level

    assert why("speech_sentence") == "speech_sentence"
    assert why("screen_text_sentence") == "clip"
