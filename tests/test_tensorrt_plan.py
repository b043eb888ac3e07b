"""The TensorRT plan path on a CPU: it imports no torch, asks TensorRT for what it should, moves CUDA buffers the
right way, refuses what it should, and the tensorrt export writes its plans.

TensorRT and cuda-python are stood in for by tests/tensorrt_fakes.py (their documented API, over ONNX Runtime and
host memory). What only a GPU shows (TensorRT parses and builds these graphs, fp16 parity on real kernels) is
`test_tensorrt_plans_match_onnx_runtime` in tests/test_export.py, marked gpu.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import vidstrata.encoders.model as encoders_model
import vidstrata.export.onnx_export as onnx_export
import vidstrata.export.pipeline as pipeline
import vidstrata.export.tensorrt as plan
from vidstrata.spec.manifest import Manifest
from tests import tensorrt_fakes as fakes

REPO_ROOT = Path(__file__).resolve().parents[1]


def _onnx(model_repository: Path) -> tuple[Path, Path]:
    return (model_repository / "text_encoder_net" / "1" / "model.onnx",
            model_repository / "frame_encoder" / "1" / "model.onnx")


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Fake TensorRT and cuda-python installed for this test; `.noise` > 0 makes every plan disagree."""
    cuda = fakes.FakeCudaRuntime()
    trt = fakes.FakeTensorRT(cuda)
    for name, module in fakes.modules(trt, cuda).items():
        monkeypatch.setitem(sys.modules, name, module)
    return SimpleNamespace(trt=trt, cuda=cuda)


def test_the_plan_path_imports_no_torch(model_repository: Path, default_checkpoint: Path, tmp_path: Path) -> None:
    """Build and check both plans in a fresh interpreter where importing torch (or the torch models, or the
    torch-side exporter) fails: the Triton image's initContainer needs no CUDA torch for this."""
    text, frames = _onnx(model_repository)
    forbidden = ["torch", encoders_model.__name__.rpartition(".")[0], onnx_export.__name__]
    script = textwrap.dedent(f"""
        import importlib, importlib.abc, json, sys

        FORBIDDEN, attempts = {forbidden!r}, []

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                    attempts.append(name)
                    raise ImportError(f"the plan path imported {{name}}")
                return None

        sys.meta_path.insert(0, Refuse())
        plan = importlib.import_module({plan.__name__!r})
        from pathlib import Path
        from {Manifest.__module__} import Manifest
        from tests import tensorrt_fakes as fakes

        cuda = fakes.FakeCudaRuntime()
        sys.modules.update(fakes.modules(fakes.FakeTensorRT(cuda), cuda))
        plan.require_tensorrt()
        models = plan.build_plans(Manifest.load(Path({str(default_checkpoint)!r})), Path({str(text)!r}),
                                  Path({str(frames)!r}), Path({str(tmp_path / "plans")!r}))
        loaded = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
        print(json.dumps({{"parity": models.parity, "attempts": attempts, "loaded": loaded,
                           "leaks": len(cuda.memory) + len(cuda.streams), "copies": len(cuda.copies)}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["attempts"] == [] and result["loaded"] == []
    assert result["leaks"] == 0 and result["copies"] > 0
    # The fake plans round every float output through float16: a real, small, nonzero difference.
    assert set(result["parity"]) == {"text", "frames"}
    assert all(0 < diff <= plan.FP16_TOLERANCE for diff in result["parity"].values()), result["parity"]


def test_require_tensorrt_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fakes.FakeCudaRuntime()
    trt = fakes.FakeTensorRT(cuda)
    cases = [
        ((None, None), "needs TensorRT and a CUDA GPU: install `vidstrata[gpu]`"),
        ((trt, None), "needs cuda-python (`cuda.bindings`)"),
        ((trt, fakes.FakeCudaRuntime(devices=0)), "needs a CUDA GPU, and none is visible here (no device)"),
        ((trt, fakes.FakeCudaRuntime(device_error=fakes.cudaError_t.cudaErrorInsufficientDriver)),
         "needs a CUDA GPU, and none is visible here (CUDA driver version is insufficient"),
    ]
    for (trt_module, cuda_module), message in cases:
        with monkeypatch.context() as patch:
            for name, module in fakes.modules(trt_module, cuda_module).items():
                patch.setitem(sys.modules, name, module)
            with pytest.raises(plan.TensorRTUnavailable) as caught:
                plan.require_tensorrt()
            assert message in str(caught.value)
    for name, module in fakes.modules(trt, cuda).items():
        monkeypatch.setitem(sys.modules, name, module)
    plan.require_tensorrt()


def test_build_plan_asks_for_fp16_and_a_profile_over_the_batch(gpu, model_repository: Path, default_checkpoint: Path,
                                                                 tmp_path: Path) -> None:
    manifest = Manifest.load(default_checkpoint)
    text, frames = _onnx(model_repository)
    models = plan.build_plans(manifest, text, frames, tmp_path)
    low, opt, high = plan.PROFILE_BATCHES
    tokens, size = manifest.preprocessing.max_tokens, manifest.preprocessing.image_size
    record, onnx = fakes.read_plan(models.text.read_bytes())
    assert record["fp16"] and onnx == text.read_bytes()
    assert record["profile"] == {name: [[low, tokens], [opt, tokens], [high, tokens]]
                                 for name in ("input_ids", "attention_mask", "phrase_ids")}
    record, _ = fakes.read_plan(models.frames.read_bytes())
    assert record["profile"] == {"frames": [[low, size, size, 3], [opt, size, size, 3], [high, size, size, 3]]}
    # Every run copied each input in and each output out, and gave back what it took.
    assert gpu.cuda.memory == {} and gpu.cuda.streams == {}
    directions = {d for d, _ in gpu.cuda.copies}
    assert directions == {"cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost"}


def test_run_plan_returns_outputs_by_name_and_refuses_what_the_plan_cannot_take(
        gpu, model_repository: Path, default_checkpoint: Path, tmp_path: Path) -> None:
    manifest = Manifest.load(default_checkpoint)
    _, frames = _onnx(model_repository)
    frame_plan = plan.build_plan(frames, tmp_path / "frames.plan", {"frames": (224, 224, 3)})
    inputs = plan.random_frame_inputs(manifest, 2, np.random.default_rng(0))
    outputs = plan.run_plan(frame_plan, inputs)
    assert list(outputs) == ["vectors"] and outputs["vectors"].shape == (2, manifest.dim)
    assert outputs["vectors"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(outputs["vectors"], axis=1), 1.0, atol=5e-3)
    too_many = plan.random_frame_inputs(manifest, plan.PROFILE_BATCHES[-1] + 1, np.random.default_rng(0))
    with pytest.raises(plan.PlanError, match=r"frames \[65, 224, 224, 3\] is outside the plan's optimisation profile"):
        plan.run_plan(frame_plan, too_many)
    with pytest.raises(plan.PlanError, match=r"takes \['frames'\], was given \['images'\]"):
        plan.run_plan(frame_plan, {"images": inputs["frames"]})
    assert gpu.cuda.memory == {} and gpu.cuda.streams == {}


def test_a_cuda_failure_names_the_call_and_frees_what_was_taken(
        gpu, model_repository: Path, default_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = Manifest.load(default_checkpoint)
    _, frames = _onnx(model_repository)
    frame_plan = plan.build_plan(frames, tmp_path / "frames.plan", {"frames": (224, 224, 3)})
    allocate, calls = gpu.cuda.cudaMalloc, []

    def second_fails(size: int):
        calls.append(size)
        return (fakes.cudaError_t.cudaErrorMemoryAllocation, 0) if len(calls) == 2 else allocate(size)

    monkeypatch.setattr(gpu.cuda, "cudaMalloc", second_fails)
    with pytest.raises(plan.PlanError, match=r"CUDA cudaMalloc failed: cudaErrorMemoryAllocation \(out of memory\)"):
        plan.run_plan(frame_plan, plan.random_frame_inputs(manifest, 1, np.random.default_rng(0)))
    assert gpu.cuda.memory == {} and gpu.cuda.streams == {}


def test_a_plan_that_disagrees_with_onnx_runtime_is_refused(gpu, model_repository: Path, default_checkpoint: Path,
                                                             tmp_path: Path) -> None:
    gpu.trt.noise = 0.05
    text, frames = _onnx(model_repository)
    with pytest.raises(plan.PlanError, match=r"text: TensorRT fp16 differs from ONNX Runtime by [45]\.\d+e-02 in \w+ at "
                                             r"batch 1 \(tolerance 2e-02\)"):
        plan.build_plans(Manifest.load(default_checkpoint), text, frames, tmp_path)
    assert gpu.cuda.memory == {} and gpu.cuda.streams == {}


def test_the_parity_inputs_are_the_onnx_exports_own(default_checkpoint: Path) -> None:
    """export/tensorrt.py draws its inputs without torch; they must stay the draws export/onnx_export.py makes."""
    manifest = Manifest.load(default_checkpoint)
    pair = SimpleNamespace(manifest=manifest)
    for ours, theirs in ((plan.random_text_inputs, onnx_export.random_text_inputs),
                         (plan.random_frame_inputs, onnx_export.random_frame_inputs)):
        for batch in plan.PARITY_BATCHES:
            mine = ours(manifest, batch, np.random.default_rng(batch))
            reference = theirs(pair, batch, np.random.default_rng(batch))
            assert list(mine) == list(reference)
            for name in mine:
                assert mine[name].dtype == reference[name].dtype
                np.testing.assert_array_equal(mine[name], reference[name])


def _parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _reuse_onnx(monkeypatch: pytest.MonkeyPatch, model_repository: Path) -> None:
    """The pipeline's torch half (ONNX export and its parity) is tested elsewhere: reuse the session's graphs."""
    text, frames = _onnx(model_repository)

    def exported(pair, out_dir: Path) -> onnx_export.OnnxModels:
        out_dir.mkdir(parents=True, exist_ok=True)
        copies = out_dir / "text.onnx", out_dir / "frames.onnx"
        for source, copy in zip((text, frames), copies, strict=True):
            copy.write_bytes(source.read_bytes())
        return onnx_export.OnnxModels(*copies)

    monkeypatch.setattr(pipeline, "export_onnx", exported)
    monkeypatch.setattr(pipeline, "check_onnx_parity", lambda pair, models: {"text": 0.0, "frames": 0.0})


def test_the_tensorrt_export_writes_checked_plans(gpu, model_repository: Path, default_checkpoint: Path,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _reuse_onnx(monkeypatch, model_repository)
    out = tmp_path / "repo"
    report = pipeline.export_checkpoint(default_checkpoint, "tensorrt", out)
    assert {"text plan", "frames plan"} <= set(report.parity)
    assert all(0 < report.parity[k] <= plan.FP16_TOLERANCE for k in ("text plan", "frames plan"))
    for name in ("text_encoder_net", "frame_encoder"):
        assert _parse(out / name / "config.pbtxt").platform == "tensorrt_plan"
        record, _ = fakes.read_plan((out / name / "1" / "model.plan").read_bytes())
        assert record["fp16"]
        assert not (out / name / "1" / "model.onnx").exists()
    speech = _parse(out / "speech_recognizer" / "config.pbtxt")
    assert (speech.parameters["device"].string_value, speech.parameters["compute_type"].string_value) == ("cuda", "float16")
    assert gpu.cuda.memory == {} and gpu.cuda.streams == {}


def test_a_plan_parity_failure_fails_the_export_and_leaves_the_repository_alone(
        gpu, model_repository: Path, default_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _reuse_onnx(monkeypatch, model_repository)
    gpu.trt.noise = 0.05
    out = tmp_path / "repo"
    out.mkdir()
    (out / "keep.txt").write_text("untouched")
    with pytest.raises(onnx_export.ParityError, match="TensorRT fp16 differs from ONNX Runtime"):  # what the CLI reports
        pipeline.export_checkpoint(default_checkpoint, "tensorrt", out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert not list(tmp_path.glob(".export-*")), "the staging folder was left behind"


def test_real_cuda_bindings_take_the_calls_the_plan_path_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where cuda-python is installed but no GPU is: its runtime answers the plan path's calls with an error code
    (not a TypeError), which becomes the clear messages above."""
    runtime = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed here")
    error, count = runtime.cudaGetDeviceCount()
    if error == runtime.cudaError_t.cudaSuccess and count:
        pytest.skip("a GPU is present; the gpu test runs these calls for real")
    with pytest.raises(plan.PlanError, match=r"CUDA cudaMalloc failed: cudaError\w+ \("):
        plan._check(runtime.cudaMalloc(16), "cudaMalloc")
    stream = runtime.cudaStream_t()
    host = np.zeros(4, dtype=np.float32)
    kind = runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
    with pytest.raises(plan.PlanError, match="cudaMemcpyAsync failed"):
        plan._check(runtime.cudaMemcpyAsync(0x1000, host.ctypes.data, host.nbytes, kind, stream), "cudaMemcpyAsync")
    assert isinstance(int(stream), int)
    monkeypatch.setitem(sys.modules, "tensorrt", fakes.FakeTensorRT(fakes.FakeCudaRuntime()))  # only CUDA is real here
    with pytest.raises(plan.TensorRTUnavailable, match="needs a CUDA GPU, and none is visible here"):
        plan.require_tensorrt()
