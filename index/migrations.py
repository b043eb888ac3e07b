"""Schema migrations: collections written by an older vidstrata are upgraded in place when they are opened.

Milvus Lite 3.x and the 2.3.5 standalone cannot add a field to an existing collection, so a collection of schema
version 1 is copied into a new collection of version 2 with the new fields backfilled, and the names are swapped:

1. `<name>__v2` is created (this code's schema and index) and the old rows are paged into it with a query iterator
   (pymilvus `query_iterator`, in primary-key order on Milvus Lite 3.2.2 and 2.3.5), each page upserted with
   `visual_model` / `text_model` and `tenant` added; after every page the last key copied is saved on `<name>__v2`
   (a property), so a migration killed mid-way resumes from there (upserts make a page copied twice harmless).
2. When every row is there (counted), `<name>__v2` is marked complete; only then is `<name>` renamed to
   `<name>__v1` (kept as a backup, released from memory) and `<name>__v2` to `<name>`. Until that first rename the
   old collection stays the one every reader and writer uses: there is never a half-written index under `<name>`.

Backfilled versions: a deployment that did not change models made its rows with the models it serves today, so
the migrating process backfills the versions it serves (the worker's and the gateway's encoder; `served`). A
process that does not know them (a tool, a test) backfills UNKNOWN_MODEL, which Search never serves: those rows
stay invisible until a re-index. A deployment that changed models without re-indexing (already wrong under
version 1) gets today's versions on rows another model made: re-index it.

One migration at a time: a marker collection `<prefix>vidstrata_migration` is the lock. Milvus has no
compare-and-set, but creating a collection that exists fails (Milvus Lite 3.2.2; on 2.3.5 a create that differs
in its description, which holds the owner), and the owner is read back after creating it. The holder refreshes a
heartbeat property every page and checks it still owns the marker before each rename; a marker whose heartbeat is
older than `migration_lock_stale_s` was left by a killed process and is taken over. Other processes answer
IndexUnavailable (retry later) while a migration runs.

Writers of the old code (workers of the previous release) must be stopped first: rows they write to `<name>` after
its pages were copied are not in the copy (docs/operations.md). A collection of a newer version than this code reads
is refused (SchemaMismatch): downgrades are refused.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymilvus import CollectionSchema, DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from vidstrata.index.errors import IndexUnavailable, StorageError
from vidstrata.index.filters import quote_string
from vidstrata.index.schema import (
    CLIP_ID_MAX_LENGTH,
    DEFAULT_TENANT,
    MODEL_PROPERTY_PREFIX,
    SCHEMA_VERSION,
    SEGMENT_ID_MAX_LENGTH,
    SEGMENT_KIND_MAX_LENGTH,
    SEGMENT_TEXT_MAX_LENGTH,
    STATUS_MAX_LENGTH,
    VECTOR_FIELD,
    VIDEO_ID_MAX_LENGTH,
    CollectionNames,
    ModelVersions,
    clip_schema,
    create_collection,
    refuse_newer,
    segment_schema,
    stored_schema_version,
    video_schema,
)
from vidstrata.index.settings import IndexSettings

log = logging.getLogger(__name__)

MIGRATES_FROM = (1,)  # the older schema versions this code upgrades (others are a SchemaMismatch)
UNKNOWN_MODEL = "unknown-v1"  # the backfilled version of rows whose model the migrating process did not know
MIGRATION_PAGE_ROWS = 1000
TARGET_SUFFIX = "__v2"
BACKUP_SUFFIX = "__v1"
LOCK_NAME = "vidstrata_migration"
STATE_PROPERTY = "vidstrata.migration.state"  # on the target: "copying" or "complete"
CURSOR_PROPERTY = "vidstrata.migration.cursor"  # on the target: the last primary key copied
OWNER_PROPERTY = "vidstrata.migration.owner"  # on the lock marker
HEARTBEAT_PROPERTY = "vidstrata.migration.heartbeat"  # on the lock marker: unix seconds


# -- schema version 1, frozen: what main wrote before model versions and tenants (read and copied from) ----------


def _v1_video_copies(schema: CollectionSchema) -> CollectionSchema:
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("video_duration_s", DataType.FLOAT)
    schema.add_field("video_clip_count", DataType.INT64)
    schema.add_field("video_created_at", DataType.DOUBLE)
    return schema


def video_schema_v1(dim: int) -> CollectionSchema:
    """`videos` as schema version 1 defined it."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("video_id", DataType.VARCHAR, is_primary=True, max_length=VIDEO_ID_MAX_LENGTH)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("duration_s", DataType.FLOAT)
    schema.add_field("clip_count", DataType.INT64)
    schema.add_field("status", DataType.VARCHAR, max_length=STATUS_MAX_LENGTH)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("created_at", DataType.DOUBLE)
    return schema


def clip_schema_v1(dim: int) -> CollectionSchema:
    """`clips` as schema version 1 defined it."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("clip_id", DataType.VARCHAR, is_primary=True, max_length=CLIP_ID_MAX_LENGTH)
    schema.add_field("video_id", DataType.VARCHAR, max_length=VIDEO_ID_MAX_LENGTH)
    schema.add_field("clip_index", DataType.INT64)
    schema.add_field("start_s", DataType.FLOAT)
    schema.add_field("end_s", DataType.FLOAT)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    return _v1_video_copies(schema)


def segment_schema_v1(dim: int) -> CollectionSchema:
    """`segments` as schema version 1 defined it."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("segment_id", DataType.VARCHAR, is_primary=True, max_length=SEGMENT_ID_MAX_LENGTH)
    schema.add_field("video_id", DataType.VARCHAR, max_length=VIDEO_ID_MAX_LENGTH)
    schema.add_field("kind", DataType.VARCHAR, max_length=SEGMENT_KIND_MAX_LENGTH)
    schema.add_field("segment_index", DataType.INT64)
    schema.add_field("start_s", DataType.FLOAT)
    schema.add_field("end_s", DataType.FLOAT)
    schema.add_field("text", DataType.VARCHAR, max_length=SEGMENT_TEXT_MAX_LENGTH)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    return _v1_video_copies(schema)


def v1_schemas(names: CollectionNames, dim: int) -> tuple[tuple[str, CollectionSchema], ...]:
    """Every collection of one prefix with its version-1 schema (tests write a version-1 index with these)."""
    return ((names.videos, video_schema_v1(dim)), (names.clips, clip_schema_v1(dim)),
            (names.segments, segment_schema_v1(dim)))


# -- the migration --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    """One collection's upgrade from version 1: its version-2 schema and the fields every row gains."""

    name: str
    schema: CollectionSchema
    key: str  # the primary key field
    added: dict[str, str]  # field -> backfilled value


def _steps(names: CollectionNames, dim: int, models: ModelVersions) -> list[_Step]:
    visual = {"visual_model": models.visual_model, "tenant": DEFAULT_TENANT}
    return [_Step(names.videos, video_schema(dim), "video_id", visual),
            _Step(names.clips, clip_schema(dim), "clip_id", visual),
            _Step(names.segments, segment_schema(dim), "segment_id",
                  {"text_model": models.text_model, "tenant": DEFAULT_TENANT})]


def _version(client: MilvusClient, name: str, timeout: float) -> int | None:
    return stored_schema_version(client.describe_collection(name, timeout=timeout))


def pending(client: MilvusClient, names: CollectionNames, timeout: float) -> list[str]:
    """The collections that need (or are half-way through) an upgrade to this code's schema version;
    SchemaMismatch for one of a newer version."""
    found = []
    for name in (names.videos, names.clips, names.segments):
        if client.has_collection(name, timeout=timeout):
            version = _version(client, name, timeout)
            if version is not None:
                refuse_newer(name, version)
                if version in MIGRATES_FROM:
                    found.append(name)
        elif client.has_collection(name + TARGET_SUFFIX, timeout=timeout):
            found.append(name)  # killed between the two renames
    return found


def upgrade(client: MilvusClient, names: CollectionNames, settings: IndexSettings,
            served: Callable[[], ModelVersions] | None) -> None:
    """Upgrade every collection of this prefix written by an older schema version, in place (module docstring).

    Returns at once when there is nothing to upgrade. IndexUnavailable while another process migrates, or when
    `served` (the process's served model versions, for the backfill) cannot answer now; SchemaMismatch for a
    collection of a newer schema version.
    """
    timeout = settings.milvus_timeout_s
    if not pending(client, names, timeout):
        return
    if served is None:
        models = ModelVersions(UNKNOWN_MODEL, UNKNOWN_MODEL)
        log.warning("this process does not know the served model versions: the migrated rows are backfilled with "
                    "%r, which Search does not serve, until a re-index", UNKNOWN_MODEL)
    else:
        try:
            models = served()
        except Exception as exc:  # noqa: BLE001 - the encoder's errors: whatever it raises, retry later
            raise IndexUnavailable(f"the index needs a migration to schema version {SCHEMA_VERSION}, which backfills "
                                   f"the served model versions, and they cannot be read now: {exc}") from exc
    with MigrationLock(client, names, settings) as lock:
        for step in _steps(names, settings.vector_dim, models):
            if step.name in pending(client, names, timeout):
                _migrate(client, step, settings, lock)
    log.info("index %r: every collection is at schema version %d", names.videos, SCHEMA_VERSION)


def _migrate(client: MilvusClient, step: _Step, settings: IndexSettings, lock: MigrationLock) -> None:
    """Copy one version-1 collection into its version-2 target, then swap the names (resuming where it stopped)."""
    timeout = settings.milvus_timeout_s
    target, backup = step.name + TARGET_SUFFIX, step.name + BACKUP_SUFFIX
    if client.has_collection(step.name, timeout=timeout):
        if not client.has_collection(target, timeout=timeout):
            model = step.added.get("visual_model", step.added.get("text_model"))
            create_collection(client, target, step.schema, settings,
                              {STATE_PROPERTY: "copying", CURSOR_PROPERTY: "", MODEL_PROPERTY_PREFIX + str(model): "1"})
        client.load_collection(target, timeout=timeout)
        properties = client.describe_collection(target, timeout=timeout).get("properties", {})
        if properties.get(STATE_PROPERTY) != "complete":
            _copy(client, step, target, properties.get(CURSOR_PROPERTY, ""), settings, lock)
            client.alter_collection_properties(target, {STATE_PROPERTY: "complete"}, timeout=timeout)
        lock.beat()
        client.rename_collection(step.name, backup, timeout=timeout)
        log.info("migration: %r (schema version 1) is kept as %r", step.name, backup)
    lock.beat()
    client.rename_collection(target, step.name, timeout=timeout)
    client.load_collection(step.name, timeout=timeout)
    if client.has_collection(backup, timeout=timeout):
        client.release_collection(backup, timeout=timeout)
    log.info("migration: %r is at schema version %d; drop %r once the upgrade is kept", step.name, SCHEMA_VERSION,
             backup)


def _count(client: MilvusClient, name: str, timeout: float) -> int:
    rows = client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong", timeout=timeout)
    return int(rows[0]["count(*)"])


def _copy(client: MilvusClient, step: _Step, target: str, cursor: str, settings: IndexSettings,
          lock: MigrationLock) -> None:
    """Page the rows after `cursor` (primary-key order) from the old collection into the target, backfilled."""
    timeout = settings.milvus_timeout_s
    client.load_collection(step.name, timeout=timeout)
    total = _count(client, step.name, timeout)
    fields = [f.name for f in step.schema.fields if f.name not in step.added]
    iterator = client.query_iterator(
        step.name, batch_size=MIGRATION_PAGE_ROWS, filter=f"{step.key} > {quote_string(cursor)}" if cursor else "",
        output_fields=fields, timeout=timeout,
    )
    copied = 0
    log.info("migration: copying %r into %r (%d rows%s)", step.name, target, total,
             f", resuming after {cursor!r}" if cursor else "")
    try:
        while page := iterator.next():
            rows = [{name: row[name] for name in fields} | step.added for row in page]
            client.upsert(target, rows, timeout=timeout)
            cursor = max(str(row[step.key]) for row in page)
            client.alter_collection_properties(target, {CURSOR_PROPERTY: cursor}, timeout=timeout)
            copied += len(rows)
            lock.beat()
            log.info("migration: %r: %d rows copied this run (%d in all)", step.name, copied, total)
    finally:
        iterator.close()
    have = _count(client, target, timeout)
    if have != total:
        raise StorageError(f"migration of {step.name!r}: {target!r} holds {have} rows, the old collection {total}; "
                           "it stays the one in use (were writers of the old version still running?)")


class MigrationLock:
    """The marker collection that lets one process at a time migrate a prefix's collections (module docstring)."""

    def __init__(self, client: MilvusClient, names: CollectionNames, settings: IndexSettings) -> None:
        self.client = client
        self.name = names.videos.removesuffix("videos") + LOCK_NAME
        self.timeout = settings.milvus_timeout_s
        self.stale_s = settings.migration_lock_stale_s
        self.token = uuid.uuid4().hex

    def __enter__(self) -> MigrationLock:
        if not self._create():
            properties = self._properties()
            age = time.time() - float(properties.get(HEARTBEAT_PROPERTY, 0.0))
            if age <= self.stale_s:
                raise IndexUnavailable(f"the index is being migrated by another process (its heartbeat {age:.0f} s "
                                       "ago); retry later")
            log.warning("migration: taking over %r, whose holder has been silent for %.0f s", self.name, age)
            self.client.drop_collection(self.name, timeout=self.timeout)
            if not self._create():
                raise IndexUnavailable("another process took over the index migration; retry later")
        if self._properties().get(OWNER_PROPERTY) != self.token:
            raise IndexUnavailable("the index is being migrated by another process; retry later")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._properties().get(OWNER_PROPERTY) == self.token:
                self.client.drop_collection(self.name, timeout=self.timeout)
        except MilvusException as error:
            log.warning("migration: could not drop the lock %r (it goes stale): %s", self.name, error)

    def beat(self) -> None:
        """Refresh the heartbeat; StorageError when another process has taken the lock over (never rename then)."""
        if self._properties().get(OWNER_PROPERTY) != self.token:
            raise StorageError(f"the migration lock {self.name!r} was taken over by another process; stopping")
        self.client.alter_collection_properties(self.name, {HEARTBEAT_PROPERTY: str(time.time())},
                                                timeout=self.timeout)

    def _create(self) -> bool:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description=f"vidstrata migration lock {self.token}")
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=2)
        try:
            self.client.create_collection(self.name, schema=schema, timeout=self.timeout, properties={
                OWNER_PROPERTY: self.token, HEARTBEAT_PROPERTY: str(time.time())})
        except MilvusException as exc:  # Lite: "already exists"; 2.3.5: "create duplicate collection with different ..."
            if "exist" in str(exc).lower() or "duplicate" in str(exc).lower():
                return False
            raise
        return True

    def _properties(self) -> dict[str, Any]:
        try:
            return dict(self.client.describe_collection(self.name, timeout=self.timeout).get("properties", {}))
        except MilvusException:
            return {}  # gone
