"""VideoIndex against a real Milvus Lite gRPC server: writes, consistency rules, searches, filters, failures."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymilvus import MilvusClient

from tests.fixtures.milvus import drop_prefixed
from vidstrata.index import (
    ClipHit,
    ClipRecord,
    FilterError,
    IndexSettings,
    IndexUnavailable,
    SchemaMismatch,
    VideoHit,
    VideoIndex,
    VideoRecord,
)
from vidstrata.index.schema import SCHEMA_VERSION, SCHEMA_VERSION_PROPERTY
from vidstrata.index.replies import decoded_rows
from vidstrata.stack.milvus import start_milvus_lite
from vidstrata.stack.process import free_port

DIM = 8
OpenIndex = Callable[..., VideoIndex]


def at_cos(cos: float, axis: int = 1) -> np.ndarray:
    """A unit vector whose cosine with e0 is `cos` (the rest of its length lies on `axis`)."""
    vector = np.zeros(DIM, dtype=np.float32)
    vector[0], vector[axis] = cos, math.sqrt(max(0.0, 1.0 - cos * cos))
    return vector


E0 = at_cos(1.0)


def make_video(
    video_id: str,
    clip_vectors: list[np.ndarray],
    metadata: dict[str, str] | None = None,
    duration_s: float | None = None,
    span_s: float = 2.0,
) -> tuple[VideoRecord, list[ClipRecord]]:
    """A video whose vector is the normalised mean of its clips, with clip k spanning [k*span_s, (k+1)*span_s]."""
    clips = [ClipRecord(video_id, k, k * span_s, (k + 1) * span_s, v) for k, v in enumerate(clip_vectors)]
    mean = np.mean(clip_vectors, axis=0)
    video = VideoRecord(
        video_id=video_id,
        vector=mean / np.linalg.norm(mean),
        duration_s=duration_s if duration_s is not None else len(clips) * span_s,
        clip_count=len(clips),
        metadata=metadata or {},
        created_at=1_700_000_000.0,
    )
    return video, clips


@pytest.fixture
def open_index(milvus_uri: str) -> Iterator[OpenIndex]:
    """Opens VideoIndex instances on a collection prefix private to this test; drops the collections after."""
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    opened: list[VideoIndex] = []

    def open_(**overrides: Any) -> VideoIndex:
        fields: dict[str, Any] = dict(
            milvus_uri=milvus_uri, collection_prefix=prefix, vector_dim=DIM, index_type="FLAT"
        )
        index = VideoIndex(IndexSettings(**(fields | overrides)))
        opened.append(index)
        return index

    yield open_
    for index in opened:
        index.close()
    drop_prefixed(milvus_uri, prefix)


@pytest.fixture
def index(open_index: OpenIndex) -> VideoIndex:
    return open_index()


@pytest.fixture
def raw(milvus_uri: str) -> Iterator[MilvusClient]:
    """A plain pymilvus client, to look at (or tamper with) the collections behind VideoIndex's back."""
    client = MilvusClient(milvus_uri)
    yield client
    client.close()


def raw_clip_ids(raw: MilvusClient, index: VideoIndex, video_id: str) -> list[str]:
    rows = raw.query(index.names.clips, filter=f'video_id == "{video_id}"', output_fields=["clip_id"])
    return sorted(row["clip_id"] for row in rows)


def test_ensure_collections_is_idempotent_and_versioned(open_index: OpenIndex, raw: MilvusClient) -> None:
    index = open_index()
    index.ensure_collections()
    index.ensure_collections()
    open_index(index_type="HNSW").ensure_collections()  # index settings do not change an existing collection
    assert index.counts() == (0, 0)
    for name in (index.names.videos, index.names.clips):
        description = raw.describe_collection(name)
        assert description["properties"][SCHEMA_VERSION_PROPERTY] == str(SCHEMA_VERSION)
        assert description["consistency_level_name"] == "Strong"


def test_replace_is_idempotent_and_leaves_no_stale_clips(index: VideoIndex, raw: MilvusClient) -> None:
    video, clips = make_video("v1", [at_cos(c) for c in (0.1, 0.2, 0.3, 0.4, 0.5)], {"lang": "en"})
    index.replace_video(video, clips)
    index.replace_video(video, clips)
    assert index.counts() == (1, 5)

    shorter, new_clips = make_video("v1", [at_cos(0.9), at_cos(0.8)], {"lang": "fr"}, span_s=3.0)
    index.replace_video(shorter, new_clips)
    assert index.counts() == (1, 2)
    assert raw_clip_ids(raw, index, "v1") == ["v1:0", "v1:1"]
    stored = index.get_candidate_vectors(["v1"]).clips["v1"]
    assert [(c.clip_index, c.start_s, c.end_s) for c in stored] == [(0, 0.0, 3.0), (1, 3.0, 6.0)]
    np.testing.assert_allclose(stored[0].vector, at_cos(0.9), atol=1e-6)
    assert index.get_videos(["v1"])["v1"].metadata == {"lang": "fr"}

    longer, _ = make_video("v1", [at_cos(0.1)] * 4)
    index.replace_video(longer, make_video("v1", [at_cos(0.1)] * 4)[1])
    assert raw_clip_ids(raw, index, "v1") == ["v1:0", "v1:1", "v1:2", "v1:3"]
    assert index.counts() == (1, 4)


def test_get_videos_round_trips_fields(index: VideoIndex) -> None:
    video, clips = make_video("vid-42.a:b/c@d", [at_cos(0.3), at_cos(0.6)], {"lang": "en", "a.b-c": "x"}, 7.5)
    index.replace_video(video, clips)
    stored = index.get_videos(["vid-42.a:b/c@d", "missing", "vid-42.a:b/c@d"])
    assert list(stored) == ["vid-42.a:b/c@d"]
    got = stored["vid-42.a:b/c@d"]
    assert (got.duration_s, got.clip_count, got.metadata, got.created_at, got.status) == (
        7.5, 2, {"lang": "en", "a.b-c": "x"}, 1_700_000_000.0, "READY"
    )
    np.testing.assert_allclose(got.vector, video.vector, atol=1e-6)
    assert index.get_candidate_vectors(["missing"]).clips == {}


def test_vectors_are_decoded_in_one_copy_and_equal_pymilvus_own(index: VideoIndex, raw: MilvusClient) -> None:
    """decoded_rows reads a reply's packed vectors at once (the installed pymilvus must keep offering them: a
    Search's fetch depends on it) and gives what pymilvus's own row-by-row decoding gives, bit for bit."""
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        vectors = rng.standard_normal((3, DIM)).astype(np.float32)
        index.replace_video(*make_video(name, list(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))))
    ids = ["c:2", "a:0", "b:1", "a:2"]
    reply = raw.get(index.names.clips, ids=ids, output_fields=["start_s", "vector"])
    assert getattr(reply, "_lazy_field_data", None), "pymilvus no longer keeps the packed vectors of a reply"
    fast = decoded_rows(reply)
    slow = [dict(row) for row in raw.get(index.names.clips, ids=ids, output_fields=["start_s", "vector"])]
    assert [r["clip_id"] for r in fast] == [r["clip_id"] for r in slow]
    for got, want in zip(fast, slow, strict=True):
        assert isinstance(got["vector"], np.ndarray) and got["vector"].dtype == np.float32
        assert got["vector"].tobytes() == np.asarray(want["vector"], dtype=np.float32).tobytes()
        assert got["start_s"] == want["start_s"]
    assert decoded_rows(raw.get(index.names.clips, ids=["none:0"], output_fields=["vector"])) == []
    with_json = decoded_rows(raw.get(index.names.videos, ids=["a"], output_fields=["metadata", "vector"]))
    assert with_json[0]["metadata"] == {} and len(with_json[0]["vector"]) == DIM  # a lazy JSON field: row by row


def test_delete_video(index: VideoIndex, raw: MilvusClient) -> None:
    index.replace_video(*make_video("gone", [at_cos(0.5)] * 3))
    index.replace_video(*make_video("kept", [at_cos(0.5)] * 2))
    assert index.delete_video("gone") is True
    assert index.delete_video("gone") is False
    assert index.get_videos(["gone"]) == {} and index.get_candidate_vectors(["gone"]).clips == {}
    assert raw_clip_ids(raw, index, "gone") == []
    assert index.counts() == (1, 2)
    assert [h.video_id for h in index.search_videos(E0, 10)] == ["kept"]


@pytest.mark.parametrize(
    ("index_type", "metric"), [("FLAT", "COSINE"), ("HNSW", "COSINE"), ("IVF_FLAT", "IP"), ("HNSW", "IP")]
)
def test_search_videos_orders_by_score(open_index: OpenIndex, index_type: str, metric: str) -> None:
    index = open_index(index_type=index_type, metric=metric, ivf_nlist=2)
    for name, cos in [("c", 0.1), ("a", 0.9), ("d", -0.5), ("b", 0.5)]:
        index.replace_video(*make_video(name, [at_cos(cos)]))
    hits = index.search_videos(E0, 3)
    assert [h.video_id for h in hits] == ["a", "b", "c"]
    np.testing.assert_allclose([h.score for h in hits], [0.9, 0.5, 0.1], atol=1e-5)
    assert isinstance(hits[0], VideoHit) and hits[0] == ("a", hits[0].score, 1)
    assert [h.video_id for h in index.search_videos(-E0, 1)] == ["d"]


def test_grouped_clip_search_returns_best_clip_per_video(index: VideoIndex) -> None:
    index.replace_video(*make_video("A", [at_cos(0.2), at_cos(0.95), at_cos(0.5)]))
    index.replace_video(*make_video("B", [at_cos(0.9), at_cos(0.1)]))
    index.replace_video(*make_video("C", [at_cos(-0.3)]))
    results = index.search_clips_grouped(np.stack([E0, -E0]), limit_videos=2)
    assert len(results) == 2
    assert [(h.video_id, h.clip_index) for h in results[0]] == [("A", 1), ("B", 0)]
    np.testing.assert_allclose([h.score for h in results[0]], [0.95, 0.9], atol=1e-5)
    assert isinstance(results[0][0], ClipHit)
    assert [(h.video_id, h.clip_index) for h in results[1]] == [("C", 0), ("B", 1)]
    np.testing.assert_allclose(results[1][0].score, 0.3, atol=1e-5)


def test_clip_overfetch_decides_how_far_grouping_sees(open_index: OpenIndex) -> None:
    crowded = [at_cos(0.99 - k * 1e-4) for k in range(20)]
    # A page of 2 x 8 clips holds only D's; the search widens (x4) while allowed, so a narrow start still finds A.
    for overfetch, widest, expected in [(8, 8, ["D"]), (32, 32, ["D", "A"]), (2, 32, ["D", "A"]), (2, 4, ["D"])]:
        index = open_index(clip_overfetch=overfetch, clip_overfetch_max=widest)
        index.replace_video(*make_video("D", crowded))
        index.replace_video(*make_video("A", [at_cos(0.5)]))
        assert [h.video_id for h in index.search_clips_grouped(E0[None, :], 2)[0]] == expected


def test_filters_apply_to_both_searches(index: VideoIndex) -> None:
    specs = {
        "en-short": ({"lang": "en", "year": "2019"}, 4.0, 0.9),
        "en-long": ({"lang": "en", "year": "2021"}, 60.0, 0.7),
        "fr-long": ({"lang": "fr", "year": "2020"}, 90.0, 0.95),
        "bare": ({}, 30.0, 0.8),
    }
    for video_id, (metadata, duration_s, cos) in specs.items():
        index.replace_video(*make_video(video_id, [at_cos(cos), at_cos(cos - 0.5)], metadata, duration_s))

    cases = {
        'meta.lang == "en"': ["en-short", "en-long"],
        'metadata["lang"] != "en"': ["fr-long"],  # a missing key never matches, not even !=
        'meta.lang not in ["fr"]': ["en-short", "en-long"],
        'meta.lang in ["fr", "de"] or duration_s < 10': ["fr-long", "en-short"],
        "duration_s >= 30 and clip_count == 2": ["fr-long", "bare", "en-long"],
        'meta.year >= "2020" and not video_id == "fr-long"': ["en-long"],
        'video_id in ["bare", "nope"]': ["bare"],
        "created_at > 1.8e9": [],
    }
    for expr, expected in cases.items():
        videos = [h.video_id for h in index.search_videos(E0, 10, expr)]
        clips = [h.video_id for h in index.search_clips_grouped(E0[None, :], 10, expr)[0]]
        assert videos == expected, expr
        assert clips == expected, expr
    assert len(index.search_videos(E0, 10, "")) == 4
    with pytest.raises(FilterError):
        index.search_videos(E0, 10, 'video_id == "x" || 1 == 1')
    with pytest.raises(FilterError):
        index.search_clips_grouped(E0[None, :], 10, "meta.year == 2020")


def test_readers_trust_only_clips_whose_video_row_allows_them(index: VideoIndex, raw: MilvusClient) -> None:
    index.replace_video(*make_video("v", [at_cos(0.9), at_cos(0.5)], {"lang": "en"}))
    # An interrupted first ingest: clips written, video row never written. The raw ANN hit may name the video,
    # but the rescoring read (the one read of video rows per Search) finds nothing to score.
    raw.delete(index.names.videos, ids=["v"])
    assert index.get_candidate_vectors(["v"]).clips == {}
    rows = index.get_candidate_vectors(["v"])
    assert rows.videos == {} and rows.clips == {}
    assert index.counts() == (0, 2)
    # A stale clip beyond the video row's clip_count (an interrupted shrink) stays invisible to rescoring.
    index.replace_video(*make_video("v", [at_cos(0.5), at_cos(0.4)], {"lang": "en"}))
    stale = raw.get(index.names.clips, ids=["v:0"])[0] | {"clip_id": "v:2", "clip_index": 2, "vector": E0}
    raw.upsert(index.names.clips, [stale])
    assert [c.clip_index for c in index.get_candidate_vectors(["v"]).clips["v"]] == [0, 1]
    assert [c.clip_index for c in index.get_candidate_vectors(["v"]).clips["v"]] == [0, 1]
    # With clip counts from ANN hits the reads overlap; the row still decides: a stale hint of 3 keeps 2 clips,
    # a hint of 1 (the video grew since) reads the missing clip afterwards, a video without a row stays absent.
    for hint in (3, 1):
        assert [c.clip_index for c in index.get_candidate_vectors(["v", "gone"], {"v": hint, "gone": 2}).clips["v"]] == [0, 1]
    assert "gone" not in index.get_candidate_vectors(["v", "gone"], {"v": 2, "gone": 2}).videos
    np.testing.assert_allclose(index.get_candidate_vectors(["v"]).videos["v"], index.get_videos(["v"])["v"].vector)


@pytest.mark.parametrize("metric", ["COSINE", "IP"])
def test_rows_the_video_search_found_are_not_read_again(open_index: OpenIndex, metric: str) -> None:
    """Under COSINE a video ANN hit gives the video level (its cosine) and the row's clip count, so its row is not
    read again and only its clips are; under IP a hit's score is no cosine, so the row is read as before."""
    index = open_index(metric=metric)
    index.replace_video(*make_video("found", [at_cos(0.9), at_cos(0.7)]))
    index.replace_video(*make_video("other", [at_cos(0.2, axis=2), at_cos(0.1, axis=3)]))
    hits = [h for h in index.search_videos(E0, 2) if h.video_id == "found"]
    rows = index.get_candidate_vectors(["found", "other"], {"found": 2, "other": 2}, hits)
    assert [c.clip_index for c in rows.clips["found"]] == [0, 1] and len(rows.clips["other"]) == 2
    if metric == "COSINE":
        assert set(rows.videos) == {"other"} and set(rows.video_cosines) == {"found"}
        stored = index.get_videos(["found"])["found"].vector
        assert rows.video_cosines["found"] == pytest.approx(float(stored @ E0 / np.linalg.norm(stored)), abs=1e-5)
    else:
        assert set(rows.videos) == {"found", "other"} and rows.video_cosines == {}
    # The hit's clip count is the row's: a clip past it (an interrupted shrink) stays untrusted.
    stale = hits[0]._replace(clip_count=1)
    assert [c.clip_index for c in index.get_candidate_vectors(["found"], {"found": 2}, [stale]).clips["found"]] == (
        [0] if metric == "COSINE" else [0, 1])


def test_a_second_process_sees_the_data(index: VideoIndex, milvus_uri: str) -> None:
    index.replace_video(*make_video("near", [at_cos(0.9), at_cos(0.8)], {"lang": "en"}))
    index.replace_video(*make_video("far", [at_cos(0.1)]))
    script = (
        "import json, numpy as np\n"
        "from index import IndexSettings, VideoIndex\n"
        "q = np.eye(8, dtype=np.float32)[0]\n"
        "with VideoIndex(IndexSettings()) as index:\n"
        "    print(json.dumps({'videos': index.search_videos(q, 5),\n"
        "                      'clips': index.search_clips_grouped(q[None, :], 5, 'meta.lang == \"en\"'),\n"
        "                      'counts': index.counts()}))\n"
    )
    env = os.environ | {
        "VIDSTRATA_MILVUS_URI": milvus_uri,
        "VIDSTRATA_MILVUS_COLLECTION_PREFIX": index.settings.collection_prefix,
        "VIDSTRATA_MILVUS_VECTOR_DIM": str(DIM),
        "VIDSTRATA_MILVUS_INDEX_TYPE": "flat",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).parent.parent, check=True,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert [v[0] for v in seen["videos"]] == ["near", "far"]
    assert [(c[0], c[1]) for c in seen["clips"][0]] == [("near", 0)]
    assert seen["counts"] == [2, 3]


def test_schema_mismatch_is_an_error(open_index: OpenIndex, raw: MilvusClient) -> None:
    index = open_index()
    index.ensure_collections()
    with pytest.raises(SchemaMismatch, match="vector dim 8, settings say 16"):
        open_index(vector_dim=16).ensure_collections()
    raw.alter_collection_properties(index.names.clips, {SCHEMA_VERSION_PROPERTY: "0"})
    with pytest.raises(SchemaMismatch, match=f"has schema version 0, this code needs version {SCHEMA_VERSION}"):
        open_index().ensure_collections()
    foreign = open_index(collection_prefix=index.settings.collection_prefix + "x_")
    raw.create_collection(foreign.names.videos, dimension=DIM)
    with pytest.raises(SchemaMismatch, match="no vidstrata schema version"):
        foreign.search_videos(E0, 1)


@pytest.mark.parametrize(
    ("target", "attr", "value", "message"),
    [
        ("video", "video_id", "", "video_id '' must match"),
        ("video", "video_id", 'a"b', "must match"),
        ("video", "video_id", "x" * 129, "must match"),
        ("video", "vector", np.ones(DIM + 1), r"video vector must have shape \(8,\)"),
        ("video", "vector", np.full(DIM, np.nan), "NaN or infinite"),
        ("video", "vector", np.zeros(DIM), "zero vector"),
        ("video", "duration_s", -1.0, "duration_s must be >= 0"),
        ("video", "duration_s", float("inf"), "finite number"),
        ("video", "created_at", "yesterday", "created_at must be a finite number"),
        ("video", "metadata", {"bad key": "x"}, "metadata key 'bad key' must match"),
        ("video", "metadata", {"year": 2020}, r"metadata\['year'\] must be a str"),
        ("video", "metadata", {"big": "x" * 70000}, "larger than 65536 bytes"),
        ("video", "metadata", ["lang"], "metadata must be a dict"),
        ("video", "status", "", "status must be"),
        ("video", "clip_count", 3, "clip_count is 3 but 2 clips"),
        ("clips", None, [], "needs 1..1024 clips"),
        ("clip", "clip_index", 5, "exactly 0..clip_count-1"),
        ("clip", "clip_index", 0, "exactly 0..clip_count-1"),
        ("clip", "clip_index", 1.0, "clip_index must be an int"),
        ("clip", "video_id", "other", "belongs to 'other'"),
        ("clip", "start_s", 9.0, r"end_s must be >= 9.0"),
        ("clip", "start_s", -0.5, "start_s must be >= 0"),
        ("clip", "end_s", float("nan"), "end_s must be a finite number"),
        ("clip", "vector", np.ones(3), r"clip 1 vector must have shape \(8,\)"),
        ("clip", "vector", np.array([np.inf] + [0.0] * (DIM - 1)), "NaN or infinite"),
    ],
)
def test_replace_rejects_bad_input(target: str, attr: str, value: Any, message: str) -> None:
    # No server behind this port: input is checked before any I/O, or this would be IndexUnavailable.
    index = VideoIndex(IndexSettings(milvus_uri=f"http://127.0.0.1:{free_port()}", vector_dim=DIM))
    video, clips = make_video("ok", [at_cos(0.5), at_cos(0.6)], {"lang": "en"})
    if target == "clips":
        clips = value
    else:
        setattr(video if target == "video" else clips[1], attr, value)
    with pytest.raises(ValueError, match=message):
        index.replace_video(video, clips)


def test_reads_reject_bad_input() -> None:
    index = VideoIndex(IndexSettings(milvus_uri=f"http://127.0.0.1:{free_port()}", vector_dim=DIM))
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        index.search_videos(np.ones(4), 1)
    with pytest.raises(ValueError, match="zero vector"):
        index.search_videos(np.zeros(DIM), 1)
    with pytest.raises(ValueError, match=r"limit must be an int in \[1, 16384\]"):
        index.search_videos(E0, 0)
    with pytest.raises(ValueError, match="limit_videos must be an int"):
        index.search_clips_grouped(E0[None, :], 20000)
    with pytest.raises(ValueError, match=r"shape \(N>=1, 8\)"):
        index.search_clips_grouped(E0, 1)
    with pytest.raises(ValueError, match="NaN"):
        index.search_clips_grouped(np.full((2, DIM), np.nan), 1)
    with pytest.raises(ValueError, match="must match"):
        index.get_candidate_vectors(['x" or video_id != "'])
    with pytest.raises(ValueError, match="must match"):
        index.delete_video("")


def test_unavailable_server_raises_index_unavailable_and_recovers(tmp_path: Path) -> None:
    nothing = VideoIndex(IndexSettings(milvus_uri=f"http://127.0.0.1:{free_port()}", vector_dim=DIM))
    with pytest.raises(IndexUnavailable):
        nothing.search_videos(E0, 1)

    proc, uri = start_milvus_lite(tmp_path)
    try:
        index = VideoIndex(IndexSettings(milvus_uri=uri, vector_dim=DIM, index_type="FLAT", milvus_timeout_s=3))
        index.replace_video(*make_video("v", [at_cos(0.9)]))
        proc.stop()
        with pytest.raises(IndexUnavailable):
            index.search_videos(E0, 1)
        with pytest.raises(IndexUnavailable):
            index.replace_video(*make_video("w", [at_cos(0.9)]))
        # Same data folder and port: the data is back, and the same VideoIndex reconnects and reloads.
        proc, _ = start_milvus_lite(tmp_path, port=int(uri.rsplit(":", 1)[1]))
        assert [h.video_id for h in index.search_videos(E0, 1)] == ["v"]
        assert index.counts() == (1, 1)
        index.close()
    finally:
        proc.stop()


def test_page_videos_pages_by_primary_key_over_segments_and_deletes(index: VideoIndex, raw: MilvusClient) -> None:
    """A plain query with a limit returns any matching rows; page_videos returns the smallest ids after the cursor."""
    index.ensure_collections()
    rng = np.random.default_rng(7)
    ids = [f"v{n:05d}" for n in rng.permutation(600)]
    for start in range(0, len(ids), 200):  # three writes, each flushed: several segments, ids interleaved
        raw.insert(index.names.videos, [{
            "video_id": v, "vector": E0.tolist(), "duration_s": 1.0, "clip_count": 1, "status": "READY",
            "metadata": {"kind": "b" if int(v[1:]) % 3 == 0 else "a"}, "created_at": 1.7e9,
            "visual_model": "m", "tenant": ""} for v in ids[start:start + 200]])
        raw.flush(index.names.videos)
    raw.delete(index.names.videos, ids=ids[:50])
    live = sorted(ids[50:])
    for filter_expr, want in (("", live), ('meta.kind == "b"', [v for v in live if int(v[1:]) % 3 == 0])):
        got, after = [], ""
        while page := index.page_videos(after, 37, filter_expr):
            got += [r.video_id for r in page]
            after = page[-1].video_id
        assert got == want
    (row,) = index.page_videos("", 1)
    assert (row.video_id, row.clip_count, row.duration_s, row.status) == (live[0], 1, 1.0, "READY")


def test_clip_rows_a_restarted_milvus_dropped_are_caught_before_the_video_row_shows_them(
    index: VideoIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledged clip writes lost by a restart (seen under chaos): the write fails as retryable and leaves no video
    row, so Search never shows the video without its clips; written again, it is whole."""
    video, clips = make_video("lossy", [at_cos(c) for c in (0.1, 0.2, 0.3)])
    client = index.connection._ensured_client()
    upsert = client.upsert

    def losing_upsert(collection_name: str, data: list, **kwargs: object) -> object:
        if collection_name == index.names.clips:
            data = data[:-1]  # the last clip row never reaches storage
        return upsert(collection_name, data, **kwargs)

    monkeypatch.setattr(client, "upsert", losing_upsert)
    with pytest.raises(IndexUnavailable, match="kept 2 of the 3 clip rows"):
        index.replace_video(video, clips)
    assert "lossy" not in index.get_videos(["lossy"])
    monkeypatch.setattr(client, "upsert", upsert)
    index.replace_video(video, clips)
    assert len(index.get_candidate_vectors(["lossy"]).clips["lossy"]) == 3
