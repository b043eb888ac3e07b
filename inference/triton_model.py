"""`TritonModelClient`: what every one-model client of Triton here shares (the speech and the OCR client).

One gRPC client, a pool that keeps `max_inflight` requests in flight (so Triton's dynamic batcher can merge
them), one request with its errors translated (INVALID_ARGUMENT is the caller's input, anything else means Triton
cannot answer), readiness of the model, and closing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from vidstrata.inference.encoder import EncoderInputError, EncoderUnavailable


class TritonModelClient:
    """Thread-safe client of one Triton model (`model`) over gRPC."""

    model: str

    def __init__(self, url: str, timeout_s: float, max_inflight: int, thread_name_prefix: str) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(url)
        self._pool = ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix=thread_name_prefix)

    def _infer(self, name: str, array: np.ndarray, datatype: str, outputs: tuple[str, ...]) -> grpcclient.InferResult:
        """One request of one input tensor; EncoderInputError or EncoderUnavailable when Triton refuses it."""
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        try:
            return self._client.infer(self.model, [tensor], client_timeout=self.timeout_s,
                                      outputs=[grpcclient.InferRequestedOutput(n) for n in outputs])
        except InferenceServerException as exc:
            kind = EncoderInputError if exc.status() == "StatusCode.INVALID_ARGUMENT" else EncoderUnavailable
            raise kind(f"{self.model} at {self.url}: {exc.message()}") from exc

    def ready(self) -> bool:
        try:
            return bool(self._client.is_model_ready(self.model, client_timeout=2.0))
        except InferenceServerException:
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._client.close()


def as_text(value: object) -> str:
    """A BYTES tensor element as text (Triton returns UTF-8 bytes; numpy may already hold str)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
