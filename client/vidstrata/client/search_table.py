"""The table `vidstrata search` prints: one row per hit, with the levels that search used."""

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
    return table
