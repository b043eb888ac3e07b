"""Settings of the gateway, read from `VIDSTRATA_*` environment variables.

`GatewaySettings` extends `IndexSettings`, so one object configures Milvus and Redis (the same
`VIDSTRATA_MILVUS_URI` and `VIDSTRATA_REDIS_URL` the workers read) and the gateway itself. Settings only
the gateway has are read from `VIDSTRATA_GATEWAY_<NAME>` (as k8s/base/config.yaml sets them) and are passed
by field name in code: `GatewaySettings(port=0, auth_token="t")`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from gateway.fusion import FusionMethod, Normalization, check_weights
from index.settings import IndexSettings

_ENV = "VIDSTRATA_GATEWAY_"


class GatewaySettings(IndexSettings):
    """Everything `vidstrata gateway` needs: listeners, security, dependencies, limits and search tuning."""

    model_config = SettingsConfigDict(env_prefix="VIDSTRATA_", extra="ignore", populate_by_name=True)

    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC address (host:port) serving the text encoder.")
    host: str = Field(
        "0.0.0.0", validation_alias=_ENV + "HOST",
        description="Interface that the API, health and metrics ports listen on.",
    )
    port: int = Field(
        50051, ge=0, le=65535, validation_alias=_ENV + "PORT", description="gRPC API port (0: any free port)."
    )
    health_port: int = Field(
        0, ge=0, le=65535, validation_alias=_ENV + "HEALTH_PORT",
        description="Extra plaintext port serving only grpc.health.v1, for kubelet probes that cannot speak TLS; "
        "0: none (health is always on the API port as well).",
    )
    metrics_port: int = Field(
        9100, ge=0, le=65535, validation_alias=_ENV + "METRICS_PORT",
        description="Prometheus /metrics HTTP port; 0: no metrics server.",
    )
    auth_token: str = Field(
        "", validation_alias=_ENV + "AUTH_TOKEN",
        description="Bearer token every VideoSearch call must send (`authorization: Bearer <token>`); empty: off.",
    )
    tls_cert_file: Path | None = Field(
        None, validation_alias=_ENV + "TLS_CERT_FILE",
        description="PEM certificate chain of the API port; TLS is on when this and tls_key_file are set.",
    )
    tls_key_file: Path | None = Field(
        None, validation_alias=_ENV + "TLS_KEY_FILE", description="PEM private key of the API port."
    )
    max_query_bytes: int = Field(
        2048, ge=1, validation_alias=_ENV + "MAX_QUERY_BYTES", description="Longest query accepted, in UTF-8 bytes."
    )
    default_top_k: int = Field(
        10, ge=1, validation_alias=_ENV + "DEFAULT_TOP_K", description="Hits returned when a Search sets no top_k."
    )
    max_top_k: int = Field(
        1000, ge=1, le=10000, validation_alias=_ENV + "MAX_TOP_K", description="Largest top_k a Search may ask for."
    )
    candidates: int = Field(
        100, ge=1, le=10000, validation_alias=_ENV + "CANDIDATES",
        description="Candidate videos per Search (at least top_k): each ANN list asks for this many, and their "
        "union is cut to this many before exact rescoring.",
    )
    query_cache_size: int = Field(
        4096, ge=0, validation_alias=_ENV + "QUERY_CACHE_SIZE",
        description="Encoded queries kept in memory (LRU, keyed by text and model version), so a repeated query "
        "skips Triton; 0: off. About 2 KB per entry at 384 dimensions.",
    )
    fusion_method: FusionMethod = Field(
        FusionMethod.WEIGHTED, validation_alias=_ENV + "FUSION_METHOD",
        description="Fusion used when a Search names none: WEIGHTED or RRF.",
    )
    fusion_weights: dict[str, float] = Field(
        {"video_sentence": 0.3, "clip_sentence": 0.4, "clip_phrase": 0.3},  # calibrated: docs/evaluation.md
        validation_alias=_ENV + "FUSION_WEIGHTS",
        description="Weight per level (JSON object) used by both methods when a Search sends none; "
        "levels left out weigh 0.",
    )
    normalization: Normalization = Field(
        "minmax", validation_alias=_ENV + "NORMALIZATION",
        description="Per-query normalisation of level scores before the weighted sum: minmax or zscore.",
    )
    rrf_k: float = Field(60.0, gt=0, validation_alias=_ENV + "RRF_K", description="RRF's k in weight / (k + rank).")
    request_timeout_s: float = Field(
        5.0, gt=0, validation_alias=_ENV + "REQUEST_TIMEOUT_S",
        description="Longest an RPC may run: the deadline of one whose client set none, and a cap on longer ones.",
    )
    triton_timeout_s: float = Field(
        2.0, gt=0, validation_alias=_ENV + "TRITON_TIMEOUT_S",
        description="Longest one Triton call may take, whatever the deadline.",
    )
    probe_interval_s: float = Field(
        1.0, gt=0, validation_alias=_ENV + "PROBE_INTERVAL_S",
        description="Seconds between probes of Triton and Milvus; health and fast UNAVAILABLE follow the last one.",
    )
    probe_timeout_s: float = Field(
        2.0, gt=0, validation_alias=_ENV + "PROBE_TIMEOUT_S",
        description="A dependency that does not answer a probe within this many seconds counts as down.",
    )
    worker_threads: int = Field(
        32, ge=2, validation_alias=_ENV + "WORKER_THREADS",
        description="Threads running the blocking Triton, Milvus and Redis calls: RPCs beyond this many queue.",
    )
    grace_s: float = Field(
        10.0, ge=0, validation_alias=_ENV + "GRACE_S",
        description="On SIGTERM, how long in-flight RPCs may take to finish before the server stops.",
    )

    @field_validator("fusion_method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        """Accept `rrf` from the environment as well."""
        return value.upper() if isinstance(value, str) else value

    @field_validator("fusion_weights")
    @classmethod
    def _check_weights(cls, weights: dict[str, float]) -> dict[str, float]:
        return check_weights(weights)

    @model_validator(mode="after")
    def _check_consistency(self) -> GatewaySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both tls_cert_file and tls_key_file, or neither")
        if self.default_top_k > self.max_top_k:
            raise ValueError("default_top_k must not exceed max_top_k")
        return self
