"""Milvus only. `connection`: the shared client, its retry and error mapping; `replies`: reply decoding;
`schema`: the collections and their setup; `filters`: safe filter compilation; `checks`: input checks;
`store` (`VideoIndex`: videos and clips) and `segments` (`SegmentIndex`: timed text) are peers over those."""

from vidstrata.index.errors import IndexUnavailable, SchemaMismatch, StorageError
from vidstrata.index.filters import FilterError, compile_filter
from vidstrata.index.settings import IndexSettings
from vidstrata.index.store import ClipHit, ClipRecord, VideoHit, VideoIndex, VideoRecord

__all__ = [
    "ClipHit",
    "ClipRecord",
    "FilterError",
    "IndexSettings",
    "IndexUnavailable",
    "SchemaMismatch",
    "StorageError",
    "VideoHit",
    "VideoIndex",
    "VideoRecord",
    "compile_filter",
]
