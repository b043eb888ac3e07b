"""bench.near_duplicates: the threshold's choice and figures on hand-made scores, the labels and the split, the ranking
figures, and the copy score the gateway flags with (gateway.similar) on hand-made vectors. The run itself goes through
the real stack (`make bench-near-duplicates`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.near_duplicates import (
    COPY, OVERLAPPING, SOURCE, UNRELATED, VARIANTS, Video, analyse, best_f1_threshold, figures, pair_label,
    precision_threshold, ranks_first, report, split_sources,
)
from vidstrata.gateway.scoring import score_candidates
from vidstrata.gateway.similar import copy_score, like_query
from vidstrata.index.store import ClipRecord


def _pairs(copies, others):
    return list(copies) + list(others), [True] * len(copies) + [False] * len(others)


def test_separable_scores_get_the_middle_of_the_gap():
    scores, is_copy = _pairs([0.97, 0.93, 0.9], [0.5, 0.7, 0.8])
    assert best_f1_threshold(scores, is_copy) == pytest.approx(0.85)
    assert figures(scores, is_copy, 0.85) == {
        "threshold": 0.85, "copies": 3, "others": 3, "true_positives": 3, "false_positives": 0,
        "false_negatives": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_overlapping_scores_get_the_best_f1_and_its_margin():
    scores, is_copy = _pairs([0.95, 0.9, 0.6], [0.3, 0.65, 0.7])
    # flag >= 0.9: F1 0.8; >= 0.7: 2/3; >= 0.6: 0.75; so the gap (0.7, 0.9], and its middle
    assert best_f1_threshold(scores, is_copy) == pytest.approx(0.8)
    found = figures(scores, is_copy, 0.8)
    assert (found["precision"], found["recall"], found["f1"]) == (1.0, pytest.approx(2 / 3), pytest.approx(0.8))


def test_the_widest_run_of_equal_best_f1_wins_and_below_the_lowest_score_starts_at_minus_one():
    scores, is_copy = _pairs([1.0, 0.2], [0.6])  # flag all: F1 0.8, the best; lower bound of that run is -1
    assert best_f1_threshold(scores, is_copy) == pytest.approx(-0.4)
    scores, is_copy = _pairs([0.95, 0.15], [0.3, 0.2, 0.1])  # F1 2/3 in the gaps (0.1, 0.15] and (0.3, 0.95]
    assert best_f1_threshold(scores, is_copy) == pytest.approx(0.625)


def test_without_copies_there_is_nothing_to_calibrate():
    with pytest.raises(ValueError, match="no copy"):
        best_f1_threshold([0.1, 0.5], [False, False])


def test_precision_rule_takes_the_lowest_threshold_that_reaches_the_target():
    scores, is_copy = _pairs([0.9, 0.8], [0.85])
    assert precision_threshold(scores, is_copy) == 0.9
    assert precision_threshold(scores, is_copy, target=0.6) == 0.8
    assert precision_threshold(*_pairs([0.1], [0.9])) is None
    nothing = figures(scores, is_copy, 2.0)
    assert nothing["precision"] is None and nothing["recall"] == 0.0 and nothing["f1"] == 0.0


def _video(video_id, source, content, variant=SOURCE, kind="scenes"):
    return Video(video_id, Path(f"/v/{video_id}.mp4"), source, kind, variant, frozenset(content))


def test_labels_copies_unrelated_and_overlapping():
    a, a_copy = _video("a", "a", {"moon", "clock"}), _video("a-trimmed", "a", {"moon", "clock"}, "trimmed")
    b, c = _video("b", "b", {"coffee"}), _video("c", "c", {"clock", "rocket"})
    assert pair_label(a, a_copy) == COPY
    assert pair_label(a, b) == UNRELATED
    assert pair_label(a, c) == OVERLAPPING


def test_split_is_seeded_disjoint_and_halves_each_kind():
    sources = [_video(f"s{i}", f"s{i}", {str(i)}) for i in range(5)] + [
        _video(f"t{i}", f"t{i}", {f"t{i}"}, kind="shapes") for i in range(2)]
    calibration, held_out = split_sources(sources, seed=3)
    assert calibration.isdisjoint(held_out) and calibration | held_out == {s.video_id for s in sources}
    assert sum(s.startswith("s") for s in calibration) == 3 and sum(s.startswith("t") for s in calibration) == 1
    assert split_sources(sources, seed=3) == (calibration, held_out)


def test_ranks_first_reads_the_rankings():
    names = [v.name for v in VARIANTS]
    a = [_video("a", "a", {"x"})] + [_video(f"a-{n}", "a", {"x"}, n) for n in names]
    b = [_video("b", "b", {"y"})] + [_video(f"b-{n}", "b", {"y"}, n) for n in names]
    rankings = {v.video_id: [] for v in a + b}
    rankings["a"] = [f"a-{n}" for n in names[:2]] + ["b"] + [f"a-{n}" for n in names[2:]]
    rankings["b"] = ["a"] + [f"b-{n}" for n in names]
    rankings[f"a-{names[0]}"] = ["a", "b"]
    found = ranks_first(a + b, rankings)
    assert found["source_top_hit_is_a_copy"] == {"queries": 2, "share": 0.5}
    assert found["copy_above_other_sources"][names[0]]["share"] == 0.5
    assert found["copy_above_other_sources"][names[2]]["share"] == 0.0
    assert found["copy_query_top_hit_is_family"][names[0]] == {"queries": 2, "share": 0.5}


def _clips(video_id, vectors):
    return [ClipRecord(video_id, i, 2.0 * i, 2.0 * i + 2, np.asarray(v, np.float32)) for i, v in enumerate(vectors)]


def test_copy_score_takes_the_direction_a_trimmed_copy_has():
    basis = np.eye(4, dtype=np.float32)
    clips = {"query": _clips("query", basis), "trimmed": _clips("trimmed", basis[1:3]),
             "unrelated": _clips("unrelated", [[1, 1, 1, 1], [1, -1, 1, -1]])}
    videos = {v: np.mean([c.vector for c in cs], axis=0) for v, cs in clips.items()}
    query = like_query(videos["query"], clips["query"], most=4)
    scored = score_candidates(query, ["trimmed", "unrelated"], videos, clips)
    trimmed, unrelated = scored.video_ids.index("trimmed"), scored.video_ids.index("unrelated")
    assert scored.levels["clip_phrase"][trimmed] == pytest.approx(0.5)  # two of the query's four clips found
    assert copy_score(scored, trimmed) == pytest.approx(1.0)  # each of its own clips has its twin in the query
    assert copy_score(scored, unrelated) == pytest.approx(0.5)


def test_like_query_spaces_its_clips_evenly_and_keeps_both_ends():
    clips = _clips("v", np.eye(8, dtype=np.float32))
    query = like_query(np.ones(8, np.float32), clips, most=3)
    assert query.phrases == ["clip 0", "clip 4", "clip 7"]
    assert like_query(np.ones(8, np.float32), clips, most=32).phrases == [f"clip {i}" for i in range(8)]


def _raw_record():
    """A run's raw record as `collect` writes it, for three sources of two kinds: copies score 0.95 (trimmed: 0.85),
    unrelated pairs 0.5, pairs showing a same photo 0.8; the gateway flagged at 0.9."""
    contents = {"s0": ["moon", "clock"], "s1": ["coffee"], "s2": ["moon"], "t0": ["a red circle"], "t1": ["a blue square"]}
    videos = [{"video_id": s, "path": f"/v/{s}.mp4", "source": s, "kind": "shapes" if s[0] == "t" else "scenes",
               "variant": SOURCE, "content": c, "clips": 2} for s, c in contents.items()]
    videos += [dict(v, video_id=f"{v['video_id']}-{n.name}", variant=n.name) for v in list(videos) for n in VARIANTS]
    by_id = {v["video_id"]: v for v in videos}

    def score(q, v):
        a, b = by_id[q], by_id[v]
        if a["source"] == b["source"]:
            return 0.85 if "trimmed" in (a["variant"], b["variant"]) else 0.95
        return 0.8 if set(a["content"]) & set(b["content"]) else 0.5

    searches = {q: {"hits": [[v, score(q, v) >= 0.9, score(q, v) - 0.01, score(q, v), score(q, v) - 0.01]
                             for v in sorted((v for v in by_id if v != q), key=lambda v: -score(q, v))],
                    "unreturned": {}} for q in by_id}
    last = searches["s0"]["hits"].pop()  # a video the Search did not return still has its replayed pair
    searches["s0"]["unreturned"][last[0]] = last[3:]
    return {"command": "python -m bench.near_duplicates", "date": "2026-12-07", "machine": {"cpu": "test", "cores": 2},
            "seed": 0, "tiny": True, "variants": [{"name": n.name} for n in VARIANTS], "videos": videos,
            "ingest": {"wall_s": 1.0}, "search_count": len(searches), "search_s": 1.0, "top_k": len(videos) - 1,
            "like_max_clips": 32, "threshold_in_effect": 0.9, "searches": searches}


def test_analyse_a_raw_record_and_report_it():
    raw = _raw_record()
    found = analyse(raw, seed=0)
    assert found["replay"] == {"max_clip_phrase_difference": 0.0, "near_duplicate_mismatches": 0}
    assert 0.5 < found["calibration"]["threshold"] <= 0.85  # every copy above it, every unrelated pair below
    held = found["held_out"]["chosen"]
    assert held["all"]["precision"] == held["all"]["recall"] == 1.0
    assert found["held_out"]["in_effect"]["trimmed"]["recall"] == 0.0  # 0.85 < 0.9: the setting misses trims
    assert found["ranks_first"]["source_top_hit_is_a_copy"]["share"] == 1.0
    text = report({**found, "raw": raw})
    assert "## Held-out half" in text and "| trimmed |" in text
