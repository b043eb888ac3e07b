"""ONNX -> fp16 TensorRT plans with optimisation profiles, checked against ONNX Runtime.

Runs only where TensorRT and a CUDA GPU exist (a GPU node, or the Triton initContainer);
elsewhere `require_tensorrt` fails at once with a message that says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.model import EncoderPair
from spec.contract import FRAME_INPUTS, TEXT_NET_INPUTS
from export.onnx_export import OnnxModels, ParityError, max_abs_diff, random_frame_inputs, random_text_inputs

FP16_TOLERANCE = 2e-2  # on unit-norm vectors: fp16 keeps ~3 significant digits through deep nets
PROFILE_BATCHES = (1, 16, 64)  # min, opt, max batch of every optimisation profile


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a CUDA GPU is missing here."""


@dataclass(frozen=True)
class PlanModels:
    text: Path
    frames: Path


def require_tensorrt() -> None:
    """Fail fast, before any long export work, when plans cannot be built here."""
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError as exc:
        raise TensorRTUnavailable(
            "--target tensorrt needs TensorRT and a CUDA GPU: install `vidstrata[gpu]` on a GPU machine, or build "
            "the plans in the Triton initContainer (k8s/overlays/gpu). Use --target python or onnxruntime on CPU."
        ) from exc
    if not torch.cuda.is_available():
        raise TensorRTUnavailable("--target tensorrt needs a CUDA GPU, and none is visible here")


def build_plan(onnx_path: Path, plan_path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """Build an fp16 plan whose profile spans PROFILE_BATCHES for every input (`shapes` without batch)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ParityError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    low, opt, high = PROFILE_BATCHES
    for name, shape in shapes.items():
        profile.set_shape(name, (low, *shape), (opt, *shape), (high, *shape))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ParityError(f"TensorRT failed to build a plan for {onnx_path.name}")
    plan_path.write_bytes(bytes(plan))
    return plan_path


def run_plan(plan_path: Path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Execute a plan once (torch tensors as CUDA buffers); outputs in binding order."""
    import tensorrt as trt
    import torch

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan_path.read_bytes())
    context = engine.create_execution_context()
    buffers: dict[str, torch.Tensor] = {}
    for name, array in inputs.items():
        buffers[name] = torch.from_numpy(array).cuda()
        context.set_input_shape(name, array.shape)
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    for name in outputs:
        buffers[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=torch.float32, device="cuda")
    for name, tensor in buffers.items():
        context.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.current_stream()
    context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return [buffers[n].cpu().numpy() for n in outputs]


def build_plans(pair: EncoderPair, onnx: OnnxModels, out_dir: Path) -> PlanModels:
    """Both plans, each checked against ONNX Runtime with the fp16 tolerance."""
    import onnxruntime as ort

    pre = pair.manifest.preprocessing
    text_shapes = {name: (pre.max_tokens,) for name in TEXT_NET_INPUTS}
    frame_shapes = {FRAME_INPUTS[0]: (pre.image_size, pre.image_size, 3)}
    plans = PlanModels(
        build_plan(onnx.text, out_dir / "text.plan", text_shapes),
        build_plan(onnx.frames, out_dir / "frames.plan", frame_shapes),
    )
    rng = np.random.default_rng()
    for name, onnx_path, plan_path, make in (
        ("text", onnx.text, plans.text, random_text_inputs),
        ("frames", onnx.frames, plans.frames, random_frame_inputs),
    ):
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        for batch in (1, 8):
            inputs = make(pair, batch, rng)
            diff = max_abs_diff(session.run(None, inputs), run_plan(plan_path, inputs))
            if diff > FP16_TOLERANCE:
                raise ParityError(f"{name}: TensorRT fp16 differs from ONNX Runtime by {diff:.2e} (tolerance {FP16_TOLERANCE})")
    return plans
