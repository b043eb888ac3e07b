"""Client of Triton's `screen_text_reader` (OCR): RGB frames in, their lines of text out."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from inference.encoder import EncoderInputError, EncoderUnavailable
from spec.contract import SCREEN_TEXT_INPUTS, SCREEN_TEXT_OUTPUTS, SCREEN_TEXT_READER


class TritonScreenText:
    """Thread-safe OCR over Triton gRPC; `max_inflight` frames are read at once."""

    def __init__(self, url: str, timeout_s: float = 60.0, max_inflight: int = 2) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(url)
        self._pool = ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix="ocr")

    def _one(self, frame: np.ndarray) -> list[str]:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise EncoderInputError(f"a frame must be uint8 RGB [H,W,3], got {frame.dtype} {list(frame.shape)}")
        batch = np.ascontiguousarray(frame)[None]
        tensor = grpcclient.InferInput(SCREEN_TEXT_INPUTS[0], list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        try:
            result = self._client.infer(SCREEN_TEXT_READER, [tensor], client_timeout=self.timeout_s,
                                        outputs=[grpcclient.InferRequestedOutput(n) for n in SCREEN_TEXT_OUTPUTS])
        except InferenceServerException as exc:
            kind = EncoderInputError if exc.status() == "StatusCode.INVALID_ARGUMENT" else EncoderUnavailable
            raise kind(f"{SCREEN_TEXT_READER} at {self.url}: {exc.message()}") from exc
        return [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in result.as_numpy(SCREEN_TEXT_OUTPUTS[0]).reshape(-1)]

    def read(self, frames: list[np.ndarray]) -> list[list[str]]:
        """The lines of text of each frame, in reading order."""
        return list(self._pool.map(self._one, frames))

    def ready(self) -> bool:
        try:
            return bool(self._client.is_model_ready(SCREEN_TEXT_READER, client_timeout=2.0))
        except InferenceServerException:
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._client.close()
