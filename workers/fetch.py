"""Bring a submitted video onto local disk: a local path as is, an HTTP(S) URL streamed to a temp file.

What the source says about itself decides the outcome: 404, a non-video Content-Type, an empty or
oversized body are `BadVideo` (permanent); refused connections, timeouts and 5xx are `SourceUnavailable`.
"""

from __future__ import annotations

import http.client
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workers.errors import BadVideo, SourceUnavailable

# HTTP statuses worth retrying: the server or something in front of it is busy or down.
_TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}
# Content types that are certainly not a video; anything else (video/*, octet-stream, none) goes on to decode.
_NON_VIDEO_TYPES = (
    "text/", "image/", "application/json", "application/xml", "application/pdf", "application/javascript",
)
_CHUNK = 1 << 20


def _size_error(uri: str, size: int, limit: int) -> BadVideo:
    return BadVideo(f"{uri}: source is {size} bytes; the limit is {limit} bytes")


def _local(uri: str) -> Path:
    """The file a local path or file:// URI names."""
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path) if uri.startswith("file://") else uri)
    if not path.is_file():
        raise BadVideo(f"no such file: {path}")
    return path


def _download(url: str, folder: Path, max_bytes: int, timeout_s: float) -> Path:
    request = urllib.request.Request(url, headers={"User-Agent": "vidstrata-worker"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310 - the scheme is checked by fetch()
    except urllib.error.HTTPError as exc:
        if exc.code in _TRANSIENT_STATUSES:
            raise SourceUnavailable(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        raise BadVideo(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise SourceUnavailable(f"{url}: cannot connect ({reason})") from exc
    with response:
        content_type = (response.headers.get_content_type() if response.headers.get("Content-Type") else "").lower()
        if content_type.startswith(_NON_VIDEO_TYPES):
            raise BadVideo(f"{url}: not a video (Content-Type {content_type})")
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise _size_error(url, int(declared), max_bytes)
        target = folder / "source"
        size = 0
        try:
            with open(target, "wb") as out:
                while chunk := response.read(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise BadVideo(f"{url}: source is larger than the limit of {max_bytes} bytes")
                    out.write(chunk)
        except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors too
            raise SourceUnavailable(f"{url}: download interrupted after {size} bytes ({exc})") from exc
    return target


@contextmanager
def fetch(uri: str, max_bytes: int, timeout_s: float, allow_local: bool = True) -> Iterator[Path]:
    """Yield a local file holding the video; a downloaded copy is deleted on exit."""
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if scheme in ("http", "https"):
        folder = Path(tempfile.mkdtemp(prefix="vidstrata-fetch-"))
        try:
            path = _download(uri, folder, max_bytes, timeout_s)
            yield _checked(path, max_bytes, uri)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if scheme not in ("", "file"):
        raise BadVideo(f"unsupported source scheme {scheme!r}: give an http(s) URL or a local path")
    if not allow_local:
        raise BadVideo("local paths are not accepted by this deployment: give an http(s) URL")
    yield _checked(_local(uri), max_bytes, uri)


def _checked(path: Path, max_bytes: int, uri: str) -> Path:
    """The path, once its size is known to be within (0, max_bytes]."""
    size = path.stat().st_size
    if size == 0:
        raise BadVideo(f"{uri}: empty file (0 bytes)")
    if size > max_bytes:
        raise _size_error(uri, size, max_bytes)
    return path
