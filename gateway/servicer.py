"""The VideoSearch servicer: each RPC converts its request (gateway.messages), calls `SearchService`, converts back.

Blocking service calls run in a thread pool, bounded by the RPC's deadline. Each handler first resolves the tenant the
request acts for (gateway.tenants: the one it names, or its bound token's; PERMISSION_DENIED for another). ListVideos and WatchVideo call
gateway.videos (the listing, and the watchers of the server's asyncio loop: a stream waits there, not in a thread). What a handler raises becomes a
status: a ServiceError its kind's code with its message (redacted, cut to fit the trailer), an unexpected error
INTERNAL with no detail (and the traceback in the log).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, TypeVar

import grpc

from vidstrata.gateway import messages, metrics
from vidstrata.gateway.errors import InvalidArgument, ServiceError
from vidstrata.gateway.ingest import requested_modalities
from vidstrata.gateway.query import check_video_id_arg
from vidstrata.gateway.service import SearchService
from vidstrata.gateway.tenants import bound_tenant, request_tenant, sent_token
from vidstrata.gateway.videos import TooManyWatchers, VideoCatalog, VideoWatchers, watch
from vidstrata.jobs.reindex import ReindexJob
from vidstrata.jobs.status import IngestState, StatusEvents
from vidstrata.v1 import search_pb2, search_pb2_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamHandler = Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


async def _abort(name: str, exc: Exception, context: grpc.aio.ServicerContext) -> None:
    """End the call with the status of what a handler raised: ServiceError by kind, anything else INTERNAL (logged)."""
    if isinstance(exc, ServiceError):
        await context.abort(*messages.error_status(exc))
    if isinstance(exc, TooManyWatchers):
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
    if isinstance(exc, asyncio.TimeoutError):
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the call finished")
    log.error("%s failed", name, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error (logged by the gateway)")


def _rpc(method: Handler) -> Handler:
    """Map what a handler raises to a gRPC status (_abort)."""

    @functools.wraps(method)
    async def handle(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every error becomes a status
            await _abort(method.__name__, exc, context)

    return handle


def _stream_rpc(method: StreamHandler) -> StreamHandler:
    """_rpc for a server-streaming handler: what it raises, before or between its messages, ends the stream."""

    @functools.wraps(method)
    async def handle(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for response in method(self, request, context):
                yield response
        except Exception as exc:  # noqa: BLE001 - every error becomes a status
            await _abort(method.__name__, exc, context)

    return handle


def reindex_message(job: ReindexJob | None) -> search_pb2.Reindex | None:
    """GetStatsResponse.reindex of a job (jobs.reindex); None leaves it unset. Versions are the visual ones
    ("<text digest>/<frame digest>": they name both encoders)."""
    if job is None:
        return None
    return search_pb2.Reindex(
        job_id=job.job_id, state=job.state.value, from_version=job.source.visual_model,
        to_version=job.target.visual_model, done=job.done, left=job.left, failed=job.failed, eta_s=job.eta_s,
        failures=[search_pb2.ReindexFailure(video_id=v, reason=r) for v, r in job.failures.items()])


class VideoSearchServicer(search_pb2_grpc.VideoSearchServicer):
    """Converts messages and calls the service in the thread pool, within the RPC's deadline."""

    def __init__(self, service: SearchService, executor: ThreadPoolExecutor) -> None:
        self._service = service
        self._settings = service.settings
        self._executor = executor
        self._catalog = VideoCatalog(self._settings, service.index, service.status)  # type: ignore[arg-type]
        self._watchers = VideoWatchers(StatusEvents(self._settings.redis.url, self._settings.redis.timeout_s),
                                       self._settings.max_watchers)
        executor.submit(self._catalog.index_existing)  # once per Redis: records written before ListVideos existed

    @property
    def service(self) -> SearchService:
        return self._service

    def use(self, service: SearchService) -> None:
        """Serve from `service` from the next RPC on (a cutover: gateway.app); an RPC already running keeps the one
        it started with, so no response mixes two generations."""
        self._catalog = VideoCatalog(self._settings, service.index, service.status)  # type: ignore[arg-type]
        self._service = service

    async def _call(self, context: grpc.aio.ServicerContext, call: Callable[[float], T]) -> T:
        """Run call(deadline) in the pool; the deadline is the client's, or request_timeout_s when shorter."""
        remaining = context.time_remaining()
        timeout = self._settings.request_timeout_s if remaining is None else min(remaining, self._settings.request_timeout_s)
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(self._executor, call, deadline), timeout)

    def _bound(self, context: grpc.aio.ServicerContext) -> str | None:
        """The tenant the caller's token is bound to (None: an operator's token, or auth off)."""
        return bound_tenant(self._settings.tenant_tokens, sent_token(context.invocation_metadata()))

    def _tenant(self, request: Any, context: grpc.aio.ServicerContext) -> str:
        """The tenant a request acts for (gateway.tenants.request_tenant)."""
        return request_tenant(request.tenant, self._bound(context))

    @_rpc
    async def Search(self, request: search_pb2.SearchRequest, context: grpc.aio.ServicerContext) -> search_pb2.SearchResponse:
        query = messages.search_query(self._settings, request, self._tenant(request, context))
        result = await self._call(context, lambda deadline: self._service.search(query, deadline))
        metrics.observe_stages(result.timings.stages())
        return messages.search_response(result, query.fusion.method)

    @_rpc
    async def SubmitVideo(
        self, request: search_pb2.SubmitVideoRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.SubmitVideoResponse:
        tenant = self._tenant(request, context)
        modalities = requested_modalities(messages.modality_switches(request))
        submitted = await self._call(context, lambda _: self._service.submit_video(
            request.video_id, request.uri, dict(request.metadata), modalities, tenant))
        return search_pb2.SubmitVideoResponse(video_id=submitted.video_id, task_id=submitted.task_id)

    @_rpc
    async def GetVideo(self, request: search_pb2.GetVideoRequest, context: grpc.aio.ServicerContext) -> search_pb2.Video:
        tenant = self._tenant(request, context)
        status = await self._call(context, lambda _: self._service.get_video(request.video_id, tenant))
        text = await self._call(context, lambda _: self._service.video_text(request.video_id, tenant)) \
            if request.include_text else None
        return messages.video_message(status, text)

    @_rpc
    async def DeleteVideo(
        self, request: search_pb2.DeleteVideoRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.DeleteVideoResponse:
        tenant = self._tenant(request, context)
        await self._call(context, lambda _: self._service.delete_video(request.video_id, tenant))
        return search_pb2.DeleteVideoResponse(video_id=request.video_id)

    @_rpc
    async def DeleteTenant(
        self, request: search_pb2.DeleteTenantRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.DeleteTenantResponse:
        tenant = self._tenant(request, context)
        deleted = await self._call(context, lambda _: self._service.delete_tenant(tenant))
        return search_pb2.DeleteTenantResponse(**asdict(deleted))

    @_rpc
    async def GetStats(
        self, request: search_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.GetStatsResponse:
        bound = self._bound(context)
        # an operator's token without a tenant: the deployment's totals; else one tenant's
        tenant = None if bound is None and not request.tenant else request_tenant(request.tenant, bound)
        stats = await self._call(context, lambda _: self._service.stats(tenant))
        return search_pb2.GetStatsResponse(videos=stats.videos, clips=stats.clips, queue_length=stats.queue_length,
                                           versions=[search_pb2.VersionCount(**asdict(v)) for v in stats.versions],
                                           reindex=reindex_message(stats.reindex))

    @_rpc
    async def ListVideos(
        self, request: search_pb2.ListVideosRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.ListVideosResponse:
        state = None
        if request.status != search_pb2.Video.STATUS_UNSPECIFIED:
            try:
                state = IngestState(search_pb2.Video.Status.Name(request.status))
            except ValueError as exc:
                raise InvalidArgument(f"unknown status {request.status}; use PENDING, RUNNING, READY or FAILED") from exc
        query = self._catalog.parse(request.filter, state, request.page_size if request.HasField("page_size") else None,
                                    request.page_token, self._tenant(request, context))
        page = await self._call(context, lambda deadline: self._catalog.list_page(query, deadline))
        return search_pb2.ListVideosResponse(videos=[messages.video_message(v) for v in page.videos],
                                             next_page_token=page.next_page_token)

    @_stream_rpc
    async def WatchVideo(
        self, request: search_pb2.WatchVideoRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[search_pb2.Video]:
        video_id = check_video_id_arg(request.video_id)
        tenant = self._tenant(request, context)

        async def read() -> Any:
            return await self._call(context, lambda _: self._service.get_video(video_id, tenant))

        async for status in watch(video_id, self._watchers, read, self._settings.watch_poll_s):
            yield messages.video_message(status)

    async def close(self) -> None:
        """Stop the watchers' subscription."""
        await self._watchers.close()
