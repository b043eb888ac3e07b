"""The client's `vidstrata` commands: search, ingest, list, status, delete, stats against a running gateway.

`main` is the `vidstrata` command. Other installed distributions add theirs through the `vidstrata.commands`
entry point group (the server adds up, export, train, eval and the rest), so there is one command either way.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="vidstrata: text-to-video search.", no_args_is_help=True, pretty_exceptions_enable=False)
COMMANDS_GROUP = "vidstrata.commands"


def fail(message: str) -> None:
    """One clear line on stderr and exit 1: no traceback for expected failures."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


GatewayOption = Annotated[str, typer.Option("--gateway", envvar="VIDSTRATA_GATEWAY_ADDRESS", help="gateway gRPC address")]
TokenOption = Annotated[str, typer.Option("--token", envvar="VIDSTRATA_GATEWAY_AUTH_TOKEN", help="bearer token, if auth is on")]
DEFAULT_GATEWAY = "127.0.0.1:50051"


def _client(gateway: str, token: str):  # noqa: ANN202 - returns a GatewayClient
    from vidstrata.client import GatewayClient

    return GatewayClient(gateway, token)


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="local video files or http(s) URLs")],
    metadata: Annotated[Optional[list[str]], typer.Option("--metadata", "-m", help="k=v, repeatable")] = None,
    video_id: Annotated[Optional[str], typer.Option(
        "--id", help="the video's id (one source only): an indexed video with this id is replaced, and removed if the "
        "new ingest fails; default: a new id")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow every video (WatchVideo) until it is READY or FAILED")] = False,
    gateway: GatewayOption = DEFAULT_GATEWAY,
    token: TokenOption = "",
) -> None:
    """Submit videos for ingest; with --wait, progress (bars on a terminal, a line per change otherwise) and a
    final summary."""
    from vidstrata.client import GatewayError
    from vidstrata.client.ingest_progress import follow

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


GROUPINGS = ("video", "moment")
CONFIDENCES = ("low", "medium", "high")
STATES = ("pending", "running", "ready", "failed")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="what to look for, in one sentence (leave out with --image or --like)")] = "",
    k: Annotated[int, typer.Option("-k", "--top-k", help="how many videos", max=2**31 - 1)] = 10,
    image: Annotated[Optional[Path], typer.Option("--image", help="search by this JPEG or PNG instead of a sentence",
                                               exists=True, dir_okay=False)] = None,
    like: Annotated[str, typer.Option("--like", metavar="VIDEO_ID", help="videos like this indexed one (more like this, "
                                      "near duplicates), instead of a sentence")] = "",
    filter_expr: Annotated[str, typer.Option("--filter", help='e.g. meta.lang == "en" and duration_s < 60')] = "",
    scope: Annotated[Optional[list[str]], typer.Option("--in", metavar="VIDEO_ID", help="search only this video "
                                                       "(repeatable)")] = None,
    page_size: Annotated[Optional[int], typer.Option("--page-size", help="hits (or moments) per page; prints the "
                                                     "next page's token", min=1, max=2**31 - 1)] = None,
    page_token: Annotated[str, typer.Option("--page-token", help="the token the previous page printed")] = "",
    group_by: Annotated[str, typer.Option("--group-by", help="video (each hit with its moments) or moment (a flat "
                                          "ranking of moments)")] = "video",
    moments: Annotated[Optional[int], typer.Option("--moments", help="moments per video (gateway default 3)",
                                                   min=1, max=2**31 - 1)] = None,
    min_confidence: Annotated[str, typer.Option("--min-confidence", help="drop hits and moments below: low, medium, "
                                                "high")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print the raw response as JSON")] = False,
    gateway: GatewayOption = DEFAULT_GATEWAY,
    token: TokenOption = "",
) -> None:
    """Search videos; prints rank, video, fused and per-level scores (– where a video lacks the level), why it
    matched, and under each hit its moments (span, level, score, confidence, words); with --group-by moment one row
    per moment. With --page-size, the next page's --page-token follows the table."""
    from google.protobuf.json_format import MessageToJson
    from rich.console import Console

    from vidstrata.client import GatewayError
    from vidstrata.client.search_table import hits_table, moments_table

    if group_by.lower() not in GROUPINGS:
        fail(f"--group-by takes {' or '.join(GROUPINGS)}, got {group_by!r}")
    if min_confidence and min_confidence.lower() not in CONFIDENCES:
        fail(f"--min-confidence takes {', '.join(CONFIDENCES)}, got {min_confidence!r}")
    if sum((bool(query.strip()), image is not None, bool(like))) != 1:
        fail("give one of a sentence, --image PHOTO and --like VIDEO_ID")
    try:
        photo = image.read_bytes() if image else b""
        if image and not photo:  # the request could not tell an empty image from none
            fail(f"{image}: the image file is empty")
        reply = _client(gateway, token).search(
            query, k, filter_expr, photo, page_size=page_size, page_token=page_token, video_ids=scope or (),
            like_video_id=like, group_by=group_by, moments_per_video=moments, min_confidence=min_confidence)
    except GatewayError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(MessageToJson(reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True))
        return
    by_moment = group_by.lower() == "moment"
    if not (reply.moments if by_moment else reply.hits):
        typer.echo("no hits" + (f" (filter: {filter_expr})" if filter_expr else ""))
    elif by_moment:
        Console(width=160).print(moments_table(reply, query or f"like {like}"))
    else:
        Console(width=160).print(hits_table(reply, query or f"like {like}", image.name if image else ""))
    if reply.window_exhausted:
        typer.echo("the ranking ended at the candidate window: narrow the query (--filter, --in) to see past it")
    if reply.next_page_token:
        typer.echo(f"next page: --page-token {reply.next_page_token}")


@app.command(name="list")
def list_videos(
    filter_expr: Annotated[str, typer.Option("--filter", help='READY videos matching, e.g. meta.lang == "en"')] = "",
    status_name: Annotated[str, typer.Option("--status", help="only videos in this state: pending, running, ready, "
                                             "failed")] = "",
    page_size: Annotated[Optional[int], typer.Option("--page-size", help="videos per page (gateway default 100)",
                                                     min=1, max=2**31 - 1)] = None,
    page_token: Annotated[str, typer.Option("--page-token", help="the token the previous page printed")] = "",
    every: Annotated[bool, typer.Option("--all", help="follow the pages to the end")] = False,
    gateway: GatewayOption = DEFAULT_GATEWAY,
    token: TokenOption = "",
) -> None:
    """The videos of the index and the ingest queue, in video_id order, a page at a time (the next page's
    --page-token follows the table), or all of them with --all."""
    from rich.console import Console

    from vidstrata.client import GatewayError
    from vidstrata.client.search_table import videos_table

    if status_name and status_name.lower() not in STATES:
        fail(f"--status takes {', '.join(STATES)}, got {status_name!r}")
    client = _client(gateway, token)
    videos = []
    try:
        while True:
            reply = client.list_videos(filter_expr, status_name, page_size, page_token)
            videos += reply.videos
            page_token = reply.next_page_token
            if not (every and page_token):
                break
    except GatewayError as exc:
        fail(str(exc))
    if videos:
        Console(width=160).print(videos_table(videos))
    else:
        typer.echo("no videos")
    if page_token:
        typer.echo(f"next page: --page-token {page_token}")


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
    clips = f"{video.clip_count} clip{'' if video.clip_count == 1 else 's'}"
    detail = {"RUNNING": f" {video.progress:.0f}% ({video.stage})", "FAILED": f": {video.reason}",
              "READY": f": {clips}, {video.duration_s:.1f} s"}.get(state, "")
    typer.echo(f"{video.video_id}: {state}{detail}")


@app.command()
def delete(video_id: str, gateway: GatewayOption = DEFAULT_GATEWAY, token: TokenOption = "") -> None:
    """Remove a video, its clips and its timed texts."""
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


def main() -> None:
    """The `vidstrata` command: these commands plus every installed `vidstrata.commands` entry point's."""
    for entry in entry_points(group=COMMANDS_GROUP):
        entry.load()(app)
    app()


if __name__ == "__main__":
    main()
