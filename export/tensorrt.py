"""ONNX -> fp16 TensorRT plans with optimisation profiles, checked against ONNX Runtime.

The plan path imports no torch: plans are built with TensorRT's builder and ONNX parser, and the parity check runs
each plan with TensorRT's own runtime on CUDA buffers from cuda-python (`cuda.bindings.runtime`), against ONNX
Runtime on the CPU. So the Triton image builds plans with the CPU build of torch (which only exports ONNX) beside
`tensorrt` and `cuda-python` (the `gpu` extra).

Runs only where TensorRT, cuda-python and a CUDA GPU exist (a GPU node, or the Triton initContainer of
k8s/overlays/gpu); elsewhere `require_tensorrt` fails at once with a message that says which is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from vidstrata.spec.contract import FRAME_INPUTS, TEXT_NET_INPUTS
from vidstrata.spec.manifest import Manifest
from vidstrata.spec.parity import random_frame_inputs, random_text_inputs

FP16_TOLERANCE = 2e-2  # on unit-norm vectors: fp16 keeps ~3 significant digits through deep nets
PROFILE_BATCHES = (1, 16, 64)  # min, opt, max batch of every optimisation profile
PARITY_BATCHES = (1, 8)

_INSTALL = ("install `vidstrata[gpu]` (tensorrt, cuda-python) on a GPU machine, or build the plans in the Triton "
            "initContainer (k8s/overlays/gpu). Use --target python or onnxruntime on CPU.")


class TensorRTUnavailable(RuntimeError):
    """TensorRT, cuda-python or a CUDA GPU is missing here."""


class PlanError(RuntimeError):
    """A plan could not be built or run, or it disagrees with ONNX Runtime; the export is not used."""


@dataclass(frozen=True)
class PlanModels:
    text: Path
    frames: Path
    parity: dict[str, float] = field(default_factory=dict)  # max |plan - ONNX Runtime| per net


def _cudart() -> ModuleType:
    """cuda-python's CUDA runtime bindings (cuda-bindings 12.8+ name them `cuda.bindings.runtime`)."""
    from cuda.bindings import runtime

    return runtime


def _check(result: tuple[Any, ...], call: str) -> Any:
    """A cuda-python call returns (error, *values): raise on an error, else the value (or None)."""
    cudart = _cudart()
    error, values = result[0], result[1:]
    if error != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(error)
        _, text = cudart.cudaGetErrorString(error)
        raise PlanError(f"CUDA {call} failed: {_text(name)} ({_text(text)})")
    return values[0] if len(values) == 1 else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def require_tensorrt() -> None:
    """Fail fast, before any long export work, when plans cannot be built and checked here."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        raise TensorRTUnavailable(f"--target tensorrt needs TensorRT and a CUDA GPU: {_INSTALL}") from exc
    try:
        cudart = _cudart()
    except ImportError as exc:
        raise TensorRTUnavailable(
            f"--target tensorrt needs cuda-python (`cuda.bindings`) to check plans on the GPU: {_INSTALL}") from exc
    error, count = cudart.cudaGetDeviceCount()
    if error != cudart.cudaError_t.cudaSuccess or not count:
        reason = "no device" if error == cudart.cudaError_t.cudaSuccess else _text(cudart.cudaGetErrorString(error)[1])
        raise TensorRTUnavailable(f"--target tensorrt needs a CUDA GPU, and none is visible here ({reason})")


def build_plan(onnx_path: Path, plan_path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """Build an fp16 plan whose profile spans PROFILE_BATCHES for every input (`shapes` without batch)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from the file: external weights beside it load too
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise PlanError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    low, opt, high = PROFILE_BATCHES
    for name, shape in shapes.items():
        profile.set_shape(name, (low, *shape), (opt, *shape), (high, *shape))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise PlanError(f"TensorRT failed to build a plan for {onnx_path.name}")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(plan))
    return plan_path


def run_plan(plan_path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Execute a plan once with TensorRT's runtime on CUDA buffers from cuda-python; outputs by name."""
    import tensorrt as trt

    cudart = _cudart()
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan_path.read_bytes())
    if engine is None:
        raise PlanError(f"TensorRT could not load {plan_path.name} (built by another TensorRT version or for another GPU?)")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    if sorted(input_names) != sorted(inputs):
        raise PlanError(f"{plan_path.name} takes {sorted(input_names)}, was given {sorted(inputs)}")
    host: dict[str, np.ndarray] = {}
    for name in input_names:
        array = np.ascontiguousarray(inputs[name], dtype=trt.nptype(engine.get_tensor_dtype(name)))
        if not context.set_input_shape(name, array.shape):
            raise PlanError(f"{plan_path.name}: {name} {list(array.shape)} is outside the plan's optimisation profile")
        host[name] = array
    for name in output_names:
        shape = tuple(context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise PlanError(f"{plan_path.name}: output {name} has no static shape for these inputs ({list(shape)})")
        host[name] = np.empty(shape, dtype=trt.nptype(engine.get_tensor_dtype(name)))
    to_device, to_host = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
    stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
    device: dict[str, int] = {}
    try:
        for name, array in host.items():
            device[name] = _check(cudart.cudaMalloc(max(array.nbytes, 1)), "cudaMalloc")
            if not context.set_tensor_address(name, device[name]):
                raise PlanError(f"{plan_path.name}: TensorRT refused the buffer of {name}")
        for name in input_names:
            if host[name].nbytes:
                _check(cudart.cudaMemcpyAsync(device[name], host[name].ctypes.data, host[name].nbytes, to_device, stream),
                       "cudaMemcpyAsync")
        if not context.execute_async_v3(int(stream)):
            raise PlanError(f"TensorRT failed to run {plan_path.name}")
        for name in output_names:
            if host[name].nbytes:
                _check(cudart.cudaMemcpyAsync(host[name].ctypes.data, device[name], host[name].nbytes, to_host, stream),
                       "cudaMemcpyAsync")
        _check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
    finally:
        for pointer in device.values():
            cudart.cudaFree(pointer)
        cudart.cudaStreamDestroy(stream)
    return {name: host[name] for name in output_names}




def check_plan(
    plan_path: Path,
    onnx_path: Path,
    make_inputs: Callable[[int, np.random.Generator], dict[str, np.ndarray]],
    tolerance: float = FP16_TOLERANCE,
) -> float:
    """Max |plan - ONNX Runtime| over every output at PARITY_BATCHES on fresh random inputs; raises PlanError."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng()
    worst = 0.0
    for batch in PARITY_BATCHES:
        inputs = make_inputs(batch, rng)
        expected = dict(zip(output_names, session.run(None, inputs), strict=True))
        actual = run_plan(plan_path, inputs)
        if sorted(actual) != sorted(expected):
            raise PlanError(f"{plan_path.name} returns {sorted(actual)}, {onnx_path.name} returns {sorted(expected)}")
        for name, want in expected.items():
            got = actual[name]
            if got.shape != want.shape:
                raise PlanError(f"{plan_path.name}: {name} has shape {list(got.shape)}, ONNX Runtime {list(want.shape)}")
            diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if want.size else 0.0
            if not np.isfinite(diff) or diff > tolerance:
                raise PlanError(f"{plan_path.stem}: TensorRT fp16 differs from ONNX Runtime by {diff:.2e} in {name} at "
                                f"batch {batch} (tolerance {tolerance:.0e})")
            worst = max(worst, diff)
    return worst


def build_plans(manifest: Manifest, text_onnx: Path, frames_onnx: Path, out_dir: Path) -> PlanModels:
    """Both plans, each checked against ONNX Runtime with the fp16 tolerance."""
    pre = manifest.preprocessing
    text_shapes = {name: (pre.max_tokens,) for name in TEXT_NET_INPUTS}
    frame_shapes = {FRAME_INPUTS[0]: (pre.image_size, pre.image_size, 3)}
    text = build_plan(text_onnx, out_dir / "text.plan", text_shapes)
    frames = build_plan(frames_onnx, out_dir / "frames.plan", frame_shapes)
    parity = {
        "text": check_plan(text, text_onnx, lambda batch, rng: random_text_inputs(manifest, batch, rng)),
        "frames": check_plan(frames, frames_onnx, lambda batch, rng: random_frame_inputs(manifest, batch, rng)),
    }
    return PlanModels(text, frames, parity)
