"""The one `Encoder` interface that ingest, search, eval and benchmarks code against.

Two runtimes implement it, one module each: `TritonEncoder` (production, over gRPC) and
`OnnxEncoder` (in-process ONNX Runtime, for unit tests and bare-encoder baselines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class EncoderUnavailable(RuntimeError):
    """The encoder cannot answer now (server down, timeout, model not loaded): worth retrying."""


class EncoderInputError(ValueError):
    """The input itself is bad (empty or oversized text, wrong frame shape): retrying cannot help."""


@dataclass(frozen=True)
class TextVectors:
    """Multi-level text vectors, all L2-normalised: sentence [B,D], phrases [B,P,D], tokens [B,L,D]."""

    sentence: np.ndarray
    phrases: np.ndarray
    phrase_mask: np.ndarray  # [B,P] bool: which phrase slots are used
    tokens: np.ndarray  # padding tokens are zero vectors


@dataclass(frozen=True)
class EncoderInfo:
    """What callers must know about the served models, read from the models themselves."""

    dim: int
    image_size: int
    max_phrases: int


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

    def ready(self) -> bool:
        """True when both models can serve."""
        ...


def check_frames(frames: np.ndarray, image_size: int) -> None:
    """Reject frames of the wrong dtype or shape before they reach a model."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (image_size, image_size, 3):
        raise EncoderInputError(
            f"frames must be uint8 [N,{image_size},{image_size},3]; got {frames.dtype} {list(frames.shape)}"
        )
