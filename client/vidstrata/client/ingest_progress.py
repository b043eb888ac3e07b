"""Progress bars for `vidstrata ingest --wait`: one per video, then a summary table."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vidstrata.client import GatewayClient
from vidstrata.v1 import search_pb2

DONE = (search_pb2.Video.READY, search_pb2.Video.FAILED)


def follow(client: GatewayClient, submitted: list[tuple[str, str]], poll_s: float = 0.5,
           console: Console | None = None) -> bool:
    """Poll GetVideo until every video is READY or FAILED; True when all are READY.

    On a terminal: a progress bar per video. Otherwise (a log, a pipe, CI): a line per video whenever its state or
    stage changes, so a long ingest never looks stuck. Either way a summary table follows, on stdout.
    """
    console = console or Console(stderr=True)
    final: dict[str, search_pb2.Video] = {}
    if console.is_terminal:
        with Progress(TextColumn("{task.fields[name]}"), BarColumn(), TextColumn("{task.percentage:>3.0f}% {task.fields[state]}"),
                      TimeElapsedColumn(), console=console) as progress:
            bars = {vid: progress.add_task("", total=100, name=source, state="PENDING") for vid, source in submitted}

            def show(video_id: str, video: search_pb2.Video, state: str) -> None:
                done = video.status in DONE
                progress.update(bars[video_id], completed=100 if done else video.progress, state=state)

            _poll(client, submitted, final, show, poll_s)
    else:
        sources, shown = dict(submitted), dict[str, str]()

        def show(video_id: str, video: search_pb2.Video, state: str) -> None:
            if shown.get(video_id) != state:
                shown[video_id] = state
                console.print(f"{sources[video_id]} ({video_id}): {state}", highlight=False, soft_wrap=True)

        _poll(client, submitted, final, show, poll_s)
    table = Table(title="ingest summary")
    for column in ("video", "source", "status", "clips", "duration", "reason"):
        table.add_column(column)
    for video_id, source in submitted:
        video = final[video_id]
        indexed = video.status == search_pb2.Video.READY  # a FAILED video has no clips or duration to show
        table.add_row(video_id, source, search_pb2.Video.Status.Name(video.status), str(video.clip_count) if indexed else "–",
                      f"{video.duration_s:.1f} s" if indexed else "–", video.reason)
    Console(width=140).print(table)
    ready = sum(v.status == search_pb2.Video.READY for v in final.values())
    Console().print(f"{ready} ready, {len(final) - ready} failed")
    return ready == len(final)


def _poll(client: GatewayClient, submitted: list[tuple[str, str]], final: dict[str, search_pb2.Video],
          show: Callable[[str, search_pb2.Video, str], None], poll_s: float) -> None:
    """Read each unfinished video's status until all are done, calling show(video_id, video, state) each time;
    `state` is "ready", "failed", or the lower-case status with the worker's stage while it runs."""
    while len(final) < len(submitted):
        for video_id, _ in submitted:
            if video_id in final:
                continue
            video = client.get(video_id)
            done = video.status in DONE
            state = search_pb2.Video.Status.Name(video.status).lower()
            show(video_id, video, state + (f" {video.stage}" if video.stage and not done else ""))
            if done:
                final[video_id] = video
        if len(final) < len(submitted):
            time.sleep(poll_s)
