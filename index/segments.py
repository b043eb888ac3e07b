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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np

from index.filters import CompiledFilter, quote_string
from index.schema import (
    MAX_RESULT_WINDOW,
    MAX_SEGMENTS_PER_VIDEO,
    SEGMENT_KINDS,
    SEGMENT_TEXT_MAX_LENGTH,
    VECTOR_FIELD,
    search_params,
    segment_id,
)
from index.store import (
    VideoIndex,
    VideoRecord,
    _check_limit,
    _check_number,
    _chunks,
    _milvus_filter,
    _unique_ids,
)
from spec.validation import check_metadata, check_video_id


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


def clip_text(text: str, max_bytes: int = SEGMENT_TEXT_MAX_LENGTH) -> str:
    """The text cut to at most max_bytes of UTF-8, at a character boundary."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def _check_kind(kind: str) -> str:
    if kind not in SEGMENT_KINDS:
        raise ValueError(f"segment kind must be one of {', '.join(SEGMENT_KINDS)}, got {kind!r}")
    return kind


class SegmentIndex:
    """Writer and reader of the `segments` collection over a `VideoIndex`'s connection (thread-safe like it)."""

    def __init__(self, videos: VideoIndex) -> None:
        self.videos = videos
        self.name = videos.names.segments

    def replace_segments(self, video: VideoRecord, kind: str, segments: Sequence[SegmentRecord]) -> None:
        """Make the index hold exactly these segments of this kind for the video; call before replace_video."""
        video_id = check_video_id(video.video_id)
        _check_kind(kind)
        if len(segments) > MAX_SEGMENTS_PER_VIDEO:
            raise ValueError(f"a video holds at most {MAX_SEGMENTS_PER_VIDEO} {kind} segments, got {len(segments)}")
        metadata = check_metadata(video.metadata)
        rows = []
        for i, segment in enumerate(sorted(segments, key=lambda s: s.index)):
            if segment.video_id != video_id or segment.kind != kind or segment.index != i:
                raise ValueError(f"segments must be {video_id!r}'s {kind} segments 0..{len(segments) - 1}, each once")
            start_s = _check_number(segment.start_s, f"{kind} segment {i} start_s", 0.0)
            rows.append({
                "segment_id": segment_id(video_id, kind, i),
                "video_id": video_id,
                "kind": kind,
                "segment_index": i,
                "start_s": start_s,
                "end_s": _check_number(segment.end_s, f"{kind} segment {i} end_s", start_s),
                "text": clip_text(segment.text),
                VECTOR_FIELD: self.videos._vector(segment.vector, f"{kind} segment {i} vector"),
                "metadata": metadata,
                "video_duration_s": float(video.duration_s),
                "video_clip_count": int(video.clip_count),
                "video_created_at": float(video.created_at),
            })
        timeout = self.videos.settings.milvus_timeout_s
        stale = f"video_id == {quote_string(video_id)} and kind == {quote_string(kind)} and segment_index >= {len(rows)}"

        def write(client: Any) -> None:
            if rows:
                client.upsert(self.name, rows, timeout=timeout)
            client.delete(self.name, filter=stale, timeout=timeout)

        self.videos._call(f"replace {kind} segments of {video_id!r}", write)

    def get_segments(
        self, video_ids: Iterable[str], kinds: Sequence[str] = SEGMENT_KINDS, vectors: bool = True
    ) -> dict[str, list[SegmentRecord]]:
        """The stored segments of these videos and kinds, in (kind, time) order; videos without any are absent.

        Does not check the trust rule: callers read segments of videos whose rows they already hold.
        """
        kinds = [_check_kind(k) for k in kinds]
        fields = [*Segment.COLUMNS, *([VECTOR_FIELD] if vectors else [])]
        found: dict[str, list[SegmentRecord]] = {}
        kind_list = ", ".join(quote_string(k) for k in kinds)
        # a query returns at most one result window, so ask for few enough videos that all their rows fit
        for chunk in _chunks(_unique_ids(video_ids), max(1, MAX_RESULT_WINDOW // MAX_SEGMENTS_PER_VIDEO)):
            ids = ", ".join(quote_string(v) for v in chunk)
            rows = self.videos._call(f"get segments from {self.name!r}", lambda client, ids=ids: client.query(
                self.name, filter=f"video_id in [{ids}] and kind in [{kind_list}]", output_fields=fields,
                limit=MAX_RESULT_WINDOW, consistency_level=self.videos.settings.read_consistency,
                timeout=self.videos.settings.milvus_timeout_s,
            ))
            for row in rows:
                found.setdefault(row["video_id"], []).append(SegmentRecord.from_row(
                    row, vector=np.asarray(row[VECTOR_FIELD], dtype=np.float32) if vectors else None,
                ))
        for rows in found.values():
            rows.sort(key=lambda s: (s.kind, s.start_s, s.index))
        return found

    def search(
        self, vector: np.ndarray, kind: str, limit_videos: int, filter_expr: str | CompiledFilter | None = None
    ) -> list[SegmentHit]:
        """The best segment of this kind of each of the best videos for one query vector, best first.

        Over-fetches like clip search (clip_overfetch segments per wanted video) and keeps the first hit of
        each video. Like clip hits, these are candidates, not trusted results: the rescoring read of the video
        rows drops a video without one (not yet or no longer indexed), so no row is read here.
        """
        query = self.videos._vector(vector, "query vector")
        _check_kind(kind)
        _check_limit(limit_videos, "limit_videos")
        user = _milvus_filter(filter_expr, "clips")  # segments carry the same video_* copies as clips
        milvus_filter = f"kind == {quote_string(kind)}" + (f" and ({user})" if user else "")
        fetch = min(limit_videos * self.videos.settings.clip_overfetch, MAX_RESULT_WINDOW)
        settings = self.videos.settings
        result = self.videos._call(f"search {kind} segments", lambda client: client.search(
            self.name, data=[query], filter=milvus_filter, limit=fetch,
            output_fields=list(Segment.COLUMNS),
            search_params=search_params(settings, fetch), consistency_level=settings.read_consistency,
            timeout=settings.milvus_timeout_s,
        ))
        hits = sorted(result[0], key=lambda h: h.distance, reverse=True)
        best: dict[str, SegmentHit] = {}
        for hit in hits:
            entity = hit["entity"]
            if entity["video_id"] not in best:
                best[entity["video_id"]] = SegmentHit.from_row(entity, score=float(hit.distance))
        return list(best.values())[:limit_videos]
