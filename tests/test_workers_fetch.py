"""Fetching sources: local files as they are, HTTP downloads streamed with a size limit, failures classified."""

from __future__ import annotations

import os
import re
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
