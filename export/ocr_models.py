"""The OCR models of the repository: `ocr_det`, `ocr_cls`, `ocr_rec` (networks) and `screen_text_reader` (BLS).

The networks are PP-OCRv4 mobile detection and recognition plus the v2.0 angle classifier, ONNX files shipped
in the PyPI wheel `rapidocr-onnxruntime` (Apache-2.0). Each is written with its one input renamed `x` and
its one output `y` (an Identity node), so the reader needs no per-model names. They run on ONNX Runtime: inside
the python backend for the `python` target, on Triton's native onnxruntime backend otherwise (on the GPU for
the `tensorrt` target: their shapes vary with every frame, which TensorRT profiles would not cover). The
recogniser's character list, kept in its ONNX metadata, is written next to the reader as `characters.txt`.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

from vidstrata.export.triton_repo import (
    Target,
    _backend_line,
    _io,
    _params,
    _python_shim,
    _tensor,
    queue_policy,
    write_model_folder,
)
from vidstrata.spec.contract import OCR_CLS, OCR_DET, OCR_REC, SCREEN_TEXT_INPUTS, SCREEN_TEXT_OUTPUTS, SCREEN_TEXT_READER

OCR_FILES = {
    OCR_DET: "ch_PP-OCRv4_det_infer.onnx",
    OCR_CLS: "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    OCR_REC: "ch_PP-OCRv4_rec_infer.onnx",
}
OUTPUT_DIMS = {OCR_DET: [-1, 1, -1, -1], OCR_CLS: [-1, 2], OCR_REC: [-1, -1, -1]}


class OcrWeightsMissing(RuntimeError):
    """The `rapidocr-onnxruntime` wheel (PP-OCRv4 ONNX models) is not installed."""


def ocr_folder() -> Path:
    """The folder of the packaged PP-OCR ONNX files."""
    try:
        import rapidocr_onnxruntime
    except ImportError as exc:
        raise OcrWeightsMissing("pip install rapidocr-onnxruntime (PP-OCRv4 ONNX models)") from exc
    folder = Path(rapidocr_onnxruntime.__file__).parent / "models"
    missing = [name for name in OCR_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise OcrWeightsMissing(f"{folder} lacks {missing}: reinstall rapidocr-onnxruntime")
    return folder


def _renamed(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with input `x` (already PP-OCR's name) and its single output exposed as `y`."""
    graph = model.graph
    if [i.name for i in graph.input] != ["x"] or len(graph.output) != 1:
        raise ValueError(f"unexpected PP-OCR graph: inputs {[i.name for i in graph.input]}, {len(graph.output)} outputs")
    output = graph.output[0]
    graph.node.append(helper.make_node("Identity", [output.name], ["y"]))
    renamed = onnx.ValueInfoProto()
    renamed.CopyFrom(output)
    renamed.name = "y"
    graph.output.remove(output)
    graph.output.append(renamed)
    return model


def network_config(name: str, target: Target) -> str:
    """No batching: every frame has its own size, so the reader sends its own batches (the lines of a frame). The
    dynamic batcher is there for its queue policy only (with max_batch_size 0 it merges nothing)."""
    runtime: Target = "python" if target == "python" else "onnxruntime"
    kind = "KIND_GPU" if target == "tensorrt" else "KIND_CPU"
    return (f'name: "{name}"\n' + _backend_line(runtime) + "max_batch_size: 0\n"
            + "dynamic_batching {\n" + queue_policy() + "}\n"
            + f"instance_group [ {{ count: 1 kind: {kind} }} ]\n"
            + _io("input", [_tensor("x", "TYPE_FP32", [-1, 3, -1, -1])])
            + _io("output", [_tensor("y", "TYPE_FP32", OUTPUT_DIMS[name])])
            + (_params({"intra_op_threads": 0}) if runtime == "python" else ""))


def reader_config() -> str:
    outputs = [_tensor(name, kind, shape) for name, kind, shape in zip(
        SCREEN_TEXT_OUTPUTS, ("TYPE_STRING", "TYPE_FP32", "TYPE_FP32"), ([-1], [-1], [-1, 4]), strict=True)]
    frame = f'  {{ name: "{SCREEN_TEXT_INPUTS[0]}" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] allow_ragged_batch: true }}'
    return (f'name: "{SCREEN_TEXT_READER}"\nbackend: "python"\nmax_batch_size: 4\n'
            "dynamic_batching {\n  max_queue_delay_microseconds: 1000\n" + queue_policy() + "}\n"
            "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
            + _io("input", [frame]) + _io("output", outputs)
            + _params({"det_model": OCR_DET, "cls_model": OCR_CLS, "rec_model": OCR_REC}))


def write_ocr_models(root: Path, target: Target, weights: Path | None = None) -> None:
    """Write the three networks and the reader into `root`."""
    source = weights or ocr_folder()
    for name, file in OCR_FILES.items():
        model = onnx.load(str(source / file))
        if name == OCR_REC:
            characters = next((p.value for p in model.metadata_props if p.key == "character"), None)
            if characters is None:
                raise OcrWeightsMissing(f"{file} has no character list in its metadata")
        version = write_model_folder(root, name, network_config(name, target))
        onnx.save(_renamed(model), str(version / "model.onnx"))
        if target == "python":
            (version / "model.py").write_text(_python_shim("OnnxRunner"))
    reader = write_model_folder(root, SCREEN_TEXT_READER, reader_config())
    (reader / "characters.txt").write_text(characters, encoding="utf-8")
    (reader / "model.py").write_text(
        _python_shim("ScreenTextReaderModel", "vidstrata.export.triton_ocr"))
