"""Progress bars for `vidstrata ingest --wait`: one per video, then a summary table."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vidstrata.client import GatewayClient
from vidstrata.v1 import search_pb2

DONE = (search_pb2.Video.READY, search_pb2.Video.FAILED)


def follow(client: GatewayClient, submitted: list[tuple[str, str]], poll_s: float = 0.5) -> bool:
    """Poll GetVideo until every video is READY or FAILED; True when all are READY."""
    console = Console(stderr=True)
    final: dict[str, search_pb2.Video] = {}
    with Progress(TextColumn("{task.fields[name]}"), BarColumn(), TextColumn("{task.percentage:>3.0f}% {task.fields[state]}"),
                  TimeElapsedColumn(), console=console) as progress:
        bars = {vid: progress.add_task("", total=100, name=source, state="PENDING") for vid, source in submitted}
        while len(final) < len(submitted):
            for video_id, bar in bars.items():
                if video_id in final:
                    continue
                video = client.get(video_id)
                state = search_pb2.Video.Status.Name(video.status)
                done = video.status in DONE
                progress.update(bar, completed=100 if done else video.progress, state=state.lower() + (f" {video.stage}" if video.stage and not done else ""))
                if done:
                    final[video_id] = video
            time.sleep(poll_s)
    table = Table(title="ingest summary")
    for column in ("video", "source", "status", "clips", "duration", "reason"):
        table.add_column(column)
    for video_id, source in submitted:
        video = final[video_id]
        table.add_row(video_id, source, search_pb2.Video.Status.Name(video.status), str(video.clip_count),
                      f"{video.duration_s:.1f} s", video.reason)
    Console(width=140).print(table)
    ready = sum(v.status == search_pb2.Video.READY for v in final.values())
    Console().print(f"{ready} ready, {len(final) - ready} failed")
    return ready == len(final)
