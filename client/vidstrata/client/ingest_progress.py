"""Progress bars for `vidstrata ingest --wait`: one per video, then a summary table.

Each video is followed by a WatchVideo stream of its own (in a thread), so a change shows when it happens.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import grpc

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vidstrata.client import GatewayClient, GatewayError
from vidstrata.v1 import search_pb2

DONE = (search_pb2.Video.READY, search_pb2.Video.FAILED)
REOPEN_TRIES = 5  # a broken stream (gateway restarting) is opened again this often, a second apart


def follow(client: GatewayClient, submitted: list[tuple[str, str]], poll_s: float = 0.5,
           console: Console | None = None) -> bool:
    """Watch every video until it is READY or FAILED; True when all are READY. poll_s: how often GetVideo is
    asked instead for a video the gateway has no watcher left for (RESOURCE_EXHAUSTED).

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

            _watch_all(client, submitted, final, show, poll_s)
    else:
        sources, shown = dict(submitted), dict[str, str]()

        def show(video_id: str, video: search_pb2.Video, state: str) -> None:
            if shown.get(video_id) != state:
                shown[video_id] = state
                console.print(f"{sources[video_id]} ({video_id}): {state}", highlight=False, soft_wrap=True)

        _watch_all(client, submitted, final, show, poll_s)
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


def _watch_all(client: GatewayClient, submitted: list[tuple[str, str]], final: dict[str, search_pb2.Video],
               show: Callable[[str, search_pb2.Video, str], None], poll_s: float) -> None:
    """Follow every video until all are done, calling show(video_id, video, state) for each state a stream sends;
    `state` is "ready", "failed", or the lower-case status with the worker's stage while it runs."""
    updates: queue.Queue[tuple[str, search_pb2.Video]] = queue.Queue()
    for video_id, _ in submitted:
        threading.Thread(target=_follow_one, args=(client, video_id, updates, poll_s), daemon=True,
                         name=f"watch-{video_id}").start()
    while len(final) < len(submitted):
        try:
            video_id, video = updates.get(timeout=0.5)  # a timeout, so Ctrl-C is not held up
        except queue.Empty:
            continue
        done = video.status in DONE
        state = search_pb2.Video.Status.Name(video.status).lower()
        show(video_id, video, state + (f" {video.stage}" if video.stage and not done else ""))
        if done:
            final[video_id] = video


def _follow_one(client: GatewayClient, video_id: str, updates: queue.Queue[tuple[str, search_pb2.Video]],
                poll_s: float) -> None:
    """Put each state of one video on `updates` until it is done: from its WatchVideo stream, opened again when it
    breaks (up to REOPEN_TRIES times), or by GetVideo every poll_s when the gateway has no watcher left. A video that
    cannot be followed is put as FAILED with the reason."""
    tries = 0
    while True:
        try:
            for video in client.watch_video(video_id):
                updates.put((video_id, video))
                if video.status in DONE:
                    return
            raise GatewayError("the stream ended before the video was READY or FAILED", grpc.StatusCode.UNAVAILABLE)
        except GatewayError as exc:
            if exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                break
            if exc.code == grpc.StatusCode.UNAVAILABLE and tries < REOPEN_TRIES:
                tries += 1
                time.sleep(1.0)
                continue
            updates.put((video_id, search_pb2.Video(video_id=video_id, status=search_pb2.Video.FAILED,
                                                    reason=f"could not follow: {exc}")))
            return
    while True:
        try:
            video = client.get(video_id)
        except GatewayError as exc:
            video = search_pb2.Video(video_id=video_id, status=search_pb2.Video.FAILED, reason=f"could not follow: {exc}")
        updates.put((video_id, video))
        if video.status in DONE:
            return
        time.sleep(poll_s)
