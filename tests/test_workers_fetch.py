"""Fetching sources: local files as they are, HTTP downloads streamed with a size limit, failures classified."""

from __future__ import annotations

import os
import re
import socket
import time

import pytest

from vidstrata.stack.process import free_port
from workers.errors import BadVideo, IngestCancelled, SourceUnavailable
from workers.fetch import fetch, remove_leftovers

LIMIT = 1_000_000


@pytest.fixture(scope="module")
def served(media_server):
    (media_server.root / "clip.bin").write_bytes(b"\x00\x01" * 5000)
    (media_server.root / "big.bin").write_bytes(b"x" * (LIMIT + 1))
    return media_server


def test_local_path_and_file_uri_are_used_in_place(tmp_path):
    video = tmp_path / "a video.mp4"
    video.write_bytes(b"data")
    with fetch(str(video), LIMIT, 1.0) as path:
        assert path == video
    with fetch(video.as_uri(), LIMIT, 1.0) as path:
        assert path == video
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
    for uri, kind in ((str(tmp_path), "a directory"), ("/dev/null", "a device"), (tmp_path.as_uri(), "a directory")):
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
