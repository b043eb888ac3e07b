"""Schema version 2 against a real Milvus Lite server: rows carry model versions and a tenant, reads see only the
versions they ask for, a version-1 index is migrated in place (killed and resumed), and a newer one is refused."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from pymilvus import MilvusClient

from tests.fixtures.milvus import drop_prefixed
from vidstrata.index import migrations
from vidstrata.index.errors import IndexUnavailable, SchemaMismatch
from vidstrata.index.filters import RowScope, compile_filters
from vidstrata.index.migrations import (
    BACKUP_SUFFIX,
    CURSOR_PROPERTY,
    HEARTBEAT_PROPERTY,
    TARGET_SUFFIX,
    UNKNOWN_MODEL,
    MigrationLock,
    v1_schemas,
)
from vidstrata.index.schema import (
    SCHEMA_VERSION,
    SCHEMA_VERSION_PROPERTY,
    CollectionNames,
    ModelVersions,
    collection_names,
    index_params,
)
from vidstrata.index.segments import SegmentIndex, SegmentRecord
from vidstrata.index.settings import IndexSettings
from vidstrata.index.store import ClipRecord, VersionCount, VideoIndex, VideoRecord

DIM = 8
AXES = np.eye(DIM, dtype=np.float32)
SERVED = ModelVersions("text1/frame1", "text1")
OpenIndex = Callable[..., VideoIndex]


@pytest.fixture
def prefix(milvus_uri: str) -> Iterator[str]:
    """A collection prefix private to the test; its collections (backups and lock included) are dropped after."""
    name = f"m{uuid.uuid4().hex[:12]}_"
    yield name
    drop_prefixed(milvus_uri, name)


@pytest.fixture
def open_index(milvus_uri: str, prefix: str) -> Iterator[OpenIndex]:
    opened: list[VideoIndex] = []

    def open_(served: Callable[[], ModelVersions] | None = lambda: SERVED, **overrides: Any) -> VideoIndex:
        settings = IndexSettings(**({"milvus_uri": milvus_uri, "collection_prefix": prefix, "vector_dim": DIM,
                                     "index_type": "FLAT", "read_consistency": "Strong"} | overrides))
        opened.append(VideoIndex(settings, served))
        return opened[-1]

    yield open_
    for index in opened:
        index.close()


@pytest.fixture
def raw(milvus_uri: str) -> Iterator[MilvusClient]:
    client = MilvusClient(milvus_uri)
    yield client
    client.close()


def _video(video_id: str, axis: int, visual_model: str, clips: int = 2, tenant: str = "") -> tuple[VideoRecord, list[ClipRecord]]:
    return (VideoRecord(video_id, AXES[axis], 2.0 * clips, clips, {"lang": "en"}, 1.7e9, visual_model=visual_model,
                        tenant=tenant),
            [ClipRecord(video_id, i, 2.0 * i, 2.0 * i + 2, AXES[axis]) for i in range(clips)])


def test_a_search_sees_only_rows_of_its_model_version_and_stats_count_each(open_index: OpenIndex, raw: MilvusClient) -> None:
    index = open_index()
    segments = SegmentIndex(index)
    for video_id, visual, text in (("old", "text0/frame0", "text0"), ("new", *SERVED)):
        video, clips = _video(video_id, 0, visual)
        segments.replace_segments(video, "speech", [SegmentRecord(video_id, "speech", 0, 0.0, 1.0, "hi", AXES[1])],
                                  text_model=text)
        index.replace_video(video, clips)
    served = RowScope(visual_model=SERVED.visual_model, text_model=SERVED.text_model)
    where = compile_filters('meta.lang == "en" or video_id == "old"', scope=served)
    assert [h.video_id for h in index.search_videos(AXES[0], 10, where)] == ["new"]
    assert [h.video_id for h in index.search_clips_grouped(AXES[:1], 10, where)[0]] == ["new"]
    assert list(segments.search(AXES[1], "speech", 10, where).by_video) == ["new"]
    rows = index.get_candidate_vectors(["old", "new"], {"old": 2, "new": 2}, scope=served)
    assert list(rows.videos) == ["new"] and list(rows.clips) == ["new"]
    assert list(segments.get_segments(["old", "new"], scope=served)) == ["new"]
    assert index.get_videos(["new"])["new"].visual_model == SERVED.visual_model
    assert sorted(index.search_videos(AXES[0], 10)) != []  # an open scope sees both
    assert len(index.search_videos(AXES[0], 10)) == 2
    assert sorted(index.version_counts(), key=lambda c: (c.channel, c.model_version)) == [
        VersionCount("text", "text0", segments=1), VersionCount("text", "text1", segments=1),
        VersionCount("visual", "text0/frame0", videos=1, clips=2), VersionCount("visual", "text1/frame1", videos=1, clips=2),
    ]
    tenant = [f for f in raw.describe_collection(index.names.videos)["fields"] if f["name"] == "tenant"][0]
    assert tenant.get("is_partition_key") is True  # Milvus Lite 3.2.2 takes the partition key


def test_rows_refuse_a_bad_model_version_or_tenant(open_index: OpenIndex) -> None:
    index = open_index()
    with pytest.raises(ValueError, match="model version"):
        index.replace_video(*_video("v", 0, 'a" or "1'))
    with pytest.raises(ValueError, match="tenant"):
        index.replace_video(*_video("v", 0, "m", tenant="not a tenant"))


# -- migration from schema version 1 ---------------------------------------------------------------------------


def write_v1_index(client: MilvusClient, names: CollectionNames, videos: int) -> None:
    """An index as schema version 1 (the frozen definitions) wrote it: each video with 2 clips and 1 speech segment."""
    settings = IndexSettings(vector_dim=DIM, index_type="FLAT")
    for name, schema in v1_schemas(names, DIM):
        client.create_collection(name, schema=schema, index_params=index_params(settings), consistency_level="Strong",
                                 properties={SCHEMA_VERSION_PROPERTY: "1"})
    copies = {"metadata": {"lang": "en"}, "video_duration_s": 4.0, "video_clip_count": 2, "video_created_at": 1.7e9}
    ids = [f"v{n:03d}" for n in range(videos)]
    client.insert(names.videos, [{"video_id": v, "vector": AXES[n % DIM].tolist(), "duration_s": 4.0, "clip_count": 2,
                                  "status": "READY", "metadata": {"lang": "en"}, "created_at": 1.7e9}
                                 for n, v in enumerate(ids)])
    client.insert(names.clips, [{"clip_id": f"{v}:{i}", "video_id": v, "clip_index": i, "start_s": 2.0 * i,
                                 "end_s": 2.0 * i + 2, "vector": AXES[n % DIM].tolist(), **copies}
                                for n, v in enumerate(ids) for i in range(2)])
    client.insert(names.segments, [{"segment_id": f"{v}:speech:0", "video_id": v, "kind": "speech", "segment_index": 0,
                                    "start_s": 0.0, "end_s": 1.0, "text": f"said in {v}", "vector": AXES[n % DIM].tolist(),
                                    **copies} for n, v in enumerate(ids)])


def _all(client: MilvusClient, name: str, fields: list[str]) -> list[dict[str, Any]]:
    client.load_collection(name)
    return sorted((dict(r) for r in client.query(name, filter="", output_fields=fields, limit=16384,
                                                   consistency_level="Strong")), key=str)


def test_a_version_1_index_is_migrated_in_place_with_every_row_kept(open_index: OpenIndex, raw: MilvusClient,
                                                                     prefix: str) -> None:
    names = collection_names(prefix)
    write_v1_index(raw, names, videos=5)
    before = {n: _all(raw, n, ["*"]) for n in (names.videos, names.clips, names.segments)}
    index = open_index()
    index.ensure_collections()
    for name, rows in before.items():
        assert raw.describe_collection(name)["properties"][SCHEMA_VERSION_PROPERTY] == str(SCHEMA_VERSION)
        model = "text_model" if name == names.segments else "visual_model"
        value = SERVED.text_model if name == names.segments else SERVED.visual_model
        after = _all(raw, name, ["*"])
        assert len(after) == len(rows)
        for old, new in zip(rows, after, strict=True):  # every field kept, the new ones backfilled
            assert new.pop(model) == value and new.pop("tenant") == ""
            np.testing.assert_allclose(new.pop("vector"), old.pop("vector"))
            assert new == old
        assert raw.has_collection(name + BACKUP_SUFFIX) and not raw.has_collection(name + TARGET_SUFFIX)
    assert not raw.has_collection(prefix + migrations.LOCK_NAME)
    served = RowScope(visual_model=SERVED.visual_model, text_model=SERVED.text_model)
    where = compile_filters("", scope=served)
    assert index.search_videos(AXES[1], 1, where)[0].video_id == "v001"  # search works on the migrated rows
    assert SegmentIndex(index).search(AXES[2], "speech", 1, where).hits[0].text == "said in v002"
    assert {(c.channel, c.model_version, c.videos, c.clips, c.segments) for c in index.version_counts()} == {
        ("visual", SERVED.visual_model, 5, 10, 0), ("text", SERVED.text_model, 0, 0, 5)}
    index.replace_video(*_video("v999", 3, SERVED.visual_model))  # and writes
    open_index().ensure_collections()  # a second open finds nothing to do


def test_a_process_that_does_not_know_the_served_versions_backfills_unknown(open_index: OpenIndex, raw: MilvusClient,
                                                                             prefix: str) -> None:
    names = collection_names(prefix)
    write_v1_index(raw, names, videos=1)
    open_index(served=None).ensure_collections()
    assert {r["visual_model"] for r in _all(raw, names.videos, ["visual_model"])} == {UNKNOWN_MODEL}


@pytest.mark.e2e
def test_a_killed_migration_resumes_where_it_stopped_and_the_old_index_stays_in_use(
        open_index: OpenIndex, raw: MilvusClient, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    names = collection_names(prefix)
    write_v1_index(raw, names, videos=7)
    monkeypatch.setattr(migrations, "MIGRATION_PAGE_ROWS", 3)
    pages = []
    real_upsert = MilvusClient.upsert

    def dies_on_the_third_page(self: MilvusClient, collection: str, rows: list, **kwargs: Any) -> Any:
        pages.append(collection)
        if len(pages) == 3:
            raise KeyboardInterrupt("killed")  # not an error the migration handles: as if the process died
        return real_upsert(self, collection, rows, **kwargs)

    monkeypatch.setattr(MilvusClient, "upsert", dies_on_the_third_page)
    with pytest.raises(KeyboardInterrupt):
        open_index().ensure_collections()
    monkeypatch.setattr(MilvusClient, "upsert", real_upsert)
    # the old collection is still the one in use; the copy is half-way, its cursor after the first two pages
    assert raw.describe_collection(names.videos)["properties"][SCHEMA_VERSION_PROPERTY] == "1"
    assert raw.describe_collection(names.videos + TARGET_SUFFIX)["properties"][CURSOR_PROPERTY] == "v005"
    # a killed process leaves its lock: while it looks alive, others wait; once stale, one takes over
    lock = MigrationLock(raw, names, IndexSettings(vector_dim=DIM))
    lock.token = "dead-process"
    assert lock._create()
    with pytest.raises(IndexUnavailable, match="being migrated by another process"):
        open_index().ensure_collections()
    raw.alter_collection_properties(prefix + migrations.LOCK_NAME, {HEARTBEAT_PROPERTY: str(time.time() - 600)})
    copied = []

    def records(self: MilvusClient, collection: str, rows: list, **kwargs: Any) -> Any:
        if collection == names.videos + TARGET_SUFFIX:
            copied.extend(row["video_id"] for row in rows)
        return real_upsert(self, collection, rows, **kwargs)

    monkeypatch.setattr(MilvusClient, "upsert", records)
    index = open_index()
    index.ensure_collections()
    assert copied == ["v006"]  # resumed after the cursor
    assert [r["video_id"] for r in _all(raw, names.videos, ["video_id"])] == [f"v{n:03d}" for n in range(7)]
    assert raw.describe_collection(names.videos)["properties"][SCHEMA_VERSION_PROPERTY] == str(SCHEMA_VERSION)
    assert len(_all(raw, names.clips, ["clip_id"])) == 14 and len(_all(raw, names.segments, ["segment_id"])) == 7
    assert not raw.has_collection(prefix + migrations.LOCK_NAME)


def test_a_collection_of_a_newer_schema_version_is_refused(open_index: OpenIndex, raw: MilvusClient) -> None:
    index = open_index()
    index.ensure_collections()
    raw.alter_collection_properties(index.names.clips, {SCHEMA_VERSION_PROPERTY: str(SCHEMA_VERSION + 1)})
    with pytest.raises(SchemaMismatch, match=(
            f"downgrades are refused: this code reads schema version {SCHEMA_VERSION}, the collection is "
            f"{SCHEMA_VERSION + 1}; run the newer vidstrata or restore a backup")):
        open_index().ensure_collections()
