"""The VideoSearch servicer: each RPC converts its request (gateway.messages), calls `SearchService`, converts back.

Blocking service calls run in a thread pool, bounded by the RPC's deadline. What a handler raises becomes a
status: a ServiceError its kind's code with its message (redacted, cut to fit the trailer), an unexpected error
INTERNAL with no detail (and the traceback in the log).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc

from vidstrata.gateway import messages, metrics
from vidstrata.gateway.errors import ServiceError
from vidstrata.gateway.ingest import requested_modalities
from vidstrata.gateway.service import SearchService
from vidstrata.v1 import search_pb2, search_pb2_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]


def _rpc(method: Handler) -> Handler:
    """Map what a handler raises to a gRPC status: ServiceError by kind, anything else INTERNAL (logged)."""

    @functools.wraps(method)
    async def handle(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except ServiceError as exc:
            await context.abort(*messages.error_status(exc))
        except asyncio.TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the call finished")
        except Exception:
            log.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error (logged by the gateway)")

    return handle


class VideoSearchServicer(search_pb2_grpc.VideoSearchServicer):
    """Converts messages and calls the service in the thread pool, within the RPC's deadline."""

    def __init__(self, service: SearchService, executor: ThreadPoolExecutor) -> None:
        self._service = service
        self._settings = service.settings
        self._executor = executor

    async def _call(self, context: grpc.aio.ServicerContext, call: Callable[[float], T]) -> T:
        """Run call(deadline) in the pool; the deadline is the client's, or request_timeout_s when shorter."""
        remaining = context.time_remaining()
        timeout = self._settings.request_timeout_s if remaining is None else min(remaining, self._settings.request_timeout_s)
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(self._executor, call, deadline), timeout)

    @_rpc
    async def Search(self, request: search_pb2.SearchRequest, context: grpc.aio.ServicerContext) -> search_pb2.SearchResponse:
        query = messages.search_query(self._settings, request)
        result = await self._call(context, lambda deadline: self._service.search(query, deadline))
        metrics.observe_stages(result.timings.stages())
        return messages.search_response(result, query.fusion.method)

    @_rpc
    async def SubmitVideo(
        self, request: search_pb2.SubmitVideoRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.SubmitVideoResponse:
        modalities = requested_modalities(messages.modality_switches(request))
        submitted = await self._call(context, lambda _: self._service.submit_video(
            request.video_id, request.uri, dict(request.metadata), modalities))
        return search_pb2.SubmitVideoResponse(video_id=submitted.video_id, task_id=submitted.task_id)

    @_rpc
    async def GetVideo(self, request: search_pb2.GetVideoRequest, context: grpc.aio.ServicerContext) -> search_pb2.Video:
        status = await self._call(context, lambda _: self._service.get_video(request.video_id))
        text = await self._call(context, lambda _: self._service.video_text(request.video_id)) if request.include_text else None
        return messages.video_message(status, text)

    @_rpc
    async def DeleteVideo(
        self, request: search_pb2.DeleteVideoRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.DeleteVideoResponse:
        await self._call(context, lambda _: self._service.delete_video(request.video_id))
        return search_pb2.DeleteVideoResponse(video_id=request.video_id)

    @_rpc
    async def GetStats(
        self, request: search_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.GetStatsResponse:
        stats = await self._call(context, lambda _: self._service.stats())
        return search_pb2.GetStatsResponse(videos=stats.videos, clips=stats.clips, queue_length=stats.queue_length)
