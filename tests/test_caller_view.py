"""Nothing secret or internal in what a caller sees (issue 20), through the real gateway, worker, Redis, Triton and
Milvus Lite: credentials in a source URL fetch the video but never show in GetVideo, the logs or /metrics; a host
that does not exist is FAILED at once; garbage bytes and an oversized image are INVALID_ARGUMENT with a short
message.
"""

from __future__ import annotations

import time

import grpc
import pytest

from vidstrata.media.synthetic import write_scene_video
from tests.fixtures.gateway import start_gateway
from tests.photos import load_photo
from vidstrata.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.e2e

SECRETS = ("s3cret", "feedface")


@pytest.fixture(scope="module")
def stack(ingest_stack, triton, milvus_uri, private_source, tmp_path_factory):
    """One worker and one gateway on the module's Redis database and collections, and a private video source."""
    write_scene_video(private_source.root / "v.mp4", [load_photo("coffee"), load_photo("rocket")], [1.5, 1.5], fps=10)
    worker = ingest_stack.start_worker()
    gateway = start_gateway(tmp_path_factory.mktemp("gw"), triton.grpc_url, milvus_uri, ingest_stack.redis_url,
                            collection_prefix=ingest_stack.env["VIDSTRATA_MILVUS_COLLECTION_PREFIX"])
    channel = grpc.insecure_channel(gateway.address)
    yield ingest_stack, worker, gateway, channel
    channel.close()
    gateway.stop()


def _shown(video: search_pb2.Video) -> str:
    return " | ".join((video.uri, video.stage, video.reason))


def _watch(stub, video_id: str, until, timeout_s: float = 60.0) -> tuple[search_pb2.Video, list[str]]:
    """GetVideo until `until(video)`; every uri, stage and reason seen on the way."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        video = stub.GetVideo(search_pb2.GetVideoRequest(video_id=video_id), timeout=5)
        seen.append(_shown(video))
        if until(video):
            return video, seen
        time.sleep(0.05)
    pytest.fail(f"{video_id}: {seen[-1]} after {timeout_s} s")


def _finished(video: search_pb2.Video) -> bool:
    return video.status in (search_pb2.Video.READY, search_pb2.Video.FAILED)


def test_credentials_fetch_the_video_and_never_show(stack, private_source):
    ingest_stack, worker, gateway, channel = stack
    stub = search_pb2_grpc.VideoSearchStub(channel)
    submissions = {
        "private": private_source.url("v.mp4"),  # READY: the worker fetched with the real credentials
        "presigned": private_source.url("status/404") + "?X-Amz-Signature=feedface&X-Amz-Expires=60",  # FAILED
        "busy": private_source.url("status/503"),  # retried: the stage quotes the URL
    }
    for video_id, uri in submissions.items():
        stub.SubmitVideo(search_pb2.SubmitVideoRequest(video_id=video_id, uri=uri), timeout=10)
    ready, seen = _watch(stub, "private", _finished)
    assert ready.status == search_pb2.Video.READY, _shown(ready)
    assert ready.uri == f"http://***@127.0.0.1:{private_source.port}/v.mp4"
    failed, seen_failed = _watch(stub, "presigned", _finished)
    assert failed.status == search_pb2.Video.FAILED
    assert failed.reason.startswith(f"http://***@127.0.0.1:{private_source.port}/status/404"
                                    "?X-Amz-Signature=***&X-Amz-Expires=60: HTTP 404"), failed.reason
    busy, seen_busy = _watch(stub, "busy", lambda v: "retry" in v.stage)
    assert f"http://***@127.0.0.1:{private_source.port}/status/503: HTTP 503" in busy.stage, busy.stage
    stub.DeleteVideo(search_pb2.DeleteVideoRequest(video_id="busy"), timeout=10)
    for text in seen + seen_failed + seen_busy:
        assert not any(secret in text for secret in SECRETS), text
    # nor in Redis's status record, the logs or the metrics; the task message itself keeps the real URI
    record = ingest_stack.status.get("private")
    assert record is not None and "s3cret" not in record.uri
    time.sleep(1)  # the retry's log lines
    for text in (worker.process.log_path.read_text(), gateway.process.log_path.read_text(), worker.metrics(),
                 gateway.metrics()):
        assert not any(secret in text for secret in SECRETS)
    assert "***@127.0.0.1" in worker.process.log_path.read_text()  # the log does name the source, redacted


def test_a_host_that_does_not_exist_is_failed_at_once(stack):
    _, _, _, channel = stack
    stub = search_pb2_grpc.VideoSearchStub(channel)
    started = time.monotonic()
    stub.SubmitVideo(search_pb2.SubmitVideoRequest(video_id="nohost", uri="http://nosuchhost.invalid/v.mp4"), timeout=10)
    video, seen = _watch(stub, "nohost", _finished, timeout_s=30)
    assert video.status == search_pb2.Video.FAILED and time.monotonic() - started < 10
    assert video.reason == ("http://nosuchhost.invalid/v.mp4: the host nosuchhost.invalid does not exist "
                            "(names under .invalid never resolve, RFC 6761)")
    assert not any("retry" in text for text in seen), seen


def test_garbage_and_an_oversized_image_are_invalid_argument(stack):
    _, _, gateway, channel = stack
    garbage = channel.unary_unary("/vidstrata.v1.VideoSearch/Search")  # identity serializers: raw bytes
    with pytest.raises(grpc.RpcError) as raised:
        garbage(b"\xff\xff\xff\xff garbage", timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == ("the request is not a valid vidstrata.v1.SearchRequest message "
                                      "(12 bytes that do not parse)")
    stub = search_pb2_grpc.VideoSearchStub(channel)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Search(search_pb2.SearchRequest(image=b"\x89PNG" + b"\0" * (int(9.4 * 2**20) - 4)), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "image is 9.4 MiB; the limit is 8 MiB (VIDSTRATA_GATEWAY_MAX_IMAGE_BYTES)"
    log = gateway.process.log_path.read_text()
    assert "Traceback" not in log and "DecodeError" not in log
    assert log.count("refused a malformed request to /vidstrata.v1.VideoSearch/Search") == 1
