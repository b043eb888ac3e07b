"""Export the text and frame nets (and a trained video head) to ONNX with dynamic axes, and prove parity with torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vidstrata.encoders.model import EncoderPair, TextEncoderNet
from vidstrata.spec import parity
from vidstrata.spec.contract import (
    FRAME_INPUTS,
    FRAME_OUTPUTS,
    TEXT_NET_INPUTS,
    TEXT_OUTPUTS,
    VIDEO_HEAD_INPUTS,
    VIDEO_HEAD_OUTPUTS,
)

OPSET = 17
# (batch, fraction of max_tokens or VIDEO_FRAMES): varied batch and sequence length, both axes are dynamic.
PARITY_SHAPES = ((1, 1.0), (3, 0.5), (8, 1.0))
VIDEO_FRAMES = 48  # frames per video at length fraction 1 in the video head's parity inputs
PARITY_TOLERANCE = 1e-4


class ParityError(RuntimeError):
    """An exported model disagrees with its source beyond tolerance; the export is not used."""


@dataclass(frozen=True)
class OnnxModels:
    text: Path
    frames: Path
    video: Path | None = None  # only for checkpoints with a video head


def random_text_inputs(
    pair: EncoderPair, batch: int, rng: np.random.Generator, length_fraction: float = 1.0
) -> dict[str, np.ndarray]:
    """Fresh token batches with varied lengths and phrase layouts (spec.parity, which the plan check shares)."""
    return parity.random_text_inputs(pair.manifest, batch, rng, length_fraction)


def random_frame_inputs(
    pair: EncoderPair, batch: int, rng: np.random.Generator, length_fraction: float = 1.0
) -> dict[str, np.ndarray]:
    return parity.random_frame_inputs(pair.manifest, batch, rng)


def random_video_inputs(
    pair: EncoderPair, batch: int, rng: np.random.Generator, length_fraction: float = 1.0
) -> dict[str, np.ndarray]:
    """Unit frame vectors of videos with varied lengths, cut into varied runs of clips (padding: mask 0, id -1)."""
    frames = max(2, int(VIDEO_FRAMES * length_fraction))
    vectors = rng.normal(size=(batch, frames, pair.manifest.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True)
    frame_mask = np.zeros((batch, frames), dtype=np.float32)
    clip_ids = np.full((batch, frames), -1, dtype=np.int64)
    counts = []
    for row in range(batch):
        n = int(rng.integers(1, frames + 1))
        cuts = np.unique(rng.integers(1, n, size=int(rng.integers(0, 6)))) if n > 1 else np.zeros(0, dtype=np.int64)
        frame_mask[row, :n] = 1
        clip_ids[row, :n] = np.searchsorted(cuts, np.arange(n), side="right")
        counts.append(len(cuts) + 1)
    clip_mask = (np.arange(max(counts))[None, :] < np.array(counts)[:, None]).astype(np.float32)
    return dict(zip(VIDEO_HEAD_INPUTS, (vectors * frame_mask[..., None], frame_mask, clip_ids, clip_mask), strict=True))


def export_onnx(pair: EncoderPair, out_dir: Path) -> OnnxModels:
    """Write text.onnx and frames.onnx (and video.onnx where the checkpoint has a video head) with dynamic axes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    text_path, frame_path = out_dir / "text.onnx", out_dir / "frames.onnx"
    export_text_graph(pair.text, random_text_inputs(pair, 2, rng), text_path)
    frame_example = (torch.from_numpy(random_frame_inputs(pair, 2, rng)[FRAME_INPUTS[0]]),)
    torch.onnx.export(
        pair.frames, frame_example, str(frame_path), input_names=list(FRAME_INPUTS), output_names=list(FRAME_OUTPUTS),
        dynamic_axes={FRAME_INPUTS[0]: {0: "batch"}, FRAME_OUTPUTS[0]: {0: "batch"}}, opset_version=OPSET, dynamo=False,
    )
    if pair.video is None:
        return OnnxModels(text_path, frame_path)
    return OnnxModels(text_path, frame_path, export_video_head(pair, out_dir / "video.onnx"))


def export_text_graph(net: TextEncoderNet, example: dict[str, np.ndarray], path: Path) -> Path:
    """A text net (TEXT_NET_INPUTS -> TEXT_OUTPUTS) as ONNX with dynamic batch and token axes."""
    seq = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        net, tuple(torch.from_numpy(a) for a in example.values()), str(path), input_names=list(TEXT_NET_INPUTS),
        output_names=list(TEXT_OUTPUTS),
        dynamic_axes={**{name: seq for name in TEXT_NET_INPUTS},
                      **dict(zip(TEXT_OUTPUTS, ({0: "batch"}, {0: "batch"}, {0: "batch"}, seq), strict=True))},
        opset_version=OPSET, dynamo=False,
    )
    return path


def export_video_head(pair: EncoderPair, path: Path) -> Path:
    """Write the video head with dynamic batch, frame and clip axes."""
    if pair.video is None:
        raise ValueError("this checkpoint has no video head")
    example = tuple(torch.from_numpy(a) for a in random_video_inputs(pair, 2, np.random.default_rng(0)).values())
    frames, clips = {0: "batch", 1: "frames"}, {0: "batch", 1: "clips"}
    torch.onnx.export(
        pair.video, example, str(path), input_names=list(VIDEO_HEAD_INPUTS), output_names=list(VIDEO_HEAD_OUTPUTS),
        dynamic_axes={**dict(zip(VIDEO_HEAD_INPUTS, (frames, frames, frames, clips), strict=True)),
                      **dict(zip(VIDEO_HEAD_OUTPUTS, (frames, clips, {0: "batch"}), strict=True))},
        opset_version=OPSET, dynamo=False,
    )
    return path


def max_abs_diff(expected: list[np.ndarray], actual: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(e - a))) if e.size else 0.0 for e, a in zip(expected, actual, strict=True))


def check_onnx_parity(pair: EncoderPair, models: OnnxModels, tolerance: float = PARITY_TOLERANCE) -> dict[str, float]:
    """Max abs diff torch vs ONNX Runtime on fresh random inputs at several batch sizes; raises ParityError."""
    rng = np.random.default_rng()
    worst: dict[str, float] = {}
    nets = [("text", pair.text, models.text, random_text_inputs), ("frames", pair.frames, models.frames, random_frame_inputs)]
    if (pair.video is None) != (models.video is None):
        raise ParityError("the checkpoint and the exported models disagree on having a video head")
    if pair.video is not None and models.video is not None:
        nets.append(("video", pair.video, models.video, random_video_inputs))
    for name, net, path, make in nets:
        worst[name] = check_graph_parity(name, net, path, lambda b, f, make=make: make(pair, b, rng, f), tolerance)
    return worst


@torch.no_grad()
def check_graph_parity(
    name: str, net: torch.nn.Module, path: Path, make_inputs: Callable[[int, float], dict[str, np.ndarray]],
    tolerance: float = PARITY_TOLERANCE,
) -> float:
    """Max abs diff of one net against its ONNX graph over PARITY_SHAPES ((batch, length fraction) -> inputs from
    `make_inputs`); raises ParityError past `tolerance`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch, length_fraction in PARITY_SHAPES:
        inputs = make_inputs(batch, length_fraction)
        expected = net(*(torch.from_numpy(a) for a in inputs.values()))
        expected = [t.numpy() for t in (expected if isinstance(expected, tuple) else (expected,))]
        diff = max_abs_diff(expected, session.run(None, inputs))
        worst = max(worst, diff)
        if diff > tolerance:
            raise ParityError(f"{name}: ONNX differs from torch by {diff:.2e} at batch {batch}, length x{length_fraction} (tolerance {tolerance:.0e})")
    return worst
