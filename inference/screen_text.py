"""Client of Triton's `screen_text_reader` (OCR): RGB frames in, their lines of text out."""

from __future__ import annotations

import numpy as np

from inference.encoder import EncoderInputError
from inference.triton_model import TritonModelClient, as_text
from spec.contract import SCREEN_TEXT_INPUTS, SCREEN_TEXT_OUTPUTS, SCREEN_TEXT_READER


class TritonScreenText(TritonModelClient):
    """Thread-safe OCR over Triton gRPC; `max_inflight` frames are read at once."""

    model = SCREEN_TEXT_READER

    def __init__(self, url: str, timeout_s: float = 60.0, max_inflight: int = 2) -> None:
        super().__init__(url, timeout_s, max_inflight, "ocr")

    def _one(self, frame: np.ndarray) -> list[str]:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise EncoderInputError(f"a frame must be uint8 RGB [H,W,3], got {frame.dtype} {list(frame.shape)}")
        result = self._infer(SCREEN_TEXT_INPUTS[0], np.ascontiguousarray(frame)[None], "UINT8", SCREEN_TEXT_OUTPUTS)
        return [as_text(t) for t in result.as_numpy(SCREEN_TEXT_OUTPUTS[0]).reshape(-1)]

    def read(self, frames: list[np.ndarray]) -> list[list[str]]:
        """The lines of text of each frame, in reading order."""
        return list(self._pool.map(self._one, frames))
