"""Milvus only: schema, writer and searcher (`VideoIndex`), safe filter compilation."""

from index.errors import IndexUnavailable, SchemaMismatch, StorageError
from index.filters import FilterError, compile_filter
from index.settings import IndexSettings
from index.store import ClipHit, ClipRecord, VideoHit, VideoIndex, VideoRecord

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
