"""Storage layer: Milvus schema, writer and searcher (`VideoIndex`), safe filters, ingest status (Redis)."""

from index.errors import IndexUnavailable, SchemaMismatch, StatusUnavailable, StorageError
from index.filters import FilterError, compile_filter
from index.settings import IndexSettings
from index.status import IngestState, StatusStore, VideoStatus
from index.store import ClipHit, ClipRecord, VideoHit, VideoIndex, VideoRecord

__all__ = [
    "ClipHit",
    "ClipRecord",
    "FilterError",
    "IndexSettings",
    "IndexUnavailable",
    "IngestState",
    "SchemaMismatch",
    "StatusStore",
    "StatusUnavailable",
    "StorageError",
    "VideoHit",
    "VideoIndex",
    "VideoRecord",
    "VideoStatus",
    "compile_filter",
]
