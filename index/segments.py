"""`SegmentIndex`: the timed text segments of videos (speech transcript, on-screen text) in Milvus.

One row per segment in the `segments` collection (index.schema.segment_schema): its text vector, kind, video,
span and the text itself, plus the clips' copies of the video's filter fields, so a user filter compiled for
clips applies here too. One vector field, filters, upsert, delete and plain search only: the same code runs on
Milvus Lite, the 2.3.5 standalone and 2.5+ clusters.

Consistency follows the clips' rules (index/store.py): the worker calls `replace_segments` before
`VideoIndex.replace_video`, which writes the video row last; readers trust a segment only when its video row
exists, so a first ingest is invisible until it is complete. A re-ingest upserts the new segments in place
(primary key `<video_id>:<kind>:<index>`) and then deletes the old ones past the new count.
`VideoIndex.delete_video` removes a video's segments with its clips.

Each row names the text encoder's version that made its vector (`text_model`) and its video's tenant (index.schema);
searches and reads take a `RowScope` (index.filters), so a query meets only segments of the version it serves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Protocol, Self

import numpy as np

from vidstrata.index.checks import (
    check_limit,
    check_model_version,
    check_number,
    check_tenant,
    check_vector,
    unique_video_ids,
)
from vidstrata.index.connection import IndexConnection
from vidstrata.index.filters import CompiledFilter, RowScope, milvus_filter, quote_string
from vidstrata.index.replies import decoded_rows
from vidstrata.index.schema import (
    MAX_RESULT_WINDOW,
    MAX_SEGMENTS_PER_VIDEO,
    SEGMENT_KINDS,
    SEGMENT_TEXT_MAX_LENGTH,
    UNVERSIONED,
    VECTOR_FIELD,
    search_params,
    segment_id,
)
from vidstrata.spec.validation import check_metadata, check_video_id


@dataclass
class Segment:
    """One timed text segment of a video: what was said (kind "speech") or shown ("screen_text") in a span."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("video_id", "kind", "segment_index", "start_s", "end_s", "text")

    video_id: str
    kind: str
    index: int
    start_s: float
    end_s: float
    text: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any], **more: Any) -> Self:
        """The segment a stored row (or search entity) with `COLUMNS` holds; `more`: a subclass's own fields."""
        return cls(row["video_id"], row["kind"], int(row["segment_index"]), float(row["start_s"]),
                   float(row["end_s"]), row["text"], **more)


@dataclass
class SegmentRecord(Segment):
    """A segment as stored: with its text vector [D] (None when read without vectors)."""

    vector: np.ndarray | None = field(default=None, repr=False)


@dataclass
class SegmentHit(Segment):
    """The best-matching segment of one video for one query vector (larger score is better)."""

    score: float


class SharesConnection(Protocol):
    """What holds an IndexConnection to share, such as a VideoIndex."""

    connection: IndexConnection


class SegmentVideo(Protocol):
    """What a segment row copies from its video (a VideoRecord has it): the id and the fields filters read."""

    video_id: str
    metadata: dict[str, str]
    duration_s: float
    clip_count: int
    created_at: float
    tenant: str


# Videos per segment read: a Search's candidates in one query (a full result window is split, see _read_rows).
_SEGMENT_READ_VIDEOS = 256


def clip_text(text: str, max_bytes: int = SEGMENT_TEXT_MAX_LENGTH) -> str:
    """The text cut to at most max_bytes of UTF-8, at a character boundary."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def _check_kind(kind: str) -> str:
    if kind not in SEGMENT_KINDS:
        raise ValueError(f"segment kind must be one of {', '.join(SEGMENT_KINDS)}, got {kind!r}")
    return kind


class SegmentIndex:
    """Writer and reader of the `segments` collection; safe to share between threads.

    Built over a `VideoIndex`, it shares that index's connection (one client, collections ensured once) and
    nothing else; over an `IndexConnection`, it stands alone.
    """

    def __init__(self, over: SharesConnection | IndexConnection) -> None:
        self.connection = over if isinstance(over, IndexConnection) else over.connection
        self.settings = self.connection.settings
        self.name = self.connection.names.segments

    def replace_segments(self, video: SegmentVideo, kind: str, segments: Sequence[SegmentRecord],
                         text_model: str = UNVERSIONED) -> None:
        """Make the index hold exactly these segments of this kind for the video, their vectors made by the text
        encoder of version `text_model` (EncoderInfo.text_model); call before replace_video."""
        video_id = check_video_id(video.video_id)
        _check_kind(kind)
        check_model_version(text_model)
        tenant = check_tenant(video.tenant)
        if len(segments) > MAX_SEGMENTS_PER_VIDEO:
            raise ValueError(f"a video holds at most {MAX_SEGMENTS_PER_VIDEO} {kind} segments, got {len(segments)}")
        metadata = check_metadata(video.metadata)
        rows = []
        for i, segment in enumerate(sorted(segments, key=lambda s: s.index)):
            if segment.video_id != video_id or segment.kind != kind or segment.index != i:
                raise ValueError(f"segments must be {video_id!r}'s {kind} segments 0..{len(segments) - 1}, each once")
            start_s = check_number(segment.start_s, f"{kind} segment {i} start_s", 0.0)
            rows.append({
                "segment_id": segment_id(video_id, kind, i),
                "video_id": video_id,
                "kind": kind,
                "segment_index": i,
                "start_s": start_s,
                "end_s": check_number(segment.end_s, f"{kind} segment {i} end_s", start_s),
                "text": clip_text(segment.text),
                VECTOR_FIELD: check_vector(segment.vector, self.settings, f"{kind} segment {i} vector"),
                "metadata": metadata,
                "video_duration_s": float(video.duration_s),
                "video_clip_count": int(video.clip_count),
                "video_created_at": float(video.created_at),
                "text_model": text_model,
                "tenant": tenant,
            })
        timeout = self.settings.milvus_timeout_s
        stale = f"video_id == {quote_string(video_id)} and kind == {quote_string(kind)} and segment_index >= {len(rows)}"

        if rows:
            self.connection.note_model(self.name, text_model)

        def write(client: Any) -> None:
            if rows:
                client.upsert(self.name, rows, timeout=timeout)
            client.delete(self.name, filter=stale, timeout=timeout)

        self.connection.call(f"replace {kind} segments of {video_id!r}", write)

    def get_segments(
        self, video_ids: Iterable[str], kinds: Sequence[str] = SEGMENT_KINDS, vectors: bool = True,
        scope: RowScope = RowScope(),
    ) -> dict[str, list[SegmentRecord]]:
        """The stored segments of these videos and kinds (within `scope`), in (kind, time) order; videos without any
        are absent.

        Does not check the trust rule: callers read segments of videos whose rows they already hold.
        """
        kinds = [_check_kind(k) for k in kinds]
        fields = [*Segment.COLUMNS, *([VECTOR_FIELD] if vectors else [])]
        found: dict[str, list[SegmentRecord]] = {}
        ids = unique_video_ids(video_ids)
        for start in range(0, len(ids), _SEGMENT_READ_VIDEOS):
            for row in self._read_rows(ids[start : start + _SEGMENT_READ_VIDEOS], kinds, fields, scope.where("segments")):
                found.setdefault(row["video_id"], []).append(SegmentRecord.from_row(
                    row, vector=np.asarray(row[VECTOR_FIELD], dtype=np.float32) if vectors else None,
                ))
        for rows in found.values():
            rows.sort(key=lambda s: (s.kind, s.start_s, s.index))
        return found

    def _read_rows(self, video_ids: list[str], kinds: Sequence[str], fields: list[str], where: str = "") -> list[dict[str, Any]]:
        """Every segment row of these videos and kinds: one query, halved only when it fills a result window.

        One video's segments always fit (MAX_SEGMENTS_PER_VIDEO per kind, two kinds: one window), so a Search's
        candidates are read in one round trip, not one per window-sized worst case of videos.
        """
        ids = ", ".join(quote_string(v) for v in video_ids)
        kind_list = ", ".join(quote_string(k) for k in kinds)
        rows = decoded_rows(self.connection.call(f"get segments from {self.name!r}", lambda client: client.query(
            self.name, filter=f"video_id in [{ids}] and kind in [{kind_list}]" + (f" and {where}" if where else ""),
            output_fields=fields,
            limit=MAX_RESULT_WINDOW, consistency_level=self.settings.read_consistency,
            timeout=self.settings.milvus_timeout_s,
        )))
        if len(rows) < MAX_RESULT_WINDOW or len(video_ids) == 1:
            return rows
        half = len(video_ids) // 2
        return (self._read_rows(video_ids[:half], kinds, fields, where)
                + self._read_rows(video_ids[half:], kinds, fields, where))

    def search(
        self, vector: np.ndarray, kind: str, limit_videos: int, filter_expr: str | CompiledFilter | None = None,
        per_video: int = 1,
    ) -> SegmentHits:
        """The best segments of this kind (up to `per_video` each, best first) of the best videos for one query
        vector, best first, and the score below which the segments of every other video lie (SegmentHits.unseen_below).

        Over-fetches like clip search (clip_overfetch segments per wanted video) and keeps the first hits of
        each video. Like clip hits, these are candidates, not trusted results: the rescoring read of the video
        rows drops a video without one (not yet or no longer indexed), so no row is read here.
        """
        query = check_vector(vector, self.settings, "query vector")
        _check_kind(kind)
        check_limit(limit_videos, "limit_videos")
        check_limit(per_video, "per_video")
        user = milvus_filter(filter_expr, "segments")  # the user's filter on the video_* copies, and the scope
        where = f"kind == {quote_string(kind)}" + (f" and ({user})" if user else "")
        fetch = min(limit_videos * self.settings.clip_overfetch, MAX_RESULT_WINDOW)
        settings = self.settings
        result = self.connection.call(f"search {kind} segments", lambda client: client.search(
            self.name, data=[query], filter=where, limit=fetch,
            output_fields=list(Segment.COLUMNS),
            search_params=search_params(settings, fetch), consistency_level=settings.read_consistency,
            timeout=settings.milvus_timeout_s,
        ))
        hits = sorted(result[0], key=lambda h: h.distance, reverse=True)
        by_video: dict[str, list[SegmentHit]] = {}
        for hit in hits:
            entity = hit["entity"]
            found = by_video.setdefault(entity["video_id"], [])
            if len(found) < per_video:
                found.append(SegmentHit.from_row(entity, score=float(hit.distance)))
        ranked = list(by_video)
        if len(ranked) > limit_videos:  # the first video cut off bounds every unseen one
            cut = by_video[ranked[limit_videos]][0].score
            return SegmentHits({v: by_video[v] for v in ranked[:limit_videos]}, cut)
        return SegmentHits(by_video, float(hits[-1].distance) if len(hits) == fetch else -math.inf)


class SegmentHits(NamedTuple):
    """One segment search: the matching segments of each video found (best first; videos in the order of their best),
    and `unseen_below`: no segment of a video absent from `by_video` scores above it (up to the ANN's recall); -inf
    when every matching segment of the collection was returned. It lets a caller skip reading the segments of other
    videos whose score could only fall under a floor it ignores anyway."""

    by_video: dict[str, list[SegmentHit]]
    unseen_below: float

    @property
    def hits(self) -> list[SegmentHit]:
        """The best segment of each video found, best first."""
        return [found[0] for found in self.by_video.values()]

    def unseen(self, video_ids: Iterable[str], floor: float) -> list[str]:
        """The videos among these that are not in `by_video` and might still hold a segment scoring >= floor."""
        if self.unseen_below < floor:
            return []
        return [v for v in video_ids if v not in self.by_video]
