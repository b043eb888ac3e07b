"""Bring a submitted video onto local disk: a local path as is, an HTTP(S) URL streamed to a temp file.

What the source says about itself decides the outcome: 404, a non-video Content-Type, an empty or
oversized body, a download past its total deadline are `BadVideo` (permanent); refused connections,
stalls, 5xx and a body shorter than its Content-Length are `SourceUnavailable` (retried). A gzip or
deflate body is decompressed (the size limit applies to what it inflates to); other encodings are refused.
A host that does not exist (the resolver's "no such name": NXDOMAIN, or a name under `.invalid`, which RFC 6761
reserves to never resolve) is `BadVideo`; a resolver that cannot answer right now (EAI_AGAIN) is `SourceUnavailable`.
Each download's folder is named after its process, so a process that died mid-download has its
leftovers removed by the next one to start (`remove_leftovers`).

Credentials in the URL are used, never shown: userinfo (`https://alice:s3cret@host/v.mp4`) is sent as HTTP Basic
auth to that URL's own origin only (a redirect elsewhere gets none), and every message raised here names the
source by `spec.redaction.redact_uri` (userinfo and presigned-URL signatures as `***`), so no status field or
log line built from it carries a secret.

Where a fetch may go is the deployment's `SourcePolicy`. A URL's host is resolved once and every address checked by
`workers.destinations` (public addresses only, unless allow-listed) before anything is sent; the connection goes
to exactly the address checked, with the Host header, TLS SNI and certificate verification still on the name, and
every redirect hop (http(s) only) is checked the same way. A refused destination is `DestinationRefused` (a
`BadVideo`: permanent) with one reason that never says what the host resolved to or whether anything listens
there: no connection to it is ever attempted, so no "connection refused" or timeout can tell. Proxies named in
the environment are not used (they would connect in the policy's place). A local path (or file:// URI) is read only
when it lies, symlinks resolved, under one of the policy's `local_roots`; any other is refused with one reason,
whether or not it exists.
"""

from __future__ import annotations

import base64
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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from vidstrata.spec.redaction import redact_text, redact_uri, url_secrets
from vidstrata.workers.destinations import REFUSED, DestinationPolicy, DestinationRefused
from vidstrata.workers.errors import BadVideo, IngestCancelled, SourceUnavailable

if TYPE_CHECKING:
    from vidstrata.workers.settings import WorkerSettings

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
# getaddrinfo's answers that mean the name does not exist (NXDOMAIN) or has no address: asking again cannot help.
# EAI_AGAIN (the resolver could not answer) and EAI_FAIL (it failed) are worth a retry.
_NO_SUCH_HOST = {code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None}


# The one reason of a local path outside the roots: the same whether it exists, is a symlink leading out, or climbs out.
LOCAL_REFUSED = ("refused: local files are read only from the folders this deployment names "
                 "(VIDSTRATA_WORKER_LOCAL_ROOTS)")
NO_LOCAL = "local paths are not accepted by this deployment: give an http(s) URL"


@dataclass(frozen=True)
class SourcePolicy:
    """What a fetch may read: `destinations` for URLs, and local files under `local_roots` (none: no local files)."""

    destinations: DestinationPolicy = field(default_factory=DestinationPolicy)
    local_roots: tuple[Path, ...] = ()

    @classmethod
    def of(cls, local_roots: Iterable[str | Path] = (), allow_networks: Iterable[str] = (),
           allow_hosts: Iterable[str] = ()) -> SourcePolicy:
        """A policy from plain values; each root is resolved (symlinks and `..`) once, here."""
        roots = tuple(Path(os.path.realpath(root)) for root in local_roots)
        return cls(DestinationPolicy.of(allow_networks, allow_hosts), roots)

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> SourcePolicy:
        return cls.of(settings.local_roots if settings.allow_local_paths else (),
                      settings.fetch_allow_networks, settings.fetch_allow_hosts)


def _environment_policy() -> SourcePolicy:
    """The worker's policy as its VIDSTRATA_WORKER_* settings state it (for a caller that passes none)."""
    from vidstrata.workers.settings import WorkerSettings

    return SourcePolicy.from_settings(WorkerSettings())


def _size_error(shown: str, size: int, limit: int) -> BadVideo:
    return BadVideo(f"{shown}: source is {size} bytes; the limit is {limit} bytes")


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of an http(s) URL, the port filled in by its scheme's default."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


class _OriginAuth(urllib.request.BaseHandler):
    """Sends the Authorization header to one origin only: the submitted URL's, also after a redirect within it."""

    handler_order = 400

    def __init__(self, origin: tuple[str, str, int | None], authorization: str) -> None:
        self.origin, self.authorization = origin, authorization

    def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
        if _origin(request.full_url) == self.origin:
            request.add_unredirected_header("Authorization", self.authorization)
        return request

    https_request = http_request


def _split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without its userinfo, and the HTTP Basic Authorization value the userinfo stands for (or None)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), "Basic " + base64.b64encode(token).decode()


def _connect(addresses: list[tuple[int, tuple]], timeout: float | None, source_address: tuple | None) -> socket.socket:
    """A TCP connection to the first of `addresses` (already checked) that answers; the last error if none does."""
    error: OSError | None = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined] # http.client's "unset"
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    assert error is not None  # resolve() never returns an empty list
    raise error


def _checked_connection(connection_class: type[http.client.HTTPConnection], policy: DestinationPolicy, host: str,
                        **kwargs: object) -> http.client.HTTPConnection:
    """An http.client connection whose socket goes only to the addresses `policy` checked for its host.

    The connection keeps the name as its host (Host header; for HTTPS the SNI and the certificate check), and
    resolves it once, when it connects: the address checked is the address connected to.
    """
    connection = connection_class(host, **kwargs)  # type: ignore[arg-type]

    def create_connection(address: tuple[str, int], timeout: float | None = None,
                          source_address: tuple | None = None) -> socket.socket:
        name, port = address
        return _connect(policy.resolve(name, port), timeout, source_address)

    connection._create_connection = create_connection  # type: ignore[attr-defined]
    return connection


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, policy: DestinationPolicy) -> None:
        super().__init__()
        self.policy = policy

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(partial(_checked_connection, http.client.HTTPConnection, self.policy), req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    """HTTPS with the default context: the certificate is verified against the URL's host name."""

    def __init__(self, policy: DestinationPolicy) -> None:
        super().__init__()
        self.policy = policy

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(partial(_checked_connection, http.client.HTTPSConnection, self.policy), req,
                            context=self._context)  # type: ignore[attr-defined]


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) URLs only (urllib would follow ftp:// too); each hop connects through the
    checked handlers above, so its destination is checked like the first."""

    def http_error_302(self, req, fp, code, msg, headers):  # noqa: ANN001, ANN201 - urllib's signature
        target = headers.get("location") or headers.get("uri")
        if target is not None:
            try:
                scheme = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, target)).scheme.lower()
            except ValueError:
                scheme = ""
            if scheme not in ("http", "https"):
                fp.close()
                raise DestinationRefused(REFUSED)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _opener(policy: DestinationPolicy, *extra: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    """http(s) only, through the checked handlers; no proxy from the environment, no ftp, file or data URLs."""
    opener = urllib.request.OpenerDirector()
    for handler in (_CheckedHTTPHandler(policy), _CheckedHTTPSHandler(policy), _CheckedRedirects(),
                    urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor(),
                    urllib.request.UnknownHandler(), *extra):
        opener.add_handler(handler)
    return opener


def _local(uri: str, roots: tuple[Path, ...]) -> Path:
    """The regular file a local path or file:// URI names, resolved; refused (one reason) unless under `roots`.

    Symlinks and `..` are resolved before the check, and the resolved path is what the caller reads, so nothing
    outside the roots is read whatever the path spells. Whether a refused path exists is never looked at.
    """
    named = urllib.parse.unquote(urllib.parse.urlparse(uri).path) if uri.startswith("file://") else uri
    if not roots:
        raise BadVideo(NO_LOCAL)
    try:
        resolved = Path(os.path.realpath(named))
    except (ValueError, OSError):  # e.g. an embedded NUL, a symlink loop
        raise BadVideo(f"{redact_uri(uri)}: {LOCAL_REFUSED}") from None
    if not any(resolved.is_relative_to(root) for root in roots):
        raise BadVideo(f"{redact_uri(uri)}: {LOCAL_REFUSED}")
    path = Path(named)
    try:
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        raise BadVideo(f"no such file: {path}") from None
    except OSError as exc:
        raise BadVideo(f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise BadVideo(f"not a regular file: {path} is {kind}")
    return resolved


class _Download:
    """One HTTP(S) download into `folder`, bounded in bytes, in total time, and stopped once cancelled().

    `url` is the URL as submitted, credentials included; messages name it as `shown` (redacted), and any text
    they quote from elsewhere (an exception's own message) has the URL's secrets removed as well.
    """

    def __init__(self, url: str, max_bytes: int, timeout_s: float, deadline_s: float,
                 cancelled: Callable[[], bool], policy: DestinationPolicy) -> None:
        self.max_bytes, self.timeout_s, self.deadline_s = max_bytes, timeout_s, deadline_s
        self.policy = policy
        self.shown, self._secrets = redact_uri(url), url_secrets(url)
        self.url, self._authorization = _split_credentials(url)
        self.cancelled = cancelled
        self.started = time.monotonic()

    def _quote(self, exc: BaseException) -> str:
        """An exception's message as a reason may quote it: without the URL's secrets."""
        return redact_text(str(exc), self._secrets)

    def _opener(self) -> urllib.request.OpenerDirector:
        if self._authorization is None:
            return _opener(self.policy)
        return _opener(self.policy, _OriginAuth(_origin(self.url), self._authorization))

    def _open(self) -> http.client.HTTPResponse:
        url, host = self.shown, (urllib.parse.urlsplit(self.url).hostname or "").lower()
        if host == "invalid" or host.endswith(".invalid"):
            raise BadVideo(f"{url}: the host {host} does not exist (names under .invalid never resolve, RFC 6761)")
        request = urllib.request.Request(self.url, headers={"User-Agent": "vidstrata-worker",
                                                            "Accept-Encoding": "identity"})
        try:
            return self._opener().open(request, timeout=self.timeout_s)
        except DestinationRefused:
            raise DestinationRefused(f"{url}: {REFUSED}") from None
        except urllib.error.HTTPError as exc:
            if exc.code in _TRANSIENT_STATUSES:
                raise SourceUnavailable(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            if exc.code in (301, 302, 303, 307, 308):
                raise BadVideo(f"{url}: too many redirects (HTTP {exc.code} {exc.reason})") from exc
            raise BadVideo(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (TimeoutError, socket.timeout) as exc:
            raise SourceUnavailable(f"{url}: connected, but no response within {self.timeout_s:g} s") from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise SourceUnavailable(f"{url}: no connection within {self.timeout_s:g} s") from exc
            if isinstance(reason, socket.gaierror) and reason.errno in _NO_SUCH_HOST:
                raise BadVideo(f"{url}: the host {host} does not exist (DNS: {reason.strerror})") from exc
            if isinstance(reason, socket.gaierror):
                raise SourceUnavailable(f"{url}: cannot resolve the host {host} right now "
                                        f"(DNS: {reason.strerror})") from exc
            raise SourceUnavailable(f"{url}: cannot connect ({self._quote(reason)})") from exc
        except (http.client.InvalidURL, ValueError) as exc:  # e.g. a port that is not a number
            raise BadVideo(f"{url}: not a valid URL ({self._quote(exc)})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise SourceUnavailable(f"{url}: connection failed before a response ({self._quote(exc)})") from exc

    def to(self, target: Path) -> Path:
        url, max_bytes = self.shown, self.max_bytes
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
                raise BadVideo(f"{url}: the {encoding} body is corrupt ({self._quote(exc)})") from exc
            except (OSError, http.client.HTTPException) as exc:
                raise SourceUnavailable(
                    f"{url}: download interrupted after {received} bytes ({self._quote(exc)})"
                ) from exc
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
    cancelled: Callable[[], bool] = lambda: False, policy: SourcePolicy | None = None,
) -> Iterator[Path]:
    """Yield a local file holding the video; a downloaded copy is deleted on exit.

    timeout_s bounds the connection and each read (a stall); deadline_s the whole download; cancelled() is
    asked about once a second while downloading, and True stops it with IngestCancelled. `policy` says where
    a fetch may go (None: the worker's VIDSTRATA_WORKER_* settings); allow_local=False refuses every local path.
    """
    policy = policy if policy is not None else _environment_policy()
    try:
        scheme = urllib.parse.urlsplit(uri).scheme.lower()
    except ValueError as exc:  # e.g. an unclosed "[" of an IPv6 host
        raise BadVideo(f"{redact_uri(uri)}: not a valid URL ({redact_text(str(exc), url_secrets(uri))})") from None
    if scheme in ("http", "https"):
        folder = Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{os.getpid()}-"))
        try:
            download = _Download(uri, max_bytes, timeout_s, deadline_s, cancelled, policy.destinations)
            path = download.to(folder / "source")
            yield _checked(path, max_bytes, redact_uri(uri))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if scheme not in ("", "file"):
        raise BadVideo(f"unsupported source scheme {scheme!r}: give an http(s) URL or a local path")
    if not allow_local:
        raise BadVideo(NO_LOCAL)
    yield _checked(_local(uri, policy.local_roots), max_bytes, uri)


def _checked(path: Path, max_bytes: int, shown: str) -> Path:
    """The path, once its size is known to be within (0, max_bytes]; `shown` names the source in messages."""
    size = path.stat().st_size
    if size == 0:
        raise BadVideo(f"{shown}: empty file (0 bytes)")
    if size > max_bytes:
        raise _size_error(shown, size, max_bytes)
    return path
