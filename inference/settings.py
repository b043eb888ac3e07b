"""Where Triton is: `VIDSTRATA_TRITON_*`, shared by the gateway and the workers (each sets its own deadlines)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TritonSettings(BaseSettings):
    """The Triton Inference Server that serves every model."""

    model_config = SettingsConfigDict(env_prefix="VIDSTRATA_TRITON_", extra="ignore")

    url: str = Field("127.0.0.1:8001", description="Triton gRPC address (host:port) serving every encoder.")
