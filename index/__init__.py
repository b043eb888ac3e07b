"""Milvus only: schema, writer and searcher (`VideoIndex`), safe filter compilation."""

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
