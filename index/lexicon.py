"""`LexiconIndex`: the lexical channel's postings in Milvus, where every gateway replica and worker reads the same.

One row per lexical document in the `lexicon` collection (index.schema.lexicon_schema): a timed speech or on-screen
text segment (same primary key as its `segments` row) or a video's named metadata values (kind "metadata", spanning
the video), with its distinct normalised terms (spec.lexical) in an ARRAY field. A query's postings are the rows whose
`terms` hold any of its terms (`array_contains_any`); a quoted phrase's candidates hold all of its words
(`array_contains_all`) or its compact form, and the gateway verifies it verbatim in `normalized`. Those filters, ARRAY
fields and the partition key work on Milvus Lite 3.2.2, the PyPI 2.3.5 standalone and 2.5+ alike (tests), so the
channel needs neither 2.5's BM25 function nor sparse vectors. Scoring (BM25) is the gateway's (gateway.lexical).

Rows carry the segments' filter copies, `text_model` and `tenant`, so a user filter compiled for `segments` and a
RowScope apply here unchanged. Writes follow the segments' order: the worker replaces a video's lexicon rows of a kind
after its segments and before its video row, and readers trust a posting only when the video row exists (the
gateway's rescoring read). `VideoIndex.delete_video` deletes them with the video.

A lexicon created beside an index that already holds segments is filled from the stored segment texts
(`backfill_lexicon`, run by the first process that opens it: the text is stored, so no video is read again; the
collection is marked complete only at the end, so a process killed mid-way leaves it to the next one).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from pymilvus import MilvusClient

from vidstrata.index.checks import check_limit, check_model_version, check_number, check_tenant
from vidstrata.index.filters import RowScope, quote_string
from vidstrata.index.replies import decoded_rows
from vidstrata.index.schema import (
    LEXICON_BACKFILL_PROPERTY,
    LEXICON_KINDS,
    LEXICON_MAX_TERMS,
    LEXICON_VECTOR_DIM,
    MAX_RESULT_WINDOW,
    MAX_SEGMENTS_PER_VIDEO,
    METADATA_KIND,
    UNVERSIONED,
    VECTOR_FIELD,
    CollectionNames,
    segment_id,
)
from vidstrata.index.segments import Segment, SegmentVideo, clip_text
from vidstrata.index.settings import IndexSettings
from vidstrata.spec.lexical import Phrase, index_terms, normalize, tokens
from vidstrata.spec.validation import check_metadata, check_video_id

log = logging.getLogger(__name__)

PLACEHOLDER_VECTOR = [1.0] + [0.0] * (LEXICON_VECTOR_DIM - 1)
BACKFILL_PAGE_ROWS = 1000
STATS_SAMPLE_ROWS = 1000  # rows whose lengths estimate the mean document length
# The video-level fields a lexicon row copies from its segment row (the backfill) or its video (the worker).
_COPIES = ("metadata", "video_duration_s", "video_clip_count", "video_created_at", "text_model", "tenant")


@dataclass
class Posting(Segment):
    """One lexicon row read back: the segment (kind, span, original text for the snippet), its normalised text and
    its token count (BM25's document length)."""

    normalized: str = ""
    length: int = 0


POSTING_COLUMNS: tuple[str, ...] = (*Segment.COLUMNS, "normalized", "length")


class LexiconStats(NamedTuple):
    """BM25's collection statistics within a scope: documents (rows) and their mean length in tokens."""

    documents: int
    mean_length: float


class HasConnection(Protocol):
    """A VideoIndex or SegmentIndex (or an IndexConnection itself) whose connection the lexicon shares."""

    connection: Any


def lexicon_row(segment: Segment, copies: Mapping[str, Any]) -> dict[str, Any]:
    """The lexicon row of one segment (or metadata document), with the video-level fields in `copies` (_COPIES)."""
    normalized = clip_text(normalize(segment.text))
    return {
        "segment_id": segment_id(segment.video_id, segment.kind, segment.index),
        "video_id": segment.video_id,
        "kind": segment.kind,
        "segment_index": segment.index,
        "start_s": segment.start_s,
        "end_s": segment.end_s,
        "text": clip_text(segment.text),
        "normalized": normalized,
        "length": len(tokens(normalized)),
        "terms": index_terms(normalized, LEXICON_MAX_TERMS),
        VECTOR_FIELD: PLACEHOLDER_VECTOR,
        **{name: copies[name] for name in _COPIES},
    }


def metadata_document(video_id: str, metadata: Mapping[str, str], keys: Sequence[str], duration_s: float) -> Segment:
    """A video's metadata values of the named keys as one lexical document spanning the video ("" when none)."""
    text = " | ".join(metadata[key] for key in keys if metadata.get(key))
    return Segment(video_id, METADATA_KIND, 0, 0.0, max(float(duration_s), 0.0), text)


def _check_kind(kind: str) -> str:
    if kind not in LEXICON_KINDS:
        raise ValueError(f"lexicon kind must be one of {', '.join(LEXICON_KINDS)}, got {kind!r}")
    return kind


def _array(values: Iterable[str]) -> str:
    return "[" + ", ".join(quote_string(v) for v in values) + "]"


def _and(*parts: str) -> str:
    return " and ".join(f"({p})" for p in parts if p)


class LexiconIndex:
    """Writer and reader of the `lexicon` collection; safe to share between threads (shares `over`'s connection)."""

    def __init__(self, over: HasConnection) -> None:
        self.connection = getattr(over, "connection", over)
        self.settings: IndexSettings = self.connection.settings
        self.name: str = self.connection.names.lexicon

    def replace_lexicon(self, video: SegmentVideo, kind: str, segments: Sequence[Segment],
                        text_model: str = UNVERSIONED) -> None:
        """Make the lexicon hold exactly these documents of this kind for the video (segments 0..n-1; an empty list
        clears the kind); call after its segments and before replace_video, with the segments' `text_model`."""
        video_id = check_video_id(video.video_id)
        _check_kind(kind)
        check_model_version(text_model)
        copies = {"metadata": check_metadata(video.metadata), "video_duration_s": float(video.duration_s),
                  "video_clip_count": int(video.clip_count), "video_created_at": float(video.created_at),
                  "text_model": text_model, "tenant": check_tenant(video.tenant)}
        if len(segments) > MAX_SEGMENTS_PER_VIDEO:
            raise ValueError(f"a video holds at most {MAX_SEGMENTS_PER_VIDEO} {kind} documents, got {len(segments)}")
        rows = []
        for i, segment in enumerate(sorted(segments, key=lambda s: s.index)):
            if segment.video_id != video_id or segment.kind != kind or segment.index != i:
                raise ValueError(f"documents must be {video_id!r}'s {kind} documents 0..{len(segments) - 1}, each once")
            start_s = check_number(segment.start_s, f"{kind} document {i} start_s", 0.0)
            check_number(segment.end_s, f"{kind} document {i} end_s", start_s)
            rows.append(lexicon_row(segment, copies))
        rows = [row for row in rows if row["terms"]]  # a text without a word is no document
        kept = {row["segment_index"] for row in rows}
        gone = [i for i in range(len(segments)) if i not in kept]
        stale = _and(f"video_id == {quote_string(video_id)}", f"kind == {quote_string(kind)}",
                     f"segment_index >= {len(segments)}" + (f" or segment_index in [{', '.join(map(str, gone))}]"
                                                            if gone else ""))
        timeout = self.settings.milvus_timeout_s

        def write(client: MilvusClient) -> None:
            if rows:
                client.upsert(self.name, rows, timeout=timeout)
            client.delete(self.name, filter=stale, timeout=timeout)

        self.connection.call(f"replace {kind} lexicon of {video_id!r}", write)

    def postings(self, any_of: Sequence[str], where: str, limit: int, video_ids: Sequence[str] = ()) -> list[Posting]:
        """The rows (within the Milvus expression `where`: the user filter and scope compiled for `segments`) whose
        terms hold any of `any_of`, at most `limit` (in no particular order); only these videos' when named."""
        check_limit(limit, "limit")
        if not any_of:
            return []
        ids = f"video_id in {_array(check_video_id(v) for v in video_ids)}" if video_ids else ""
        return self._read(_and(f"array_contains_any(terms, {_array(any_of)})", ids, where), limit)

    def phrase_postings(self, phrase: Phrase, where: str, limit: int) -> list[Posting]:
        """The rows that may hold the phrase verbatim (all its words, or its compact form when a text ran them
        together), at most `limit`; the caller verifies each (spec.lexical.contains_phrase)."""
        check_limit(limit, "limit")
        options = [f"array_contains_all(terms, {_array(phrase.required)})"] if phrase.required else []
        options.append(f"array_contains(terms, {quote_string(phrase.compact)})")
        return self._read(_and(" or ".join(f"({o})" for o in options), where), limit)

    def _read(self, expr: str, limit: int) -> list[Posting]:
        settings = self.settings
        rows = decoded_rows(self.connection.call(f"read postings of {self.name!r}", lambda client: client.query(
            self.name, filter=expr, output_fields=list(POSTING_COLUMNS), limit=min(limit, MAX_RESULT_WINDOW),
            consistency_level=settings.read_consistency, timeout=settings.milvus_timeout_s,
        )))
        return [Posting.from_row(row, normalized=row["normalized"], length=int(row["length"])) for row in rows]

    def stats(self, scope: RowScope = RowScope()) -> LexiconStats:
        """Documents within the scope (count(*)) and their mean length, estimated from STATS_SAMPLE_ROWS of them.

        A count scans the rows on Milvus Lite: the gateway caches this (gateway.lexical)."""
        where = scope.where("segments")
        settings = self.settings

        def read(client: MilvusClient) -> LexiconStats:
            counted = client.query(self.name, filter=where, output_fields=["count(*)"], timeout=settings.milvus_timeout_s,
                                   consistency_level=settings.read_consistency)
            sample = client.query(self.name, filter=where, output_fields=["length"], limit=STATS_SAMPLE_ROWS,
                                  timeout=settings.milvus_timeout_s, consistency_level=settings.read_consistency)
            lengths = [int(row["length"]) for row in sample]
            return LexiconStats(int(counted[0]["count(*)"]), sum(lengths) / len(lengths) if lengths else 0.0)

        return self.connection.call(f"count {self.name!r}", read)


def backfill_lexicon(client: MilvusClient, names: CollectionNames, settings: IndexSettings) -> int:
    """Write the lexicon rows of every stored segment (a lexicon created beside an older index), then mark the
    collection complete (LEXICON_BACKFILL_PROPERTY); returns the rows written. Idempotent (upserts by segment key)."""
    timeout = settings.milvus_timeout_s
    fields = [*Segment.COLUMNS, *_COPIES]
    iterator = client.query_iterator(names.segments, batch_size=BACKFILL_PAGE_ROWS, filter="", output_fields=fields,
                                     timeout=timeout)
    written = 0
    try:
        while page := iterator.next():
            rows = [lexicon_row(Segment.from_row(row), row) for row in decoded_rows(page)]
            rows = [row for row in rows if row["terms"]]
            if rows:
                client.upsert(names.lexicon, rows, timeout=timeout)
            written += len(rows)
    finally:
        iterator.close()
    client.alter_collection_properties(names.lexicon, {LEXICON_BACKFILL_PROPERTY: "complete"}, timeout=timeout)
    if written:
        log.info("lexicon %r: backfilled %d rows from the stored segments", names.lexicon, written)
    return written
