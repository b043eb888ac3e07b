"""The gateway end to end: real Triton, Milvus Lite and Redis, the gateway as a subprocess, a real gRPC channel.

Videos are generated from real photos (scikit-image), one photo per scene, so each video has several
distinct events; their frames are encoded by Triton and aggregated into clips exactly as ingest does,
then written with VideoIndex (the Celery path is the workers' tests). A query naming one event must find
its video, and best_clip must point at that event's span.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import redis
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from vidstrata.spec.aggregation import SegmentationParams, aggregate_video
from vidstrata.gateway.ingest import ENQUEUED_AT_HEADER
from vidstrata.index import ClipRecord, IndexSettings, VideoIndex, VideoRecord
from vidstrata.jobs.contract import INGEST_QUEUE, IngestPayload
from vidstrata.stack.milvus import start_milvus_lite
from vidstrata.spec.preprocess import center_crop_square
from vidstrata.inference.triton_encoder import TritonEncoder
from tests.fixtures.gateway import GatewayProcess, start_gateway
from tests.photos import CAPTIONS, load_photo
from vidstrata.stack.process import free_port
from vidstrata.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.e2e

SECONDS_PER_SCENE = 4.0
FPS = 2.0
# video id -> (scenes, metadata); every scene is a photo of tests/photos.py, used by one video only.
# Photos whose caption retrieves them first among these, by a margin (astronaut ties with rocket: both are space).
VIDEOS: dict[str, tuple[list[str], dict[str, str]]] = {
    "trip": (["rocket", "chelsea", "coffee"], {"lang": "en", "kind": "travel"}),
    "studio": (["camera", "hubble_deep_field"], {"lang": "en", "kind": "science"}),
    "garage": (["stereo_motorcycle", "brick"], {"lang": "de", "kind": "cars"}),
    "desk": (["clock", "page"], {"lang": "de", "kind": "office"}),
}
# The default backbone's frame vectors are anisotropic (any two photos have cosine 0.95-0.99), so a cut
# between two photos has novelty 0.01-0.05, partly under the default floor of 0.02; within a scene it is < 0.005.
SEGMENTATION = SegmentationParams(min_novelty=0.005)
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def scene_frames(photos: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames at FPS: each photo held for SECONDS_PER_SCENE with a slow pan and a little sensor noise."""
    rng = np.random.default_rng(0)
    frames = []
    per_scene = int(SECONDS_PER_SCENE * FPS)
    for name in photos:
        square = center_crop_square(load_photo(name), size + 16)
        for i in range(per_scene):
            crop = square[i : i + size, i : i + size].astype(np.int16) + rng.integers(-6, 7, (size, size, 3))
            frames.append(np.clip(crop, 0, 255).astype(np.uint8))
    return np.stack(frames), np.arange(len(frames)) / FPS


def ingest(encoder: TritonEncoder, index: VideoIndex, video_id: str, photos: list[str], metadata: dict[str, str]) -> None:
    """What a worker does once frames are decoded: encode, aggregate into clips, replace in the index."""
    frames, timestamps = scene_frames(photos, encoder.info().image_size)
    duration = len(photos) * SECONDS_PER_SCENE
    aggregate = aggregate_video(encoder.encode_frames(frames), timestamps, duration, SEGMENTATION)
    clips = [ClipRecord(video_id, i, c.start_s, c.end_s, c.vector) for i, c in enumerate(aggregate.clips)]
    index.replace_video(VideoRecord(video_id, aggregate.vector, duration, len(clips), metadata, time.time(),
                                    visual_model=encoder.info().visual_model), clips)  # what the gateway serves


@pytest.fixture(scope="module")
def indexed(gateway: GatewayProcess, triton) -> GatewayProcess:
    """The session gateway with VIDEOS in its collections."""
    encoder = TritonEncoder(triton.grpc_url)
    index = VideoIndex(IndexSettings(milvus_uri=gateway.env["VIDSTRATA_MILVUS_URI"],
                                     collection_prefix=gateway.env["VIDSTRATA_MILVUS_COLLECTION_PREFIX"]))
    try:
        for video_id, (photos, metadata) in VIDEOS.items():
            ingest(encoder, index, video_id, photos, metadata)
    finally:
        encoder.close()
        index.close()
    return gateway


@pytest.fixture(scope="module")
def stub(indexed: GatewayProcess) -> Iterator[search_pb2_grpc.VideoSearchStub]:
    with grpc.insecure_channel(indexed.address) as channel:
        yield search_pb2_grpc.VideoSearchStub(channel)


def _search(stub: search_pb2_grpc.VideoSearchStub, query: str, **fields: object) -> search_pb2.SearchResponse:
    return stub.Search(search_pb2.SearchRequest(query=query, **fields), timeout=10)


def _error(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=10)
    return raised.value.code(), raised.value.details()


@pytest.mark.parametrize("video_id, scene", [
    (video_id, k) for video_id, (photos, _) in VIDEOS.items() for k in range(len(photos))
])
def test_a_caption_of_one_scene_finds_its_video_and_that_scenes_span(stub, video_id, scene):
    photo = VIDEOS[video_id][0][scene]
    reply = _search(stub, CAPTIONS[photo], top_k=3)
    assert reply.hits[0].video_id == video_id, [(h.video_id, round(h.score, 3)) for h in reply.hits]
    clip = reply.hits[0].best_clip
    start, end = scene * SECONDS_PER_SCENE, (scene + 1) * SECONDS_PER_SCENE
    overlap = min(clip.end_s, end) - max(clip.start_s, start)
    assert overlap >= 0.75 * (clip.end_s - clip.start_s), (clip.start_s, clip.end_s, start, end)


def test_a_query_of_two_events_prefers_the_video_showing_both(stub):
    reply = _search(stub, f"{CAPTIONS['rocket']}, then {CAPTIONS['coffee']}")
    assert list(reply.phrases) == [CAPTIONS["rocket"], CAPTIONS["coffee"]]
    assert reply.hits[0].video_id == "trip"
    assert reply.candidates == len(VIDEOS)
    levels = reply.hits[0].levels
    assert all(-1 <= v <= 1 for v in (levels.video_sentence, levels.clip_sentence, levels.clip_phrase))


def test_rrf_ranks_the_same_top_video(stub):
    fusion = search_pb2.Fusion(method=search_pb2.Fusion.RRF)
    reply = _search(stub, CAPTIONS["camera"], fusion=fusion)
    assert reply.hits[0].video_id == "studio" and reply.fusion_method == search_pb2.Fusion.RRF


def test_a_filter_restricts_the_hits(stub):
    reply = _search(stub, CAPTIONS["chelsea"], filter='meta.lang == "de" and duration_s > 1')
    assert {h.video_id for h in reply.hits} == {"garage", "desk"}


def test_timings_report_every_stage(stub):
    t = _search(stub, "a wall clock").timings
    assert min(t.encode_ms, t.ann_videos_ms, t.ann_clips_ms, t.rescore_ms, t.fusion_ms) > 0
    assert t.total_ms >= t.encode_ms + t.rescore_ms


@pytest.mark.parametrize("request_fields, message", [
    ({"query": "  "}, "query is empty"),
    ({"query": "a" * 2049}, "query is 2049 bytes; the limit is 2048"),
    ({"query": "cat", "top_k": 0}, "top_k must be in [1, 1000], got 0"),
    ({"query": "cat", "filter": 'meta.lang == "en" or'}, "invalid filter at position 20"),
    ({"query": "cat", "filter": "video_id == 1; drop"}, "invalid filter"),
    ({"query": "cat", "fusion": search_pb2.Fusion(weights={"words": 1.0})}, "unknown fusion levels ['words']"),
])
def test_bad_searches_are_refused_with_a_clear_message(stub, request_fields, message):
    code, details = _error(stub.Search, search_pb2.SearchRequest(**request_fields))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message in details


def test_get_and_delete_of_an_unknown_video_are_not_found(stub):
    assert _error(stub.GetVideo, search_pb2.GetVideoRequest(video_id="nope"))[0] == grpc.StatusCode.NOT_FOUND
    assert _error(stub.DeleteVideo, search_pb2.DeleteVideoRequest(video_id="nope"))[0] == grpc.StatusCode.NOT_FOUND
    assert _error(stub.GetVideo, search_pb2.GetVideoRequest(video_id="bad id"))[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_indexed_videos_read_as_ready(stub):
    video = stub.GetVideo(search_pb2.GetVideoRequest(video_id="trip"), timeout=10)
    assert video.status == search_pb2.Video.READY and video.duration_s == 12.0 and video.clip_count >= 3
    assert dict(video.metadata) == VIDEOS["trip"][1]


def test_submit_queues_the_celery_task_and_reads_as_pending(stub, indexed):
    reply = stub.SubmitVideo(search_pb2.SubmitVideoRequest(uri="/videos/new.mp4", metadata={"lang": "fr"}), timeout=10)
    broker = redis.Redis.from_url(indexed.env["VIDSTRATA_REDIS_URL"])
    try:
        messages = [json.loads(raw) for raw in broker.lrange(INGEST_QUEUE, 0, -1)]
        ours = [m for m in messages if m["headers"]["id"] == reply.task_id]
        assert len(ours) == 1
        headers = ours[0]["headers"]
        assert headers["task"] == "vidstrata.ingest_video" and abs(headers[ENQUEUED_AT_HEADER] - time.time()) < 30
        # the typed payload (jobs.contract): one versioned message, not a positional list
        assert headers["argsrepr"] == repr([IngestPayload(reply.video_id, "/videos/new.mp4", {"lang": "fr"}).to_message()])
        video = stub.GetVideo(search_pb2.GetVideoRequest(video_id=reply.video_id), timeout=10)
        assert video.status == search_pb2.Video.PENDING and video.uri == "/videos/new.mp4"
        assert stub.GetStats(search_pb2.GetStatsRequest(), timeout=10).queue_length >= 1
        text = indexed.metrics()
        assert re.search(r"^vidstrata_ingest_queue_length [1-9]", text, re.M)
        age = re.search(r"^vidstrata_ingest_queue_oldest_age_seconds (\S+)$", text, re.M)
        assert age and float(age.group(1)) > 0
    finally:
        for raw in broker.lrange(INGEST_QUEUE, 0, -1):  # no worker must ever pick up this fake file
            if json.loads(raw)["headers"]["id"] == reply.task_id:
                broker.lrem(INGEST_QUEUE, 0, raw)
        broker.close()
    stub.DeleteVideo(search_pb2.DeleteVideoRequest(video_id=reply.video_id), timeout=10)
    assert _error(stub.GetVideo, search_pb2.GetVideoRequest(video_id=reply.video_id))[0] == grpc.StatusCode.NOT_FOUND


def test_delete_removes_a_video_from_search(stub, indexed, triton):
    encoder = TritonEncoder(triton.grpc_url)
    index = VideoIndex(IndexSettings(milvus_uri=indexed.env["VIDSTRATA_MILVUS_URI"],
                                     collection_prefix=indexed.env["VIDSTRATA_MILVUS_COLLECTION_PREFIX"]))
    try:
        ingest(encoder, index, "doomed", ["chelsea"], {})  # the same cat as in "trip"
        assert "doomed" in [h.video_id for h in _search(stub, CAPTIONS["chelsea"], top_k=2).hits]
        stub.DeleteVideo(search_pb2.DeleteVideoRequest(video_id="doomed"), timeout=10)
        assert "doomed" not in [h.video_id for h in _search(stub, CAPTIONS["chelsea"]).hits]
    finally:
        encoder.close()
        index.close()


def test_reflection_describes_the_api_without_a_proto_file(indexed):
    with grpc.insecure_channel(indexed.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert "vidstrata.v1.VideoSearch" in database.get_services()
        assert database.FindFileContainingSymbol("vidstrata.v1.SearchRequest").package == "vidstrata.v1"


def test_metrics_show_the_requests_seen(stub, indexed):
    _search(stub, "a cup of coffee")
    _error(stub.Search, search_pb2.SearchRequest(query=""))
    text = indexed.metrics()
    for series in ('vidstrata_gateway_requests_total{code="OK",rpc="Search",tenant="_default"}',
                   'vidstrata_gateway_requests_total{code="INVALID_ARGUMENT",rpc="Search",tenant="_default"}',
                   'vidstrata_gateway_request_duration_seconds_bucket{code="OK",le="0.5",rpc="Search",tenant="_default"}',
                   'vidstrata_gateway_stage_duration_seconds_count{stage="encode"}',
                   'vidstrata_gateway_stage_duration_seconds_count{stage="ann_clips"}',
                   'vidstrata_gateway_inflight_requests{rpc="Search"}'):
        match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
        assert match and float(match.group(1)) >= (0 if "inflight" in series else 1), series


def test_auth_guards_the_api_but_not_health(triton, milvus_uri, redis_url, tmp_path):
    secured = start_gateway(tmp_path, triton.grpc_url, milvus_uri, redis_url, auth_token="tok-123")
    try:
        assert secured.health() == SERVING
        with grpc.insecure_channel(secured.address) as channel:
            stub = search_pb2_grpc.VideoSearchStub(channel)
            request = search_pb2.SearchRequest(query="a tabby cat")
            for metadata in ((), (("authorization", "Bearer tok-12"),)):
                with pytest.raises(grpc.RpcError) as raised:
                    stub.Search(request, metadata=metadata, timeout=10)
                assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert stub.Search(request, metadata=(("authorization", "Bearer tok-123"),), timeout=10).hits == []
        assert 'vidstrata_gateway_requests_total{code="UNAUTHENTICATED",rpc="Search",tenant="_default"} 2.0' in secured.metrics()
    finally:
        secured.stop()


def _wait_health(handle: GatewayProcess, status: int, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if handle.health() == status:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"health not {status} after {timeout_s}s:\n{handle.process.log_tail()}")


def _unavailable_fast(handle: GatewayProcess, what: str) -> None:
    with grpc.insecure_channel(handle.address) as channel:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            search_pb2_grpc.VideoSearchStub(channel).Search(search_pb2.SearchRequest(query="a cat"), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE and what in raised.value.details()
        assert time.monotonic() - started < 0.5


def test_triton_down_turns_health_off_fails_fast_and_recovers(stub, indexed, triton):
    triton.stop()
    try:
        _wait_health(indexed, NOT_SERVING, 10)
        _unavailable_fast(indexed, "Triton")
    finally:
        triton.start()
    assert _wait_health(indexed, SERVING, 30) < 5  # probes reconnect on a fresh channel, without gRPC's backoff
    assert _search(stub, CAPTIONS["coffee"]).hits[0].video_id == "trip"


def test_milvus_down_at_start_then_up_recovers(triton, redis_url, tmp_path):
    port = free_port()
    handle = start_gateway(tmp_path, triton.grpc_url, f"http://127.0.0.1:{port}", redis_url, wait_serving=False)
    milvus = None
    try:
        _wait_health(handle, NOT_SERVING, 10)
        _unavailable_fast(handle, "Milvus")
        milvus, _ = start_milvus_lite(tmp_path / "milvus", port=port)
        _wait_health(handle, SERVING, 30)
        with grpc.insecure_channel(handle.address) as channel:
            reply = search_pb2_grpc.VideoSearchStub(channel).Search(search_pb2.SearchRequest(query="a cat"), timeout=10)
        assert reply.hits == []
    finally:
        handle.stop()
        if milvus is not None:
            milvus.stop()
