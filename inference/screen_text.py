"""Client of Triton's `screen_text_reader` (OCR): RGB frames in, their lines of text out, each with its evidence."""

from __future__ import annotations

import numpy as np

from vidstrata.inference.encoder import EncoderInputError
from vidstrata.inference.triton_model import TritonModelClient, as_text
from vidstrata.spec.contract import SCREEN_TEXT_INPUTS, SCREEN_TEXT_OUTPUTS, SCREEN_TEXT_READER
from vidstrata.spec.screen_text import ReadLine


class TritonScreenText(TritonModelClient):
    """Thread-safe OCR over Triton gRPC; `max_inflight` frames are read at once."""

    model = SCREEN_TEXT_READER

    def __init__(self, url: str, timeout_s: float = 60.0, max_inflight: int = 2) -> None:
        super().__init__(url, timeout_s, max_inflight, "ocr")

    def _one(self, frame: np.ndarray) -> list[ReadLine]:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise EncoderInputError(f"a frame must be uint8 RGB [H,W,3], got {frame.dtype} {list(frame.shape)}")
        result = self._infer(SCREEN_TEXT_INPUTS[0], np.ascontiguousarray(frame)[None], "UINT8", SCREEN_TEXT_OUTPUTS)
        texts, scores, boxes = (result.as_numpy(name) for name in SCREEN_TEXT_OUTPUTS)
        height, width = frame.shape[:2]
        relative = np.clip(boxes.reshape(-1, 4) / np.array([width, height, width, height], np.float32), 0.0, 1.0)
        return [ReadLine(as_text(t), float(s), (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
                for t, s, b in zip(texts.reshape(-1), scores.reshape(-1), relative, strict=True)]

    def read(self, frames: list[np.ndarray]) -> list[list[ReadLine]]:
        """The lines of text of each frame, in reading order, with their confidence and box (fractions of the
        frame); every line the model read: the caller filters (spec.screen_text.LineFilter)."""
        return list(self._pool.map(self._one, frames))
