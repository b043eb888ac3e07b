"""The Milvus collections (videos, clips, timed text segments), defined in one place and versioned.

Each collection has exactly one vector field: that is what Milvus Lite 3.x, the PyPI milvus 2.3.5 standalone
and 2.5 clusters all support. `clips` carries copies of the video-level filter fields (metadata, duration,
clip count, creation time) so that one user filter applies to the clip ANN search as well
(see index.filters). The schema version and the dimension are checked whenever a collection is opened:
an older version is migrated in place (index.migrations), a newer one is refused (SchemaMismatch).

Schema version 2 adds, on every row:
- the model version of its vector: `visual_model` on videos and clips (the pair of the text encoder's and the
  frame encoder's digests, `EncoderInfo.visual_model`: a visual row is only comparable with a query of the same
  text graph and frame graph), `text_model` on segments (the text encoder's digest, `EncoderInfo.text_model`),
  so the visual and the text encoders can change separately and Search compares a query only with rows of the
  versions it serves (index.filters.RowScope);
- its `tenant`, the Milvus partition key (rows of one tenant share partitions, and a search filtered by tenant
  reads only those). Milvus Lite 3.2.2 and the 2.3.5 standalone both take `is_partition_key` (checked by
  tests/test_index_migrations.py and tests/test_milvus_standalone.py); isolation never rests on it: every read
  of a tenant's rows carries `tenant == "..."` (RowScope), so an engine without partition keys would only lose
  the pruning. The single-tenant deployment's tenant is DEFAULT_TENANT, "": no named tenant can be "", so it never
  collides with one.

Primary keys stay as in version 1 (video_id; "<video_id>:<clip_index>"; "<video_id>:<kind>:<index>"): a video id
is unique across tenants and model versions, so one collection holds one version of a video. A re-index builds
its new version in collections of their own and cuts over (an alias), and the tenant API must keep one tenant
from reusing (or learning of) another's video id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from pymilvus import CollectionSchema, DataType, MilvusClient
from pymilvus.milvus_client import IndexParams

from vidstrata.spec.channels import SEGMENT_KINDS
from vidstrata.spec.lexical import MAX_TERM_LENGTH

from vidstrata.index.errors import SchemaMismatch
from vidstrata.index.settings import IndexSettings

SCHEMA_VERSION = 2
SCHEMA_VERSION_PROPERTY = "vidstrata.schema_version"
# One property per model version written to a collection, `vidstrata.model.<version>` = "1": GetStats counts rows
# per version without a GROUP BY (Milvus has none), and two writers adding versions at once never lose one
# (alter_collection_properties merges keys).
MODEL_PROPERTY_PREFIX = "vidstrata.model."

MODEL_VERSION_MAX_LENGTH = 128  # "<text digest>/<frame digest>" is 33 characters
TENANT_MAX_LENGTH = 64
DEFAULT_TENANT = ""  # the single-tenant deployment's rows
# The version of rows whose writer named none (tests, tools); the gateway never serves it, so Search skips them.
UNVERSIONED = "unversioned"

VECTOR_FIELD = "vector"
VIDEO_ID_MAX_LENGTH = 128
CLIP_ID_MAX_LENGTH = VIDEO_ID_MAX_LENGTH + 1 + 20  # "<video_id>:<clip_index>"
STATUS_MAX_LENGTH = 32
# Bounds one video's clips to a single query result window (Milvus caps a query at 16384 rows).
MAX_CLIPS_PER_VIDEO = 1024
# Largest topk/limit one Milvus search or query may ask for.
MAX_RESULT_WINDOW = 16384


SEGMENT_KIND_MAX_LENGTH = 16
SEGMENT_ID_MAX_LENGTH = VIDEO_ID_MAX_LENGTH + 1 + SEGMENT_KIND_MAX_LENGTH + 1 + 20  # "<video_id>:<kind>:<index>"
SEGMENT_TEXT_MAX_LENGTH = 2048  # bytes of UTF-8; longer texts are cut at a character boundary
# Bounds one video's segments of one kind (about one every 2 s of a 3-hour video).
MAX_SEGMENTS_PER_VIDEO = 8192


class ModelVersions(NamedTuple):
    """The versions of the encoders a process serves: `visual_model` (videos and clips rows, EncoderInfo.visual_model)
    and `text_model` (segments rows, EncoderInfo.text_model)."""

    visual_model: str
    text_model: str


def model_versions(description: dict[str, Any]) -> list[str]:
    """The model versions ever written to a collection (its MODEL_PROPERTY_PREFIX properties), sorted."""
    return sorted(key.removeprefix(MODEL_PROPERTY_PREFIX) for key in description.get("properties", {})
                  if key.startswith(MODEL_PROPERTY_PREFIX))


@dataclass(frozen=True)
class CollectionNames:
    """The names of the collections under one prefix."""

    videos: str
    clips: str
    segments: str
    lexicon: str = ""


def collection_names(prefix: str) -> CollectionNames:
    """Collection names for a prefix ("" in production; a per-test prefix isolates tests)."""
    return CollectionNames(videos=f"{prefix}videos", clips=f"{prefix}clips", segments=f"{prefix}segments",
                           lexicon=f"{prefix}lexicon")


def segment_id(video_id: str, kind: str, index: int) -> str:
    """Primary key of a timed text segment: re-ingesting overwrites a video's segments of a kind in place."""
    return f"{video_id}:{kind}:{index}"


def clip_id(video_id: str, clip_index: int) -> str:
    """Primary key of a clip: re-ingesting a video overwrites its clips in place."""
    return f"{video_id}:{clip_index}"


def split_clip_id(primary_key: str) -> tuple[str, int]:
    """(video_id, clip_index) of a clip's primary key (clip_id); video ids never contain ':'."""
    video_id, _, index = primary_key.rpartition(":")
    return video_id, int(index)


def _with_version_and_tenant(schema: CollectionSchema, model_field: str) -> CollectionSchema:
    """Add what schema version 2 puts on every row: the model version of its vector and its tenant."""
    schema.add_field(model_field, DataType.VARCHAR, max_length=MODEL_VERSION_MAX_LENGTH)
    schema.add_field("tenant", DataType.VARCHAR, max_length=TENANT_MAX_LENGTH, is_partition_key=True)
    return schema


def video_schema(dim: int) -> CollectionSchema:
    """One row per video: its vector, what search returns about it, and its filterable fields."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("video_id", DataType.VARCHAR, is_primary=True, max_length=VIDEO_ID_MAX_LENGTH)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("duration_s", DataType.FLOAT)
    schema.add_field("clip_count", DataType.INT64)
    schema.add_field("status", DataType.VARCHAR, max_length=STATUS_MAX_LENGTH)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("created_at", DataType.DOUBLE)
    return _with_version_and_tenant(schema, "visual_model")


def clip_schema(dim: int) -> CollectionSchema:
    """One row per clip, with copies of the video's filter fields so filters work in clip search too."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("clip_id", DataType.VARCHAR, is_primary=True, max_length=CLIP_ID_MAX_LENGTH)
    schema.add_field("video_id", DataType.VARCHAR, max_length=VIDEO_ID_MAX_LENGTH)
    schema.add_field("clip_index", DataType.INT64)
    schema.add_field("start_s", DataType.FLOAT)
    schema.add_field("end_s", DataType.FLOAT)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    return _with_version_and_tenant(_with_video_copies(schema), "visual_model")


def _with_video_copies(schema: CollectionSchema) -> CollectionSchema:
    """Add the video-level filter fields that clips and segments carry, so one user filter applies to them."""
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("video_duration_s", DataType.FLOAT)
    schema.add_field("video_clip_count", DataType.INT64)
    schema.add_field("video_created_at", DataType.DOUBLE)
    return schema


def _timed_text_row() -> CollectionSchema:
    """The fields a timed text row starts with, in the segments and the lexicon alike: its key, video, kind, index, span
    and text."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("segment_id", DataType.VARCHAR, is_primary=True, max_length=SEGMENT_ID_MAX_LENGTH)
    schema.add_field("video_id", DataType.VARCHAR, max_length=VIDEO_ID_MAX_LENGTH)
    schema.add_field("kind", DataType.VARCHAR, max_length=SEGMENT_KIND_MAX_LENGTH)
    schema.add_field("segment_index", DataType.INT64)
    schema.add_field("start_s", DataType.FLOAT)
    schema.add_field("end_s", DataType.FLOAT)
    schema.add_field("text", DataType.VARCHAR, max_length=SEGMENT_TEXT_MAX_LENGTH)
    return schema


def segment_schema(dim: int) -> CollectionSchema:
    """One row per timed text segment (speech or on-screen text), with the clips' copies of the filter fields."""
    schema = _timed_text_row()
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    return _with_version_and_tenant(_with_video_copies(schema), "text_model")


# The lexicon (index.lexicon): one row per timed text segment (and per video's named metadata values) with its
# normalised terms in an ARRAY field, searched by `array_contains_any` / `array_contains_all` filters, which Milvus
# Lite 3.2.2, the 2.3.5 standalone and 2.5+ all evaluate (2.3.5 has no BM25 function, no sparse vectors and only
# prefix LIKE). Every Milvus collection needs a vector field: the lexicon's is a constant LEXICON_VECTOR_DIM-d
# placeholder under a FLAT index, never searched.
METADATA_KIND = "metadata"  # a lexicon row of a video's metadata values (index.lexicon)
LEXICON_KINDS: tuple[str, ...] = (*SEGMENT_KINDS, METADATA_KIND)
LEXICON_MAX_TERMS = 1024  # distinct terms stored per row (spec.lexical.index_terms); a longer text keeps its first
LEXICON_VECTOR_DIM = 2
LEXICON_BACKFILL_PROPERTY = "vidstrata.lexicon.backfill"  # "pending" until the rows of older segments are written


def lexicon_schema() -> CollectionSchema:
    """One row per lexical document: a segment's key, video, kind and span, its text (the snippet), its normalised
    text (tf and phrase verification) and token count, its distinct terms, and the segments' filter copies, model
    version (`text_model`: the version of the segment rows it was made beside) and tenant."""
    schema = _timed_text_row()
    schema.add_field("normalized", DataType.VARCHAR, max_length=SEGMENT_TEXT_MAX_LENGTH)
    schema.add_field("length", DataType.INT64)
    schema.add_field("terms", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=LEXICON_MAX_TERMS,
                     max_length=MAX_TERM_LENGTH * 4)  # bytes of UTF-8
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=LEXICON_VECTOR_DIM)
    return _with_version_and_tenant(_with_video_copies(schema), "text_model")


def lexicon_index_params() -> IndexParams:
    """The lexicon's placeholder vector index: FLAT (nothing to build)."""
    index = MilvusClient.prepare_index_params()
    index.add_index(VECTOR_FIELD, index_type="FLAT", metric_type="IP")
    return index


def collection_schemas(names: CollectionNames, dim: int) -> tuple[tuple[str, CollectionSchema], ...]:
    """Every collection of one prefix with the schema it must have, in the order they are ensured."""
    return ((names.videos, video_schema(dim)), (names.clips, clip_schema(dim)), (names.segments, segment_schema(dim)))


def ensure_collection(client: MilvusClient, name: str, schema: CollectionSchema, settings: IndexSettings,
                      index: IndexParams | None = None, properties: dict[str, str] | None = None) -> bool:
    """Create a missing collection with its index and schema version, or check an existing one (SchemaMismatch);
    then load it, which a new process must do before it can search or query it.

    Index settings only apply at creation: an existing collection keeps its index. `index` replaces the settings'
    vector index, `properties` are added at creation. True when it created the collection.
    """
    timeout = settings.milvus_timeout_s
    created = not client.has_collection(name, timeout=timeout)
    if created:
        create_collection(client, name, schema, settings, properties, index)
    else:
        check_collection(name, client.describe_collection(name, timeout=timeout), schema)
    client.load_collection(name, timeout=timeout)
    return created


def create_collection(client: MilvusClient, name: str, schema: CollectionSchema, settings: IndexSettings,
                      properties: dict[str, str] | None = None, index: IndexParams | None = None) -> None:
    """Create a collection with the vector index of the settings (or `index`), marked with this code's schema
    version."""
    client.create_collection(
        name,
        schema=schema,
        index_params=index if index is not None else index_params(settings),
        consistency_level="Strong",
        properties={SCHEMA_VERSION_PROPERTY: str(SCHEMA_VERSION), **(properties or {})},
        timeout=settings.milvus_timeout_s,
    )


def index_params(settings: IndexSettings) -> IndexParams:
    """The vector index both collections get, from settings."""
    params: dict[str, int] = {}
    if settings.index_type == "HNSW":
        params = {"M": settings.hnsw_m, "efConstruction": settings.hnsw_ef_construction}
    elif settings.index_type == "IVF_FLAT":
        params = {"nlist": settings.ivf_nlist}
    index = MilvusClient.prepare_index_params()
    index.add_index(VECTOR_FIELD, index_type=settings.index_type, metric_type=settings.metric, params=params)
    return index


def search_params(settings: IndexSettings, limit: int) -> dict[str, Any]:
    """Search-time parameters; HNSW's ef must be at least the number of hits asked for."""
    params: dict[str, int] = {}
    if settings.index_type == "HNSW":
        params = {"ef": max(settings.hnsw_ef, limit)}
    elif settings.index_type == "IVF_FLAT":
        params = {"nprobe": min(settings.ivf_nprobe, settings.ivf_nlist)}
    return {"metric_type": settings.metric, "params": params}


def stored_schema_version(description: dict[str, Any]) -> int | None:
    """The schema version a collection was written with (describe_collection's answer); None: not vidstrata's."""
    version = description.get("properties", {}).get(SCHEMA_VERSION_PROPERTY)
    try:
        return int(version) if version is not None else None
    except ValueError:
        return None


def refuse_newer(name: str, version: int) -> None:
    """SchemaMismatch for a collection of a schema version newer than this code reads: downgrades are refused."""
    if version > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"collection {name!r}: downgrades are refused: this code reads schema version {SCHEMA_VERSION}, "
            f"the collection is {version}; run the newer vidstrata or restore a backup"
        )


def check_collection(name: str, description: dict[str, Any], expected: CollectionSchema) -> None:
    """Raise SchemaMismatch unless an existing collection has this schema version, these fields and this dim.

    An older version is migrated before this check (index.migrations); one found here was not.
    """
    version = stored_schema_version(description)
    if version is not None:
        refuse_newer(name, version)
    if version != SCHEMA_VERSION:
        found = "no vidstrata schema version" if version is None else f"schema version {version}"
        raise SchemaMismatch(
            f"collection {name!r} has {found}, this code needs version {SCHEMA_VERSION}; "
            "migrate it or use another collection_prefix"
        )
    have = {f["name"]: (f["type"], f.get("params", {}).get("dim")) for f in description["fields"]}
    want = {f.name: (f.dtype, f.params.get("dim")) for f in expected.fields}
    if have != want:
        have_dim, want_dim = have.get(VECTOR_FIELD, (None, None))[1], want[VECTOR_FIELD][1]
        detail = (
            f"vector dim {have_dim}, settings say {want_dim}"
            if have_dim != want_dim
            else f"fields {sorted(have)}, expected {sorted(want)}"
        )
        raise SchemaMismatch(f"collection {name!r} does not match schema version {SCHEMA_VERSION}: {detail}")
