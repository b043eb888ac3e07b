"""The visual levels' ranges chosen offline (`python -m bench.calibration visual`) from the candidate levels bench.eval
writes: the dump reads back, the ranges follow the levels' statistics, and the choice uses the calibration halves
only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.calibration import (
    VISUAL_SCALES, choose_visual_ranges, level_statistics, main, read_levels, replay, spread_ranges, split_texts,
)
from bench.datasets import Query
from bench.eval import level_dump
from bench.metrics import RankedVideo, Response, filtered_rank
from vidstrata.gateway.fusion import FusionConfig, FusionMethod
from vidstrata.spec.channels import LEVELS, VISUAL_LEVELS
from vidstrata.gateway.settings import GatewaySettings


def _dataset(seed: int, videos: int = 8, texts: int = 10, text_levels: bool = True):
    """Random level scores in which each query's target leans up on some levels: (queries, responses, videos)."""
    rng = np.random.default_rng(seed)
    qs, full = [], {}
    for t in range(texts):
        target = f"v{t % videos}"
        kind = "speech" if text_levels and t % 3 == 0 else "scene"
        qs.append(Query(f"text {seed} {t}", kind, target, None, frozenset({target})))
        hits = []
        for v in range(videos):
            lift = 0.12 if f"v{v}" == target else 0.0
            levels = {"video_sentence": rng.uniform(0.05, 0.3) + lift / 2, "clip_sentence": rng.uniform(0.05, 0.45) + lift,
                      "clip_phrase": rng.uniform(0.0, 0.45) + lift * rng.uniform(0, 1),
                      "speech_sentence": rng.uniform(0.1, 0.6) if text_levels and v % 2 else np.nan,
                      "screen_text_sentence": np.nan}
            hits.append(RankedVideo(f"v{v}", 0.0, levels, (0.0, 1.0)))
        full[f"text {seed} {t}"] = Response(hits, videos, 1.0)
    return qs, full, videos


def test_level_statistics_are_each_levels_floor_percentile_and_median_spread():
    qs, full, videos = _dataset(0)
    stats = level_statistics([(qs, full, videos)])
    for level in VISUAL_LEVELS:
        every = [h.levels[level] for r in full.values() for h in r.hits]
        spreads = [np.ptp([h.levels[level] for h in r.hits]) for r in full.values()]
        assert stats[level] == {"floor": pytest.approx(np.percentile(every, 1)), "spread": pytest.approx(np.median(spreads))}
    ranges = spread_ranges(stats, 10)
    for level, (floor, ceiling) in ranges.items():
        assert floor == round(stats[level]["floor"], 2)
        assert ceiling == round(min(1.0, stats[level]["floor"] + 10 * stats[level]["spread"]), 2)
    assert all(ceiling == 1.0 for _, ceiling in spread_ranges(stats, 1000).values())


def test_the_level_dump_reads_back_as_the_same_queries_and_levels(tmp_path):
    qs, full, videos = _dataset(1)
    path = tmp_path / "eval_levels.json"
    path.write_text(json.dumps({"command": "x", "date": "d", "datasets": {"set": level_dump(qs, full, videos)}}))
    read_qs, read_full, read_videos = read_levels(path)["set"]
    assert read_qs == qs and read_videos == videos
    for text, response in full.items():
        for mine, theirs in zip(read_full[text].hits, response.hits, strict=True):
            assert mine.video_id == theirs.video_id
            np.testing.assert_array_equal([mine.levels[lv] for lv in LEVELS],
                                          [theirs.levels.get(lv, np.nan) for lv in LEVELS])  # absent: NaN


def test_visual_ranges_are_chosen_on_the_calibration_halves_only():
    sets = {"a": _dataset(2, texts=12), "b": _dataset(3, texts=12, text_levels=False)}
    settings = GatewaySettings()
    report = choose_visual_ranges(sets, settings, seed=0)
    assert report["scale"] in VISUAL_SCALES and set(report["chosen"]) == set(VISUAL_LEVELS)
    halves = [([q for q in qs if q.text in split_texts(qs, 0)[0]], full, n) for qs, full, n in sets.values()]
    assert report["statistics"] == level_statistics(halves)
    assert report["chosen"] == {lv: list(r) for lv, r in spread_ranges(level_statistics(halves), report["scale"]).items()}
    best = max(t["objective"] for t in report["tried"].values())
    assert report["tried"][report["scale"]]["objective"] == best
    # what it reports is the gateway's fusion, replayed
    chosen = FusionConfig(FusionMethod.WEIGHTED, settings.fusion_weights, text_ranges=settings.text_level_ranges,
                          visual_ranges=report["chosen"])
    qs, full, videos = sets["a"]
    held = [q for q in qs if q.text in split_texts(qs, 0)[1]]
    mrr = np.mean([1 / filtered_rank([h.video_id for h in replay(full[q.text].hits, chosen)], q, videos) for q in held])
    assert report["sets"]["held out"][f"chosen (scale {report['scale']})"]["a"]["mrr"] == pytest.approx(mrr)
    # changing only held-out levels changes nothing that was chosen
    shaken = {t: Response([RankedVideo(h.video_id, 0.0, {lv: x + 0.2 for lv, x in h.levels.items()}, h.span)
                           for h in r.hits], r.candidates, 1.0) if t in split_texts(qs, 0)[1] else r
              for t, r in full.items()}
    again = choose_visual_ranges({"a": (qs, shaken, videos), "b": sets["b"]}, settings, seed=0)
    assert (again["chosen"], again["tried"]) == (report["chosen"], report["tried"])


def test_the_command_line_prints_and_writes_the_report(tmp_path, capsys):
    qs, full, videos = _dataset(4)
    path = tmp_path / "eval_levels.json"
    path.write_text(json.dumps({"command": "x", "date": "d", "datasets": {"set": level_dump(qs, full, videos)}}))
    report = main(["visual", str(path), "--json", str(tmp_path / "visual.json")])
    assert json.loads((tmp_path / "visual.json").read_text())["chosen"] == report["chosen"]
    assert "chosen: scale" in capsys.readouterr().out
