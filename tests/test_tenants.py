"""Tenants below the wire (issue 24, 4): the request's tenant and bound tokens (gateway.tenants), the settings, the
status records kept per tenant in a real Redis, a tenant's queued tasks taken off a real Celery queue, and
SearchService's scoping over in-memory backends."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from pydantic import ValidationError

from vidstrata.gateway.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from vidstrata.gateway.ingest import TENANT_HEADER, CeleryIngestQueue
from vidstrata.gateway.query import parse_search
from vidstrata.gateway.service import SearchService
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.gateway.tenants import (
    DEFAULT_LABEL, OTHER_LABEL, bound_tenant, metric_label, request_tenant, sent_token,
)
from vidstrata.index.store import ClipRecord, VideoRecord
from vidstrata.jobs.contract import INGEST_QUEUE, IngestPayload
from vidstrata.jobs.status import IngestState, StatusStore, VideoIdTaken
from tests.fixtures.gateway import FakeBackends, embed
from tests.fixtures.redis import empty_status_store


# -- the request's tenant ---------------------------------------------------------------------------


def test_an_unbound_caller_acts_for_the_tenant_it_names() -> None:
    assert request_tenant("", None) == ""
    assert request_tenant("acme", None) == "acme"
    for bad in ("-acme", "a b", "a:b", "x" * 65, "ä"):
        with pytest.raises(InvalidArgument, match="tenant"):
            request_tenant(bad, None)


def test_a_bound_token_acts_for_its_own_tenant_only() -> None:
    assert request_tenant("", "acme") == "acme"  # none named: the token's
    assert request_tenant("acme", "acme") == "acme"
    with pytest.raises(PermissionDenied):
        request_tenant("globex", "acme")
    with pytest.raises(InvalidArgument):  # a bad name is a bad request before it is a forbidden one
        request_tenant("a b", "acme")


def test_tokens_are_read_from_the_bearer_header_and_mapped_to_their_tenant() -> None:
    tokens = {"tok-a": "acme", "tok-b": "globex"}
    assert sent_token([("authorization", "Bearer tok-a")]) == "tok-a"
    assert sent_token([("authorization", b"Bearer tok-b")]) == "tok-b"
    assert sent_token([("authorization", "tok-a")]) == "" and sent_token(None) == ""
    assert bound_tenant(tokens, "tok-a") == "acme" and bound_tenant(tokens, "tok-b") == "globex"
    assert bound_tenant(tokens, "admin") is None and bound_tenant(tokens, "") is None


def test_the_metric_label_takes_a_bounded_set_of_values() -> None:
    listed = frozenset({"acme"})
    assert metric_label("acme", listed) == "acme"
    assert metric_label("", listed) == DEFAULT_LABEL
    assert {metric_label(f"t{i}", listed) for i in range(100)} == {OTHER_LABEL}


def test_settings_read_tenant_tokens_and_metric_tenants_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("VIDSTRATA_GATEWAY_TENANT_TOKENS", json.dumps({"tok-a": "acme"}))
    monkeypatch.setenv("VIDSTRATA_GATEWAY_METRIC_TENANTS", '["acme", "globex"]')
    settings = GatewaySettings(host="0.0.0.0")
    assert settings.tenant_tokens == {"tok-a": "acme"} and settings.metric_tenants == ["acme", "globex"]
    assert settings.exposure_warning() is None  # tenant tokens alone turn auth on
    for bad in ({"tenant_tokens": {"tok": "a b"}}, {"tenant_tokens": {"": "acme"}}, {"tenant_tokens": {"t k": "acme"}},
                {"metric_tenants": ["-x"]}, {"auth_token": "tok-a", "tenant_tokens": {"tok-a": "acme"}}):
        with pytest.raises(ValidationError):
            GatewaySettings(**bad)


def test_a_search_pins_its_tenant_beside_the_filter_and_binds_its_page_tokens_to_it() -> None:
    settings = GatewaySettings()
    query = parse_search(settings, "cat", filter_expr='video_id == "a" or not (duration_s > 0)', tenant="acme")
    assert query.filter.videos.endswith('and (tenant == "acme"))')
    assert parse_search(settings, "cat", tenant="").filter.clips == '(tenant == "")'
    assert parse_search(settings, "cat", tenant="acme").digest != parse_search(settings, "cat", tenant="globex").digest
    with pytest.raises(InvalidArgument, match="unknown field 'tenant'"):
        parse_search(settings, "cat", filter_expr='tenant == "globex"', tenant="acme")


# -- status records per tenant (real Redis) ---------------------------------------------------------------


@pytest.fixture
def store(redis_url: str) -> Iterator[StatusStore]:
    yield from empty_status_store(redis_url, 9)


def test_a_video_id_is_global_and_a_resubmit_keeps_its_tenant(store: StatusStore) -> None:
    store.mark_pending("v", "t1", "/v.mp4", {}, "acme")
    with pytest.raises(VideoIdTaken, match="is taken") as taken:
        store.mark_pending("v", "t2", "/v.mp4", {}, "globex")
    assert "acme" not in str(taken.value)  # whose it is stays unsaid
    with pytest.raises(VideoIdTaken):
        store.mark_pending("v", "t2", "/v.mp4", {})  # the default tenant too
    store.mark_pending("v", "t3", "/v.mp4", {}, "acme")  # its own tenant re-submits
    record = store.get("v")
    assert record is not None and (record.tenant, record.task_id) == ("acme", "t3")
    assert store.mark_ready("v", 2, 4.0, task_id="t3")  # a worker's write keeps the record's tenant and sets
    assert store.get("v").tenant == "acme"  # type: ignore[union-attr]
    assert store.list_ids([IngestState.READY], "", 10, "acme") == ["v"]
    assert store.list_ids(list(IngestState), "", 10) == [] and store.list_ids(list(IngestState), "", 10, "globex") == []


def test_each_tenant_lists_and_counts_its_own_records(store: StatusStore) -> None:
    for video_id, tenant in (("a1", "acme"), ("a2", "acme"), ("d1", ""), ("g1", "globex")):
        store.mark_pending(video_id, f"task-{video_id}", f"/{video_id}.mp4", {}, tenant)
    store.mark_running("a2", 10.0, "decode", task_id="task-a2")
    assert store.list_ids(list(IngestState), "", 10, "acme") == ["a1", "a2"]
    assert store.list_ids([IngestState.PENDING], "", 10, "acme") == ["a1"]
    assert store.list_ids(list(IngestState), "", 10) == ["d1"]
    assert (store.count(IngestState.PENDING, "acme"), store.count(IngestState.RUNNING, "acme")) == (1, 1)
    assert store.count(IngestState.PENDING) == 1


def test_delete_of_another_tenants_record_leaves_it_and_delete_tenant_removes_all_of_one(store: StatusStore) -> None:
    for i in range(5):
        store.mark_pending(f"a{i}", f"task-a{i}", "/a.mp4", {}, "acme")
    store.mark_pending("g", "task-g", "/g.mp4", {}, "globex")
    store.mark_failed("a0", "bad", task_id="task-a0")
    assert store.delete("g", "acme") is False and store.get("g") is not None
    assert store.delete("a4", "acme") is True
    assert store.delete_tenant("acme", batch=2) == 4
    assert [store.get(f"a{i}") for i in range(5)] == [None] * 5
    assert store.list_ids(list(IngestState), "", 10, "acme") == []
    assert store.get("g") is not None and store.delete_tenant("acme") == 0
    assert store.mark_running("a1", 50.0, "decode", task_id="task-a1") is False  # its worker's writes are dropped


def test_index_existing_puts_old_records_in_their_tenants_sets(store: StatusStore, redis_url: str) -> None:
    store.mark_pending("a", "task-a", "/a.mp4", {}, "acme")
    raw = redis.Redis.from_url(f"{redis_url.rsplit('/', 1)[0]}/9", decode_responses=True)
    for key in raw.keys("vidstrata:videos:*"):
        raw.delete(key)
    raw.delete("vidstrata:listing-indexed")
    assert store.index_existing() == 1
    assert store.list_ids(list(IngestState), "", 10, "acme") == ["a"]


# -- the ingest queue (real Redis broker) ----------------------------------------------------------------


def test_delete_tenant_takes_only_that_tenants_waiting_messages_off_the_queue(redis_url: str) -> None:
    url = f"{redis_url.rsplit('/', 1)[0]}/13"
    broker = redis.Redis.from_url(url)
    broker.delete(INGEST_QUEUE)
    queue = CeleryIngestQueue(url, timeout_s=5.0)
    try:
        for video_id, tenant in (("a1", "acme"), ("g1", "globex"), ("a2", "acme"), ("d1", "")):
            queue.enqueue(uuid.uuid4().hex, video_id, f"/{video_id}.mp4", {}, tenant=tenant)
        broker.lpush(INGEST_QUEUE, b"not json")  # a message that is not kombu's is left alone
        assert queue.remove_tenant("acme") == 2
        assert queue.remove_tenant("acme") == 0
        left = broker.lrange(INGEST_QUEUE, 0, -1)
    finally:
        queue.close()
        broker.delete(INGEST_QUEUE)
    messages = [json.loads(raw) for raw in left if raw != b"not json"]
    assert len(left) == 3 and sorted(m["headers"][TENANT_HEADER] for m in messages) == ["", "globex"]
    payloads = [IngestPayload.from_task_args(json.loads(base64.b64decode(m["body"]))[0]) for m in messages]
    assert sorted((p.video_id, p.tenant) for p in payloads) == [("d1", ""), ("g1", "globex")]


# -- SearchService over in-memory backends ----------------------------------------------------------


def _service(fakes: FakeBackends) -> SearchService:
    return SearchService(GatewaySettings(), lambda: fakes.encoder, fakes.index, fakes.status, fakes.queue)


def _index(fakes: FakeBackends, video_id: str, tenant: str) -> None:
    vector = embed(["cat"])
    fakes.index.add(VideoRecord(video_id, vector, 4.0, 1, {}, 0.0, visual_model="fake-1/", tenant=tenant),
                    [ClipRecord(video_id, 0, 0.0, 4.0, vector.astype(np.float32))])


def test_submit_of_an_id_another_tenant_holds_is_already_exists_without_saying_whose(fakes: FakeBackends) -> None:
    service = _service(fakes)
    service.submit_video("v", "/v.mp4", {}, tenant="acme")
    _index(fakes, "indexed", "acme")  # a row without a status record
    for video_id in ("v", "indexed"):
        with pytest.raises(AlreadyExists, match="is taken") as taken:
            service.submit_video(video_id, "/v.mp4", {}, tenant="globex")
        assert "acme" not in str(taken.value)
    assert service.submit_video("v", "/v.mp4", {}, tenant="acme").video_id == "v"  # its own re-submit
    assert fakes.queue.tenants == ["acme", "acme"]


def test_get_and_delete_of_another_tenants_video_are_not_found_as_a_missing_one(fakes: FakeBackends) -> None:
    service = _service(fakes)
    service.submit_video("queued", "/v.mp4", {}, tenant="acme")
    _index(fakes, "indexed", "acme")
    for video_id in ("queued", "indexed", "missing"):
        for call in (service.get_video, service.delete_video):
            with pytest.raises(NotFound, match=f"video '{video_id}' does not exist"):
                call(video_id, "globex")
    assert service.get_video("queued", "acme").tenant == "acme"
    assert service.get_video("indexed", "acme").tenant == "acme"
    service.delete_video("indexed", "acme")
    assert "indexed" not in fakes.index.videos


def test_delete_tenant_counts_what_it_removed_and_leaves_the_others(fakes: FakeBackends) -> None:
    service = _service(fakes)
    for video_id, tenant in (("a1", "acme"), ("a2", "acme"), ("g1", "globex")):
        service.submit_video(video_id, "/v.mp4", {}, tenant=tenant)
        _index(fakes, f"row-{video_id}", tenant)
    deleted = service.delete_tenant("acme")
    assert (deleted.videos, deleted.clips, deleted.status_records, deleted.queued_tasks) == (2, 2, 2, 2)
    assert sorted(fakes.index.videos) == ["row-g1"] and sorted(fakes.status.records) == ["g1"]
    assert fakes.queue.tenants == ["globex"]
    with pytest.raises(InvalidArgument, match="default tenant"):
        service.delete_tenant("")


def test_stats_of_a_tenant_count_its_rows_only(fakes: FakeBackends) -> None:
    service = _service(fakes)
    _index(fakes, "a", "acme")
    _index(fakes, "g", "globex")
    service.submit_video("q", "/v.mp4", {}, tenant="acme")
    stats = service.stats("acme")
    assert (stats.videos, stats.clips, stats.queue_length) == (1, 1, 1)
    assert service.stats().videos == 2  # the deployment's
