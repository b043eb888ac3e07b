"""The tables `vidstrata search` prints: one row per hit, with the levels that search used and its moments under it;
or, grouped by moment, one row per moment; and the table of `vidstrata list`."""

from __future__ import annotations

from rich.table import Table

from vidstrata.v1 import search_pb2

# Levels the proto marks optional (speech, screen text): unset for a video that lacks them, shown as –.
_OPTIONAL_LEVELS = {f.name for f in search_pb2.LevelScores.DESCRIPTOR.fields if f.has_presence}


def hits_table(reply: search_pb2.SearchResponse, query: str = "", image_name: str = "") -> Table:
    """Rank, video, fused score, the per-level scores (– where a video lacks the level) and why each hit matched.

    A sentence is scored at every level. An image is scored at the visual levels only, its frame vector standing
    for the sentence and the one phrase: its columns are named for the image, and the phrase column (a copy of the
    clip column) and the text levels are left out.
    """
    asked = f"image {image_name}" if image_name else f"{query!r}  phrases: {' | '.join(reply.phrases)}"
    table = Table(title=f"{asked}  ({reply.timings.total_ms:.0f} ms)")
    if image_name:
        levels = {"video·image": "video_sentence", "clip·image": "clip_sentence"}
    else:
        levels = {"video·sent": "video_sentence", "clip·sent": "clip_sentence", "clip·phrase": "clip_phrase",
                  "speech": "speech_sentence", "screen text": "screen_text_sentence"}
    for column in ("rank", "video", "score", *levels, "why"):
        table.add_column(column, justify="left" if column in ("video", "why") else "right")
    for rank, hit in enumerate(reply.hits, 1):
        scores = [f"{getattr(hit.levels, name):.3f}" if name not in _OPTIONAL_LEVELS or hit.levels.HasField(name) else "–"
                  for name in levels.values()]
        why = hit.why if hit.HasField("why") else None
        moment = (f"{why.level} {why.start_s:.1f}–{why.end_s:.1f} s" + (f' "{why.snippet}"' if why.snippet else "")
                  if why else f"clip {hit.best_clip.start_s:.1f}–{hit.best_clip.end_s:.1f} s")
        table.add_row(str(rank), hit.video_id, f"{hit.score:.3f}", *scores, moment)
        for moment in hit.moments:
            table.add_row("", "", "", *[""] * len(levels), f"  ↳ {_moment(moment)}")
    return table


def _confidence(value: int) -> str:
    return search_pb2.Confidence.Name(value).lower() if value else "–"


def _moment(moment: search_pb2.Moment) -> str:
    """One moment on one line: span, level, score, confidence and (speech or on-screen text) its words."""
    return (f"{moment.start_s:.1f}–{moment.end_s:.1f} s  {moment.level}  {moment.score:.3f}  "
            f"{_confidence(moment.confidence)}" + (f'  "{moment.snippet}"' if moment.snippet else ""))


def moments_table(reply: search_pb2.SearchResponse, query: str = "") -> Table:
    """A search grouped by moment: one row per moment, best first, across videos."""
    table = Table(title=f"{query!r}  moments  ({reply.timings.total_ms:.0f} ms)")
    for column in ("rank", "video", "span", "level", "score", "confidence", "snippet"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for rank, moment in enumerate(reply.moments, 1):
        table.add_row(str(rank), moment.video_id, f"{moment.start_s:.1f}–{moment.end_s:.1f} s", moment.level,
                      f"{moment.score:.3f}", _confidence(moment.confidence), moment.snippet)
    return table


def videos_table(videos: list[search_pb2.Video]) -> Table:
    """`vidstrata list`: each video's state, with clips and duration when READY, progress and stage while it runs,
    and the reason when it FAILED (or a note on a READY one)."""
    table = Table()
    for column in ("video", "status", "clips", "duration", "progress", "metadata", "reason"):
        table.add_column(column, justify="right" if column in ("clips", "duration", "progress") else "left")
    for video in videos:
        ready = video.status == search_pb2.Video.READY
        running = video.status == search_pb2.Video.RUNNING
        table.add_row(video.video_id, search_pb2.Video.Status.Name(video.status),
                      str(video.clip_count) if ready else "–", f"{video.duration_s:.1f} s" if ready else "–",
                      f"{video.progress:.0f}% {video.stage}" if running else "–",
                      " ".join(f"{k}={v}" for k, v in sorted(video.metadata.items())), video.reason)
    return table
