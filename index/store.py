"""`VideoIndex`: writes and searches the `videos` and `clips` collections in Milvus.

Consistency without transactions. `replace_video` writes in this order: (1) upsert all new clips,
(2) delete the video's clips with clip_index >= the new count, (3) upsert the video row. Readers trust a
clip only if its video row exists and its clip_index < that row's clip_count. So a first ingest is invisible
until step 3, a crash before step 3 leaves only invisible clips (the next replace overwrites them), and a
re-ingest shows the old video row with at most its old clip count until the new row lands; during that short
window clips already overwritten in place show their new spans and vectors.

Reads use `read_consistency` (Bounded by default: Strong waits out a time tick, ~0.4 s per call on a
standalone Milvus). So that READY still means searchable, `replace_video` ends with a Strong read of the
video row, which brings the query node up to the write before the worker reports it.

Only features that Milvus Lite 3.x, the 2.3.5 standalone and 2.5 clusters all have are used: one vector
field per collection, filters, upsert, delete and plain search. Clip hits are grouped by video on the client.

Every row names the model version of its vector and its tenant (index.schema, version 2). Searches and the
candidates' reads take a `RowScope` (index.filters): a query is compared only with rows of the versions it
serves, so rows another model made are invisible to it, whatever the user's filter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from pymilvus import MilvusClient

from vidstrata.index.checks import (
    check_limit,
    check_model_version,
    check_number,
    check_tenant,
    check_vector,
    check_vectors,
    unique_video_ids,
)
from vidstrata.index.connection import IndexConnection
from vidstrata.index.errors import IndexUnavailable
from vidstrata.index.filters import CompiledFilter, RowScope, milvus_filter, quote_string
from vidstrata.index.replies import decoded_rows
from vidstrata.index.schema import (
    DEFAULT_TENANT,
    MAX_CLIPS_PER_VIDEO,
    MAX_RESULT_WINDOW,
    STATUS_MAX_LENGTH,
    UNVERSIONED,
    VECTOR_FIELD,
    ModelVersions,
    clip_id,
    search_params,
    split_clip_id,
)
from vidstrata.index.settings import IndexSettings
from vidstrata.spec.validation import check_metadata, check_video_id


@dataclass
class VideoRecord:
    """One indexed video: its aggregate vector and the fields search and filters read."""

    video_id: str
    vector: np.ndarray
    duration_s: float
    clip_count: int
    metadata: dict[str, str]
    created_at: float
    status: str = "READY"
    visual_model: str = UNVERSIONED  # EncoderInfo.visual_model of the encoders that made the video's and clips' vectors
    tenant: str = DEFAULT_TENANT


@dataclass
class ClipRecord:
    """One clip of a video: a time span and its vector; clip_index runs 0..clip_count-1."""

    video_id: str
    clip_index: int
    start_s: float
    end_s: float
    vector: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class VersionCount:
    """Rows of one model version: `channel` "visual" (videos and clips rows) or "text" (segments rows)."""

    channel: str
    model_version: str
    videos: int = 0
    clips: int = 0
    segments: int = 0


class TenantRows(NamedTuple):
    """Rows of one tenant in each collection (what DeleteTenant removed)."""

    videos: int
    clips: int
    segments: int


@dataclass
class CandidateVectors:
    """What exact rescoring reads of candidate videos, by video id: each video's vector (or, for a video the video
    ANN found under the COSINE metric, that search's cosine with the query instead) and its trusted clips."""

    videos: dict[str, np.ndarray]
    clips: dict[str, list[ClipRecord]]
    video_cosines: dict[str, float] = field(default_factory=dict)


class VideoHit(NamedTuple):
    """A video found by ANN search; a larger score is a better match (COSINE or IP).

    clip_count is the row's, so the candidates' clips can be read without reading the video rows first.
    """

    video_id: str
    score: float
    clip_count: int


class ClipHit(NamedTuple):
    """The best-matching clip of one video for one query vector (its span is read with the clip's vectors).

    clip_count is the video's clip count as the clip row copies it (video_clip_count).
    """

    video_id: str
    clip_index: int
    score: float
    clip_count: int


def _group_by_video(hits: Iterable[Any], limit_videos: int) -> list[ClipHit]:
    """The best clip of each video among ANN hits, best first, at most limit_videos."""
    best: dict[str, ClipHit] = {}
    for hit in sorted(hits, key=lambda h: h.distance, reverse=True):
        video_id, clip_index = split_clip_id(str(hit.id))
        if video_id not in best:
            best[video_id] = ClipHit(video_id, clip_index, float(hit.distance), int(hit["entity"]["video_clip_count"]))
            if len(best) == limit_videos:
                break
    return list(best.values())


class VideoIndex:
    """Writer and searcher of the `videos` and `clips` collections; safe to share between threads.

    Calls go through an `IndexConnection` (lazy connect, collections ensured on first use, errors as
    index.errors); a `SegmentIndex` built over this index shares it, so both use one client. `served`: the model
    versions this process serves, backfilled by a schema migration (IndexConnection).
    """

    def __init__(self, settings: IndexSettings, served: Callable[[], ModelVersions] | None = None) -> None:
        self.settings = settings
        self.connection = IndexConnection(settings, served)
        self.names = self.connection.names
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # -- connection and collections ---------------------------------------------------------------

    def ensure_collections(self) -> None:
        """Create, check (SchemaMismatch) and load every collection now rather than on the first call."""
        self.connection.ensure_collections()

    def close(self) -> None:
        """Close the connection (shared with any SegmentIndex over this index); a later call reconnects."""
        self.connection.close()
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool = None

    def __enter__(self) -> VideoIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rows -------------------------------------------------------------------------------------

    def _rows(self, video: VideoRecord, clips: Sequence[ClipRecord]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Validate a video and its clips and build their Milvus rows."""
        video_id = check_video_id(video.video_id)
        metadata = check_metadata(video.metadata)
        duration_s = check_number(video.duration_s, "duration_s", 0.0)
        created_at = check_number(video.created_at, "created_at")
        visual_model = check_model_version(video.visual_model)
        tenant = check_tenant(video.tenant)
        if not isinstance(video.status, str) or not 1 <= len(video.status) <= STATUS_MAX_LENGTH:
            raise ValueError(f"status must be a non-empty str of at most {STATUS_MAX_LENGTH} chars")
        if not 1 <= len(clips) <= MAX_CLIPS_PER_VIDEO:
            raise ValueError(f"a video needs 1..{MAX_CLIPS_PER_VIDEO} clips, got {len(clips)}")
        if video.clip_count != len(clips):
            raise ValueError(f"clip_count is {video.clip_count!r} but {len(clips)} clips were given")
        for clip in clips:
            if clip.video_id != video_id:
                raise ValueError(f"clip {clip.clip_index!r} belongs to {clip.video_id!r}, not {video_id!r}")
            if isinstance(clip.clip_index, bool) or not isinstance(clip.clip_index, (int, np.integer)):
                raise ValueError(f"clip_index must be an int, got {clip.clip_index!r}")
        ordered = sorted(clips, key=lambda c: int(c.clip_index))
        if [c.clip_index for c in ordered] != list(range(len(clips))):
            raise ValueError("clip_index values must be exactly 0..clip_count-1, each once")
        clip_rows = []
        for clip in ordered:
            vector = check_vector(clip.vector, self.settings, f"clip {clip.clip_index} vector")
            start_s = check_number(clip.start_s, f"clip {clip.clip_index} start_s", 0.0)
            end_s = check_number(clip.end_s, f"clip {clip.clip_index} end_s", start_s)
            clip_rows.append({
                "clip_id": clip_id(video_id, clip.clip_index),
                "video_id": video_id,
                "clip_index": int(clip.clip_index),
                "start_s": start_s,
                "end_s": end_s,
                VECTOR_FIELD: vector,
                "metadata": metadata,
                "video_duration_s": duration_s,
                "video_clip_count": len(clips),
                "video_created_at": created_at,
                "visual_model": visual_model,
                "tenant": tenant,
            })
        video_row = {
            "video_id": video_id,
            VECTOR_FIELD: check_vector(video.vector, self.settings, "video vector"),
            "duration_s": duration_s,
            "clip_count": len(clips),
            "status": video.status,
            "metadata": metadata,
            "created_at": created_at,
            "visual_model": visual_model,
            "tenant": tenant,
        }
        return video_row, clip_rows

    # -- writes -----------------------------------------------------------------------------------

    def replace_video(self, video: VideoRecord, clips: Sequence[ClipRecord]) -> None:
        """Make the index hold exactly this video and these clips; idempotent, safe to retry after a crash.

        Clips first, stale clips next, the video row last: see the module docstring for what readers see.
        """
        video_row, clip_rows = self._rows(video, clips)
        timeout = self.settings.milvus_timeout_s
        self.connection.note_model(self.names.videos, video_row["visual_model"])

        def write(client: MilvusClient) -> None:
            client.upsert(self.names.clips, clip_rows, timeout=timeout)
            client.delete(
                self.names.clips,
                filter=f"video_id == {quote_string(video.video_id)} and clip_index >= {len(clip_rows)}",
                timeout=timeout,
            )
            # A Milvus restarted between two writes may have dropped acknowledged ones (seen under chaos with Milvus
            # Lite: READY videos whose clip rows were gone): the clips are read back before the video row makes them
            # visible, and a shortfall is a retryable failure, so the caller writes the whole video again.
            stored = client.get(self.names.clips, ids=[row["clip_id"] for row in clip_rows], output_fields=["clip_id"],
                                consistency_level="Strong", timeout=timeout) if clip_rows else []
            if len(stored) != len(clip_rows):
                raise IndexUnavailable(f"Milvus kept {len(stored)} of the {len(clip_rows)} clip rows just written for "
                                       f"video {video.video_id!r} (a restart?); write the video again")
            client.upsert(self.names.videos, [video_row], timeout=timeout)
            client.get(
                self.names.videos, ids=[video_row["video_id"]], output_fields=["video_id"],
                consistency_level="Strong", timeout=timeout,
            )

        self.connection.call(f"replace video {video.video_id!r}", write)

    def delete_video(self, video_id: str, tenant: str | None = None) -> bool:
        """Remove a video, its clips and its timed text segments (index.segments); True if its video row existed.

        The row goes first, hiding the clips and segments. With `tenant`, only a video of that tenant is removed (a
        video id is global: another tenant's video of that id is left alone, and False)."""
        check_video_id(video_id)
        timeout = self.settings.milvus_timeout_s

        def delete(client: MilvusClient) -> bool:
            rows = client.get(self.names.videos, ids=[video_id], output_fields=["tenant"], timeout=timeout)
            if tenant is not None and any(row["tenant"] != tenant for row in rows):
                return False
            existed = bool(rows)
            client.delete(self.names.videos, ids=[video_id], timeout=timeout)
            client.delete(self.names.clips, filter=f"video_id == {quote_string(video_id)}", timeout=timeout)
            client.delete(self.names.segments, filter=f"video_id == {quote_string(video_id)}", timeout=timeout)
            client.delete(self.names.lexicon, filter=f"video_id == {quote_string(video_id)}", timeout=timeout)
            return existed

        return self.connection.call(f"delete video {video_id!r}", delete)

    def delete_tenant(self, tenant: str) -> TenantRows:
        """Remove every row of one tenant (videos, clips, segments: a delete by the partition key) and say how many
        there were, counted just before (a row a worker writes meanwhile is removed, or counted, or both)."""
        where = f"tenant == {quote_string(check_tenant(tenant))}"
        counts = TenantRows(*(self._count(name, where)
                              for name in (self.names.videos, self.names.clips, self.names.segments)))
        timeout = self.settings.milvus_timeout_s

        def delete(client: MilvusClient) -> None:
            client.delete(self.names.videos, filter=where, timeout=timeout)  # first: hides the clips and segments
            client.delete(self.names.clips, filter=where, timeout=timeout)
            client.delete(self.names.segments, filter=where, timeout=timeout)

        self.connection.call(f"delete tenant {tenant!r}", delete)
        return counts

    # -- reads ------------------------------------------------------------------------------------

    def search_videos(
        self, vector: np.ndarray, limit: int, filter_expr: str | CompiledFilter | None = None
    ) -> list[VideoHit]:
        """Nearest videos to one query vector, best first.

        filter_expr is a user filter in the index.filters language (never raw Milvus syntax), or compiled once
        by the caller. Only the primary key, the distance and clip_count come back: every output field costs
        parse time.
        """
        query = check_vector(vector, self.settings, "query vector")
        check_limit(limit, "limit")
        where = milvus_filter(filter_expr, "videos")
        result = self.connection.call("search videos", lambda client: client.search(
            self.names.videos,
            data=[query],
            filter=where,
            limit=limit,
            output_fields=["clip_count"],
            search_params=search_params(self.settings, limit),
            consistency_level=self.settings.read_consistency,
            timeout=self.settings.milvus_timeout_s,
        ))
        hits = [VideoHit(str(hit.id), float(hit.distance), int(hit["entity"]["clip_count"])) for hit in result[0]]
        return sorted(hits, key=lambda h: h.score, reverse=True)

    def search_clips_grouped(
        self, vectors: np.ndarray, limit_videos: int, filter_expr: str | CompiledFilter | None = None
    ) -> list[list[ClipHit]]:
        """For each query vector (rows of a (Q, D) array): the best clip of each of the best videos.

        Grouped search is missing on the 2.3.5 standalone, so clips are grouped by video here: the search fetches
        limit_videos * clip_overfetch clips and keeps the first hit per video. When a video's many clips crowd
        the others out (fewer than limit_videos videos in a full page), it searches again, 4x wider, up to
        limit_videos * clip_overfetch_max: a narrow first page keeps HNSW's ef (= the page) small, and only
        crowded queries pay for a wider one. Only the primary key (it names the video and the clip index), the
        distance and the video's clip count come back. Hits are raw ANN hits: the trust rule (module docstring) is applied where the
        candidates' rows are read, by `get_candidate_vectors`, so a Search reads each video row once.
        """
        queries = check_vectors(vectors, self.settings, "query vectors")
        check_limit(limit_videos, "limit_videos")
        where = milvus_filter(filter_expr, "clips")
        widest = min(limit_videos * max(self.settings.clip_overfetch, self.settings.clip_overfetch_max),
                     MAX_RESULT_WINDOW)
        fetch = min(limit_videos * self.settings.clip_overfetch, widest)
        while True:
            page = fetch
            result = self.connection.call("search clips", lambda client: client.search(
                self.names.clips,
                data=list(queries),
                filter=where,
                limit=page,
                output_fields=["video_clip_count"],
                search_params=search_params(self.settings, page),
                consistency_level=self.settings.read_consistency,
                timeout=self.settings.milvus_timeout_s,
            ))
            per_query = [_group_by_video(hits, limit_videos) for hits in result]
            crowded = any(len(grouped) < limit_videos and len(hits) >= page
                          for grouped, hits in zip(per_query, result, strict=True))
            if not crowded or fetch >= widest:
                return per_query
            fetch = min(fetch * 4, widest)

    def _get_by_ids(self, collection: str, ids: list[str], fields: list[str], where: str = "") -> list[dict[str, Any]]:
        """Rows by primary key, only those matching `where` (a RowScope's conjuncts) when given: one call per result
        window, the cheapest read Milvus has (a get is a query on the primary key)."""
        key = "video_id" if collection == self.names.videos else "clip_id"
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), MAX_RESULT_WINDOW):
            chunk = ids[start : start + MAX_RESULT_WINDOW]
            if where:
                keys = f"{key} in [{', '.join(quote_string(i) for i in chunk)}]"
                read = lambda client: client.query(  # noqa: E731
                    collection, filter=f"{keys} and {where}", output_fields=[key, *fields],
                    consistency_level=self.settings.read_consistency, timeout=self.settings.milvus_timeout_s)
            else:
                read = lambda client: client.get(  # noqa: E731
                    collection, ids=chunk, output_fields=fields,
                    consistency_level=self.settings.read_consistency, timeout=self.settings.milvus_timeout_s)
            rows += decoded_rows(self.connection.call(f"get from {collection!r}", read))
        return rows

    def get_videos(self, video_ids: Iterable[str], scope: RowScope = RowScope()) -> dict[str, VideoRecord]:
        """The stored video rows for these ids (within `scope`), vectors included; ids not in the index are absent."""
        fields = ["video_id", VECTOR_FIELD, "duration_s", "clip_count", "status", "metadata", "created_at",
                  "visual_model", "tenant"]
        return {
            row["video_id"]: VideoRecord(
                video_id=row["video_id"],
                vector=np.asarray(row[VECTOR_FIELD], dtype=np.float32),
                duration_s=float(row["duration_s"]),
                clip_count=int(row["clip_count"]),
                metadata=dict(row["metadata"]),
                created_at=float(row["created_at"]),
                status=str(row["status"]),
                visual_model=str(row["visual_model"]),
                tenant=str(row["tenant"]),
            )
            for row in self._get_by_ids(self.names.videos, unique_video_ids(video_ids), fields,
                                        scope.where("videos"))
        }

    def get_candidate_vectors(
        self, video_ids: Iterable[str], clip_counts: Mapping[str, int] | None = None,
        video_hits: Iterable[VideoHit] = (), scope: RowScope = RowScope(),
    ) -> CandidateVectors:
        """Video vectors and trusted clips (span and vector) by primary key: the rescoring stage's fetch.

        Only what exact rescoring uses comes back (no metadata, status or dates): every field costs parse time.
        With `clip_counts` (from the ANN hits) the video rows and the clips are read at the same time; without,
        the rows are read first. Either way the video row decides (module docstring): a video without a row is
        absent, clips at or past its clip_count are dropped, and clips the hint missed are read afterwards.
        `video_hits` (from search_videos, in this Search) are rows already read: under COSINE their score is the
        video level's cosine and their clip_count the row's, so those rows are not read again. `scope` (the
        Search's served version and tenant) applies to every row read: a video or clip of another version is absent
        (a re-ingest under a new model overwrites clips before its video row).
        """
        ids = unique_video_ids(video_ids)
        where_videos, where_clips = scope.where("videos"), scope.where("clips")
        found = {h.video_id: h for h in video_hits} if self.settings.metric == "COSINE" else {}
        unread = [v for v in ids if v not in found]
        video_fields = ["clip_count", VECTOR_FIELD]
        counts = {v: found[v].clip_count for v in ids if v in found}
        if clip_counts is None:
            rows = self._get_by_ids(self.names.videos, unread, video_fields, where_videos)
            counts |= {row["video_id"]: int(row["clip_count"]) for row in rows}
            clip_rows = self._get_clip_rows({v: (0, n) for v, n in counts.items()}, where_clips)
        else:
            pending = self._fetch_pool().submit(
                self._get_by_ids, self.names.videos, unread, video_fields, where_videos) if unread else None
            clip_rows = self._get_clip_rows({v: (0, counts.get(v, int(clip_counts.get(v, 0)))) for v in ids}, where_clips)
            rows = pending.result() if pending else []
            missed = {row["video_id"]: (int(clip_counts.get(row["video_id"], 0)), int(row["clip_count"]))
                      for row in rows if int(row["clip_count"]) > int(clip_counts.get(row["video_id"], 0))}
            clip_rows += self._get_clip_rows(missed, where_clips)
            counts |= {row["video_id"]: int(row["clip_count"]) for row in rows}
        videos = {row["video_id"]: np.asarray(row[VECTOR_FIELD], dtype=np.float32) for row in rows}
        clips: dict[str, list[ClipRecord]] = {}
        for row in clip_rows:
            video_id, clip_index = split_clip_id(row["clip_id"])
            if clip_index >= counts.get(video_id, 0):
                continue
            clips.setdefault(video_id, []).append(ClipRecord(
                video_id=video_id,
                clip_index=clip_index,
                start_s=float(row["start_s"]),
                end_s=float(row["end_s"]),
                vector=np.asarray(row[VECTOR_FIELD], dtype=np.float32),
            ))
        for records in clips.values():
            records.sort(key=lambda c: c.clip_index)
        return CandidateVectors(videos, clips, {v: float(found[v].score) for v in ids if v in found})

    def _get_clip_rows(self, ranges: Mapping[str, tuple[int, int]], where: str = "") -> list[dict[str, Any]]:
        """Clip rows (span and vector) of clip_index in [first, end) of each video, those matching `where`."""
        ids = [clip_id(v, i) for v, (first, end) in ranges.items() for i in range(first, end)]
        return self._get_by_ids(self.names.clips, ids, ["start_s", "end_s", VECTOR_FIELD], where) if ids else []

    def _fetch_pool(self) -> ThreadPoolExecutor:
        """Threads for reads that overlap (video rows beside clip rows); made on first use."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="milvus-read")
            return self._pool

    def page_videos(self, after: str, limit: int, filter_expr: str | CompiledFilter | None = None) -> list[VideoRecord]:
        """The first `limit` video rows in video_id order after `after` ("" : from the start) that match the filter:
        one page of a listing, read by primary key, however large the index.

        A plain query with a limit returns any `limit` matching rows (Milvus Lite 3.x: not the smallest ids), so
        this asks as pymilvus's query iterator does (`iterator`, `reduce_stop_for_best`), which Milvus answers
        with the smallest keys after the cursor, in key order (Milvus 2.3 and later; Milvus Lite 3.2.2, checked
        by tests/test_list_watch.py with several segments and deletes). Vectors are not read: `vector` is empty.
        """
        check_limit(limit, "limit")
        cursor = f"video_id > {quote_string(after)}"
        where = milvus_filter(filter_expr, "videos")
        fields = ["video_id", "duration_s", "clip_count", "status", "metadata", "created_at", "tenant"]
        rows = decoded_rows(self.connection.call("list videos", lambda client: client.query(
            self.names.videos, filter=f"{where} and {cursor}" if where else cursor, output_fields=fields, limit=limit,
            iterator="True", reduce_stop_for_best="True", consistency_level=self.settings.read_consistency,
            timeout=self.settings.milvus_timeout_s,
        )))
        records = [VideoRecord(
            video_id=row["video_id"], vector=np.empty(0, dtype=np.float32), duration_s=float(row["duration_s"]),
            clip_count=int(row["clip_count"]), metadata=dict(row["metadata"]), created_at=float(row["created_at"]),
            status=str(row["status"]), tenant=str(row["tenant"]),
        ) for row in rows]
        return sorted(records, key=lambda r: r.video_id)

    def _count(self, name: str, where: str = "") -> int:
        rows = self.connection.call(f"count {name!r}", lambda client: client.query(
            name, filter=where, output_fields=["count(*)"], timeout=self.settings.milvus_timeout_s
        ))
        return int(rows[0]["count(*)"])

    def counts(self, tenant: str | None = None) -> tuple[int, int]:
        """(videos, clips) rows stored (of `tenant`; None: of all); clips may include invisible leftovers of an
        interrupted replace."""
        where = RowScope(tenant=tenant).where("videos")
        return self._count(self.names.videos, where), self._count(self.names.clips, where)

    def version_counts(self, tenant: str | None = None) -> list[VersionCount]:
        """Rows per model version: each visual version's videos and clips, each text version's segments.

        Milvus has no GROUP BY, so the versions come from the collections' properties (every writer records the
        version it writes: IndexConnection.note_model) and each is one filtered count(*), a scan on Milvus Lite:
        a handful of versions, a handful of counts. Versions whose rows are all gone are left out. `tenant`: that
        tenant's rows only (None: all).
        """
        found = []
        for version in self.connection.model_versions(self.names.videos):
            where = RowScope(tenant=tenant, visual_model=version).where("videos")
            found.append(VersionCount("visual", version, videos=self._count(self.names.videos, where),
                                      clips=self._count(self.names.clips, where)))
        for version in self.connection.model_versions(self.names.segments):
            where = RowScope(tenant=tenant, text_model=version).where("segments")
            found.append(VersionCount("text", version, segments=self._count(self.names.segments, where)))
        return [c for c in found if c.videos or c.clips or c.segments]
