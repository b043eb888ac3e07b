"""The gRPC layer over in-memory backends: messages, status codes, deadlines, auth, TLS, health, reflection, metrics.

A real grpc.aio server on loopback runs in a background event loop; only Triton, Milvus and Redis are fakes.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from vidstrata.gateway.app import Gateway, start
from vidstrata.gateway.messages import MAX_STATUS_MESSAGE_BYTES, status_message
from vidstrata.gateway.service import PROBE_VIDEO_ID, SearchService
from vidstrata.gateway.settings import GatewaySettings
from tests.fixtures.gateway import FakeBackends, scene_video
from vidstrata.stack.process import free_port
from vidstrata.v1 import search_pb2, search_pb2_grpc

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


class Running:
    """A gateway started in its own event loop thread, with a channel to it."""

    def __init__(self, fakes: FakeBackends, **settings: object) -> None:
        self.settings = GatewaySettings(host="127.0.0.1", port=free_port(), metrics_port=free_port(),
                                        probe_interval_s=0.05, **settings)
        self.service = SearchService(self.settings, lambda: fakes.encoder, fakes.index, fakes.status, fakes.queue)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.gateway: Gateway = asyncio.run_coroutine_threadsafe(start(self.settings, self.service), self.loop).result(10)
        self.address = f"127.0.0.1:{self.gateway.port}"

    def channel(self, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
        if credentials is None:
            return grpc.insecure_channel(self.address)
        return grpc.secure_channel(self.address, credentials, [("grpc.ssl_target_name_override", "localhost")])

    def health(self, channel: grpc.Channel | None = None, service: str = "") -> int:
        channel = channel or self.channel()
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status

    def wait_health(self, status: int, timeout_s: float = 5.0, channel: grpc.Channel | None = None) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.health(channel) == status:
                return time.monotonic() - started
            time.sleep(0.02)
        raise TimeoutError(f"health never became {status}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.settings.metrics_port}/metrics", timeout=5) as reply:
            return reply.read().decode()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.stop(grace_s=0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def library(fakes: FakeBackends) -> FakeBackends:
    fakes.index.add(*scene_video("trip", ["a boat", "a rocket", "a cup of coffee"], metadata={"lang": "en"}))
    fakes.index.add(*scene_video("pets", ["a cat", "a dog"]))
    return fakes


@pytest.fixture
def running(library: FakeBackends) -> Iterator[Running]:
    server = Running(library)
    server.wait_health(SERVING)
    yield server
    server.stop()


def _stub(channel: grpc.Channel) -> search_pb2_grpc.VideoSearchStub:
    return search_pb2_grpc.VideoSearchStub(channel)


def _code(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call(*args, **kwargs)
    return raised.value.code(), raised.value.details()


def test_search_converts_every_field(running):
    reply = _stub(running.channel()).Search(search_pb2.SearchRequest(query="a rocket, then coffee", top_k=1))
    assert list(reply.phrases) == ["a rocket", "coffee"]
    assert [h.video_id for h in reply.hits] == ["trip"]
    hit = reply.hits[0]
    assert hit.best_clip.end_s > hit.best_clip.start_s >= 4.0 and hit.best_clip.score > 0
    assert hit.levels.clip_phrase > 0.9 and not hit.levels.HasField("frame_word")
    assert reply.fusion_method == search_pb2.Fusion.WEIGHTED and reply.candidates == 2
    t = reply.timings
    assert t.total_ms >= t.encode_ms > 0 and t.ann_videos_ms > 0 and t.ann_clips_ms > 0 and t.rescore_ms >= t.rescore_fetch_ms


def test_search_with_rrf_and_request_weights(running):
    fusion = search_pb2.Fusion(method=search_pb2.Fusion.RRF, weights={"clip_phrase": 1.0})
    reply = _stub(running.channel()).Search(search_pb2.SearchRequest(query="a dog", fusion=fusion))
    assert reply.fusion_method == search_pb2.Fusion.RRF
    assert reply.hits[0].video_id == "pets" and reply.hits[0].score == pytest.approx(1 / 61)


@pytest.mark.parametrize("request_fields, message", [
    ({"query": ""}, "query is empty"),
    ({"query": "x" * 3000}, "query is 3000 bytes"),
    ({"query": "cat", "top_k": 0}, "top_k must be in"),
    ({"query": "cat", "top_k": 1001}, "top_k must be in"),
    ({"query": "cat", "filter": "lang = 'en'"}, "invalid filter at position"),
    ({"query": "cat", "fusion": search_pb2.Fusion(weights={"frame_word": 1.0})}, "unknown fusion levels"),
    ({"query": "cat", "fusion": search_pb2.Fusion(method=7)}, "unknown fusion method 7"),
])
def test_bad_searches_are_invalid_argument_and_never_reach_a_backend(running, library, request_fields, message):
    code, details = _code(_stub(running.channel()).Search, search_pb2.SearchRequest(**request_fields))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message in details
    assert [arg for _, arg in library.index.calls] == [[PROBE_VIDEO_ID]] * len(library.index.calls)  # probes only
    assert library.encoder.texts == []


def test_video_lifecycle_and_not_found(running, library):
    stub = _stub(running.channel())
    submitted = stub.SubmitVideo(search_pb2.SubmitVideoRequest(uri="/videos/new.mp4", metadata={"lang": "de"}))
    video = stub.GetVideo(search_pb2.GetVideoRequest(video_id=submitted.video_id))
    assert video.status == search_pb2.Video.PENDING and video.task_id == submitted.task_id
    assert dict(video.metadata) == {"lang": "de"} and video.submitted_at.seconds > 0
    indexed = stub.GetVideo(search_pb2.GetVideoRequest(video_id="trip"))
    assert (indexed.status, indexed.clip_count, indexed.duration_s) == (search_pb2.Video.READY, 3, 12.0)
    assert not indexed.HasField("submitted_at")
    stats = stub.GetStats(search_pb2.GetStatsRequest())
    assert stats.queue_length == 1
    assert [(v.channel, v.model_version, v.videos) for v in stats.versions] == [("visual", "unversioned", stats.videos)]
    stub.DeleteVideo(search_pb2.DeleteVideoRequest(video_id="trip"))
    for call, request in ((stub.GetVideo, search_pb2.GetVideoRequest(video_id="trip")),
                          (stub.DeleteVideo, search_pb2.DeleteVideoRequest(video_id="trip"))):
        assert _code(call, request) == (grpc.StatusCode.NOT_FOUND, "video 'trip' does not exist")
    code, details = _code(stub.SubmitVideo, search_pb2.SubmitVideoRequest(uri="ftp://x/a.mp4"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "http(s) URL" in details
    # Rejected values are quoted shortened: a 20,000-character one overflowed gRPC's 16 KiB status trailer.
    for call, request in ((stub.GetVideo, search_pb2.GetVideoRequest(video_id="x" * 20_000)),
                          (stub.SubmitVideo, search_pb2.SubmitVideoRequest(uri="/videos/a.mp4", metadata={"k" * 20_000: "v"}))):
        code, details = _code(call, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "(20000 characters)" in details and len(details) < 200


def test_a_status_message_is_cut_to_fit_the_trailer():
    long = "é" * 10_000  # 20,000 bytes of UTF-8, 60,000 characters percent-encoded
    sent = status_message(long)
    assert len(sent.encode("utf-8")) <= MAX_STATUS_MESSAGE_BYTES and sent.endswith("... (20000 bytes in all)")
    assert sent.startswith("é" * 100) and status_message("short") == "short"


def test_the_client_deadline_is_honoured(running, library):
    library.encoder.delay_s = 1.0
    started = time.monotonic()
    code, _ = _code(_stub(running.channel()).Search, search_pb2.SearchRequest(query="cat"), timeout=0.2)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - started < 0.5


def test_a_dead_dependency_turns_health_off_fails_fast_and_recovers(running, library):
    library.encoder.up = False
    running.wait_health(NOT_SERVING)
    assert running.health(service="vidstrata.v1.VideoSearch") == NOT_SERVING
    started = time.monotonic()
    code, details = _code(_stub(running.channel()).Search, search_pb2.SearchRequest(query="cat"))
    assert code == grpc.StatusCode.UNAVAILABLE and "Triton" in details and time.monotonic() - started < 0.1
    library.encoder.up = True
    running.wait_health(SERVING)
    assert _stub(running.channel()).Search(search_pb2.SearchRequest(query="cat")).hits


def test_reflection_lists_the_services(running):
    services = ProtoReflectionDescriptorDatabase(running.channel()).get_services()
    assert {"vidstrata.v1.VideoSearch", "grpc.health.v1.Health"} <= set(services)


def test_metrics_count_requests_by_code_and_time_stages(running):
    stub = _stub(running.channel())
    before = running.metrics()
    stub.Search(search_pb2.SearchRequest(query="coffee"))
    _code(stub.Search, search_pb2.SearchRequest(query=""))

    def value(text: str, series: str) -> float:
        line = next((ln for ln in text.splitlines() if ln.startswith(series + " ")), None)
        return float(line.split()[-1]) if line else 0.0

    expected = (('vidstrata_gateway_requests_total{code="OK",rpc="Search",tenant="_default"}', 1),
                ('vidstrata_gateway_requests_total{code="INVALID_ARGUMENT",rpc="Search",tenant="_default"}', 1),
                ('vidstrata_gateway_request_duration_seconds_count{code="OK",rpc="Search",tenant="_default"}', 1),
                ('vidstrata_gateway_stage_duration_seconds_count{stage="rescore"}', 1))
    # The interceptor counts a call once its reply is on the wire, so a client may read /metrics a moment early.
    deadline = time.monotonic() + 5
    after = running.metrics()
    while time.monotonic() < deadline and any(value(after, s) - value(before, s) != d for s, d in expected):
        time.sleep(0.05)
        after = running.metrics()
    for series, delta in expected:
        assert value(after, series) - value(before, series) == delta, series
    assert 'vidstrata_gateway_inflight_requests{rpc="Search"} 0.0' in after
    assert "vidstrata_ingest_queue_length 0.0" in after


def test_auth_rejects_missing_and_wrong_tokens_and_leaves_health_open(library):
    server = Running(library, auth_token="s3cret")
    try:
        server.wait_health(SERVING)
        stub = _stub(server.channel())
        request = search_pb2.SearchRequest(query="coffee")
        for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", "s3cret"),)):
            code, details = _code(stub.Search, request, metadata=metadata)
            assert code == grpc.StatusCode.UNAUTHENTICATED and "bearer token" in details
        assert stub.Search(request, metadata=(("authorization", "Bearer s3cret"),)).hits[0].video_id == "trip"
        assert 'vidstrata_gateway_requests_total{code="UNAUTHENTICATED",rpc="Search",tenant="_default"}' in server.metrics()
        # a server stream (WatchVideo) goes through auth and metrics as well
        watch = search_pb2.WatchVideoRequest(video_id="trip")
        code, details = _code(lambda r, **kw: list(stub.WatchVideo(r, **kw)), watch)
        assert code == grpc.StatusCode.UNAUTHENTICATED and "bearer token" in details
        (video,) = stub.WatchVideo(watch, metadata=(("authorization", "Bearer s3cret"),), timeout=10)
        assert (video.video_id, video.status) == ("trip", search_pb2.Video.READY)  # indexed: its state, then the end
        assert 'vidstrata_gateway_requests_total{code="OK",rpc="WatchVideo",tenant="_default"} 1.0' in server.metrics()
    finally:
        server.stop()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = folder / "tls.key", folder / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return key, cert


def test_tls_serves_the_api_and_a_plaintext_health_port(library, tmp_path):
    key, cert = _self_signed(tmp_path)
    health_port = free_port()
    server = Running(library, tls_cert_file=cert, tls_key_file=key, health_port=health_port)
    try:
        plaintext_health = grpc.insecure_channel(f"127.0.0.1:{health_port}")
        server.wait_health(SERVING, channel=plaintext_health)
        secure = server.channel(grpc.ssl_channel_credentials(root_certificates=cert.read_bytes()))
        assert _stub(secure).Search(search_pb2.SearchRequest(query="coffee")).hits[0].video_id == "trip"
        code, _ = _code(_stub(server.channel()).Search, search_pb2.SearchRequest(query="coffee"), timeout=2)
        assert code == grpc.StatusCode.UNAVAILABLE  # a plaintext client cannot talk to the TLS port
        code, _ = _code(_stub(plaintext_health).Search, search_pb2.SearchRequest(query="coffee"), timeout=2)
        assert code == grpc.StatusCode.UNIMPLEMENTED  # the health port serves nothing else
    finally:
        server.stop()


# -- nothing secret or internal in what a caller sees (issue 20) ------------------------------------------------

GARBAGE = b"\xff\xff\xff\xff garbage \x00\x01"  # field 0 with wire type 7: no protobuf parser takes it


@pytest.mark.parametrize("method", ["/vidstrata.v1.VideoSearch/Search", "/vidstrata.v1.VideoSearch/SubmitVideo",
                                    "/vidstrata.v1.VideoSearch/GetVideo", "/vidstrata.v1.VideoSearch/DeleteVideo",
                                    "/vidstrata.v1.VideoSearch/GetStats", "/grpc.health.v1.Health/Check"])
def test_garbage_bytes_are_invalid_argument_without_internals(running, library, caplog, method):
    call = running.channel().unary_unary(method)  # no serializers: the bytes go out as they are
    with caplog.at_level("WARNING"):
        code, details = _code(call, GARBAGE, timeout=5)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid" in details and "(15 bytes that do not parse)" in details
    for internal in ("DecodeError", "class", "Error parsing", "google.protobuf", "Traceback", "Unexpected"):
        assert internal not in details
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(":")[0] for r in records] == [f"refused a malformed request to {method} from ipv4"]
    assert not any(r.exc_info or r.exc_text for r in records)
    assert library.encoder.texts == [] and all(name == "get_videos" for name, _ in library.index.calls)


def test_garbage_is_counted_as_invalid_argument_and_unauthenticated_garbage_stays_unauthenticated(library):
    server = Running(library, auth_token="tok")
    try:
        server.wait_health(SERVING)
        series = 'vidstrata_gateway_requests_total{code="INVALID_ARGUMENT",rpc="Search",tenant="_default"} '

        def counted() -> float:
            return float(next((line for line in server.metrics().splitlines() if line.startswith(series)),
                              series + "0").split()[-1])

        before = counted()
        call = server.channel().unary_unary("/vidstrata.v1.VideoSearch/Search")
        assert _code(call, GARBAGE, timeout=5)[0] == grpc.StatusCode.UNAUTHENTICATED
        code, _ = _code(call, GARBAGE, timeout=5, metadata=(("authorization", "Bearer tok"),))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        deadline = time.monotonic() + 5
        while counted() != before + 1:  # counted once its reply is on the wire
            assert time.monotonic() < deadline, (before, counted())
            time.sleep(0.05)
    finally:
        server.stop()


@pytest.mark.parametrize(("size", "shown"), [(int(9.4 * 2**20), "image is 9.4 MiB"),
                                             (30 * 2**20, "image is 30 MiB"),
                                             (8 * 2**20 + 1, "image is 8388609 bytes")])
def test_an_image_over_the_limit_is_invalid_argument_naming_the_limit(running, library, size, shown):
    # 9.4 MiB was past the old transport cap (limit + 1 MiB): gRPC answered RESOURCE_EXHAUSTED before the servicer
    code, details = _code(_stub(running.channel()).Search, search_pb2.SearchRequest(image=b"\x89PNG" + b"\0" * (size - 4)),
                          timeout=30)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    limit = "8388608 bytes" if size == 8 * 2**20 + 1 else "8 MiB"
    assert details == f"{shown}; the limit is {limit} (VIDSTRATA_GATEWAY_MAX_IMAGE_BYTES)"
    assert library.encoder.texts == []


def test_past_the_transport_cap_grpc_itself_refuses(library):
    server = Running(library, max_image_bytes=1 << 20, max_request_bytes=4 << 20)
    try:
        server.wait_health(SERVING)
        stub = _stub(server.channel())
        code, details = _code(stub.Search, search_pb2.SearchRequest(image=b"\0" * (3 << 20)), timeout=10)
        assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT,
                                   "image is 3 MiB; the limit is 1 MiB (VIDSTRATA_GATEWAY_MAX_IMAGE_BYTES)")
        code, _ = _code(stub.Search, search_pb2.SearchRequest(image=b"\0" * (5 << 20)), timeout=10)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop()


def test_the_transport_cap_never_refuses_a_valid_search():
    settings = GatewaySettings(max_image_bytes=100 << 20)
    assert settings.max_request_bytes == 32 << 20 and settings.receive_limit_bytes > (100 << 20) + 2048


def test_credentials_in_a_source_url_are_never_shown(running, library):
    stub = _stub(running.channel())
    uri = "http://alice:s3cret@127.0.0.1:8080/v.mp4?X-Amz-Signature=feedface&X-Amz-Expires=60"
    submitted = stub.SubmitVideo(search_pb2.SubmitVideoRequest(uri=uri))
    assert library.queue.sent[-1][2] == uri  # the task keeps the real URI: the worker fetches with it
    video = stub.GetVideo(search_pb2.GetVideoRequest(video_id=submitted.video_id))
    assert video.uri == "http://***@127.0.0.1:8080/v.mp4?X-Amz-Signature=***&X-Amz-Expires=60"
    # a record written before redaction, or a reason that quotes the URL, is redacted on the way out as well
    library.status.mark_pending("old", "t", uri, {})
    library.status.mark_failed("old", f"{uri}: HTTP 404 Not Found")
    old = stub.GetVideo(search_pb2.GetVideoRequest(video_id="old"))
    for text in (old.uri, old.reason, str(video)):
        assert "s3cret" not in text and "feedface" not in text
    assert old.reason == "http://***@127.0.0.1:8080/v.mp4?X-Amz-Signature=***&X-Amz-Expires=60: HTTP 404 Not Found"
    code, details = _code(stub.SubmitVideo, search_pb2.SubmitVideoRequest(uri="ftp://alice:s3cret@host/v.mp4"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "ftp://***@host/v.mp4" in details and "s3cret" not in details
