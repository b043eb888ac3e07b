"""The `video_head` model of the Triton repository: one video's frame vectors -> refined clips and video vector.

Written only for checkpoints whose heads include a video head. Inputs and outputs (per request, batch
first): frames [T,D] FP32, frame_mask [T] FP32, clip_ids [T] INT64 (the clip of each frame from
`aggregate_video`, -1 for padding), clip_mask [C] FP32 -> frame_vectors [T,D], clip_vectors [C,D],
video_vector [D]. T and C vary, so the dynamic batcher only merges requests of equal shapes. The graph
is tiny, so every target (tensorrt included) runs it on ONNX Runtime on the CPU: no TensorRT profile
has to cover a video's frame and clip counts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from encoders.checkpoint import Manifest
from export.triton_repo import (
    BatchingPolicy,
    Target,
    _batching,
    _io,
    _params,
    _python_shim,
    _tensor,
    write_model_folder,
)

VIDEO_HEAD = "video_head"
VIDEO_BATCHING = BatchingPolicy(max_batch_size=16, preferred=(4, 16), max_queue_delay_us=200)


def video_head_config(manifest: Manifest, target: Target) -> str:
    dim = manifest.dim
    inputs = [_tensor("frames", "TYPE_FP32", [-1, dim]), _tensor("frame_mask", "TYPE_FP32", [-1]),
              _tensor("clip_ids", "TYPE_INT64", [-1]), _tensor("clip_mask", "TYPE_FP32", [-1])]
    outputs = [_tensor("frame_vectors", "TYPE_FP32", [-1, dim]), _tensor("clip_vectors", "TYPE_FP32", [-1, dim]),
               _tensor("video_vector", "TYPE_FP32", [dim])]
    backend = 'backend: "python"\n' if target == "python" else 'platform: "onnxruntime_onnx"\n'
    return (f'name: "{VIDEO_HEAD}"\n' + backend + _batching(VIDEO_BATCHING, "KIND_CPU")
            + _io("input", inputs) + _io("output", outputs)
            + (_params({"intra_op_threads": 1}) if target == "python" else ""))


def write_video_head(root: Path, manifest: Manifest, model: Path, target: Target) -> Path:
    """<root>/video_head with its config and `model.onnx` (and the python shim for the python target)."""
    version = write_model_folder(root, VIDEO_HEAD, video_head_config(manifest, target))
    shutil.copyfile(model, version / "model.onnx")
    if target == "python":
        (version / "model.py").write_text(_python_shim("OnnxRunner"))
    return root / VIDEO_HEAD
