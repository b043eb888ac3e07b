"""`TritonModelClient`: what every one-model client of Triton here shares (the speech and the OCR client).

One gRPC client, a pool that keeps `max_inflight` requests in flight (so Triton's dynamic batcher can merge
them), one request with its errors translated (INVALID_ARGUMENT is the caller's input, anything else means Triton
cannot answer), readiness of the model, and closing. Every request carries its caller's timeout to Triton too
(`infer`), so Triton drops it from the queue once the caller has given up; the encoders' client shares that.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from vidstrata.inference.encoder import EncoderInputError, EncoderUnavailable


def triton_error(exc: InferenceServerException, what: str) -> EncoderInputError | EncoderUnavailable:
    """Triton's answer as the encoders' error: INVALID_ARGUMENT (or the tokenizer's "bad text", which the python
    backend sends as INTERNAL) is the caller's input; anything else, a request rejected from the queue past its
    timeout (UNAVAILABLE "Request timeout expired") and a deadline the client gave up on included, is Triton being
    unable to answer now, which callers retry."""
    message = f"{what}: {exc.message()}"
    if exc.status() == "StatusCode.INVALID_ARGUMENT" or "bad text" in (exc.message() or ""):
        return EncoderInputError(message)
    return EncoderUnavailable(message)


def time_left(deadline: float, what: str) -> float:
    """Seconds until `deadline` (a time.monotonic() value); EncoderUnavailable when it has passed, before sending."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise EncoderUnavailable(f"{what}: the deadline passed before the request was sent")
    return left


def infer(client: grpcclient.InferenceServerClient, url: str, model: str, inputs: list[grpcclient.InferInput],
          timeout_s: float, outputs: list[grpcclient.InferRequestedOutput] | None = None) -> grpcclient.InferResult:
    """One request to `model` that the client waits for at most `timeout_s` and Triton keeps queued no longer
    (its per-request `timeout`, in microseconds, which every model's queue policy honours: see
    export.triton_repo.QUEUE_TIMEOUT_US), so no model runs work whose caller has given up; errors as triton_error."""
    try:
        return client.infer(model, inputs, outputs=outputs, client_timeout=timeout_s,
                            timeout=max(1, int(timeout_s * 1e6)))
    except InferenceServerException as exc:
        raise triton_error(exc, f"{model} at {url}") from exc


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
        return infer(self._client, self.url, self.model, [tensor], self.timeout_s,
                     [grpcclient.InferRequestedOutput(n) for n in outputs])

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
