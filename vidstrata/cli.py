"""`vidstrata`: one CLI for exporting, encoding and (later) running and querying the service."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="vidstrata: text-to-video search.", no_args_is_help=True, pretty_exceptions_enable=False)

# Weights come from packages or user files only: never let a library reach for a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def fail(message: str) -> None:
    """One clear line on stderr and exit 1: no traceback for expected failures."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.command()
def export(
    target: Annotated[str, typer.Option(help="python (local Triton), onnxruntime (CPU Triton), tensorrt (GPU)")] = "python",
    out: Annotated[Path, typer.Option(help="model repository to write")] = Path("model_repository"),
    checkpoint: Annotated[
        Optional[Path], typer.Option(help="vidstrata checkpoint or Hugging Face CLIP folder; default: built-in")
    ] = None,
) -> None:
    """Export a checkpoint to ONNX (parity-checked) or TensorRT and write a Triton model repository."""
    from export.onnx_export import ParityError
    from export.pipeline import export_checkpoint
    from export.tensorrt import TensorRTUnavailable
    from export.triton_repo import TARGETS

    if target not in TARGETS:
        fail(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    try:
        report = export_checkpoint(checkpoint, target, out)  # type: ignore[arg-type]
    except (TensorRTUnavailable, ParityError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    parity = ", ".join(f"{name} {diff:.1e}" for name, diff in report.parity.items())
    typer.echo(f"wrote {report.repository} ({target}) from {report.checkpoint}; ONNX parity max |diff|: {parity}")


@app.command()
def encode(
    text: Annotated[Optional[list[str]], typer.Option("--text", help="a text to encode (repeatable)")] = None,
    image: Annotated[Optional[list[Path]], typer.Option("--image", help="an image file to encode (repeatable)")] = None,
    triton_url: Annotated[Optional[str], typer.Option(help="encode through Triton gRPC at this address")] = None,
    checkpoint: Annotated[Path, typer.Option(help="without --triton-url: encode in-process from this checkpoint")] = Path(
        "build/checkpoints/default"
    ),
) -> None:
    """Print the vectors of texts (sentence, phrases) and images (frame vector) as JSON lines."""
    import numpy as np
    from PIL import Image

    from inference.encoder import EncoderInputError, EncoderUnavailable
    from inference.preprocess import center_crop_square, phrase_texts

    if not text and not image:
        fail("give at least one --text or --image")
    encoder = _local_or_triton(triton_url, checkpoint)
    try:
        info = encoder.info()
        if text:
            vectors = encoder.encode_text(list(text))
            for i, t in enumerate(text):
                phrases = phrase_texts(t, info.max_phrases)
                typer.echo(json.dumps({"text": t, "sentence": vectors.sentence[i].round(5).tolist(), "phrases": [
                    {"phrase": p, "vector": vectors.phrases[i, k].round(5).tolist()} for k, p in enumerate(phrases)]}))
        for path in image or []:
            try:
                rgb = np.asarray(Image.open(path).convert("RGB"))
            except OSError as exc:
                fail(f"{path}: not a readable image ({exc})")
            vector = encoder.encode_frames(center_crop_square(rgb, info.image_size)[None])[0]
            typer.echo(json.dumps({"image": str(path), "vector": vector.round(5).tolist()}))
    except (EncoderInputError, EncoderUnavailable) as exc:
        fail(str(exc))


def _local_or_triton(triton_url: str | None, checkpoint: Path):  # noqa: ANN202 - returns an Encoder
    if triton_url:
        from inference.triton_encoder import TritonEncoder

        return TritonEncoder(triton_url)
    import tempfile

    from encoders.factory import load_checkpoint
    from export.onnx_export import export_onnx
    from export.pipeline import resolve_checkpoint
    from inference.onnx_encoder import OnnxEncoder

    folder = resolve_checkpoint(None if checkpoint == Path("build/checkpoints/default") else checkpoint, Path("build"))
    models = export_onnx(load_checkpoint(folder), Path(tempfile.mkdtemp(prefix="vidstrata-onnx-")))
    return OnnxEncoder(folder, models.text, models.frames)


if __name__ == "__main__":
    app()
