"""Evaluation datasets: the JSONL format round-trips, queries know their targets, generators tell the truth."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from bench.datasets import (
    ORDER_PHOTOS, ORDER_PHRASINGS, TINY, make_moments, make_ordered, make_scenes, make_shapes, order_phrasing, queries,
    reverses, scene_spans,
)
from vidstrata.gateway.order import read_order
from vidstrata.spec.preprocess import phrase_texts
from vidstrata.media.photos import CAPTIONS
from vidstrata.encoders.dataset import Item, Scene, read_jsonl, write_jsonl


def _frame_count(path):
    return len(_frames(path))


def _frames(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(container.streams.video[0])]


def test_jsonl_round_trip_keeps_paths_relative_to_the_file(tmp_path):
    items = [
        Item(tmp_path / "videos" / "a.mp4", ["a cat, then a clock"], [Scene(0.0, 2.0, "a cat"), Scene(2.0, 5.5, "a clock")]),
        Item(tmp_path / "elsewhere.mp4", ["a rocket"], id="rocket-1"),
    ]
    path = write_jsonl(tmp_path / "set.jsonl", items)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["video"] == "videos/a.mp4" and "scenes" not in rows[1] and rows[1]["id"] == "rocket-1"
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "set.jsonl").write_text(path.read_text())
    again = read_jsonl(moved / "set.jsonl")
    assert again[0].video == moved / "videos" / "a.mp4"
    assert again[0].scenes == items[0].scenes and again[0].captions == items[0].captions
    assert [i.video_id for i in again] == ["a", "rocket-1"]


@pytest.mark.parametrize("line, message", [
    ('{"captions": ["x"]}', "not a dataset row"),
    ('{"video": "a.mp4"}', "at least one caption or scene"),
    ('{"video": "a.mp4", "scenes": [{"start_s": 3, "end_s": 1, "caption": "x"}]}', "start_s < end_s"),
])
def test_bad_rows_name_the_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"video": "ok.mp4", "captions": ["fine"]}\n' + line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        read_jsonl(path)
    assert "bad.jsonl:2" in str(info.value)


def test_duplicate_video_ids_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [Item(tmp_path / "x" / "v.mp4", ["a"]), Item(tmp_path / "y" / "v.mp4", ["b"])])
    with pytest.raises(ValueError, match="unique"):
        read_jsonl(path)


def test_queries_carry_every_video_the_text_describes(tmp_path):
    items = [
        Item(tmp_path / "v1.mp4", ["a cat, then a clock"], [Scene(0, 2, "a cat"), Scene(2, 4, "a clock")]),
        Item(tmp_path / "v2.mp4", ["a clock, then a cat"], [Scene(0, 3, "a clock"), Scene(3, 4, "a cat")]),
        Item(tmp_path / "v3.mp4", ["a cat"], [Scene(0, 1, "a cat")]),
    ]
    qs = queries(items)
    assert len(qs) == 3 + 5  # one per caption, one per scene
    cat_in_v2 = next(q for q in qs if q.kind == "scene" and q.target == "v2" and q.text == "a cat")
    assert cat_in_v2.span == (3, 4) and cat_in_v2.relevant == {"v1", "v2", "v3"}
    video_cat = next(q for q in qs if q.kind == "video" and q.text == "a cat")
    assert video_cat.relevant == {"v3"} and video_cat.span is None, "caption and scene relevance are kept apart"


def test_scenes_generator_writes_what_its_jsonl_says(tmp_path):
    path = make_scenes(tmp_path, videos=3, seed=7, sizes=TINY)
    items = read_jsonl(path)
    assert len(items) == 3
    for item in items:
        assert TINY.scenes[0] <= len(item.scenes) <= TINY.scenes[1]
        captions = [s.caption for s in item.scenes]
        assert set(captions) <= set(CAPTIONS.values()) and len(set(captions)) == len(captions)
        assert item.captions == [", then ".join(captions)]
        assert item.scenes[0].start_s == 0 and all(a.end_s == b.start_s for a, b in zip(item.scenes, item.scenes[1:]))
        assert all(TINY.scene_s[0] <= s.end_s - s.start_s <= TINY.scene_s[1] for s in item.scenes)
        assert _frame_count(item.video) == round(item.scenes[-1].end_s * TINY.fps)
    assert read_jsonl(make_scenes(tmp_path / "again", videos=3, seed=7, sizes=TINY))[1].scenes == items[1].scenes


def test_shapes_generator_captions_every_event(tmp_path):
    items = read_jsonl(make_shapes(tmp_path, videos=4, seed=1, sizes=TINY))
    for item in items:
        clauses = item.captions[0].split(", then ")
        assert len(clauses) == len(item.scenes)
        for clause, scene in zip(clauses, item.scenes):
            thing = " ".join(scene.caption.split()[:3])  # "a red circle"
            motion = scene.caption.split()[-1]
            assert clause in (f"{thing} moves {motion}", f"{thing} appears")
        assert clauses[0].endswith("moves " + item.scenes[0].caption.split()[-1])
        assert _frame_count(item.video) == round(item.scenes[-1].end_s * TINY.fps)


def test_ordered_pairs_show_the_same_scenes_in_opposite_orders(tmp_path):
    items = read_jsonl(make_ordered(tmp_path, videos=4, seed=3, sizes=TINY))
    pairs = reverses(items)
    assert len(items) == 4 and pairs == {"ordered-0000-a": "ordered-0000-b", "ordered-0000-b": "ordered-0000-a",
                                         "ordered-0001-a": "ordered-0001-b", "ordered-0001-b": "ordered-0001-a"}
    by_id = {item.video_id: item for item in items}
    first, second = by_id["ordered-0000-a"], by_id["ordered-0000-b"]
    assert [s.caption for s in first.scenes] == [s.caption for s in second.scenes][::-1]
    assert all(s.end_s - s.start_s == round(s.end_s - s.start_s) for s in first.scenes), "cuts on keyframes"
    a, b = _frames(first.video), _frames(second.video)
    n = round((first.scenes[0].end_s - first.scenes[0].start_s) * TINY.fps)
    shown_later = b[len(b) - n:]
    assert np.abs(np.stack(a[:n]) - np.stack(shown_later)).mean() < 3, "the same scene: noise and compression apart"
    assert np.abs(np.stack(a[:n]) - np.stack(b[:n])).mean() > 10, "the other scene comes first in the reverse"


def test_ordered_captions_state_the_videos_order_in_every_phrasing(tmp_path):
    items = read_jsonl(make_ordered(tmp_path, videos=2, seed=0, sizes=TINY))
    for item in items:
        earlier, later = item.scenes[0].caption, item.scenes[1].caption
        assert [order_phrasing(item, c) for c in item.captions] == list(ORDER_PHRASINGS)
        for caption in item.captions:
            phrases = phrase_texts(caption, 8)
            stated = read_order(caption, phrases)
            assert len(phrases) == 2 and stated is not None, caption
            events = [phrases[i] for i in stated.order]
            assert events[0].endswith(earlier) and events[1].endswith(later), (caption, stated)
    assert order_phrasing(items[0], "a cat then a dog") is None
    qs = [q for q in queries(items) if q.kind == "video"]
    assert len(qs) == 2 * len(ORDER_PHRASINGS) and all(q.relevant == {q.target} for q in qs)
    with pytest.raises(ValueError, match="at most"):
        make_ordered(tmp_path / "big", videos=2 * (len(ORDER_PHOTOS) * (len(ORDER_PHOTOS) - 1) // 2 + 1))


def test_moments_videos_show_a_scene_twice_around_another(tmp_path):
    items = read_jsonl(make_moments(tmp_path, videos=3, seed=2, sizes=TINY))
    spans = scene_spans(items)
    for item in items:
        a, b, again = item.scenes
        assert a.caption == again.caption != b.caption and a.end_s == b.start_s and b.end_s == again.start_s
        assert spans[item.video_id, a.caption] == [(a.start_s, a.end_s), (again.start_s, again.end_s)]
        assert _frame_count(item.video) == round(again.end_s * TINY.fps)
    twice = [q for q in queries(items) if q.kind == "scene" and len(spans[q.target, q.text]) == 2]
    assert len(twice) == 3 and all(q.span == spans[q.target, q.text][0] for q in twice)
    assert not reverses(items), "no video shows another's scenes the other way round"
