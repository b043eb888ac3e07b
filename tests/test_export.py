"""Export: parity gates every export, configs are valid Triton configs, TensorRT fails clearly here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import vidstrata.export.pipeline as pipeline
from vidstrata.spec.manifest import Manifest
from vidstrata.encoders.factory import load_checkpoint
from vidstrata.export.onnx_export import ParityError, check_onnx_parity
from vidstrata.export.triton_repo import (
    QUEUE_TIMEOUT_US,
    TARGETS,
    TextModels,
    ensemble_config,
    frame_config,
    text_net_config,
    tokenizer_config,
    video_head_config,
)


def parse(config: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(config, model_config_pb2.ModelConfig())


@pytest.mark.parametrize("target", TARGETS)
def test_configs_are_valid_triton_configs_with_dynamic_batching(default_checkpoint, target):
    manifest = Manifest.load(default_checkpoint)
    for config in (parse(text_net_config(TextModels.of(manifest), target)), parse(frame_config(manifest, target))):
        assert config.dynamic_batching.preferred_batch_size and config.dynamic_batching.max_queue_delay_microseconds
        assert config.instance_group[0].kind == (
            model_config_pb2.ModelInstanceGroup.KIND_GPU if target == "tensorrt" else model_config_pb2.ModelInstanceGroup.KIND_CPU)
        assert config.version_policy.latest.num_versions == 1
    frames = parse(frame_config(manifest, target))
    assert list(frames.input[0].dims) == [224, 224, 3]
    assert {"python": frames.backend == "python", "onnxruntime": frames.platform == "onnxruntime_onnx",
            "tensorrt": frames.platform == "tensorrt_plan"}[target]
    ensemble = parse(ensemble_config(TextModels.of(manifest), "0123abcd"))
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["text_tokenizer", "text_encoder_net"]
    assert ensemble.parameters["model_version"].string_value == "0123abcd"
    assert ensemble.output[-1].name == "phrase_texts" and list(ensemble.output[-1].dims) == [8]
    tokenizer = parse(tokenizer_config(TextModels.of(manifest), target))
    assert tokenizer.parameters["max_text_bytes"].string_value == "2048"
    # Only a TensorRT plan needs every query padded to max_tokens; the rest get the real tokens.
    fixed = target == "tensorrt"
    assert tokenizer.parameters["fixed_length"].string_value == str(int(fixed))
    assert list(tokenizer.output[0].dims) == ([64] if fixed else [-1])
    video = parse(video_head_config(manifest, target))  # ONNX on the CPU for every target, TensorRT's included
    assert video.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert (video.backend, video.platform) == (("python", "") if target == "python" else ("", "onnxruntime_onnx"))
    assert [list(t.dims) for t in video.output] == [[-1, 384], [-1, 384], [384]]


def _queue_policy_of(config: model_config_pb2.ModelConfig) -> model_config_pb2.ModelQueuePolicy | None:
    return config.dynamic_batching.default_queue_policy if config.HasField("dynamic_batching") else None


def _assert_rejects_past_timeout(config: model_config_pb2.ModelConfig) -> None:
    policy = _queue_policy_of(config)
    assert policy is not None, f"{config.name} has no dynamic batcher, so no queue policy"
    assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT, config.name
    assert policy.allow_timeout_override, f"{config.name} ignores the timeouts clients send"
    assert policy.default_timeout_microseconds == QUEUE_TIMEOUT_US, config.name


@pytest.mark.parametrize("target", TARGETS)
def test_every_generated_config_rejects_requests_queued_past_their_timeout(default_checkpoint, target):
    """Issue 22 (8): a request still queued when its caller gave up is rejected, not run; every model but the
    ensemble (no queue of its own: its steps are the tokenizer and the text network, covered here) says so."""
    from vidstrata.export.ocr_models import OCR_FILES, network_config, reader_config
    from vidstrata.export.speech_model import speech_config

    manifest = Manifest.load(default_checkpoint)
    configs = [text_net_config(TextModels.of(manifest), target), frame_config(manifest, target), video_head_config(manifest, target),
               tokenizer_config(TextModels.of(manifest), target), speech_config(target), reader_config(),
               *(network_config(name, target) for name in OCR_FILES)]
    for config in configs:
        _assert_rejects_past_timeout(parse(config))
    assert _queue_policy_of(parse(ensemble_config(TextModels.of(manifest), "0123abcd"))) is None


def test_the_queue_timeout_bounds_no_client_below_its_own_deadline():
    """Triton lets a request only shorten the default queue timeout: every client's default deadline fits in it."""
    from vidstrata.gateway.settings import GatewaySettings
    from vidstrata.workers.settings import WorkerSettings

    deadlines = [WorkerSettings.model_fields[name].default
                 for name in ("triton_timeout_s", "speech_timeout_s", "screen_text_timeout_s")]
    deadlines.append(GatewaySettings.model_fields["triton_timeout_s"].default)
    assert max(deadlines) * 1e6 <= QUEUE_TIMEOUT_US


def test_the_exported_repository_rejects_requests_queued_past_their_timeout(model_repository):
    configs = [parse(path.read_text()) for path in sorted(model_repository.glob("*/config.pbtxt"))]
    assert sorted(c.name for c in configs) == MODELS
    for config in configs:
        if config.platform != "ensemble":
            _assert_rejects_past_timeout(config)


def test_parity_failure_fails_the_export_and_leaves_the_repository_alone(default_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "repo"
    (out / "video_head").mkdir(parents=True)  # even a stale video head stays: nothing changes without parity
    (out / "keep.txt").write_text("untouched")

    def strict(pair, models):
        return check_onnx_parity(pair, models, tolerance=0.0)

    monkeypatch.setattr(pipeline, "check_onnx_parity", strict)
    with pytest.raises(ParityError, match="differs from torch"):
        pipeline.export_checkpoint(default_checkpoint, "python", out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "video_head"]
    assert not list(tmp_path.glob(".export-*")), "the staging folder was left behind"


def test_a_checkpoint_without_a_video_head_removes_an_earlier_one(default_checkpoint, tmp_path):
    """So does an export without --e5 remove the e5 models of an earlier one: the repository serves what was asked."""
    out = tmp_path / "repo"
    for name in ("video_head", "text_encoder_e5_net", "text_encoder_e5_query"):
        stale = out / name / "1"
        stale.mkdir(parents=True)
        (stale / "model.onnx").write_bytes(b"from an earlier export")
    pipeline.export_checkpoint(default_checkpoint, "python", out)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == MODELS


MODELS = ["frame_encoder", "ocr_cls", "ocr_det", "ocr_rec", "screen_text_reader", "speech_recognizer",
          "text_encoder", "text_encoder_net", "text_tokenizer"]


def test_export_writes_the_encoders_the_speech_and_the_ocr_models(model_repository):
    names = sorted(p.name for p in model_repository.iterdir() if p.is_dir())
    assert names == MODELS
    assert (model_repository / "text_encoder_net" / "1" / "model.onnx").is_file()
    assert (model_repository / "text_tokenizer" / "1" / "tokenizer.json").is_file()
    assert (model_repository / "speech_recognizer" / "1" / "whisper" / "model.bin").is_file()
    assert (model_repository / "screen_text_reader" / "1" / "characters.txt").read_text().count("\n") > 6000


@pytest.mark.parametrize("target", ["python", "onnxruntime", "tensorrt"])
def test_speech_and_ocr_configs_for_every_target(target, tmp_path):
    """The speech model is python for every target, on CUDA float16 for the GPU target; the OCR networks run on
    ONNX Runtime (in the python backend locally, the native backend elsewhere, on the GPU for tensorrt)."""
    from vidstrata.export.ocr_models import network_config
    from vidstrata.export.speech_model import speech_config

    speech = speech_config(target)
    assert 'backend: "python"' in speech and "allow_ragged_batch: true" in speech
    params = {k: v.string_value for k, v in parse(speech).parameters.items()}
    # The config states what runs: CTranslate2 float16 on the GPU, int8 on the CPU.
    assert (params["device"], params["compute_type"]) == (("cuda", "float16") if target == "tensorrt" else ("cpu", "int8"))
    det = network_config("ocr_det", target)
    assert ('backend: "python"' in det) == (target == "python")
    assert ('platform: "onnxruntime_onnx"' in det) == (target != "python")
    assert ("KIND_GPU" in det) == (target == "tensorrt")


def test_tensorrt_target_fails_at_once_with_a_clear_message(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU is present; the GPU test covers TensorRT here")
    out = subprocess.run(
        [sys.executable, "-m", "vidstrata.cli", "export", "--target", "tensorrt", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1
    assert "needs TensorRT and a CUDA GPU" in out.stderr or "needs a CUDA GPU" in out.stderr
    assert "Traceback" not in out.stderr


def test_unknown_target_and_bad_checkpoint_are_one_line_errors(tmp_path):
    for args, message in ((["--target", "tflite"], "unknown target"),
                          (["--checkpoint", str(tmp_path)], "neither a vidstrata checkpoint")):
        out = subprocess.run([sys.executable, "-m", "vidstrata.cli", "export", *args, "--out", str(tmp_path / "r")],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("target", ["python", "onnxruntime", "tensorrt"])
def test_the_speech_model_loads_with_the_compute_type_its_config_states(target, tmp_path, monkeypatch):
    """Triton hands the config to `initialize` as JSON; WhisperModel gets exactly its device and compute type."""
    import importlib
    import types

    from google.protobuf import json_format

    from vidstrata.export.speech_model import speech_config

    loaded = {}

    class WhisperModel:
        def __init__(self, path, **kwargs):
            loaded.update(kwargs, path=path)

    whisper = types.ModuleType("faster_whisper")
    whisper.WhisperModel, whisper.BatchedInferencePipeline = WhisperModel, lambda model: ("pipeline", model)
    monkeypatch.setitem(sys.modules, "faster_whisper", whisper)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    from vidstrata.export import speech_model  # the server-side module's name, beside its config writer

    module = speech_model.__name__.rpartition(".")[0] + ".triton_speech"
    server_side = (module, module.rpartition(".")[0] + ".triton_models")  # bound to the fake backend utils here
    before = {name: sys.modules.pop(name, None) for name in server_side}
    try:
        config = json_format.MessageToDict(parse(speech_config(target)), preserving_proto_field_name=True)
        model = importlib.import_module(module).SpeechRecognizerModel()
        model.initialize({"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"})
    finally:
        for name, previous in before.items():
            sys.modules.pop(name, None)
            if previous is not None:
                sys.modules[name] = previous
    gpu = target == "tensorrt"
    assert (loaded["device"], loaded["compute_type"]) == (("cuda", "float16") if gpu else ("cpu", "int8"))
    assert loaded["local_files_only"] is True and loaded["path"] == str(tmp_path / "1" / "whisper")


@pytest.mark.gpu
def test_tensorrt_plans_match_onnx_runtime(default_checkpoint, tmp_path):
    """On a GPU with `vidstrata[gpu]`: TensorRT parses and builds both graphs, and the plans, run by TensorRT's
    runtime on cuda-python buffers, match ONNX Runtime within the fp16 tolerance (build_plans raises otherwise)."""
    from vidstrata.export.onnx_export import export_onnx
    from vidstrata.export.tensorrt import FP16_TOLERANCE, TensorRTUnavailable, build_plans, require_tensorrt

    try:
        require_tensorrt()
    except TensorRTUnavailable as exc:
        pytest.skip(str(exc))
    pair = load_checkpoint(default_checkpoint)
    onnx = export_onnx(pair, tmp_path / "onnx")
    plans = build_plans(pair.manifest, onnx.text, onnx.frames, tmp_path)
    assert plans.text.stat().st_size > 0 and plans.frames.stat().st_size > 0
    assert set(plans.parity) == {"text", "frames"} and max(plans.parity.values()) <= FP16_TOLERANCE
