"""Fetching sources: local files as they are, HTTP downloads streamed with a size limit, failures classified.

The sources here are local files and HTTP servers on loopback, which the worker refuses by default (issue 22): each
test names the policy that opens them (`OPEN`: loopback and the test's temp folders), and the policy's own tests
prove what stays closed without it.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

from vidstrata.stack.process import free_port
from vidstrata.workers.errors import BadVideo, IngestCancelled, SourceUnavailable
from vidstrata.workers.destinations import REFUSED, DestinationRefused
from vidstrata.workers.fetch import LOCAL_REFUSED, SourcePolicy, remove_leftovers
from vidstrata.workers.fetch import fetch as policy_fetch

LIMIT = 1_000_000


# Loopback servers and the temp folder (pytest's tmp_path lives there), opened for the tests of fetching itself.
OPEN = SourcePolicy.of(local_roots=[tempfile.gettempdir()], allow_networks=["127.0.0.0/8"])


def fetch(uri, *args, **kwargs):
    """workers.fetch.fetch under the OPEN policy unless a test names another."""
    return policy_fetch(uri, *args, **{"policy": OPEN, **kwargs})


@pytest.fixture(scope="module")
def served(media_server):
    (media_server.root / "clip.bin").write_bytes(b"\x00\x01" * 5000)
    (media_server.root / "big.bin").write_bytes(b"x" * (LIMIT + 1))
    return media_server


def test_local_path_and_file_uri_are_used_in_place(tmp_path):
    video = tmp_path / "a video.mp4"
    video.write_bytes(b"data")
    with fetch(str(video), LIMIT, 1.0) as path:
        assert path == video.resolve()
    with fetch(video.as_uri(), LIMIT, 1.0) as path:
        assert path == video.resolve()
    assert video.exists()


def test_url_is_downloaded_to_a_temp_file_removed_afterwards(served):
    with fetch(served.url("clip.bin"), LIMIT, 5.0) as path:
        assert path.read_bytes() == b"\x00\x01" * 5000
    assert not path.exists() and not path.parent.exists()


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("status/404", "HTTP 404"),
        ("status/403", "HTTP 403"),
        ("page", "not a video (Content-Type text/html)"),
        ("big.bin", f"source is {LIMIT + 1} bytes; the limit is {LIMIT} bytes"),
        ("unsized/big.bin", f"larger than the limit of {LIMIT} bytes"),
    ],
)
def test_bad_urls_are_permanent_with_a_reason(served, source, reason):
    with pytest.raises(BadVideo, match=re.escape(reason)), fetch(served.url(source), LIMIT, 5.0):
        pass


@pytest.mark.parametrize("source", ["status/503", "status/429"])
def test_server_trouble_is_transient(served, source):
    with pytest.raises(SourceUnavailable, match=source.rsplit("/", 1)[1]), fetch(served.url(source), LIMIT, 5.0):
        pass


def test_refused_connection_and_timeout_are_transient(served):
    refused = f"http://127.0.0.1:{free_port()}/x.mp4"
    with pytest.raises(SourceUnavailable, match="cannot connect"), fetch(refused, LIMIT, 2.0):
        pass
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match="no response within"), fetch(served.url("hang"), LIMIT, 0.5):
        pass
    assert time.monotonic() - started < 5


def test_bad_local_sources_are_permanent(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    cases = [
        (str(tmp_path / "missing.mp4"), "no such file"),
        (str(empty), r"empty file \(0 bytes\)"),
        ("s3://bucket/video.mp4", "unsupported source scheme 's3'"),
    ]
    for uri, reason in cases:
        with pytest.raises(BadVideo, match=reason), fetch(uri, LIMIT, 1.0):
            pass
    with pytest.raises(BadVideo, match="local paths are not accepted"), fetch(str(empty), LIMIT, 1.0, False):
        pass


def test_a_redirect_loop_and_unknown_compression_are_permanent_with_a_reason(served):
    with pytest.raises(BadVideo, match="too many redirects"), fetch(served.url("loop"), LIMIT, 5.0):
        pass
    with pytest.raises(BadVideo, match=r"compressed \(br\)"), fetch(served.url("brotli/clip.bin"), LIMIT, 5.0):
        pass


def test_a_gzip_body_is_decompressed_within_the_size_limit(served):
    with fetch(served.url("gzip/clip.bin"), LIMIT, 5.0) as path:
        assert path.read_bytes() == b"\x00\x01" * 5000
    with pytest.raises(BadVideo, match="once decompressed"), fetch(served.url("gzip/big.bin"), LIMIT, 5.0):
        pass


def test_a_body_shorter_than_its_content_length_is_transient(served):
    with pytest.raises(SourceUnavailable, match="closed after 5000 of the 10000 bytes"):
        with fetch(served.url("short/clip.bin"), LIMIT, 5.0):
            pass


def test_a_trickling_source_meets_the_total_deadline_and_a_cancel(served, tmp_path):
    started = time.monotonic()
    with pytest.raises(BadVideo, match="download took longer than the limit of 1 s"):
        with fetch(served.url("slow"), LIMIT, 5.0, deadline_s=1.0):
            pass
    assert time.monotonic() - started < 3
    started = time.monotonic()
    with pytest.raises(IngestCancelled, match="deleted or resubmitted"):
        with fetch(served.url("slow"), LIMIT, 5.0, cancelled=lambda: time.monotonic() - started > 0.5):
            pass
    assert time.monotonic() - started < 3


def test_a_stall_is_not_reported_as_cannot_connect(served):
    with pytest.raises(SourceUnavailable, match="no response within 0.5 s"), fetch(served.url("hang"), LIMIT, 0.5):
        pass


def test_directories_and_devices_are_not_regular_files(tmp_path):
    os.mkfifo(tmp_path / "pipe.mp4")
    for uri, kind in ((str(tmp_path), "a directory"), (str(tmp_path / "pipe.mp4"), "a device, pipe or socket"),
                      (tmp_path.as_uri(), "a directory")):
        with pytest.raises(BadVideo, match=f"not a regular file: .* is {kind}"), fetch(uri, LIMIT, 1.0):
            pass


def test_a_dead_process_download_folder_is_removed_at_start(tmp_path):
    mine = tmp_path / f"vidstrata-fetch-{os.getpid()}-abc"
    gone = tmp_path / "vidstrata-fetch-999999999-abc"
    for folder in (mine, gone):
        folder.mkdir()
        (folder / "source").write_bytes(b"partial")
    assert remove_leftovers(tmp_path) == 1
    assert mine.exists() and not gone.exists()


# -- credentials in the URL: used to fetch, never shown (issue 20) ------------------------------------------------


@pytest.fixture(scope="module")
def private(private_source):
    (private_source.root / "v.mp4").write_bytes(b"\x00\x01" * 5000)
    return private_source


def test_userinfo_is_sent_as_basic_auth_and_never_quoted(private):
    with fetch(private.url("v.mp4"), LIMIT, 5.0) as path:
        assert path.read_bytes() == b"\x00\x01" * 5000
    assert private.seen[-1] == "Basic YWxpY2U6czNjcmV0"  # alice:s3cret
    cases = [
        (private.url("missing.mp4"), BadVideo, r"^http://\*\*\*@127\.0\.0\.1:\d+/missing\.mp4: HTTP 404"),
        (private.url("v.mp4", password="wrong"), BadVideo, r"^http://\*\*\*@127\.0\.0\.1:\d+/v\.mp4: HTTP 401"),
        (private.url("status/503"), SourceUnavailable, r"^http://\*\*\*@.*: HTTP 503"),
        (private.url("status/404") + "?X-Amz-Signature=s3cret&X-Amz-Expires=60", BadVideo,
         r"\?X-Amz-Signature=\*\*\*&X-Amz-Expires=60: HTTP 404"),
        (f"http://alice:s3cret@127.0.0.1:{free_port()}/v.mp4", SourceUnavailable, r"^http://\*\*\*@.*cannot connect"),
        ("http://alice:s3cret@127.0.0.1:notaport/v.mp4", BadVideo, r"^http://\*\*\*@127\.0\.0\.1:notaport/v\.mp4: not a valid URL"),
        ("http://alice:s3cret@[::1/v.mp4", BadVideo, r"not a valid URL"),
    ]
    for uri, kind, reason in cases:
        with pytest.raises(kind, match=reason) as raised, fetch(uri, LIMIT, 5.0):
            pass
        assert "s3cret" not in str(raised.value), str(raised.value)


def test_credentials_do_not_follow_a_redirect_to_another_origin(private):
    with pytest.raises(BadVideo, match="HTTP 404"), fetch(private.url("away/v.mp4"), LIMIT, 5.0):
        pass
    assert private.seen[-1] is not None and private.elsewhere == [None]


def test_a_host_that_does_not_exist_is_permanent_and_fast():
    started = time.monotonic()
    with pytest.raises(BadVideo, match=r"^http://nosuchhost\.invalid/v\.mp4: the host nosuchhost\.invalid does not exist"):
        with fetch("http://nosuchhost.invalid/v.mp4", LIMIT, 5.0):
            pass
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(("errno", "kind", "reason"), [
    (socket.EAI_NONAME, BadVideo, "the host videos.example.com does not exist"),
    (socket.EAI_NODATA, BadVideo, "the host videos.example.com does not exist"),
    (socket.EAI_AGAIN, SourceUnavailable, "cannot resolve the host videos.example.com right now"),
    (socket.EAI_FAIL, SourceUnavailable, "cannot resolve the host videos.example.com right now"),
])
def test_no_such_domain_is_permanent_and_a_resolver_hiccup_transient(monkeypatch, errno, kind, reason):
    def resolve(host, *args, **kwargs):
        raise socket.gaierror(errno, "resolver says no")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(kind, match=f"^https://videos.example.com/v.mp4: {reason} \\(DNS: resolver says no\\)$"):
        with fetch("https://videos.example.com/v.mp4", LIMIT, 5.0):
            pass


# -- where a fetch may go (issue 22): every server below is on loopback and counts the connections it accepts -------


class _Counted(http.server.ThreadingHTTPServer):
    """Serves /v.mp4, redirects /to/<url> there, and records each connection and each Host header."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: int = socket.AF_INET) -> None:
        self.address_family = family
        self.connections = 0
        self.hosts: list[str | None] = []
        super().__init__(address, _CountedHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def verify_request(self, request, client_address) -> bool:  # noqa: ANN001 - socketserver's signature
        self.connections += 1
        return True

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str = "v.mp4") -> str:
        host = self.server_address[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/{path}"


class _CountedHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.hosts.append(self.headers.get("Host"))  # type: ignore[attr-defined]
        if self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/to/"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"\x00\x01" * 500
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _serving(host: str) -> Iterator[_Counted]:
    server = _Counted((host, 0))
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def local_server():
    yield from _serving("127.0.0.1")


@pytest.fixture
def other_server():
    """On 127.0.0.2: Linux routes all of 127/8 to lo, so this is a second address a policy can open alone."""
    yield from _serving("127.0.0.2")


def _refused(uri: str, policy: SourcePolicy) -> BadVideo:
    started = time.monotonic()
    with pytest.raises(BadVideo) as raised, policy_fetch(uri, LIMIT, 5.0, policy=policy):
        pass
    assert time.monotonic() - started < 1, "a refusal is immediate: nothing to wait for"
    assert not isinstance(raised.value, SourceUnavailable)  # permanent: FAILED at once, never retried
    return raised.value


def test_loopback_is_refused_by_default_and_nothing_reaches_it(local_server):
    closed = f"http://127.0.0.1:{free_port()}/v.mp4"
    listening, nothing = _refused(local_server.url(), SourcePolicy()), _refused(closed, SourcePolicy())
    assert local_server.connections == 0
    # One reason, whatever is there: a listening port and a closed one cannot be told apart (never connected to).
    assert isinstance(listening, DestinationRefused) and isinstance(nothing, DestinationRefused)
    assert str(listening) == f"{local_server.url()}: {REFUSED}" and str(nothing) == f"{closed}: {REFUSED}"


def test_an_allow_listed_network_opens_only_itself(local_server, other_server):
    policy = SourcePolicy.of(allow_networks=["127.0.0.2/32"])
    with policy_fetch(other_server.url(), LIMIT, 5.0, policy=policy) as path:
        assert path.read_bytes() == b"\x00\x01" * 500
    assert other_server.connections == 1
    assert str(_refused(local_server.url(), policy)) == f"{local_server.url()}: {REFUSED}"
    assert local_server.connections == 0


def test_every_redirect_hop_is_checked(local_server, other_server):
    policy = SourcePolicy.of(allow_networks=["127.0.0.2/32"])
    for target in (local_server.url(), f"http://localhost:{local_server.port}/v.mp4", "file:///etc/passwd",
                   f"ftp://127.0.0.2:{other_server.port}/v.mp4"):
        uri = other_server.url(f"to/{target}")
        assert str(_refused(uri, policy)) == f"{uri}: {REFUSED}"
    assert local_server.connections == 0
    assert other_server.connections == 4  # the redirects themselves, and nothing after them
    # A redirect within what the policy opens is followed.
    with policy_fetch(other_server.url(f"to/{other_server.url()}"), LIMIT, 5.0, policy=policy) as path:
        assert path.stat().st_size == 1000


def test_a_name_that_resolves_to_loopback_is_refused(local_server):
    uri = f"http://localhost:{local_server.port}/v.mp4"
    assert str(_refused(uri, SourcePolicy.of(allow_networks=["127.0.0.2/32"]))) == f"{uri}: {REFUSED}"
    assert local_server.connections == 0
    # The same name, allow-listed by name, is fetched (with its own name as Host).
    with policy_fetch(uri, LIMIT, 5.0, policy=SourcePolicy.of(allow_hosts=["localhost"])) as path:
        assert path.stat().st_size == 1000
    assert local_server.hosts == [f"localhost:{local_server.port}"]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_other_spellings_of_loopback_are_refused_at_once(local_server):
    port = local_server.port
    spellings = [f"http://{host}:{port}/v.mp4" for host in (
        "2130706433", "0x7f000001", "017700000001", "0x7f.1", "127.1", "0", "0.0.0.0", "localhost.", "LOCALHOST",
        "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::127.0.0.1]",
    )]
    for uri in spellings:
        assert str(_refused(uri, SourcePolicy())) == f"{uri}: {REFUSED}", uri
    assert local_server.connections == 0
    if _ipv6_loopback():
        v6 = _Counted(("::1", 0), socket.AF_INET6)
        try:
            for uri in (f"http://[::1]:{v6.port}/v.mp4", f"http://[0:0:0:0:0:0:0:1]:{v6.port}/v.mp4",
                        f"http://[::]:{v6.port}/v.mp4"):
                assert str(_refused(uri, SourcePolicy())) == f"{uri}: {REFUSED}", uri
            assert v6.connections == 0
        finally:
            v6.shutdown()
            v6.server_close()


def test_the_address_checked_is_the_address_connected_to(monkeypatch, local_server, other_server):
    """DNS rebinding: a name that answers an allowed address, then loopback. Resolved once per hop, no second ask."""
    real = socket.getaddrinfo
    answers = iter(["127.0.0.2", "127.0.0.1", "127.0.0.1"])
    asked = []

    def rebinding(host, port, *args, **kwargs):
        if host != "videos.example":
            return real(host, port, *args, **kwargs)
        asked.append(host)
        return real(next(answers), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    policy = SourcePolicy.of(allow_networks=["127.0.0.2/32"])
    with policy_fetch(f"http://videos.example:{other_server.port}/v.mp4", LIMIT, 5.0, policy=policy) as path:
        assert path.stat().st_size == 1000
    assert asked == ["videos.example"] and other_server.hosts == [f"videos.example:{other_server.port}"]
    assert local_server.connections == 0


def test_https_is_verified_against_the_name_while_connecting_to_the_checked_address(tmp_path, monkeypatch):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    server = _Counted(("127.0.0.1", 0))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the default context trusts this test's certificate only
    try:
        by_name = SourcePolicy.of(allow_hosts=["localhost"])
        with policy_fetch(f"https://localhost:{server.port}/v.mp4", LIMIT, 5.0, policy=by_name) as path:
            assert path.stat().st_size == 1000
        assert server.hosts == [f"localhost:{server.port}"]
        # Reached by its address, the certificate (for "localhost") does not match: verification is on.
        by_address = SourcePolicy.of(allow_networks=["127.0.0.1/32"])
        with pytest.raises(SourceUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            with policy_fetch(f"https://127.0.0.1:{server.port}/v.mp4", LIMIT, 5.0, policy=by_address):
                pass
    finally:
        server.shutdown()
        server.server_close()


# -- local files only under the roots (issue 22) ---------------------------------------------------------------


def test_local_files_are_read_only_under_the_roots(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "v.mp4").write_bytes(b"inside")
    (outside / "v.mp4").write_bytes(b"outside")
    (root / "escape.mp4").symlink_to(outside / "v.mp4")
    (root / "escape").symlink_to(outside)
    (root / "alias.mp4").symlink_to(root / "sub" / "v.mp4")
    (tmp_path / "linked-root").symlink_to(root)
    policy = SourcePolicy.of(local_roots=[root])
    for uri in (str(root / "sub" / "v.mp4"), (root / "sub" / "v.mp4").as_uri(), str(root / "alias.mp4"),
                str(root / "sub" / ".." / "sub" / "v.mp4"), str(tmp_path / "linked-root" / "sub" / "v.mp4")):
        with policy_fetch(uri, LIMIT, 1.0, policy=policy) as path:
            assert path.read_bytes() == b"inside", uri
    with policy_fetch(str(root / "sub" / "v.mp4"), LIMIT, 1.0,
                      policy=SourcePolicy.of(local_roots=[tmp_path / "linked-root"])) as path:
        assert path.read_bytes() == b"inside"
    refused = [
        str(outside / "v.mp4"), (outside / "v.mp4").as_uri(), str(outside / "missing.mp4"),
        str(root / "escape.mp4"), str(root / "escape" / "v.mp4"), str(root / ".." / "outside" / "v.mp4"),
        str(root / "sub" / ".." / ".." / "outside" / "missing.mp4"), "/etc/passwd", "/dev/null", "/proc/self/environ",
        "relative/v.mp4", str(root) + "-sibling/v.mp4", "/tmp/\x00.mp4",
    ]
    reasons = set()
    for uri in refused:
        with pytest.raises(BadVideo) as raised, policy_fetch(uri, LIMIT, 1.0, policy=policy):
            pass
        message = str(raised.value)
        assert message.startswith(f"{uri}: "), message
        reasons.add(message.removeprefix(f"{uri}: "))
    assert reasons == {LOCAL_REFUSED}  # one reason: whether the path exists, or where it leads, never shows


def test_no_roots_means_no_local_files(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"data")
    for uri in (str(video), video.as_uri(), str(tmp_path / "missing.mp4")):
        with pytest.raises(BadVideo, match="^local paths are not accepted by this deployment"):
            with policy_fetch(uri, LIMIT, 1.0, policy=SourcePolicy()):
                pass
