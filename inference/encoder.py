"""The one `Encoder` interface that ingest, search, eval and benchmarks code against.

Two runtimes implement it, one module each: `TritonEncoder` (production, over gRPC) and
`OnnxEncoder` (in-process ONNX Runtime, for unit tests and bare-encoder baselines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vidstrata.spec.contract import VIDEO_HEAD_INPUTS


class EncoderUnavailable(RuntimeError):
    """The encoder cannot answer now (server down, timeout, model not loaded): worth retrying."""


class EncoderInputError(ValueError):
    """The input itself is bad (empty or oversized text, wrong frame shape): retrying cannot help."""


@dataclass(frozen=True)
class TextVectors:
    """Multi-level text vectors, all L2-normalised: sentence [B,D], phrases [B,P,D], tokens [B,L,D].

    `phrase_texts[b][i]` is the text of phrase slot i ("" where phrase_mask is False), as the tokenizer that
    made the vectors split it: callers label phrases with it and never split the query themselves.
    """

    sentence: np.ndarray
    phrases: np.ndarray
    phrase_mask: np.ndarray  # [B,P] bool: which phrase slots are used
    tokens: np.ndarray  # padding tokens are zero vectors
    phrase_texts: list[list[str]]


@dataclass(frozen=True)
class EncoderInfo:
    """What callers must know about the served models, read from the models themselves."""

    dim: int
    image_size: int
    max_phrases: int
    video_head: bool = False  # a learned video head is served: clip and video vectors come from `encode_video`
    model_version: str = ""  # digest of the served text graph: text vectors are a function of (text, model_version)
    frame_model_version: str = ""  # digest of the frame graph (and video head): "" for a repository exported before it

    @property
    def text_model(self) -> str:
        """The version stored on timed-text rows (`text_model`): the text graph's digest, which makes both the
        segments' vectors and the queries compared with them."""
        return self.model_version

    @property
    def visual_model(self) -> str:
        """The version stored on video and clip rows (`visual_model`): "<text digest>/<frame digest>". A visual row
        is comparable with a query only when both the frame graph (and video head) that made it and the text graph
        that makes the query are the same, so the pair is the version; a repository exported before frame digests
        gives "<text digest>/"."""
        return f"{self.model_version}/{self.frame_model_version}"


class Encoder(Protocol):
    def info(self) -> EncoderInfo:
        """Dims and input size of the served models."""
        ...

    def encode_text(self, texts: list[str], timeout_s: float | None = None) -> TextVectors:
        """Encode raw texts; tokenization happens behind the interface."""
        ...

    def encode_frames(self, frames: np.ndarray, timeout_s: float | None = None) -> np.ndarray:
        """uint8 RGB frames [N,S,S,3] (S = info().image_size) -> vectors [N,D]."""
        ...

    def encode_video(
        self, frames: np.ndarray, clip_ids: np.ndarray, clip_count: int, timeout_s: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One video through the learned video head (only where info().video_head): frame vectors [T,D] float32
        (from encode_frames) and the clip of each frame, clip_ids [T] int64 in 0..clip_count-1 (the parameter-free
        segmentation's) -> clip vectors [clip_count,D] and the video vector [D]."""
        ...

    def ready(self) -> bool:
        """True when both models can serve."""
        ...

    def close(self) -> None:
        """Release connections and threads; the encoder is not used afterwards."""
        ...


def video_head_inputs(frames: np.ndarray, clip_ids: np.ndarray, clip_count: int, dim: int) -> dict[str, np.ndarray]:
    """The video head's inputs for one video (batch 1, nothing padded); bad shapes, types or ids are input errors."""
    if frames.dtype != np.float32 or frames.ndim != 2 or len(frames) == 0 or frames.shape[1] != dim:
        raise EncoderInputError(f"frame vectors must be float32 [T>=1,{dim}]; got {frames.dtype} {list(frames.shape)}")
    if clip_ids.dtype != np.int64 or clip_ids.shape != (len(frames),):
        raise EncoderInputError(f"clip_ids must be int64 [{len(frames)}]; got {clip_ids.dtype} {list(clip_ids.shape)}")
    if clip_count < 1 or clip_ids.min() < 0 or clip_ids.max() >= clip_count or len(np.unique(clip_ids)) != clip_count:
        raise EncoderInputError(f"every frame needs a clip id in 0..{clip_count - 1}, and every clip a frame")
    frame_mask, clip_mask = np.ones((1, len(frames)), np.float32), np.ones((1, clip_count), np.float32)
    return dict(zip(VIDEO_HEAD_INPUTS, (frames[None], frame_mask, clip_ids[None], clip_mask), strict=True))


def check_frames(frames: np.ndarray, image_size: int) -> None:
    """Reject frames of the wrong dtype or shape before they reach a model."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (image_size, image_size, 3):
        raise EncoderInputError(
            f"frames must be uint8 [N,{image_size},{image_size},3]; got {frames.dtype} {list(frames.shape)}"
        )
