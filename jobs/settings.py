"""Settings of the Redis that carries ingest (Celery broker and result backend, status records):
`VIDSTRATA_REDIS_*`. The gateway and the workers each hold one as their `redis` part, so both read the same.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RedisSettings(BaseSettings):
    """One Redis (a primary, not Redis Cluster) per deployment."""

    model_config = SettingsConfigDict(env_prefix="VIDSTRATA_REDIS_", extra="ignore")

    url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis URL of the ingest queue (Celery broker and results) and the ingest status records.",
    )
    timeout_s: float = Field(
        5.0, gt=0, description="Connect and reply timeout of each status or queue call; past it the call fails as "
        "unavailable.",
    )
