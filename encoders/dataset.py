"""The JSONL dataset format that training and evaluation share (stdlib only, so `encoders` may read it).

A dataset is a JSONL file, one video per line:

    {"video": "videos/scenes-0003.mp4", "captions": ["a tabby cat, then a wall clock"],
     "scenes": [{"start_s": 0.0, "end_s": 3.5, "caption": "a tabby cat"}, ...]}

`video` is a path relative to the JSONL's folder (or absolute); `captions` describe the whole video;
`scenes` (optional) describe one time span each. An optional `id` names the video in the index (default:
the file's stem).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Scene:
    start_s: float
    end_s: float
    caption: str
    # what the caption describes: the picture ("visual"), what is said in the span ("speech") or shown as text
    # ("screen_text"); the JSONL key is optional and defaults to "visual"
    modality: str = "visual"


@dataclass(frozen=True)
class Item:
    """One video of a dataset; `video` is an absolute path once read."""

    video: Path
    captions: list[str]
    scenes: list[Scene] = field(default_factory=list)
    id: str = ""

    @property
    def video_id(self) -> str:
        return self.id or self.video.stem


def item_texts(item: Item) -> list[str]:
    """Every text that matches a video: its captions, then its scene captions."""
    return list(dict.fromkeys(item.captions + [s.caption for s in item.scenes]))


def read_jsonl(path: Path) -> list[Item]:
    """The dataset's videos, with video paths made absolute (relative ones are relative to the file's folder)."""
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            video = Path(row["video"])
            scenes = [Scene(float(s["start_s"]), float(s["end_s"]), str(s["caption"]), str(s.get("modality", "visual")))
                      for s in row.get("scenes") or []]
            item = Item(video if video.is_absolute() else (path.parent / video).resolve(),
                        [str(c) for c in row.get("captions") or []], scenes, str(row.get("id") or ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not a dataset row ({exc!r}): {line[:120]}") from exc
        if not item.captions and not item.scenes:
            raise ValueError(f"{path}:{number}: a video needs at least one caption or scene")
        for scene in item.scenes:
            if not 0 <= scene.start_s < scene.end_s:
                raise ValueError(f"{path}:{number}: scene span must have 0 <= start_s < end_s, got {scene}")
        items.append(item)
    ids = [item.video_id for item in items]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{path}: video ids must be unique; repeated: {duplicates}")
    return items


def write_jsonl(path: Path, items: Iterable[Item]) -> Path:
    """Write the dataset; videos under the file's folder are stored relative to it, so the folder can move."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for item in items:
        try:
            video = str(item.video.resolve().relative_to(path.parent.resolve()))
        except ValueError:
            video = str(item.video)
        row: dict[str, object] = {"video": video, "captions": item.captions}
        if item.scenes:
            row["scenes"] = [{"start_s": s.start_s, "end_s": s.end_s, "caption": s.caption}
                             | ({"modality": s.modality} if s.modality != "visual" else {}) for s in item.scenes]
        if item.id:
            row["id"] = item.id
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")
    return path
