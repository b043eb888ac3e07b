"""Every Triton request carries what is left of its caller's deadline (issue 22, 8): the unit half, with a client
that records what it was asked to send. tests/test_triton.py shows a real tritonserver rejecting a request that
waited in its queue past that timeout."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vidstrata.inference.encoder import EncoderInfo, EncoderUnavailable
from vidstrata.inference.triton_encoder import TritonEncoder
from vidstrata.inference.triton_model import infer


class RecordingClient:
    """Stands in for tritonclient's InferenceServerClient: records each infer's timeouts; a call takes `seconds`."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.calls: list[tuple[str, float, int]] = []

    def infer(self, model, inputs, outputs=None, client_timeout=None, timeout=None):
        self.calls.append((model, client_timeout, timeout))
        time.sleep(self.seconds)
        return Result()

    def close(self) -> None:
        pass


class Result:
    """One frame's vector, as the frame encoder answers a chunk of one frame."""

    def as_numpy(self, name: str) -> np.ndarray:
        return np.zeros((1, 4), dtype=np.float32)


def test_a_request_carries_its_timeout_to_triton_in_microseconds():
    client = RecordingClient()
    infer(client, "triton:8001", "frame_encoder", [], 2.5)  # type: ignore[arg-type]
    assert client.calls == [("frame_encoder", 2.5, 2_500_000)]


def test_each_frame_chunk_is_sent_with_what_is_left_and_none_after_the_deadline():
    encoder = TritonEncoder("127.0.0.1:1", timeout_s=0.5, frame_batch=1, max_inflight=1)
    encoder._client.close()
    encoder._client = RecordingClient(seconds=0.2)  # type: ignore[assignment]
    encoder._info = EncoderInfo(dim=4, image_size=8, max_phrases=1)
    try:
        with pytest.raises(EncoderUnavailable, match="deadline passed before the request was sent"):
            encoder.encode_frames(np.zeros((5, 8, 8, 3), dtype=np.uint8))
    finally:
        encoder.close()
    sent = encoder._client.calls  # type: ignore[attr-defined]
    assert 2 <= len(sent) <= 3, "chunks past the deadline must not be sent"
    lefts = [client_timeout for _, client_timeout, _ in sent]
    assert lefts[0] <= 0.5 and all(b < a - 0.1 for a, b in zip(lefts, lefts[1:])), lefts
    assert all(timeout == max(1, int(left * 1e6)) for _, left, timeout in sent)
