"""The Milvus connection that `VideoIndex` and `SegmentIndex` share: one client, one retry rule, one error mapping.

Callers above the index see only `IndexUnavailable` (retry later) and `StorageError` (index.errors), never a
pymilvus or gRPC exception, so this is the one place that knows which pymilvus failures are transient.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import grpc
from pymilvus import MilvusClient, Status
from pymilvus.exceptions import ConnectError, ErrorCode, MilvusException, MilvusUnavailableException

from vidstrata.index.checks import check_model_version
from vidstrata.index.errors import IndexUnavailable, StorageError
from vidstrata.index.migrations import upgrade
from vidstrata.index.schema import (
    LEXICON_BACKFILL_PROPERTY,
    MODEL_PROPERTY_PREFIX,
    CollectionNames,
    ModelVersions,
    collection_names,
    collection_schemas,
    ensure_collection,
    lexicon_index_params,
    lexicon_schema,
    model_versions,
)
from vidstrata.index.settings import IndexSettings

_COLLECTION_NOT_LOADED = 101  # Milvus error code; also what a restarted Milvus Lite answers
T = TypeVar("T")
_TRANSIENT_GRPC_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.ABORTED,
}


def connect_milvus(uri: str, token: str = "", timeout_s: float = 10.0) -> MilvusClient:
    """A pymilvus client that keeps an idle connection alive without breaking the server's ping policy.

    pymilvus pings every 10 s even when idle, but gRPC servers (Milvus Lite's among them) allow one ping per
    5 minutes without calls, so an idle gateway or worker got GOAWAY "too_many_pings" and failed its next call.
    pymilvus shares one connection per URI within a process, so every client here must be made by this.
    """
    return MilvusClient(uri, token=token, timeout=timeout_s, grpc_options={"grpc.keepalive_time_ms": 360_000})


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry may fix: no connection, deadline passed, server overloaded."""
    if isinstance(exc, grpc.FutureTimeoutError):
        return True
    if isinstance(exc, grpc.RpcError):
        return exc.code() in _TRANSIENT_GRPC_CODES  # type: ignore[attr-defined]
    if isinstance(exc, (ConnectError, MilvusUnavailableException)):
        return True
    if isinstance(exc, MilvusException):
        return exc.code in (Status.CONNECT_FAILED, ErrorCode.RATE_LIMIT) or exc.code in _TRANSIENT_GRPC_CODES
    return False


@contextmanager
def milvus_errors(action: str) -> Iterator[None]:
    """Turn pymilvus and gRPC errors into IndexUnavailable (retryable) or StorageError."""
    try:
        yield
    except (MilvusException, grpc.RpcError, grpc.FutureTimeoutError) as exc:
        kind = IndexUnavailable if is_transient(exc) else StorageError
        raise kind(f"Milvus {action} failed: {exc}") from exc


class IndexConnection:
    """One lazily opened MilvusClient with the collections of one prefix ensured; safe to share between threads.

    The connection is opened and the collections ensured (created if missing, migrated from an older schema
    version, checked, loaded) on the first call, so a process that starts while Milvus is down fails its calls with
    IndexUnavailable and recovers once Milvus is back. `served` gives the model versions this process serves, which
    a migration backfills (index.migrations; None: it backfills UNKNOWN_MODEL).
    """

    def __init__(self, settings: IndexSettings, served: Callable[[], ModelVersions] | None = None) -> None:
        self.settings = settings
        self.names: CollectionNames = collection_names(settings.collection_prefix)
        self.served = served
        self._client: MilvusClient | None = None
        self._ready = False
        self._lock = threading.Lock()
        self._noted: set[tuple[str, str]] = set()

    def call(self, what: str, fn: Callable[[MilvusClient], T]) -> T:
        """Run fn on the connected client with the collections ensured; errors become index.errors.

        A restarted Milvus Lite forgets which collections were loaded, so on "not loaded" this loads them
        again and retries once; fn must therefore be idempotent.
        """
        with milvus_errors(what):
            try:
                return fn(self._ensured_client())
            except MilvusException as exc:
                if exc.code != _COLLECTION_NOT_LOADED:
                    raise
            self._ready = False
            return fn(self._ensured_client())

    def ensure_collections(self) -> None:
        """Create missing collections with their index, check existing ones (SchemaMismatch), and load them.

        Loading is required: a new process must load a collection before it can search or query it.
        """
        with self._lock:
            client = self._connect()
            self._noted.clear()
            with milvus_errors("migrate the collections"):
                upgrade(client, self.names, self.settings, self.served)
            for name, schema in collection_schemas(self.names, self.settings.vector_dim):
                with milvus_errors(f"ensure collection {name!r}"):
                    ensure_collection(client, name, schema, self.settings)
            with milvus_errors(f"ensure collection {self.names.lexicon!r}"):
                self._ensure_lexicon(client)
            self._ready = True

    def _ensure_lexicon(self, client: MilvusClient) -> None:
        """Create the lexicon (index.lexicon) if missing and fill it from the stored segments until it is complete."""
        timeout = self.settings.milvus_timeout_s
        ensure_collection(client, self.names.lexicon, lexicon_schema(), self.settings, lexicon_index_params(),
                          {LEXICON_BACKFILL_PROPERTY: "pending"})
        properties = client.describe_collection(self.names.lexicon, timeout=timeout).get("properties", {})
        if properties.get(LEXICON_BACKFILL_PROPERTY) == "pending":
            # index.lexicon reads segment rows through index.segments, which imports this module: imported here
            from vidstrata.index.lexicon import backfill_lexicon

            backfill_lexicon(client, self.names, self.settings)

    def note_model(self, collection: str, version: str) -> None:
        """Record that rows of this model version are written to the collection (a property per version, set once per
        process: GetStats reads them, index.store.VideoIndex.version_counts)."""
        check_model_version(version)
        if (collection, version) in self._noted:
            return
        key, timeout = MODEL_PROPERTY_PREFIX + version, self.settings.milvus_timeout_s

        def noted(client: MilvusClient) -> bool:
            return key in client.describe_collection(collection, timeout=timeout).get("properties", {})

        def note(client: MilvusClient) -> None:
            # Several workers note a new version at once; Milvus Lite writes the collection's schema file on each
            # alter and two at once can fail (a rename of its temporary file). Set once, by whoever is first; a failed
            # alter that another process's landed is fine, and one that nobody's did is retried by the caller.
            if noted(client):
                return
            try:
                client.alter_collection_properties(collection, {key: "1"}, timeout=timeout)
            except MilvusException as exc:
                if not noted(client):
                    raise IndexUnavailable(f"Milvus could not note model {version!r} on {collection!r}: {exc}") from exc

        self.call(f"note model {version!r} on {collection!r}", note)
        self._noted.add((collection, version))

    def model_versions(self, collection: str) -> list[str]:
        """The model versions ever written to the collection (see note_model)."""
        return model_versions(self.call(f"describe {collection!r}", lambda client: client.describe_collection(
            collection, timeout=self.settings.milvus_timeout_s)))

    def close(self) -> None:
        """Close the client; a later call reconnects."""
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None
            self._ready = False

    def _ensured_client(self) -> MilvusClient:
        if not self._ready:
            self.ensure_collections()
        assert self._client is not None
        return self._client

    def _connect(self) -> MilvusClient:
        if self._client is None:
            with milvus_errors("connect"):
                self._client = connect_milvus(
                    self.settings.milvus_uri, self.settings.milvus_token, self.settings.milvus_timeout_s
                )
        return self._client
