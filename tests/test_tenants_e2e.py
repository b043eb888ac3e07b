"""Tenants end to end (issue 24, 4) through the real gateway, worker, Redis, Triton and Milvus Lite; one stack for the
module: two tenants ingest the same picture, each Search, GetVideo, ListVideos, WatchVideo and DeleteVideo sees only
its own; tokens bound to a tenant are PERMISSION_DENIED for another; DeleteTenant counts what it removed, leaves the
others intact, and a task of the deleted tenant still queued never lands.
"""

from __future__ import annotations

import json
import time

import grpc
import pytest

from tests.fixtures.gateway import start_gateway
from tests.photos import load_photo
from vidstrata.media.synthetic import write_scene_video
from vidstrata.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.e2e

ADMIN, ACME, GLOBEX = "admin-token", "acme-token", "globex-token"
Video = search_pb2.Video


def _auth(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
def stack(ingest_stack, triton, milvus_uri, tmp_path_factory):
    """One worker and one gateway with an operator token and a token per tenant; acme has its own metric label.
    Yields the stack, the gateway, a stub and the path of a coffee video."""
    ingest_stack.start_worker()
    gateway = start_gateway(tmp_path_factory.mktemp("gw"), triton.grpc_url, milvus_uri, ingest_stack.redis_url,
                            collection_prefix=ingest_stack.env["VIDSTRATA_MILVUS_COLLECTION_PREFIX"],
                            auth_token=ADMIN, tenant_tokens=json.dumps({ACME: "acme", GLOBEX: "globex"}),
                            metric_tenants='["acme"]', watch_poll_s="0.5")
    video = tmp_path_factory.mktemp("videos") / "coffee.mp4"
    write_scene_video(video, [load_photo("coffee"), load_photo("rocket")], [1.5, 1.5], fps=10)
    channel = grpc.insecure_channel(gateway.address)
    yield ingest_stack, gateway, search_pb2_grpc.VideoSearchStub(channel), str(video)
    channel.close()
    gateway.stop()


def _ready(stub, video_id: str, token: str, timeout_s: float = 120.0) -> Video:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        video = stub.GetVideo(search_pb2.GetVideoRequest(video_id=video_id), metadata=_auth(token), timeout=10)
        if video.status in (Video.READY, Video.FAILED):
            assert video.status == Video.READY, video.reason
            return video
        time.sleep(0.2)
    pytest.fail(f"{video_id} not READY after {timeout_s} s")


def _code(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        result = call(*args, **kwargs)
        if not hasattr(result, "ByteSize"):
            list(result)  # a server stream raises while it is read
    return raised.value.code(), raised.value.details()


@pytest.fixture(scope="module")
def ingested(stack):
    """acme-coffee for acme and globex-coffee for globex, each submitted with its own token, READY."""
    _, _, stub, path = stack
    for video_id, token in (("acme-coffee", ACME), ("globex-coffee", GLOBEX)):
        stub.SubmitVideo(search_pb2.SubmitVideoRequest(video_id=video_id, uri=path), metadata=_auth(token), timeout=10)
    return {video_id: _ready(stub, video_id, token) for video_id, token in
            (("acme-coffee", ACME), ("globex-coffee", GLOBEX))}


def _hits(stub, token: str, **request) -> list[str]:
    response = stub.Search(search_pb2.SearchRequest(**request), metadata=_auth(token), timeout=30)
    return [h.video_id for h in response.hits]


def test_each_tenant_sees_only_its_own_videos(stack, ingested):
    _, _, stub, _ = stack
    assert ingested["acme-coffee"].tenant == "acme" and ingested["globex-coffee"].tenant == "globex"
    assert ingested["acme-coffee"].visual_model  # READY: the versions it was indexed with
    assert _hits(stub, ACME, query="a cup of coffee") == ["acme-coffee"]
    assert _hits(stub, GLOBEX, query="a cup of coffee") == ["globex-coffee"]
    assert _hits(stub, ADMIN, query="a cup of coffee", tenant="globex") == ["globex-coffee"]
    assert "acme-coffee" not in _hits(stub, ADMIN, query="a cup of coffee")  # the default tenant's
    reaching = 'video_id == "globex-coffee" or not (video_id == "acme-coffee") or meta.tenant != "x"'
    assert _hits(stub, ACME, query="a cup of coffee", filter=reaching) in ([], ["acme-coffee"])
    assert _hits(stub, ACME, query="a cup of coffee", video_ids=["globex-coffee"]) == []
    code, details = _code(stub.Search, search_pb2.SearchRequest(query="coffee", filter='tenant == "globex"'),
                          metadata=_auth(ACME), timeout=10)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown field 'tenant'" in details
    assert _hits(stub, ACME, like_video_id="acme-coffee") == []  # its only video is the query
    missing = _code(stub.Search, search_pb2.SearchRequest(like_video_id="no-such-video"), metadata=_auth(ACME), timeout=10)
    other = _code(stub.Search, search_pb2.SearchRequest(like_video_id="globex-coffee"), metadata=_auth(ACME), timeout=10)
    assert other[0] == missing[0] == grpc.StatusCode.NOT_FOUND


def test_get_watch_list_and_delete_of_another_tenants_video_are_not_found(stack, ingested):
    _, _, stub, path = stack
    for video_id in ("globex-coffee", "no-such-video"):
        code, details = _code(stub.GetVideo, search_pb2.GetVideoRequest(video_id=video_id, include_text=True),
                              metadata=_auth(ACME), timeout=10)
        assert (code, details) == (grpc.StatusCode.NOT_FOUND, f"video {video_id!r} does not exist")
        code, _ = _code(stub.WatchVideo, search_pb2.WatchVideoRequest(video_id=video_id), metadata=_auth(ACME), timeout=10)
        assert code == grpc.StatusCode.NOT_FOUND
        code, details = _code(stub.DeleteVideo, search_pb2.DeleteVideoRequest(video_id=video_id),
                              metadata=_auth(ACME), timeout=10)
        assert (code, details) == (grpc.StatusCode.NOT_FOUND, f"video {video_id!r} does not exist")
    assert _ready(stub, "globex-coffee", GLOBEX).status == Video.READY  # the delete left it alone
    (watched,) = stub.WatchVideo(search_pb2.WatchVideoRequest(video_id="acme-coffee"), metadata=_auth(ACME), timeout=10)
    assert watched.status == Video.READY
    listed = stub.ListVideos(search_pb2.ListVideosRequest(), metadata=_auth(ACME), timeout=10).videos
    assert [(v.video_id, v.tenant) for v in listed] == [("acme-coffee", "acme")]
    listed = stub.ListVideos(search_pb2.ListVideosRequest(filter="duration_s > 0"), metadata=_auth(ACME), timeout=10)
    assert [v.video_id for v in listed.videos] == ["acme-coffee"]
    code, details = _code(stub.SubmitVideo, search_pb2.SubmitVideoRequest(video_id="globex-coffee", uri=path),
                          metadata=_auth(ACME), timeout=10)
    assert code == grpc.StatusCode.ALREADY_EXISTS and "taken" in details and "globex" not in details.replace(
        "globex-coffee", "")
    stats = stub.GetStats(search_pb2.GetStatsRequest(), metadata=_auth(ACME), timeout=30)
    assert (stats.videos, stats.clips) == (1, ingested["acme-coffee"].clip_count)
    assert stub.GetStats(search_pb2.GetStatsRequest(), metadata=_auth(ADMIN), timeout=30).videos >= 2


def test_a_bound_token_is_permission_denied_for_another_tenant(stack, ingested):
    _, gateway, stub, path = stack
    calls = (
        (stub.Search, search_pb2.SearchRequest(query="coffee", tenant="globex")),
        (stub.SubmitVideo, search_pb2.SubmitVideoRequest(video_id="x", uri=path, tenant="globex")),
        (stub.GetVideo, search_pb2.GetVideoRequest(video_id="globex-coffee", tenant="globex")),
        (stub.WatchVideo, search_pb2.WatchVideoRequest(video_id="globex-coffee", tenant="globex")),
        (stub.ListVideos, search_pb2.ListVideosRequest(tenant="globex")),
        (stub.DeleteVideo, search_pb2.DeleteVideoRequest(video_id="globex-coffee", tenant="globex")),
        (stub.GetStats, search_pb2.GetStatsRequest(tenant="globex")),
        (stub.DeleteTenant, search_pb2.DeleteTenantRequest(tenant="globex")),
    )
    for call, request in calls:
        assert _code(call, request, metadata=_auth(ACME), timeout=10)[0] == grpc.StatusCode.PERMISSION_DENIED, request
    assert _code(stub.GetVideo, search_pb2.GetVideoRequest(video_id="acme-coffee"), metadata=_auth("guess"),
                 timeout=10)[0] == grpc.StatusCode.UNAUTHENTICATED
    assert _ready(stub, "globex-coffee", GLOBEX).status == Video.READY
    assert stub.GetVideo(search_pb2.GetVideoRequest(video_id="acme-coffee", tenant="acme"), metadata=_auth(ACME),
                         timeout=10).tenant == "acme"
    metrics = gateway.metrics()
    assert 'code="PERMISSION_DENIED",rpc="Search",tenant="_other"' in metrics  # globex has no label of its own
    assert 'code="OK",rpc="Search",tenant="acme"' in metrics


def test_delete_tenant_counts_what_it_removed_and_its_queued_task_never_lands(stack, ingested):
    ingest_stack, _, stub, path = stack
    stub.SubmitVideo(search_pb2.SubmitVideoRequest(video_id="initech-1", uri=path, tenant="initech"),
                     metadata=_auth(ADMIN), timeout=10)
    deadline = time.monotonic() + 120
    while (ready := stub.GetVideo(search_pb2.GetVideoRequest(video_id="initech-1", tenant="initech"),
                                  metadata=_auth(ADMIN), timeout=10)).status not in (Video.READY, Video.FAILED):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert ready.status == Video.READY
    for worker in ingest_stack.workers:  # nothing takes tasks from the queue now
        worker.process.stop()
    for i in (2, 3):
        stub.SubmitVideo(search_pb2.SubmitVideoRequest(video_id=f"initech-{i}", uri=path, tenant="initech"),
                         metadata=_auth(ADMIN), timeout=10)
    deleted = stub.DeleteTenant(search_pb2.DeleteTenantRequest(tenant="initech"), metadata=_auth(ADMIN), timeout=30)
    assert (deleted.tenant, deleted.videos, deleted.clips, deleted.status_records, deleted.queued_tasks) == (
        "initech", 1, ready.clip_count, 3, 2)
    assert ingest_stack.queue.length() == 0
    ingest_stack.start_worker()
    time.sleep(3)  # a task left anywhere would land now
    for i in (1, 2, 3):
        code, _ = _code(stub.GetVideo, search_pb2.GetVideoRequest(video_id=f"initech-{i}", tenant="initech"),
                        metadata=_auth(ADMIN), timeout=10)
        assert code == grpc.StatusCode.NOT_FOUND
    assert ingest_stack.index.counts("initech") == (0, 0)
    assert _hits(stub, ACME, query="a cup of coffee") == ["acme-coffee"]  # the others intact
    assert _hits(stub, GLOBEX, query="a cup of coffee") == ["globex-coffee"]
    assert _code(stub.DeleteTenant, search_pb2.DeleteTenantRequest(), metadata=_auth(ADMIN),
                 timeout=10)[0] == grpc.StatusCode.INVALID_ARGUMENT  # the default tenant is not deleted this way
    own = stub.DeleteTenant(search_pb2.DeleteTenantRequest(), metadata=_auth(GLOBEX), timeout=30)  # its own
    assert (own.tenant, own.videos, own.status_records) == ("globex", 1, 1)
    assert _hits(stub, ACME, query="a cup of coffee") == ["acme-coffee"]
