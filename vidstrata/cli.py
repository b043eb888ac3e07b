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
    from vidstrata.export.onnx_export import ParityError
    from vidstrata.export.pipeline import export_checkpoint
    from vidstrata.export.tensorrt import TensorRTUnavailable
    from vidstrata.export.triton_repo import TARGETS

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

    from vidstrata.inference.encoder import EncoderInputError, EncoderUnavailable
    from vidstrata.spec.preprocess import center_crop_square

    if not text and not image:
        fail("give at least one --text or --image")
    encoder = _local_or_triton(triton_url, checkpoint)
    try:
        info = encoder.info()
        if text:
            vectors = encoder.encode_text(list(text))
            for i, t in enumerate(text):  # the phrases the encoder used, slot by slot
                typer.echo(json.dumps({"text": t, "sentence": vectors.sentence[i].round(5).tolist(), "phrases": [
                    {"phrase": p, "vector": vectors.phrases[i, k].round(5).tolist()}
                    for k, p in enumerate(vectors.phrase_texts[i]) if vectors.phrase_mask[i, k]]}))
        for path in image or []:
            try:
                rgb = np.asarray(Image.open(path).convert("RGB"))
            except OSError as exc:
                fail(f"{path}: not a readable image ({exc})")
            vector = encoder.encode_frames(center_crop_square(rgb, info.image_size)[None])[0]
            typer.echo(json.dumps({"image": str(path), "vector": vector.round(5).tolist()}))
    except (EncoderInputError, EncoderUnavailable) as exc:
        fail(str(exc))


GatewayOption = Annotated[str, typer.Option("--gateway", envvar="VIDSTRATA_GATEWAY_ADDRESS", help="gateway gRPC address")]
TokenOption = Annotated[str, typer.Option("--token", envvar="VIDSTRATA_GATEWAY_AUTH_TOKEN", help="bearer token, if auth is on")]
DEFAULT_GATEWAY = "127.0.0.1:50051"


def _client(gateway: str, token: str):  # noqa: ANN202 - returns a GatewayClient
    from vidstrata.client import GatewayClient

    return GatewayClient(gateway, token)


@app.command()
def up() -> None:
    """Run the whole service locally (Triton, Redis, Milvus Lite, a worker, the gateway) until Ctrl-C."""
    from vidstrata.up import run

    raise typer.Exit(run())


@app.command()
def gateway() -> None:
    """Run the gRPC gateway (settings from VIDSTRATA_* environment variables)."""
    from vidstrata.gateway.server import main

    main()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a Celery ingest worker; extra arguments go to `celery worker`."""
    from vidstrata.workers.main import main

    main(list(ctx.args))


PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command(context_settings=PASSTHROUGH)
def train(ctx: typer.Context) -> None:
    """Train the multi-level heads (`vidstrata train --help` for the options); generates missing training data."""
    from vidstrata.encoders.training_split import prepare_training_data
    from vidstrata.encoders.train import main

    main(list(ctx.args), prepare_training_data)


@app.command(name="eval", context_settings=PASSTHROUGH)
def evaluate(ctx: typer.Context) -> None:
    """Retrieval quality per level and fused, through the real stack (`vidstrata eval --help`).

    The evaluation lives in bench/, beside the benchmarks, in a source checkout (it is not installed): this runs
    `python -m bench.eval` there, so the CLI never imports it.
    """
    import subprocess
    import sys

    if not Path("bench/eval.py").is_file():
        fail("`vidstrata eval` runs from a source checkout of vidstrata (its bench/ folder is not installed): "
             "cd into the checkout and run it again")
    raise typer.Exit(subprocess.call([sys.executable, "-m", "bench.eval", *ctx.args]))


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="local video files or http(s) URLs")],
    metadata: Annotated[Optional[list[str]], typer.Option("--metadata", "-m", help="k=v, repeatable")] = None,
    video_id: Annotated[Optional[str], typer.Option(
        "--id", help="the video's id (one source only): an indexed video with this id is replaced, and removed if the "
        "new ingest fails; default: a new id")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="show progress until every video is READY or FAILED")] = False,
    gateway: GatewayOption = DEFAULT_GATEWAY,
    token: TokenOption = "",
) -> None:
    """Submit videos for ingest; with --wait, progress (bars on a terminal, a line per change otherwise) and a
    final summary."""
    from vidstrata.client import GatewayError
    from vidstrata.ingest_progress import follow

    if video_id is not None and not video_id:
        fail("--id is empty: leave it out for a new id")
    if video_id and len(sources) > 1:
        fail(f"--id names one video, but {len(sources)} sources were given")
    meta: dict[str, str] = {}
    for item in metadata or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--metadata takes key=value, got {item!r}")
        meta[key] = value
    client = _client(gateway, token)
    submitted: list[tuple[str, str]] = []
    try:
        for source in sources:
            is_uri = "://" in source  # the gateway says which schemes it takes
            if not is_uri and not Path(source).is_file():
                fail(f"{source}: {'a directory, not a video file' if Path(source).is_dir() else 'no such file'}")
            reply = client.submit(source if is_uri else str(Path(source).resolve()), video_id=video_id or "", metadata=meta)
            submitted.append((reply.video_id, source))
            if not wait:
                typer.echo(f"submitted {source} as {reply.video_id} (task {reply.task_id})")
        if wait and not follow(client, submitted):
            raise typer.Exit(1)
    except GatewayError as exc:
        fail(str(exc))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="what to look for, in one sentence (leave out with --image)")] = "",
    k: Annotated[int, typer.Option("-k", "--top-k", help="how many videos", max=2**31 - 1)] = 10,
    image: Annotated[Optional[Path], typer.Option("--image", help="search by this JPEG or PNG instead of a sentence",
                                               exists=True, dir_okay=False)] = None,
    filter_expr: Annotated[str, typer.Option("--filter", help='e.g. meta.lang == "en" and duration_s < 60')] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print the raw response as JSON")] = False,
    gateway: GatewayOption = DEFAULT_GATEWAY,
    token: TokenOption = "",
) -> None:
    """Search videos; prints rank, video, fused and per-level scores (– where a video lacks the level), and why it
    matched: the level, span and (for speech or on-screen text) the words of its best moment."""
    from google.protobuf.json_format import MessageToJson
    from rich.console import Console

    from vidstrata.client import GatewayError
    from vidstrata.search_table import hits_table

    try:
        if (image is None) == (not query.strip()):
            fail("give a sentence or --image PHOTO, not both and not neither")
        photo = image.read_bytes() if image else b""
        if image and not photo:  # the request could not tell an empty image from none
            fail(f"{image}: the image file is empty")
        reply = _client(gateway, token).search(query, k, filter_expr, photo)
    except GatewayError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(MessageToJson(reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True))
        return
    if not reply.hits:
        typer.echo("no hits" + (f" (filter: {filter_expr})" if filter_expr else ""))
        return
    Console(width=160).print(hits_table(reply, query, image.name if image else ""))


@app.command()
def status(video_id: str, gateway: GatewayOption = DEFAULT_GATEWAY, token: TokenOption = "") -> None:
    """Ingest status of one video."""
    from vidstrata.client import GatewayError
    from vidstrata.v1 import search_pb2

    try:
        video = _client(gateway, token).get(video_id)
    except GatewayError as exc:
        fail(str(exc))
    state = search_pb2.Video.Status.Name(video.status)
    detail = {"RUNNING": f" {video.progress:.0f}% ({video.stage})", "FAILED": f": {video.reason}",
              "READY": f": {video.clip_count} clips, {video.duration_s:.1f} s"}.get(state, "")
    typer.echo(f"{video.video_id}: {state}{detail}")


@app.command()
def delete(video_id: str, gateway: GatewayOption = DEFAULT_GATEWAY, token: TokenOption = "") -> None:
    """Remove a video and all its clips."""
    from vidstrata.client import GatewayError

    try:
        _client(gateway, token).delete(video_id)
    except GatewayError as exc:
        fail(str(exc))
    typer.echo(f"deleted {video_id}")


@app.command()
def stats(gateway: GatewayOption = DEFAULT_GATEWAY, token: TokenOption = "") -> None:
    """Counts of videos and clips, and the ingest queue's length."""
    from vidstrata.client import GatewayError

    try:
        counts = _client(gateway, token).stats()
    except GatewayError as exc:
        fail(str(exc))
    typer.echo(f"videos: {counts.videos}  clips: {counts.clips}  ingest queue: {counts.queue_length}")


def _local_or_triton(triton_url: str | None, checkpoint: Path):  # noqa: ANN202 - returns an Encoder
    from vidstrata.inference.factory import open_encoder

    if triton_url:
        return open_encoder(triton_url)
    import tempfile

    from vidstrata.export.pipeline import export_checkpoint

    source = None if checkpoint == Path("build/checkpoints/default") else checkpoint
    repository = export_checkpoint(source, "python", Path(tempfile.mkdtemp(prefix="vidstrata-onnx-")) / "repo").repository
    return open_encoder(repository=repository)


if __name__ == "__main__":
    app()
