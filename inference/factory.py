"""One way to open an `Encoder`, whatever serves it: every caller (gateway, workers, CLI, benchmarks) uses it."""

from __future__ import annotations

from pathlib import Path

from vidstrata.inference.encoder import Encoder


def open_encoder(
    triton_url: str | None = None,
    repository: Path | None = None,
    *,
    timeout_s: float = 10.0,
    frame_batch: int = 32,
    max_inflight: int = 2,
    threads: int = 0,
) -> Encoder:
    """Triton at `triton_url` (host:port, gRPC), or the ONNX graphs of a model `repository` in this process.

    Give exactly one (ValueError otherwise). `timeout_s`, `frame_batch` and `max_inflight` shape Triton calls
    (deadline of one call in seconds, frames per request, requests in flight); `threads` is ONNX Runtime's
    intra-op thread count (0: its default).
    """
    if (triton_url is None) == (repository is None):
        raise ValueError("open_encoder takes exactly one of triton_url and repository")
    if triton_url is not None:
        from vidstrata.inference.triton_encoder import TritonEncoder

        return TritonEncoder(triton_url, timeout_s=timeout_s, frame_batch=frame_batch, max_inflight=max_inflight)
    from vidstrata.inference.onnx_encoder import OnnxEncoder

    assert repository is not None
    return OnnxEncoder.from_repository(repository, threads=threads)
