"""Settings of the gateway: its own from `VIDSTRATA_GATEWAY_<NAME>`, and its dependencies composed in as parts.

`milvus` (`VIDSTRATA_MILVUS_*`), `redis` (`VIDSTRATA_REDIS_*`) and `triton` (`VIDSTRATA_TRITON_*`) are the same
classes the workers hold, so both services read the same variables for what they share and nothing else. In code,
fields go by name: `GatewaySettings(port=0, auth_token="t", milvus=IndexSettings(milvus_uri=...))`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vidstrata.gateway.fusion import (
    DEFAULT_TEXT_RANGES, DEFAULT_VISUAL_RANGES, FusionMethod, Normalization, check_text_ranges, check_visual_ranges,
    check_weights,
)
from vidstrata.index.checks import check_tenant
from vidstrata.index.settings import IndexSettings
from vidstrata.inference.settings import TritonSettings
from vidstrata.jobs.settings import RedisSettings

class UnauthenticatedExposure(ValueError):
    """The API would serve beyond loopback without a token, and that was not allowed."""


class GatewaySettings(BaseSettings):
    """Everything `vidstrata gateway` needs: listeners, security, dependencies, limits and search tuning."""

    model_config = SettingsConfigDict(env_prefix="VIDSTRATA_GATEWAY_", extra="ignore")

    milvus: IndexSettings = Field(default_factory=IndexSettings, exclude=True, description="The Milvus index.")
    redis: RedisSettings = Field(default_factory=RedisSettings, exclude=True, description="Ingest queue and status.")
    triton: TritonSettings = Field(default_factory=TritonSettings, exclude=True, description="The encoders.")
    host: str = Field(
        "0.0.0.0", description="Interface that the API, health and metrics ports listen on.",
    )
    port: int = Field(
        50051, ge=0, le=65535, description="gRPC API port (0: any free port)."
    )
    health_port: int = Field(
        0, ge=0, le=65535, description="Extra plaintext port serving only grpc.health.v1, for kubelet probes that cannot speak TLS; "
        "0: none (health is always on the API port as well).",
    )
    metrics_port: int = Field(
        9100, ge=0, le=65535, description="Prometheus /metrics HTTP port; 0: no metrics server.",
    )
    auth_token: str = Field(
        "", description="Bearer token every VideoSearch call must send (`authorization: Bearer <token>`); empty: off, "
        "which the gateway refuses on any host but loopback unless allow_unauthenticated is set.",
    )
    tenant_tokens: dict[str, str] = Field(
        {}, description="Bearer tokens bound to one tenant each (JSON object token -> tenant): a request with one acts "
        "for that tenant only (naming another is PERMISSION_DENIED; naming none means the token's). Secret: mount it "
        "from the k8s Secret, as auth_token, which stays bound to no tenant (an operator's). Either turns auth on.",
    )
    metric_tenants: list[str] = Field(
        [], description="Tenants whose requests get their own `tenant` label on the request metrics (JSON list); the "
        "default tenant's is `_default` and every other tenant's `_other`, so the label's values stay bounded.",
    )
    allow_unauthenticated: bool = Field(
        False, description="Serve the API without auth_token on a host other than loopback (anyone who reaches the "
        "port may search, submit and delete videos); the gateway then logs a warning at start. Off: it refuses to "
        "start.",
    )
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate chain of the API port; TLS is on when this and tls_key_file are set.",
    )
    tls_key_file: Path | None = Field(
        None, description="PEM private key of the API port."
    )
    max_query_bytes: int = Field(
        2048, ge=1, description="Longest query accepted, in UTF-8 bytes."
    )
    default_top_k: int = Field(
        10, ge=1, description="Hits returned when a Search sets no top_k."
    )
    max_image_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest image (JPEG or PNG bytes) a search by image may send.",
    )
    max_request_bytes: int = Field(
        32 * 1024 * 1024, ge=1024 * 1024, description="Largest request message the gRPC transport takes in (raised to "
        "max_image_bytes + max_query_bytes + 1 MiB when below): up to it, an image over max_image_bytes is "
        "INVALID_ARGUMENT naming that limit; past it, gRPC itself answers RESOURCE_EXHAUSTED. A request holds up to "
        "about 4 times its size in memory while it is parsed and checked.",
    )
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Most pixels of an image searched by; larger ones (decompression bombs) are INVALID_ARGUMENT.",
    )
    max_top_k: int = Field(
        1000, ge=1, le=10000, description="Largest top_k a Search may ask for."
    )
    candidates: int = Field(
        100, ge=1, le=10000, description="Candidate videos per Search (at least top_k): each ANN list asks for this many, and their "
        "union is cut to this many before exact rescoring.",
    )
    query_cache_size: int = Field(
        4096, ge=0, description="Encoded queries kept in memory (LRU, keyed by text and model version), so a repeated query "
        "skips Triton; 0: off. About 2 KB per entry at 384 dimensions.",
    )
    fusion_method: FusionMethod = Field(
        FusionMethod.WEIGHTED, description="Fusion used when a Search names none: WEIGHTED or RRF.",
    )
    fusion_weights: dict[str, float] = Field(
        # visual levels calibrated on `scenes` (docs/evaluation.md), text levels on `narrated` (docs/narrated/)
        # lexical: not calibrated yet (issue 25's `keywords` set); 1.0 lets a verbatim code or name lead
        {"video_sentence": 0.3, "clip_sentence": 0.4, "clip_phrase": 0.3, "speech_sentence": 2.0,
         "screen_text_sentence": 2.0, "lexical": 1.0},
        description="Weight per level (JSON object) used by both methods when a Search sends none; "
        "levels left out weigh 0.",
    )
    text_level_ranges: dict[str, tuple[float, float]] = Field(
        dict(DEFAULT_TEXT_RANGES), description="Cosine range [floor, ceiling] per text level (JSON object of "
        "speech_sentence and screen_text_sentence, e.g. {\"screen_text_sentence\": [0.35, 0.6]}) that scales the level to "
        "[0, 1]; a segment below its level's floor is no evidence, as if the video had none. Levels left out keep "
        "the default.",
    )
    speech: bool = Field(
        True, description="Modality switch of the deployment: search the timed speech transcript (the speech_sentence level).",
    )
    screen_text: bool = Field(
        True, description="Modality switch of the deployment: search the timed on-screen text (screen_text_sentence).",
    )
    lexical: bool = Field(
        False, description="Channel switch of the deployment: score the query's words (BM25) and quoted phrases in the "
        "timed speech and on-screen text, from the lexicon the workers write (the lexical level). Off by default until "
        "its end-to-end tests pass (issue 25).",
    )
    lexical_k1: float = Field(1.2, ge=0, description="BM25's term-frequency saturation k1 (the lexical level).")
    lexical_b: float = Field(0.75, ge=0, le=1, description="BM25's length normalisation b (the lexical level).")
    lexical_max_postings: int = Field(
        4096, ge=1, le=16384, description="Lexicon rows one read of a query's postings returns at most; a term with "
        "more is capped (its document frequency counted as this, its other postings read only for the candidates).",
    )
    lexical_stats_ttl_s: float = Field(
        300.0, gt=0, description="Seconds the lexicon's row count and mean text length (BM25's N and avgdl) are "
        "cached per tenant and text model before they are counted again (a count scans the rows on Milvus Lite).",
    )
    visual_level_ranges: dict[str, tuple[float, float]] = Field(
        dict(DEFAULT_VISUAL_RANGES), description="Cosine range [floor, ceiling] per visual level (JSON object of "
        "video_sentence, clip_sentence and clip_phrase) that scales a sentence's level to [0, 1] (below the floor 0, "
        "above the ceiling 1) in WEIGHTED fusion and in `why` (an image is fused on its raw cosines); calibrated for the "
        "default encoders: another model needs its own (`python -m bench.calibration visual` over `vidstrata eval` "
        "runs). Levels left out keep the default.",
    )
    normalization: Normalization = Field(
        "ranges", description="How WEIGHTED fusion puts the visual levels on one scale: ranges (each level's fixed cosine "
        "range, visual_level_ranges: a video's score and rank are the same whatever the other candidates), or minmax or "
        "zscore over this query's candidates (they depend on which videos a filter leaves).",
    )
    rrf_k: float = Field(60.0, gt=0, description="RRF's k in weight / (k + rank).")
    max_scope_videos: int = Field(
        1000, ge=1, le=10000, description="Most video_ids a Search may be scoped to; more is INVALID_ARGUMENT.",
    )
    page_token_secret: str = Field(
        "", description="Key that signs Search page tokens (HMAC-SHA256). Give every replica the same one, so a "
        "page may be served by any; empty: a random key per process (tokens then fail on another replica or after a "
        "restart, with INVALID_ARGUMENT).",
    )
    page_token_ttl_s: float = Field(
        3600.0, gt=0, description="How long a Search page token stays valid.",
    )
    confidence_thresholds: dict[str, float] = Field(
        {"MEDIUM": 0.45, "HIGH": 0.7}, description="Moment score (0..1, fixed scales) at which a moment's confidence "
        "becomes MEDIUM and HIGH (JSON object); below MEDIUM it is LOW. Chosen by `vidstrata eval --calibrate`.",
    )
    near_duplicate_threshold: float = Field(
        0.99984, ge=-1, le=1, description="A like_video_id hit whose copy score (the mean best clip cosine, the larger "
        "of its two directions) reaches this is a near_duplicate. Calibrated by `python -m bench.near_duplicates` for the "
        "default encoders: the lowest threshold with precision >= 0.99 against unrelated videos (held out: precision 1.0, "
        "recall 0.25; docs/near-duplicates/). Their cosines crowd near 1, so recalibrate for another backbone.",
    )
    like_max_clips: int = Field(
        32, ge=1, le=256, description="Most clips of a like_video_id video used as query vectors (evenly spaced when it "
        "has more).",
    )
    request_timeout_s: float = Field(
        5.0, gt=0, description="Longest an RPC may run: the deadline of one whose client set none, and a cap on longer ones.",
    )
    triton_timeout_s: float = Field(
        2.0, gt=0, description="Longest one Triton call may take, whatever the deadline.",
    )
    probe_interval_s: float = Field(
        1.0, gt=0, description="Seconds between probes of Triton and Milvus; health and fast UNAVAILABLE follow the last one.",
    )
    probe_timeout_s: float = Field(
        2.0, gt=0, description="A probe waits this long for each dependency's answer.",
    )
    probe_misses_to_down: int = Field(
        3, ge=1, description="Probes in a row a dependency that answered before may leave unanswered (a slow host) before "
        "it counts as down; a failed check counts at once.",
    )
    worker_threads: int = Field(
        32, ge=2, description="Threads running the blocking Triton, Milvus and Redis calls: RPCs beyond this many queue.",
    )
    grace_s: float = Field(
        10.0, ge=0, description="On SIGTERM, how long in-flight RPCs may take to finish before the server stops.",
    )
    max_watchers: int = Field(
        1000, ge=1, description="Most WatchVideo streams open at once; more are RESOURCE_EXHAUSTED. A stream holds no "
        "thread while it waits (one Redis subscription serves them all), only a queue and a timer.",
    )
    watch_poll_s: float = Field(
        2.0, gt=0, description="A WatchVideo stream reads the video's status again after this long without a change "
        "event, so an event lost while Redis reconnected delays a change by at most this much.",
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

    @field_validator("confidence_thresholds")
    @classmethod
    def _check_confidence(cls, thresholds: dict[str, float]) -> dict[str, float]:
        if set(thresholds) != {"MEDIUM", "HIGH"} or not 0 <= thresholds["MEDIUM"] <= thresholds["HIGH"] <= 1:
            raise ValueError("confidence_thresholds needs MEDIUM and HIGH with 0 <= MEDIUM <= HIGH <= 1, got "
                             f"{thresholds}")
        return thresholds

    @field_validator("tenant_tokens")
    @classmethod
    def _check_tenant_tokens(cls, tokens: dict[str, str]) -> dict[str, str]:
        for token, tenant in tokens.items():
            if not token or token != token.strip() or any(ch.isspace() for ch in token):
                raise ValueError("a tenant token must be non-empty without spaces")
            check_tenant(tenant)
        return tokens

    @field_validator("metric_tenants")
    @classmethod
    def _check_metric_tenants(cls, tenants: list[str]) -> list[str]:
        for tenant in tenants:
            check_tenant(tenant)
        return tenants

    @field_validator("text_level_ranges")
    @classmethod
    def _check_ranges(cls, ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        return check_text_ranges(ranges)

    @field_validator("visual_level_ranges")
    @classmethod
    def _check_visual_ranges(cls, ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        return check_visual_ranges(ranges)

    @model_validator(mode="after")
    def _check_consistency(self) -> GatewaySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both tls_cert_file and tls_key_file, or neither")
        if self.default_top_k > self.max_top_k:
            raise ValueError("default_top_k must not exceed max_top_k")
        if self.auth_token and self.auth_token in self.tenant_tokens:
            raise ValueError("auth_token (bound to no tenant) must not also be a tenant token")
        return self

    @property
    def loopback_only(self) -> bool:
        """Whether `host` is a loopback address (or `localhost`): nothing off this machine can connect."""
        host = self.host.strip().removeprefix("[").removesuffix("]")
        if host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False  # a name or an interface: it may listen anywhere

    def exposure_warning(self) -> str | None:
        """The warning to log at start when the API serves beyond loopback without a token (allowed on purpose).

        Raises UnauthenticatedExposure when it would do so and allow_unauthenticated is off."""
        if self.auth_token or self.tenant_tokens or self.loopback_only:
            return None
        if not self.allow_unauthenticated:
            raise UnauthenticatedExposure(
                f"refusing to serve the API on {self.host} without authentication: set VIDSTRATA_GATEWAY_AUTH_TOKEN "
                "(clients send `authorization: Bearer <token>`), or listen on loopback only "
                "(VIDSTRATA_GATEWAY_HOST=127.0.0.1), or set VIDSTRATA_GATEWAY_ALLOW_UNAUTHENTICATED=true to serve "
                "openly on purpose")
        return (f"UNAUTHENTICATED: the API on {self.host}:{self.port} takes calls from anyone who can reach it "
                "(search, submit: the workers fetch what they are told, delete), as "
                "VIDSTRATA_GATEWAY_ALLOW_UNAUTHENTICATED=true allows; set VIDSTRATA_GATEWAY_AUTH_TOKEN to require "
                "a token")

    @property
    def receive_limit_bytes(self) -> int:
        """The gRPC receive cap: max_request_bytes, raised where needed to fit the largest valid Search (the image,
        the query, and a MiB for the rest), so a valid request is never refused by the transport."""
        return max(self.max_request_bytes, self.max_image_bytes + self.max_query_bytes + 2**20)
