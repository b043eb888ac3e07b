"""`vidstrata eval`: metrics, the fusion replay, calibration and the report, then a tiny run on the real stack."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.datasets import ORDER_PHRASINGS, Query
from bench.calibration import (
    TEXT_WEIGHTS, calibrate, grid_mrr, objective, replay, split_texts, text_range_grid, weight_grid,
)
from bench.eval import main
from bench.metrics import Metrics, RankedVideo, Response, filtered_rank, iou, score_queries
from bench.report import plot, tables
from bench.temporal import MomentHit, MomentSpan, order_accuracy, temporal_tables, two_moment_hits
from vidstrata.gateway.fusion import FusionConfig, FusionMethod, fuse
from vidstrata.spec.channels import LEVELS, TEXT_LEVELS, VISUAL_LEVELS
from vidstrata.gateway.settings import GatewaySettings


def _hit(video_id, vs=0.0, cs=0.0, cp=0.0, span=(0.0, 1.0)):
    return RankedVideo(video_id, 0.0, {"video_sentence": vs, "clip_sentence": cs, "clip_phrase": cp}, span)


def _query(text, target, relevant=(), span=None, kind="scene"):
    return Query(text, kind, target, span, frozenset({target, *relevant}))


def test_iou_of_spans():
    assert iou((0, 2), (0, 2)) == 1
    assert iou((0, 2), (1, 3)) == pytest.approx(1 / 3)
    assert iou((0, 1), (2, 3)) == 0
    assert iou((1, 1), (1, 1)) == 0


def test_filtered_rank_skips_other_relevant_videos_and_punishes_a_missing_target():
    q = _query("a cat", "v3", relevant={"v1"})
    assert filtered_rank(["v1", "v2", "v3", "v4"], q, videos=4) == 2, "v1 also shows a cat: only v2 counts"
    assert filtered_rank(["v3"], q, videos=4) == 1
    assert filtered_rank(["v1", "v2"], q, videos=10) == 9, "missing: behind all 8 non-relevant videos"


def test_score_queries_recall_ranks_and_spans():
    hits = {
        "a cat": [_hit("v2", span=(0, 2)), _hit("v1", span=(4, 6))],  # v2 also has a cat, at 0-2
        "a clock": [_hit("v3"), _hit("v4"), _hit("v1", span=(0, 1))],
    }
    qs = [_query("a cat", "v1", relevant={"v2"}, span=(4, 6)), _query("a clock", "v1", span=(2, 4))]
    spans = {("v1", "a cat"): (4, 6), ("v2", "a cat"): (0, 3), ("v1", "a clock"): (2, 4)}
    m = score_queries(qs, lambda q: hits[q.text], spans, videos=4)
    assert (m.queries, m.r1, m.r5, m.median_rank, m.mean_rank) == (2, 0.5, 1.0, 2.0, 2.0)
    assert m.mrr == pytest.approx((1 + 1 / 3) / 2)
    assert m.span_iou == pytest.approx(0.5) and m.span_hit == 0.5
    assert m.top1_span_hit == 0.5, "the cat query's first hit is v2 (relevant) and its span overlaps 2/3"
    video_only = score_queries([_query("a cat", "v2", kind="video")], lambda q: hits[q.text], spans, videos=4)
    assert video_only.span_iou is None and len(video_only.row()) == 10


def test_replay_is_the_gateways_fusion_with_ties_by_id():
    hits = [_hit("b", 0.2, 0.9, 0.1), _hit("a", 0.2, 0.9, 0.1), _hit("c", 0.9, 0.1, 0.5)]
    config = FusionConfig(FusionMethod.WEIGHTED, {"video_sentence": 0.5, "clip_sentence": 0.5, "clip_phrase": 0.0})
    assert [h.video_id for h in replay(hits, config)] == ["a", "b", "c"], "equal scores: id order, as the gateway"
    only_video = FusionConfig(FusionMethod.RRF, {"video_sentence": 1.0})
    assert replay(hits, only_video)[0].video_id == "c"
    levels = {lv: np.array([h.levels.get(lv, np.nan) for h in hits]) for lv in LEVELS}
    fused = fuse(levels, config)
    assert [h.video_id for h in replay(hits, config)] == [hits[i].video_id for i in np.lexsort(([h.video_id for h in hits], -fused))]


def test_weight_grid_covers_the_simplex():
    grid = weight_grid(0.1)
    assert len(grid) == 66 * len(TEXT_WEIGHTS) ** 3  # the visual simplex, times each text level's and lexical's weights
    assert all(abs(sum(w[lv] for lv in VISUAL_LEVELS) - 1) < 1e-9 and set(w) == set(LEVELS) for w in grid)
    assert {"video_sentence": 0.0, "clip_sentence": 0.0, "clip_phrase": 1.0, "speech_sentence": 2.0,
            "screen_text_sentence": 0.0, "lexical": 1.0} in grid


def test_split_is_by_text_disjoint_and_seeded():
    qs = [_query(f"s{i}", f"v{j}") for i in range(5) for j in range(3)] + [_query(f"c{i}", f"v{i}", kind="video") for i in range(4)]
    cal, held = split_texts(qs, seed=3)
    assert not cal & held and cal | held == {q.text for q in qs}
    assert len([t for t in cal if t.startswith("s")]) == 3 and len([t for t in cal if t.startswith("c")]) == 2
    assert split_texts(qs, seed=3) == (cal, held)


def test_calibration_finds_the_level_that_ranks_targets_first():
    rng = np.random.default_rng(0)
    full, qs = {}, []
    for i in range(6):
        target = f"v{i}"
        hits = [_hit(f"v{j}", vs=rng.random(), cs=1.0 if j == i else rng.random() * 0.5, cp=rng.random())
                for j in range(6)]
        full[f"q{i}"] = Response(hits, len(hits), 1.0)
        qs.append(_query(f"q{i}", target, kind="video"))
    best = calibrate(qs, full, GatewaySettings(), videos=6)
    assert best["WEIGHTED"]["calibration_mrr"] == 1.0
    assert best["WEIGHTED"]["weights"]["clip_sentence"] >= 0.5
    own = {level: list(r) for level, r in GatewaySettings().text_level_ranges.items()}
    assert best["WEIGHTED"]["text_ranges"] == own, "no text: the ranges stay"


def _text_set(seed=1, videos=8):
    """Queries whose targets' speech matches moderately, among videos with unrelated speech, on-screen text or none."""
    rng = np.random.default_rng(seed)
    full, qs = {}, []
    for i in range(videos):
        hits = []
        for j in range(videos):
            hit = _hit(f"v{j}", vs=round(rng.random(), 1), cs=rng.random(), cp=rng.random())
            if j % 3:
                hit.levels["speech_sentence"] = 0.3 if j == i else round(rng.random() * 0.3, 2)
            if j % 2:
                hit.levels["screen_text_sentence"] = round(rng.random() * 0.4, 2)
            hits.append(hit)
        full[f"q{i}"] = Response(hits, len(hits), 1.0)
        qs.append(_query(f"q{i}", f"v{i}", relevant={f"v{(i + 1) % videos}"} if i % 4 == 0 else (), kind="speech"))
    return full, qs


def test_grid_objective_is_the_replayed_objective_of_each_weighting():
    """Ranking every weighting and per-level text ranges at once gives what replaying the gateway's fusion one by
    one does (ties by id, missing and sub-floor text levels, each level on its own range, both methods)."""
    full, qs = _text_set()
    grid = weight_grid(0.25)
    ranges = text_range_grid(TEXT_LEVELS, GatewaySettings().text_level_ranges)[::47]
    assert len({r["speech_sentence"] for r in ranges}) > 3 and len({r["screen_text_sentence"] for r in ranges}) > 3
    for method in FusionMethod:
        fast = grid_mrr(qs, full, FusionConfig(method, grid[0]), grid, videos=8, ranges=ranges)
        assert fast.shape == (len(ranges), len(grid))
        for r, text_ranges in enumerate(ranges):
            for k in range(0, len(grid), 5):
                config = FusionConfig(method, grid[k], text_ranges=text_ranges)
                assert fast[r, k] == pytest.approx(objective(qs, lambda q: replay(full[q.text].hits, config), 8)), (
                    method, text_ranges, grid[k])


def test_calibration_chooses_the_text_range_with_the_weights():
    """Videos v0-v3 speak; in each query the target's speech scores 0.45 and the others' 0.28 (noise above the
    gateway's floor here, 0.15). Speech queries (v0-v3) need a large speech weight against pictures that favour v4-v7;
    under the default range that weight lifts the noise over the visual queries' targets (v4-v7). Only a range
    found with the weights (a floor above the noise) ranks every target first."""
    full, qs = {}, []
    for i in range(8):
        if i < 4:  # a speech query: the pictures favour the silent videos, and the target's the least
            pictures = [0.0 if j == i else 0.7 if j < 4 else 1.0 for j in range(8)]
        else:  # a visual query: the target's picture is best, the speaking videos' next
            pictures = [1.0 if j == i else 0.7 if j < 4 else 0.1 * (j - 3) for j in range(8)]
        hits = [_hit(f"v{j}", p, p, p) for j, p in enumerate(pictures)]
        for j, hit in enumerate(hits[:4]):
            hit.levels["speech_sentence"] = 0.45 if j == i else 0.28
        full[f"q{i}"] = Response(hits, len(hits), 1.0)
        qs.append(_query(f"q{i}", f"v{i}", kind="speech" if i < 4 else "scene"))
    settings = GatewaySettings(text_level_ranges=dict.fromkeys(TEXT_LEVELS, (0.15, 0.5)))
    best = calibrate(qs, full, settings, videos=8)["WEIGHTED"]
    assert best["calibration_mrr"] == 1.0 and 0.15 < best["text_ranges"]["speech_sentence"][0] <= 0.45, best
    assert best["text_ranges"]["screen_text_sentence"] == list(settings.text_level_ranges["screen_text_sentence"])
    default = FusionConfig(FusionMethod.WEIGHTED, {"clip_phrase": 1.0},
                           text_ranges=dict.fromkeys(TEXT_LEVELS, (0.15, 0.5)))
    assert grid_mrr(qs, full, default, weight_grid(), videos=8).max() < 1.0, "no weights alone do it at (0.15, 0.5)"


def test_calibration_finds_a_range_per_text_level_where_no_shared_one_works():
    """Speech paraphrases score 0.3 against noise of 0.14; on-screen text scores 0.6 against noise of 0.4 (a
    photo's printed words). A shared floor either drops the speech matches (> 0.3) or lets the on-screen noise
    lift its videos over the visual queries' targets (< 0.4); one floor per level ranks every target first."""
    full, qs = {}, []
    speaking, showing = range(0, 3), range(3, 6)
    for i in range(9):
        kind = "speech" if i in speaking else "screen_text" if i in showing else "scene"
        if kind == "scene":  # the target's picture is best, the videos with text next
            pictures = [1.0 if j == i else 0.9 if j < 6 else 0.1 * (j - 5) for j in range(9)]
        else:  # the pictures favour the videos without text, the target's the least
            pictures = [0.0 if j == i else 0.7 if j < 6 else 1.0 for j in range(9)]
        hits = [_hit(f"v{j}", p, p, p) for j, p in enumerate(pictures)]
        for j in speaking:
            hits[j].levels["speech_sentence"] = 0.3 if j == i else 0.14
        for j in showing:
            hits[j].levels["screen_text_sentence"] = 0.6 if j == i else 0.4
        full[f"q{i}"] = Response(hits, len(hits), 1.0)
        qs.append(_query(f"q{i}", f"v{i}", kind=kind))
    settings = GatewaySettings(text_level_ranges=dict.fromkeys(TEXT_LEVELS, (0.15, 0.5)))
    best = calibrate(qs, full, settings, videos=9)["WEIGHTED"]
    speech, screen = best["text_ranges"]["speech_sentence"], best["text_ranges"]["screen_text_sentence"]
    assert best["calibration_mrr"] == 1.0 and 0.14 < speech[0] < 0.3 and 0.4 <= screen[0] < 0.6, best
    shared = [r for r in text_range_grid(TEXT_LEVELS, GatewaySettings().text_level_ranges)
              if r["speech_sentence"] == r["screen_text_sentence"]]
    fusion = FusionConfig(FusionMethod.WEIGHTED, weight_grid()[0])
    assert grid_mrr(qs, full, fusion, weight_grid(), videos=9, ranges=shared).max() < 1.0


def test_order_accuracy_compares_each_caption_with_its_reverse_video():
    """v1 shows A then B, v2 B then A. A tie counts one half; a query without a phrasing or a reverse is left out."""
    reverse = {"v1": "v2", "v2": "v1"}
    phrasing = {"A then B": "A then B", "B after A": "B after A", "B then A": "A then B", "after B, A": "after A, B"}
    hits = {
        "A then B": [_hit("v3"), RankedVideo("v1", 0.9, {}, (0, 1)), RankedVideo("v2", 0.8, {}, (0, 1))],
        "B after A": [RankedVideo("v2", 0.9, {}, (0, 1)), RankedVideo("v1", 0.8, {}, (0, 1))],  # wrong way round
        "B then A": [RankedVideo("v1", 0.5, {}, (0, 1)), RankedVideo("v2", 0.5, {}, (0, 1))],  # tied: by id, not order
        "after B, A": [RankedVideo("v2", 0.7, {}, (0, 1))],  # v1 missing: below every other
        "a cat": [RankedVideo("v1", 0.9, {}, (0, 1))],
    }
    qs = [_query("A then B", "v1", kind="video"), _query("B after A", "v1", kind="video"),
          _query("B then A", "v2", kind="video"), _query("after B, A", "v2", kind="video"),
          _query("a cat", "v1", kind="video"), _query("A then B", "v4", kind="video")]
    found = order_accuracy(qs, reverse, lambda q: phrasing.get(q.text), lambda q: hits[q.text])
    assert found["queries"] == 4 and found["ties"] == 1
    assert found["accuracy"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert found["by_phrasing"] == {"A then B": {"queries": 2, "accuracy": 0.75},
                                    "after A, B": {"queries": 1, "accuracy": 1.0},
                                    "B after A": {"queries": 1, "accuracy": 0.0}}
    assert list(found["by_phrasing"]) == ["A then B", "after A, B", "B after A"], "in ORDER_PHRASINGS' order"
    assert order_accuracy(qs[4:], reverse, lambda q: phrasing.get(q.text), lambda q: hits[q.text]) is None


def _moments(video_id, *spans):
    return MomentHit(video_id, 1.0, {}, spans[0] if spans else (0, 0),
                     tuple(MomentSpan(a, b, 1.0 - k / 10, "clip") for k, (a, b) in enumerate(spans)))


def test_two_moments_must_each_find_a_different_span_of_the_scene():
    """The cat is shown at 0-4 s and 8-12 s of every video; the metric reads each hit's `moments`, best first."""
    spans = {(v, "a cat"): [(0.0, 4.0), (8.0, 12.0)] for v in ("v1", "v2", "v3", "v4", "v5", "v6")}
    spans["v1", "a clock"] = [(4.0, 8.0)]
    hits = {
        "v1": [_moments("v9", (0, 4), (8, 12)), _moments("v1", (8.5, 12), (0, 3))],  # both found, second best first
        "v2": [_moments("v2", (0, 4), (6, 10))],  # the second overlaps 8-12 by IoU 1/3 only
        "v3": [_moments("v3", (0, 4), (4, 8), (8, 12))],  # the third moment does not count
        "v4": [_moments("v4", (0, 4), (0.5, 3.5))],  # twice the same span: one found
        "v5": [_moments("v5", (8, 12))],  # one moment only
        "v6": [],  # the video is not among the hits
    }
    qs = [_query("a cat", v) for v in hits] + [_query("a clock", "v1", span=(4, 8))]
    found = two_moment_hits(qs, spans, lambda q: hits[q.target])
    assert found == {"queries": 6, "two_moments": pytest.approx(1 / 6), "first_moment": pytest.approx(5 / 6),
                     "moments_per_hit": pytest.approx(10 / 6)}
    loose = two_moment_hits(qs, spans, lambda q: hits[q.target], threshold=0.3)
    assert loose["two_moments"] == pytest.approx(2 / 6), "at IoU 0.3 the 6-10 moment finds the second span"
    assert two_moment_hits(qs[-1:], spans, lambda q: hits["v1"]) is None, "a scene shown once is no such query"


def test_two_moments_read_the_protobuf_hits():
    """The metric takes SearchHit messages as they come (hit.moments with start_s and end_s)."""
    from vidstrata.v1 import search_pb2

    hit = search_pb2.SearchHit(video_id="v1", moments=[search_pb2.Moment(start_s=8, end_s=12, level="clip"),
                                                       search_pb2.Moment(start_s=0, end_s=4.5, level="clip")])
    found = two_moment_hits([_query("a cat", "v1")], {("v1", "a cat"): [(0.0, 4.0), (8.0, 12.0)]}, lambda q: [hit])
    assert found["two_moments"] == 1.0


def test_temporal_tables_show_each_half_and_phrasing():
    payload = {"datasets": {
        "ordered": {"order": {"fused WEIGHTED": {
            "all": {"queries": 4, "accuracy": 0.875, "ties": 1,
                    "by_phrasing": {"A then B": {"queries": 2, "accuracy": 0.75}, "B after A": {"queries": 2, "accuracy": 1.0}}},
            "held out": None}}},
        "moments": {"moments": {"fused RRF": {"held out": {"queries": 5, "two_moments": 0.8, "first_moment": 1.0,
                                                           "moments_per_hit": 3.0}}}},
        "scenes": {},
    }}
    text = temporal_tables(payload)
    assert "| ordered | all | fused WEIGHTED | 4 | 87.5 | 1 | A then B 75 / B after A 100 |" in text
    assert "| moments | held out | fused RRF | 5 | 80.0 | 100.0 | 3.00 |" in text
    assert temporal_tables({"datasets": {"scenes": {}}}) == ""


def _payload():
    metrics = Metrics(3, 1 / 3, 2 / 3, 1.0, 2.0, 2.0, 0.6, 0.5, 0.4, 1 / 3).__dict__
    video = Metrics(2, 0.5, 1.0, 1.0, 1.5, 1.5, 0.75).__dict__
    configs = {name: {"scene": metrics, "video": video} for name in ("video-sentence", "fused WEIGHTED")}
    return {
        "command": "python -m bench.eval --tiny", "machine": {"cpu": "x", "cores": 2, "python": "3.11", "date": "d"},
        "datasets": {"scenes": {
            "videos": 4, "configs": configs,
            "defaults": {"weights": {"video_sentence": 0.3, "clip_sentence": 0.3, "clip_phrase": 0.4}},
            "calibration": {
                "split": {"seed": 0, "calibration_texts": 2, "held_out_texts": 2, "calibration_queries": 3,
                          "held_out_queries": 2},
                "best": {"WEIGHTED": {"weights": {"video_sentence": 0.1, "clip_sentence": 0.5, "clip_phrase": 0.4},
                                      "text_ranges": {"speech_sentence": [0.2, 0.5],
                                                      "screen_text_sentence": [0.35, 0.6]},
                                      "calibration_mrr": 0.9, "held_out_mrr": 0.8}},
                "held_out": configs, "held_out_mrr": {"video-sentence": 0.5, "calibrated WEIGHTED": 0.8},
            },
        }},
    }


def test_report_table_and_plot(tmp_path):
    text = tables(_payload())
    assert "| scenes | scene | video-sentence | 3 | 33.3 | 66.7 | 100.0 | 2 | 2.0 | 0.600 | 50.0 | 40.0 | 33.3 |" in text
    assert ("video-sentence 0.1, clip-sentence 0.5, clip-phrase 0.4, text ranges speech-sentence [0.2, 0.5], "
            "screen-text-sentence [0.35, 0.6] (calibration MRR 0.900, held-out MRR 0.800)") in text
    assert "`python -m bench.eval --tiny`" in text
    assert "of every configuration: video-sentence 0.500, calibrated WEIGHTED 0.800" in text
    png = plot(_payload(), tmp_path / "eval.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.e2e
def test_tiny_eval_on_the_real_stack(tmp_path, model_repository):
    """Generate, ingest through the gateway, search every configuration, calibrate, report: at tiny size."""
    payload = main(["--dataset", "scenes", "--tiny", "--videos", "4", "--calibrate", "--results-dir",
                    str(tmp_path / "results"), "--report", str(tmp_path / "docs"), "--work-dir", str(tmp_path / "work"),
                    "--model-repository", str(model_repository)])
    scenes = payload["datasets"]["scenes"]
    assert scenes["ingest"]["videos"] == 4 and scenes["exhaustive"]
    assert scenes["replay_mismatches"] == 0, "replaying the fusion must reproduce the gateway's rankings"
    assert set(scenes["configs"]) == {"video-sentence", "clip-sentence", "clip-phrase", "speech-sentence",
                                      "screen-text-sentence", "lexical", "fused WEIGHTED", "fused RRF"}
    for kinds in scenes["configs"].values():
        assert kinds["scene"]["queries"] >= 8 and kinds["video"]["queries"] == 4
        assert 0 <= kinds["scene"]["r1"] <= kinds["scene"]["r5"] <= 1
    assert {"calibrated WEIGHTED", "calibrated RRF"} <= set(scenes["calibration"]["held_out"])
    confidence = scenes["calibration"]["confidence"]
    assert 0 <= confidence["thresholds"]["MEDIUM"] <= confidence["thresholds"]["HIGH"] <= 1
    assert set(confidence["held_out"]) == {"LOW", "MEDIUM", "HIGH"}
    saved = json.loads((tmp_path / "results" / "eval.json").read_text())
    assert saved["machine"]["cores"] and saved["datasets"]["scenes"]["videos"] == 4
    assert (tmp_path / "docs" / "eval.png").stat().st_size > 0
    assert "| scenes | scene | fused RRF |" in (tmp_path / "docs" / "eval.md").read_text()
    assert "confidence thresholds" in (tmp_path / "docs" / "eval.md").read_text()


@pytest.mark.e2e
def test_tiny_ordered_and_moments_sets_on_the_real_stack(tmp_path, model_repository):
    """The two time-aware sets run like the others and put their figures in the JSON and the report."""
    payload = main(["--dataset", "ordered", "moments", "--tiny", "--videos", "4", "--results-dir",
                    str(tmp_path / "results"), "--report", str(tmp_path / "docs"), "--work-dir", str(tmp_path / "work"),
                    "--model-repository", str(model_repository)])
    ordered, moments = payload["datasets"]["ordered"], payload["datasets"]["moments"]
    assert ordered["exhaustive"] and moments["exhaustive"]
    fused = ordered["order"]["fused WEIGHTED"]["all"]
    assert fused["queries"] == 4 * 8 and set(fused["by_phrasing"]) == set(ORDER_PHRASINGS)
    assert ordered["order"]["fused WEIGHTED"]["held out"]["queries"] < fused["queries"]
    assert "moments" not in ordered and "order" not in moments
    assert moments["moments"]["fused WEIGHTED"]["all"]["queries"] == 4
    report = (tmp_path / "docs" / "eval.md").read_text()
    assert "| ordered | all | fused WEIGHTED | 32 |" in report and "| moments | all | fused WEIGHTED | 4 |" in report
