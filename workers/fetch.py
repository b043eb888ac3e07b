"""Bring a submitted video onto local disk: a local path as is, an HTTP(S) URL streamed to a temp file.

What the source says about itself decides the outcome: 404, a non-video Content-Type, an empty or
oversized body, a download past its total deadline are `BadVideo` (permanent); refused connections,
stalls, 5xx and a body shorter than its Content-Length are `SourceUnavailable` (retried). A gzip or
deflate body is decompressed (the size limit applies to what it inflates to); other encodings are refused.
Each download's folder is named after its process, so a process that died mid-download has its
leftovers removed by the next one to start (`remove_leftovers`).
"""

from __future__ import annotations

import http.client
import math
import os
import shutil
import socket
import stat
import tempfile
import time
import zlib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from workers.errors import BadVideo, IngestCancelled, SourceUnavailable

# HTTP statuses worth retrying: the server or something in front of it is busy or down.
_TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}
# Content types that are certainly not a video; anything else (video/*, octet-stream, none) goes on to decode.
_NON_VIDEO_TYPES = (
    "text/", "image/", "application/json", "application/xml", "application/pdf", "application/javascript",
)
_CHUNK = 1 << 20
_FOLDER_PREFIX = "vidstrata-fetch-"
_CANCEL_CHECK_S = 1.0  # how often a download asks whether its video was deleted
# Content-Encoding -> zlib window bits that inflate it (47: gzip or zlib header, detected).
_DECODERS = {"gzip": 47, "x-gzip": 47, "deflate": 47}


def _size_error(uri: str, size: int, limit: int) -> BadVideo:
    return BadVideo(f"{uri}: source is {size} bytes; the limit is {limit} bytes")


def _local(uri: str) -> Path:
    """The regular file a local path or file:// URI names."""
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path) if uri.startswith("file://") else uri)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise BadVideo(f"no such file: {path}") from None
    except OSError as exc:
        raise BadVideo(f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise BadVideo(f"not a regular file: {path} is {kind}")
    return path


class _Download:
    """One HTTP(S) download into `folder`, bounded in bytes, in total time, and stopped once cancelled()."""

    def __init__(self, url: str, max_bytes: int, timeout_s: float, deadline_s: float,
                 cancelled: Callable[[], bool]) -> None:
        self.url, self.max_bytes, self.timeout_s, self.deadline_s = url, max_bytes, timeout_s, deadline_s
        self.cancelled = cancelled
        self.started = time.monotonic()

    def _open(self) -> http.client.HTTPResponse:
        request = urllib.request.Request(self.url, headers={"User-Agent": "vidstrata-worker",
                                                            "Accept-Encoding": "identity"})
        url = self.url
        try:
            return urllib.request.urlopen(request, timeout=self.timeout_s)  # noqa: S310 - scheme checked by fetch()
        except urllib.error.HTTPError as exc:
            if exc.code in _TRANSIENT_STATUSES:
                raise SourceUnavailable(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            if exc.code in (301, 302, 303, 307, 308):
                raise BadVideo(f"{url}: too many redirects (HTTP {exc.code} {exc.reason})") from exc
            raise BadVideo(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (TimeoutError, socket.timeout) as exc:
            raise SourceUnavailable(f"{url}: connected, but no response within {self.timeout_s:g} s") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise SourceUnavailable(f"{url}: no connection within {self.timeout_s:g} s") from exc
            raise SourceUnavailable(f"{url}: cannot connect ({exc.reason})") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise SourceUnavailable(f"{url}: connection failed before a response ({exc})") from exc

    def to(self, target: Path) -> Path:
        url, max_bytes = self.url, self.max_bytes
        with self._open() as response:
            content_type = (response.headers.get_content_type() if response.headers.get("Content-Type") else "").lower()
            if content_type.startswith(_NON_VIDEO_TYPES):
                raise BadVideo(f"{url}: not a video (Content-Type {content_type})")
            encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
            if encoding not in ("identity", *_DECODERS):
                raise BadVideo(f"{url}: the body is compressed ({encoding}), which the worker cannot decompress")
            inflate = zlib.decompressobj(_DECODERS[encoding]) if encoding in _DECODERS else None
            declared_text = response.headers.get("Content-Length")
            declared = int(declared_text) if declared_text and declared_text.isdigit() else None
            if declared is not None and inflate is None and declared > max_bytes:
                raise _size_error(url, declared, max_bytes)
            received = written = 0
            checked = time.monotonic()
            try:
                with open(target, "wb") as out:
                    while chunk := response.read1(_CHUNK):
                        received += len(chunk)
                        data = inflate.decompress(chunk, max_bytes + 1 - written) if inflate else chunk
                        written += len(data)
                        if written > max_bytes:
                            raise BadVideo(f"{url}: source is larger than the limit of {max_bytes} bytes"
                                           + (f" once decompressed ({encoding})" if inflate else ""))
                        out.write(data)
                        now = time.monotonic()
                        if now - self.started > self.deadline_s:
                            raise BadVideo(
                                f"{url}: download took longer than the limit of {self.deadline_s:g} s "
                                f"({received} bytes received" + (f" of {declared})" if declared else ")")
                            )
                        if now - checked > _CANCEL_CHECK_S:
                            checked = now
                            if self.cancelled():
                                raise IngestCancelled(f"{url}: the video was deleted or resubmitted during download")
                    if inflate:
                        out.write(inflate.flush())
            except (TimeoutError, socket.timeout) as exc:
                raise SourceUnavailable(
                    f"{url}: download stalled: no data for {self.timeout_s:g} s after {received} bytes"
                ) from exc
            except zlib.error as exc:
                raise BadVideo(f"{url}: the {encoding} body is corrupt ({exc})") from exc
            except (OSError, http.client.HTTPException) as exc:
                raise SourceUnavailable(f"{url}: download interrupted after {received} bytes ({exc})") from exc
            if declared is not None and received < declared:
                raise SourceUnavailable(
                    f"{url}: connection closed after {received} of the {declared} bytes the server announced"
                )
        return target


def remove_leftovers(folder: Path | None = None) -> int:
    """Delete the download folders of processes that no longer run (killed mid-download); returns how many."""
    removed = 0
    for path in Path(folder or tempfile.gettempdir()).glob(f"{_FOLDER_PREFIX}*-*"):
        pid = path.name.removeprefix(_FOLDER_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def fetch(
    uri: str, max_bytes: int, timeout_s: float, allow_local: bool = True, deadline_s: float = math.inf,
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[Path]:
    """Yield a local file holding the video; a downloaded copy is deleted on exit.

    timeout_s bounds the connection and each read (a stall); deadline_s the whole download; cancelled() is
    asked about once a second while downloading, and True stops it with IngestCancelled.
    """
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if scheme in ("http", "https"):
        folder = Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{os.getpid()}-"))
        try:
            path = _Download(uri, max_bytes, timeout_s, deadline_s, cancelled).to(folder / "source")
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
