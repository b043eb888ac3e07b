"""Settings of the ingest workers, read from `VIDSTRATA_*` environment variables."""

from __future__ import annotations

from pydantic import Field, model_validator

from index.settings import IndexSettings

TIME_LIMIT_GRACE_S = 5.0  # after the soft limit marks a task FAILED, the hard limit kills it this much later


class WorkerSettings(IndexSettings):
    """Ingest worker settings: Milvus and Redis come from `IndexSettings`, which this extends.

    `redis_url` (`VIDSTRATA_REDIS_URL`) is both the Celery broker and result backend and the status store,
    so one Redis serves a deployment, as the gateway expects when it enqueues.
    """

    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC address (host:port) of the frame encoder.")
    triton_timeout_s: float = Field(30.0, gt=0, description="Deadline of one frame-batch request to Triton.")
    sample_fps: float = Field(2.0, gt=0, le=60, description="Frames sampled per second of video (before the cap).")
    max_frames: int = Field(
        1800,
        ge=1,
        description="Most frames sampled from one video; a longer video is sampled more sparsely so frames cover "
        "all of it.",
    )
    max_duration_s: float = Field(3 * 3600.0, gt=0, description="Longer videos are rejected (FAILED) before decoding.")
    max_download_bytes: int = Field(
        4 * 1024**3,
        ge=1,
        description="Larger sources are rejected (FAILED); checked on Content-Length and while streaming.",
    )
    fetch_timeout_s: float = Field(
        30.0, gt=0, description="Connect and per-read timeout of an HTTP(S) download; past it the task retries."
    )
    allow_local_paths: bool = Field(
        True, description="Accept local paths and file:// URIs as sources; turn off where only URLs may be ingested."
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
    screen_text_timeout_s: float = Field(60.0, gt=0, description="Deadline of reading one frame in Triton's OCR.")
    speech_inflight: int = Field(
        4, ge=1, le=32, description="Speech windows in flight to Triton at once, so its batcher can decode them together."
    )

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
