"""Settings of the ingest workers: their own from `VIDSTRATA_WORKER_<NAME>`, their dependencies composed in.

`milvus` (`VIDSTRATA_MILVUS_*`), `redis` (`VIDSTRATA_REDIS_*`, the Celery broker and result backend as well as
the status store, so one Redis serves a deployment, as the gateway expects when it enqueues) and `triton`
(`VIDSTRATA_TRITON_*`) are the same classes the gateway holds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vidstrata.index.settings import IndexSettings
from vidstrata.inference.settings import TritonSettings
from vidstrata.jobs.settings import RedisSettings
from vidstrata.media.video import DEFAULT_MAX_PIXELS
from vidstrata.workers.destinations import check_host_pattern

TIME_LIMIT_GRACE_S = 5.0  # after the soft limit marks a task FAILED, the hard limit kills it this much later


class WorkerSettings(BaseSettings):
    """Ingest worker settings: decoding limits, batching, retries, time limits, metrics."""

    model_config = SettingsConfigDict(env_prefix="VIDSTRATA_WORKER_", extra="ignore")

    milvus: IndexSettings = Field(default_factory=IndexSettings, exclude=True, description="The Milvus index.")
    redis: RedisSettings = Field(default_factory=RedisSettings, exclude=True, description="Ingest queue and status.")
    triton: TritonSettings = Field(default_factory=TritonSettings, exclude=True, description="The encoders.")
    triton_timeout_s: float = Field(30.0, gt=0, description="Deadline of one frame-batch request to Triton.")
    sample_fps: float = Field(2.0, gt=0, le=60, description="Frames sampled per second of video (before the cap).")
    max_frames: int = Field(
        1800,
        ge=1,
        description="Most frames sampled from one video; a longer video is sampled more sparsely so frames cover "
        "all of it.",
    )
    max_duration_s: float = Field(3 * 3600.0, gt=0, description="Longer videos are rejected (FAILED) before decoding.")
    max_frame_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        ge=1,
        description="Videos with larger frames (width x height) are rejected (FAILED); bounds a decode's memory "
        "(vidstrata.media.video.memory_bound_bytes).",
    )
    max_download_bytes: int = Field(
        4 * 1024**3,
        ge=1,
        description="Larger sources are rejected (FAILED); checked on Content-Length and while streaming.",
    )
    fetch_timeout_s: float = Field(
        30.0, gt=0, description="Connect and per-read timeout of an HTTP(S) download; past it the task retries."
    )
    fetch_deadline_s: float = Field(
        600.0,
        gt=0,
        description="Total time one HTTP(S) download may take, however steadily bytes trickle in; past it the "
        "video is FAILED.",
    )
    max_worker_deaths: int = Field(
        3,
        ge=1,
        description="Times a video's task may take its worker process down (killed, out of memory) before the "
        "video is FAILED instead of being run again.",
    )
    allow_local_paths: bool = Field(
        True, description="Accept local paths and file:// URIs as sources at all (and then only under local_roots); "
        "false refuses every one.",
    )
    local_roots: Annotated[list[Path], NoDecode] = Field(
        [], description="Folders (separated by ':', as in PATH) whose files may be ingested by local path or file:// "
        "URI, symlinks and '..' resolved before the check; any other path is FAILED with one reason, whether or not "
        "it exists. Empty: no local files, URLs only.",
    )
    fetch_allow_networks: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        [], description="Networks (comma-separated CIDRs, e.g. 10.20.0.0/16,fd00:1::/64) a download may connect to "
        "besides public addresses. Without them loopback, private (RFC 1918, fc00::/7), link-local (169.254.0.0/16 "
        "with cloud metadata, fe80::/10), CGNAT, multicast, unspecified and other non-global addresses are refused, "
        "checked on the resolved address and on every redirect.",
    )
    fetch_allow_hosts: Annotated[list[str], NoDecode] = Field(
        [], description="Host names (comma-separated; `*.example.com`: its subdomains) a download may connect to "
        "whatever address they resolve to, e.g. an object store inside the cluster.",
    )
    frame_batch: int = Field(32, ge=1, le=1024, description="Frames per Triton request.")
    embed_inflight: int = Field(
        2, ge=1, le=16, description="Frame batches in flight to Triton at once, so the encoder never waits for one."
    )
    decode_queue_batches: int = Field(
        4, ge=1, le=64, description="Decoded batches buffered ahead of the encoder: bounds a worker's frame memory."
    )
    retry_max: int = Field(
        8, ge=0, description="Retries of a transient failure (Triton, Milvus, source down) before FAILED."
    )
    retry_backoff_s: float = Field(5.0, gt=0, description="First retry delay; it doubles on each retry, with jitter.")
    retry_backoff_max_s: float = Field(300.0, gt=0, description="Cap of one retry delay.")
    task_time_limit_s: float = Field(
        3600.0,
        gt=0,
        description="An ingest running longer is stopped and FAILED; must stay below visibility_timeout_s.",
    )
    visibility_timeout_s: float = Field(
        7200.0,
        gt=0,
        description="Seconds before Redis hands an unacknowledged task (its worker died) to another worker; "
        "must exceed task_time_limit_s and retry_backoff_max_s, or a running task is delivered twice.",
    )
    restore_interval_s: float = Field(
        10.0, gt=0, description="How often a worker looks for unacknowledged tasks past visibility_timeout_s."
    )
    metrics_port: int = Field(
        9101, ge=0, le=65535, description="Port of the worker's Prometheus /metrics; 0 turns it off."
    )
    metrics_host: str = Field(
        "0.0.0.0", description="Interface the worker's /metrics listens on (`vidstrata up`: 127.0.0.1)."
    )
    concurrency: int = Field(2, ge=1, description="Videos ingested at once by one worker (Celery prefork processes).")
    speech: bool = Field(
        True,
        description="Modality switch of the deployment: transcribe each video's audio track (ASR in Triton's "
        "speech_recognizer) and index the timed transcript as the speech level.",
    )
    speech_timeout_s: float = Field(
        120.0, gt=0, description="Deadline of one speech window (at most 30 s of audio) sent to Triton's ASR."
    )
    screen_text: bool = Field(
        True,
        description="Modality switch of the deployment: read on-screen text (OCR in Triton's screen_text_reader) "
        "from a bounded set of frames and index it as the screen_text level.",
    )
    lexical: bool = Field(
        True, description="Channel switch of the deployment: write the normalised words of the timed texts (and of the "
        "metadata values named by lexical_metadata_keys) to the lexicon, for the lexical level and quoted phrases.",
    )
    lexical_metadata_keys: Annotated[list[str], NoDecode] = Field(
        [], description="Metadata keys whose values the lexical level searches too (one lexicon row per video, spanning "
        "it), comma-separated; empty: none.",
    )
    screen_text_sample_fps: float = Field(
        1.0, gt=0, le=30, description="Frames a second looked at (through a thumbnail) for picture changes worth OCR."
    )
    screen_text_max_per_minute: int = Field(
        12, ge=1, le=600, description="Most frames read by OCR per minute of video (0.3-0.6 s each on 2 CPU cores)."
    )
    screen_text_change_threshold: float = Field(
        0.12, gt=0, le=1,
        description="Colour-histogram distance (0..1) between a frame and the last one read above which the "
        "picture changed and is read again; pans move it by ~0.03, cuts and new captions by 0.2 or more.",
    )
    screen_text_max_side: int = Field(
        960, ge=64, le=4096, description="Frames are scaled down to at most this many pixels on the longer side for OCR."
    )
    screen_text_min_confidence: float = Field(
        0.5, ge=0, le=1,
        description="Lines OCR read with a lower confidence (the recogniser's mean character probability) are not "
        "indexed.",
    )
    screen_text_edge_margin: float = Field(
        0.02, ge=0, lt=0.5,
        description="Lines whose box comes within this fraction of the frame's width of its left or right side are "
        "not indexed: text cut by the frame (a filmed page or sign) rather than laid out for the viewer; 0 keeps "
        "them.",
    )
    screen_text_timeout_s: float = Field(60.0, gt=0, description="Deadline of reading one frame in Triton's OCR.")
    speech_inflight: int = Field(
        4, ge=1, le=32, description="Speech windows in flight to Triton at once, so its batcher can decode them together."
    )

    @field_validator("fetch_allow_networks", "fetch_allow_hosts", "lexical_metadata_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """A plain `a,b` (or one value) from the environment; a JSON list is read as JSON."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("local_roots", mode="before")
    @classmethod
    def _path_separated(cls, value: object) -> object:
        """`/a:/b` as in PATH (or one folder); a JSON list is read as JSON."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("fetch_allow_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        return [check_host_pattern(host) for host in hosts]

    @model_validator(mode="after")
    def _timeouts_nest(self) -> WorkerSettings:
        """A task must finish, or wait out its retry delay, before Redis considers it lost."""
        longest = max(self.task_time_limit_s + TIME_LIMIT_GRACE_S, self.retry_backoff_max_s)
        if self.visibility_timeout_s <= longest:
            raise ValueError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must exceed task_time_limit_s + "
                f"{TIME_LIMIT_GRACE_S:.0f} and retry_backoff_max_s ({longest}), or a running task is delivered twice"
            )
        return self
