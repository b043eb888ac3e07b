"""What the CLI sends and prints for the search and list flags of issue 23: the real client and a real gRPC server that
records each request and answers a fixed response (the gateway's answers have tests of their own)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from typer.testing import CliRunner

from vidstrata.client.commands import app
from vidstrata.v1 import search_pb2, search_pb2_grpc

Video = search_pb2.Video


class Recording(search_pb2_grpc.VideoSearchServicer):
    """Keeps every request; Search answers two hits with moments (or two moments) and a next page token."""

    def __init__(self) -> None:
        self.requests: list[object] = []

    def Search(self, request, context):  # noqa: N802 - gRPC's naming
        self.requests.append(request)
        moments = [search_pb2.Moment(video_id="cafe", start_s=2.0, end_s=6.0, score=0.81, level="clip",
                                     confidence=search_pb2.HIGH),
                   search_pb2.Moment(video_id="cafe", start_s=30.0, end_s=33.5, score=0.52, level="speech_sentence",
                                     snippet="now the milk", confidence=search_pb2.MEDIUM)]
        if request.group_by == search_pb2.SearchRequest.MOMENT:
            return search_pb2.SearchResponse(moments=moments, next_page_token="tok2")
        hit = search_pb2.SearchHit(video_id="cafe", score=0.9, moments=moments)
        return search_pb2.SearchResponse(hits=[hit], next_page_token="tok2")

    def ListVideos(self, request, context):  # noqa: N802
        self.requests.append(request)
        pages = {"": (["a", "b"], "t1"), "t1": (["c"], "")}
        ids, token = pages[request.page_token]
        return search_pb2.ListVideosResponse(
            videos=[Video(video_id=v, status=Video.READY, clip_count=2, duration_s=4.0) for v in ids],
            next_page_token=token)


@pytest.fixture
def server() -> Iterator[tuple[Recording, str]]:
    recording = Recording()
    grpc_server = grpc.server(ThreadPoolExecutor(max_workers=2))
    search_pb2_grpc.add_VideoSearchServicer_to_server(recording, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    yield recording, f"127.0.0.1:{port}"
    grpc_server.stop(None)


def _run(address: str, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--gateway", address])
    assert result.exit_code == 0, result.output
    return result.output


def test_search_flags_send_what_they_say_and_moments_are_printed(server):
    recording, address = server
    out = _run(address, "search", "latte art", "--page-size", "5", "--page-token", "tok1", "--in", "cafe", "--in", "bar",
               "--moments", "4", "--min-confidence", "medium")
    request = recording.requests[-1]
    assert (request.query, request.page_size, request.page_token, list(request.video_ids)) == (
        "latte art", 5, "tok1", ["cafe", "bar"])
    assert request.moments_per_video == 4 and request.min_confidence == search_pb2.MEDIUM
    assert request.group_by == search_pb2.SearchRequest.VIDEO
    assert "2.0–6.0 s  clip  0.810  high" in out and '30.0–33.5 s  speech_sentence  0.520  medium  "now the milk"' in out
    assert "next page: --page-token tok2" in out


def test_like_and_group_by_moment(server):
    recording, address = server
    out = _run(address, "search", "--like", "cafe", "--group-by", "moment")
    request = recording.requests[-1]
    assert request.like_video_id == "cafe" and not request.query and request.group_by == search_pb2.SearchRequest.MOMENT
    assert not request.HasField("page_size") and not request.HasField("moments_per_video")
    assert "speech_sentence" in out and "now the milk" in out and "medium" in out
    result = CliRunner().invoke(app, ["search", "a dog", "--like", "cafe", "--gateway", address])
    assert result.exit_code == 1 and "give one of a sentence" in result.output


def test_list_sends_its_filter_and_status_and_all_follows_the_tokens(server):
    recording, address = server
    out = _run(address, "list", "--status", "ready", "--filter", 'meta.lang == "en"', "--page-size", "2")
    request = recording.requests[-1]
    assert (request.status, request.filter, request.page_size, request.page_token) == (
        Video.READY, 'meta.lang == "en"', 2, "")
    assert "next page: --page-token t1" in out and " c " not in out
    out = _run(address, "list", "--all")
    assert [r.page_token for r in recording.requests[-2:]] == ["", "t1"]
    assert all(f" {v} " in out for v in "abc") and "next page" not in out
