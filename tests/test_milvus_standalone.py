"""The C++ Milvus 2.3.5 standalone launcher (vidstrata.stack.milvus): start, stop by the engine's own PID, reuse data;
and the index's calls on that engine, timed text segments included (2.3.5 has no multi-vector or grouped search), and
schema version 2 there: the tenant partition key, reads of one model version, the migration of a version-1 index
(query iterator, rename) and the refusal of a newer one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from pymilvus import MilvusClient

from vidstrata.index.errors import SchemaMismatch
from vidstrata.gateway.lexical import LexicalSearch
from vidstrata.index.filters import RowScope, compile_filters
from vidstrata.index.lexicon import LexiconIndex
from vidstrata.index.schema import SCHEMA_VERSION, SCHEMA_VERSION_PROPERTY, collection_names
from vidstrata.index.segments import SegmentIndex, SegmentRecord
from vidstrata.index.settings import IndexSettings
from vidstrata.index.store import ClipRecord, VideoIndex, VideoRecord
from vidstrata.stack.milvus import (
    ETCD_PEER_PORT,
    MILVUS_STANDALONE_VENV,
    milvus_standalone_binary,
    start_milvus_standalone,
)
from vidstrata.stack.milvus import is_running
from vidstrata.stack.process import ProcessFailed, port_open
from tests.test_index_migrations import SERVED, write_v1_index

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def installed() -> None:
    try:
        milvus_standalone_binary(MILVUS_STANDALONE_VENV)
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"PyPI milvus 2.3.5 cannot be installed here: {exc}")


AXES = np.eye(8, dtype=np.float32)


def _video(video_id: str) -> tuple[VideoRecord, list[ClipRecord]]:
    vector = AXES[0]
    return (VideoRecord(video_id, vector, 2.0, 1, {}, 1.7e9), [ClipRecord(video_id, 0, 0.0, 2.0, vector)])


def _settings(uri: str) -> IndexSettings:
    # Strong reads: each step below reads what the step before it wrote
    return IndexSettings(milvus_uri=uri, vector_dim=8, collection_prefix="t_", milvus_timeout_s=120,
                         read_consistency="Strong")


def _ingest(index: VideoIndex, video_id: str, segments: dict[str, list[SegmentRecord]]) -> None:
    """What the worker writes: each kind's segments first, the video and its clips last."""
    video, clips = _video(video_id)
    for kind, records in segments.items():
        SegmentIndex(index).replace_segments(video, kind, records)
    index.replace_video(video, clips)


def _said(video_id: str, axes: list[int], kind: str = "speech") -> list[SegmentRecord]:
    return [SegmentRecord(video_id, kind, i, 2.0 * i, 2.0 * i + 1.5, f"{kind} {i} of {video_id}", AXES[axis])
            for i, axis in enumerate(axes)]


def _exercise_segments(index: VideoIndex) -> None:
    """Insert, search by kind, re-ingest with fewer segments (replacement), delete: on this engine."""
    segments = SegmentIndex(index)
    _ingest(index, "spoken", {"speech": _said("spoken", [1, 2, 3]), "screen_text": _said("spoken", [4], "screen_text")})
    _ingest(index, "other", {"speech": _said("other", [5])})
    hits = segments.search(AXES[2], "speech", 5).hits
    assert [(h.video_id, h.kind, h.index, h.start_s, h.end_s, h.text) for h in hits][0] == (
        "spoken", "speech", 1, 2.0, 3.5, "speech 1 of spoken")
    assert abs(hits[0].score - 1.0) < 1e-5
    assert [h.video_id for h in segments.search(AXES[4], "screen_text", 5).hits] == ["spoken"]  # kinds kept apart

    _ingest(index, "spoken", {"speech": _said("spoken", [6]), "screen_text": []})  # re-ingest: shorter, no text
    assert [(s.kind, s.index, s.text) for s in segments.get_segments(["spoken"])["spoken"]] == [
        ("speech", 0, "speech 0 of spoken")]
    assert segments.search(AXES[4], "screen_text", 5).hits == []
    assert [h.index for h in segments.search(AXES[6], "speech", 5).hits if h.video_id == "spoken"] == [0]

    assert index.delete_video("spoken") is True
    assert segments.get_segments(["spoken", "other"]).keys() == {"other"}
    assert [h.video_id for h in segments.search(AXES[6], "speech", 5).hits] == ["other"]


def _exercise_lexicon(index: VideoIndex) -> None:
    """The lexical channel's reads on this engine: ARRAY terms with array_contains_any / array_contains_all, the
    tenant conjunct, a re-ingest and the delete (2.3.5 has no BM25 function, no sparse vectors)."""
    lexicon = LexiconIndex(index)
    video, clips = _video("coded")
    said = [SegmentRecord("coded", "screen_text", i, 2.0 * i, 2.0 * i + 1.5, text, AXES[1])
            for i, text in enumerate(["SHIPPING", "ORDER TX 4471"])]
    SegmentIndex(index).replace_segments(video, "screen_text", said)
    lexicon.replace_lexicon(video, "screen_text", said)
    index.replace_video(video, clips)
    search = LexicalSearch(lexicon)
    for query in ("TX4471", '"TX-4471"'):
        hit = search.search(query, compile_filters("", scope=RowScope(tenant=""))).hits[0]
        assert (hit.video_id, hit.index, hit.text) == ("coded", 1, "ORDER TX 4471")
    assert search.search("TX4471", compile_filters("", scope=RowScope(tenant="acme"))).hits == []
    assert lexicon.stats(RowScope(tenant="")).documents == 2
    lexicon.replace_lexicon(video, "screen_text", said[:1])
    assert search.search("TX4471", compile_filters("")).hits == []
    assert index.delete_video("coded") is True
    assert search.search("shipping", compile_filters("")).hits == []


def _exercise_schema_2(uri: str) -> None:
    """A version-1 index migrated in place (backfilled with the served versions), searched under them; a newer refused."""
    settings = IndexSettings(milvus_uri=uri, vector_dim=8, collection_prefix="m_", milvus_timeout_s=120,
                             read_consistency="Strong", index_type="FLAT")
    raw = MilvusClient(uri)
    try:
        names = collection_names("m_")
        write_v1_index(raw, names, videos=5)
        with VideoIndex(settings, served=lambda: SERVED) as index:
            index.ensure_collections()
            assert raw.describe_collection(names.videos)["properties"][SCHEMA_VERSION_PROPERTY] == str(SCHEMA_VERSION)
            tenant = [f for f in raw.describe_collection(names.clips)["fields"] if f["name"] == "tenant"][0]
            assert tenant.get("is_partition_key") is True  # 2.3.5 takes the partition key
            assert index.counts() == (5, 10)
            served = compile_filters("", scope=RowScope(visual_model=SERVED.visual_model, text_model=SERVED.text_model))
            other = compile_filters("", scope=RowScope(visual_model="another/model"))
            assert index.search_videos(AXES[1], 1, served)[0].video_id == "v001"
            assert index.search_videos(AXES[1], 5, other) == []
            assert SegmentIndex(index).search(AXES[2], "speech", 1, served).hits[0].text == "said in v002"
            assert {(c.channel, c.model_version) for c in index.version_counts()} == {
                ("visual", SERVED.visual_model), ("text", SERVED.text_model)}
        raw.alter_collection_properties(names.segments, {SCHEMA_VERSION_PROPERTY: str(SCHEMA_VERSION + 1)})
        with VideoIndex(settings) as index, pytest.raises(SchemaMismatch, match="downgrades are refused"):
            index.ensure_collections()
    finally:
        raw.close()


def test_standalone_serves_segments_stops_by_the_engines_pid_and_keeps_its_data(installed: None, tmp_path: Path) -> None:
    if port_open(ETCD_PEER_PORT):  # one standalone per machine: its etcd peer port is fixed
        with pytest.raises(ProcessFailed, match="another one is probably running"):
            start_milvus_standalone(tmp_path / "milvus")
        pytest.skip(f"another 2.3.5 standalone holds port {ETCD_PEER_PORT}")
    server = start_milvus_standalone(tmp_path / "milvus")
    engine = server.engine_pid()
    try:
        assert engine is not None and server.rss_bytes() > 0
        with VideoIndex(_settings(server.uri)) as index:
            _exercise_segments(index)
            _ingest(index, "kept", {"speech": _said("kept", [7])})
            index.delete_video("other")
        _exercise_schema_2(server.uri)
    finally:
        server.stop()
    assert not is_running(engine)
    assert not server.process.alive()

    again = start_milvus_standalone(tmp_path / "milvus")  # the same folder: the rows are still there
    try:
        with VideoIndex(_settings(again.uri)) as index:
            assert index.counts() == (1, 1)
            assert [h.video_id for h in index.search_videos(AXES[0], 1)] == ["kept"]
            assert [h.text for h in SegmentIndex(index).search(AXES[7], "speech", 1).hits] == ["speech 0 of kept"]
    finally:
        again.stop()


@pytest.mark.xfail(run=False, reason="issue 25, open: on the 2.3.5 standalone the lexical search finds no hit for a code "
                   "its lexicon rows hold (array_contains_any/all were probed to work there; the read path is not yet)")
def test_the_lexical_channel_on_the_standalone(tmp_path: Path) -> None:
    server = start_milvus_standalone(tmp_path / "milvus")
    try:
        with VideoIndex(_settings(server.uri)) as index:
            _exercise_lexicon(index)
    finally:
        server.stop()
