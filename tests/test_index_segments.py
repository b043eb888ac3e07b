"""SegmentIndex (timed speech and on-screen text) against the real Milvus Lite gRPC server."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import MilvusClient

from vidstrata.index.segments import SegmentIndex, SegmentRecord
from vidstrata.index.store import VideoIndex
from tests.test_index_store import E0, OpenIndex, at_cos, make_video, open_index, raw  # noqa: F401 - fixtures


def speech(video_id: str, cosines: list[float], kind: str = "speech") -> list[SegmentRecord]:
    return [SegmentRecord(video_id, kind, i, 2.0 * i, 2.0 * i + 1.5, f"{kind} line {i} of {video_id}", at_cos(c))
            for i, c in enumerate(cosines)]


@pytest.fixture
def stores(open_index: OpenIndex) -> tuple[VideoIndex, SegmentIndex]:  # noqa: F811 - the imported fixture
    videos = open_index()
    return videos, SegmentIndex(videos)


def write(stores: tuple[VideoIndex, SegmentIndex], video_id: str, segments: dict[str, list[SegmentRecord]]) -> None:
    """What the worker does: segments of each kind first, the video and its clips last."""
    videos, segments_index = stores
    video, clips = make_video(video_id, [at_cos(0.1)])
    for kind, records in segments.items():
        segments_index.replace_segments(video, kind, records)
    videos.replace_video(video, clips)


def test_reingest_replaces_segments_and_delete_removes_them(stores, raw: MilvusClient) -> None:  # noqa: F811
    videos, segments = stores
    write(stores, "v", {"speech": speech("v", [0.2, 0.9, 0.4]), "screen_text": speech("v", [0.3], "screen_text")})
    stored = segments.get_segments(["v"])["v"]
    assert [(s.kind, s.index, s.start_s, s.end_s) for s in stored] == [
        ("screen_text", 0, 0.0, 1.5), ("speech", 0, 0.0, 1.5), ("speech", 1, 2.0, 3.5), ("speech", 2, 4.0, 5.5)]
    assert stored[2].text == "speech line 1 of v"
    np.testing.assert_allclose(stored[2].vector, at_cos(0.9), atol=1e-6)

    write(stores, "v", {"speech": speech("v", [0.5]), "screen_text": []})  # shorter transcript, no text now
    again = segments.get_segments(["v"], vectors=False)["v"]
    assert [(s.kind, s.index) for s in again] == [("speech", 0)] and again[0].vector is None
    assert len(raw.query(segments.name, filter='video_id == "v"', output_fields=["segment_id"])) == 1

    assert videos.delete_video("v") is True
    assert segments.get_segments(["v"]) == {}
    assert raw.query(segments.name, filter='video_id == "v"', output_fields=["segment_id"]) == []


def test_search_gives_the_best_segment_of_each_video_and_the_rescoring_read_hides_unfinished_ingests(stores) -> None:
    videos, segments = stores
    write(stores, "a", {"speech": speech("a", [0.2, 0.8])})
    write(stores, "b", {"speech": speech("b", [0.6]), "screen_text": speech("b", [0.95], "screen_text")})
    video, _ = make_video("pending", [at_cos(0.1)])
    segments.replace_segments(video, "speech", speech("pending", [1.0]))  # its video row is not written yet
    found = segments.search(E0, "speech", 10)
    hits = found.hits
    # ANN hits are candidates: the pending video is one, and the rescoring read (video rows) is what drops it
    assert [(h.video_id, h.index) for h in hits] == [("pending", 0), ("a", 1), ("b", 0)]
    assert found.unseen_below == float("-inf")  # every speech segment came back: no other video has any
    assert found.unseen(["a", "z"], floor=-1.0) == []
    assert set(videos.get_candidate_vectors([h.video_id for h in hits]).videos) == {"a", "b"}
    assert hits[1].text == "speech line 1 of a" and (hits[1].start_s, hits[1].end_s) == (2.0, 3.5)
    np.testing.assert_allclose([h.score for h in hits], [1.0, 0.8, 0.6], atol=1e-5)
    assert [h.video_id for h in segments.search(E0, "screen_text", 10).hits] == ["b"]
    assert segments.search(E0, "speech", 10, filter_expr='metadata["lang"] == "xx"').hits == []


def test_a_full_page_bounds_the_videos_it_did_not_reach_and_a_long_read_is_one_query(stores) -> None:
    videos, segments = stores
    for i, cosine in enumerate([0.9, 0.8, 0.7, 0.6]):
        write(stores, f"v{i}", {"speech": speech(f"v{i}", [cosine, cosine - 0.5])})
    found = segments.search(E0, "speech", 2)  # two videos wanted: v2 is the first one cut off
    assert [h.video_id for h in found.hits] == ["v0", "v1"]
    assert found.unseen_below == pytest.approx(0.7, abs=1e-5)
    assert found.unseen(["v0", "v2", "v3"], floor=0.5) == ["v2", "v3"]  # might score >= 0.5: read them
    assert found.unseen(["v0", "v2", "v3"], floor=0.75) == []  # nothing unseen reaches 0.75
    calls = []
    real = videos.connection.call
    videos.connection.call = lambda what, fn: calls.append(what) or real(what, fn)  # count round trips
    assert sorted(segments.get_segments([f"v{i}" for i in range(4)] + [f"none{i}" for i in range(297)])) == ["v0", "v1", "v2", "v3"]
    assert len(calls) == 2  # 301 distinct ids: two reads of up to 256 videos, not one per two videos as before


def test_bad_segments_are_refused_before_any_write(stores) -> None:
    videos, segments = stores
    video, _ = make_video("v", [at_cos(0.1)])
    with pytest.raises(ValueError, match="kind"):
        segments.replace_segments(video, "smell", [])
    with pytest.raises(ValueError, match="0..1"):
        segments.replace_segments(video, "speech", [speech("v", [0.1, 0.2])[1], speech("v", [0.1, 0.2])[1]])
    bad = speech("v", [0.1])
    bad[0].vector = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="zero vector"):
        segments.replace_segments(video, "speech", bad)
    long = speech("v", [0.1])
    long[0].text = "é" * 5000  # cut to the column's bytes at a character boundary, not refused
    segments.replace_segments(video, "speech", long)
    assert len(segments.get_segments(["v"])["v"][0].text.encode()) <= 2048
