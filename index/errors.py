"""Exceptions of the storage layer, so callers map them to retries or gRPC codes without knowing pymilvus.

Bad input is always a plain `ValueError` (or `FilterError`, a `ValueError`), never one of these.
"""


class StorageError(RuntimeError):
    """A storage backend failed in a way the caller cannot fix by changing its input."""


class IndexUnavailable(StorageError):
    """Milvus cannot be reached or timed out: retry later, or answer gRPC UNAVAILABLE."""


class SchemaMismatch(StorageError):
    """An existing collection was created by another schema version or vector dimension.

    Never fixed automatically: dropping it would delete the index; migrate or pick another collection_prefix.
    """
