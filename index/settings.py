"""Settings of the Milvus index, read from `VIDSTRATA_MILVUS_*` environment variables.

The gateway and the workers each hold one as their `milvus` part (composition, not inheritance), so both
read the same variables and a test or benchmark passes one object to `VideoIndex`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_ENV = "VIDSTRATA_MILVUS_"


class IndexSettings(BaseSettings):
    """Where the index lives and how its vectors are indexed and searched (`VIDSTRATA_MILVUS_<NAME>`)."""

    model_config = SettingsConfigDict(env_prefix=_ENV, extra="ignore", populate_by_name=True)

    milvus_uri: str = Field(
        "http://127.0.0.1:19530", validation_alias=_ENV + "URI",
        description="Milvus gRPC URI: the local `milvus-lite server`, a Milvus standalone or a cluster.",
    )
    milvus_token: str = Field(
        "", validation_alias=_ENV + "TOKEN", description="Milvus auth token (`user:password` or an API key); empty when auth is off."
    )
    milvus_timeout_s: float = Field(
        10.0, gt=0, validation_alias=_ENV + "TIMEOUT_S", description="Deadline of each Milvus call in seconds; past it the call fails as unavailable."
    )
    collection_prefix: str = Field(
        "",
        pattern=r"^([A-Za-z_][A-Za-z0-9_]{0,200})?$",
        description="Prefix of the `videos` and `clips` collection names, to keep tenants or tests apart.",
    )
    index_type: Literal["HNSW", "FLAT", "IVF_FLAT"] = Field(
        "HNSW", description="Vector index of both collections: HNSW, FLAT (exact) or IVF_FLAT."
    )
    metric: Literal["COSINE", "IP"] = Field(
        "COSINE", description="Similarity metric; with both, a larger score is a better match."
    )
    hnsw_m: int = Field(16, ge=2, le=2048, description="HNSW graph degree M (build time).")
    hnsw_ef_construction: int = Field(200, ge=1, description="HNSW efConstruction (build time).")
    hnsw_ef: int = Field(
        320,
        ge=1,
        description="HNSW ef at search time; raised to the request's limit when that is larger. 320 keeps the "
        "grouped top 10 equal to exact search on 99% of queries at 100k videos (bench.query; 64: 98.3%).",
    )
    ivf_nlist: int = Field(1024, ge=1, le=65536, description="IVF_FLAT number of clusters (build time).")
    ivf_nprobe: int = Field(16, ge=1, le=65536, description="IVF_FLAT clusters probed at search time.")
    vector_dim: int = Field(
        384, ge=2, le=32768, description="Dimension of video and clip vectors; fixed when a collection is created."
    )
    clip_overfetch: int = Field(
        2,
        ge=1,
        le=1000,
        description="Clip hits fetched per wanted video in grouped clip search (grouping happens client-side); "
        "HNSW's ef follows it, so it sets the clip search's cost. Chosen with bench.query's exact-search check.",
    )
    clip_overfetch_max: int = Field(
        32,
        ge=1,
        le=1000,
        description="Widest grouped clip search: when a video's clips crowd the others out of a page, the search "
        "is repeated 4x wider up to this many clip hits per wanted video.",
    )
    read_consistency: Literal["Strong", "Bounded", "Session", "Eventually"] = Field(
        "Bounded",
        description="Milvus consistency of searches and reads. Strong waits out a time tick on every call "
        "(~0.4 s on a standalone); READY videos are searchable either way (see index/store.py).",
    )

    migration_lock_stale_s: float = Field(
        120.0, gt=0, description="A schema migration's lock whose holder has not written a heartbeat for this many "
        "seconds was left by a killed process and is taken over (index.migrations).",
    )

    @field_validator("index_type", "metric", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        """Accept `hnsw` or `cosine` from the environment as well."""
        return value.upper() if isinstance(value, str) else value
