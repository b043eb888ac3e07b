"""Video ids and metadata as every layer accepts them: the gateway checks a request, the status store and
the index check again before they write, with the same rules.

Ids become Milvus primary keys, parts of clip ids and Redis keys; metadata keys must be nameable in filters
(`meta.key`), and a metadata object must fit one Milvus JSON value.
"""

from __future__ import annotations

import json
import re

VIDEO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/+=-]{0,127}")
METADATA_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_METADATA_BYTES = 65536  # Milvus's limit on one JSON value


def _shown(value: object) -> str:
    """A rejected value as an error message quotes it: its repr, cut to 60 characters when longer than 80 (then with
    the value's own length: characters of a string, not of its repr)."""
    text = repr(value)
    size = len(value) if isinstance(value, str) else len(text)
    return text if len(text) <= 80 else f"{text[:60]}... ({size} characters)"


def check_video_id(video_id: object) -> str:
    """The id itself, or ValueError: ids become primary keys and parts of clip ids."""
    if not isinstance(video_id, str) or not VIDEO_ID_RE.fullmatch(video_id):
        raise ValueError(f"video_id {_shown(video_id)} must match {VIDEO_ID_RE.pattern}")
    return video_id


def check_metadata(metadata: object) -> dict[str, str]:
    """A copy of metadata, or ValueError: str values, and keys that filters can name (meta.key)."""
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict of str to str, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not METADATA_KEY_RE.fullmatch(key):
            raise ValueError(f"metadata key {_shown(key)} must match {METADATA_KEY_RE.pattern} (so filters can name it)")
        if not isinstance(value, str):
            raise ValueError(f"metadata[{key!r}] must be a str, got {type(value).__name__}")
    if len(json.dumps(metadata).encode()) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
    return dict(metadata)
