"""The gRPC transport: a grpc.aio server whose servicer converts messages and calls `SearchService`.

Also here: the auth and metrics interceptors, grpc.health.v1 driven by a background probe of Triton and
Milvus, server reflection (grpcurl needs no .proto), the Prometheus /metrics HTTP server, and `main()`
behind `vidstrata gateway`. Blocking service calls run in a thread pool, bounded by the RPC's deadline.

What a caller sees holds nothing secret or internal: a request that does not parse is INVALID_ARGUMENT with a
short message (and one warning line in the log, no traceback); status fields and error messages have the
credentials of source URLs redacted (spec.redaction); an unexpected error is INTERNAL with no detail.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import inspect
import logging
import math
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server
from threadpoolctl import threadpool_limits

from vidstrata.gateway import metrics
from vidstrata.gateway.errors import DeadlineExceeded, ServiceError, InvalidArgument, NotFound, Unavailable
from vidstrata.gateway.fusion import FusionMethod
from vidstrata.gateway.ingest import CeleryIngestQueue, requested_modalities
from vidstrata.gateway.query import parse_search
from vidstrata.gateway.service import SearchResult, SearchService
from vidstrata.gateway.settings import GatewaySettings, UnauthenticatedExposure
from vidstrata.jobs.status import IngestState, StatusStore, VideoStatus
from vidstrata.spec.redaction import install_log_redaction, redact_text, redact_uri
from vidstrata.index.segments import SegmentIndex, SegmentRecord
from vidstrata.index.store import VideoIndex
from vidstrata.inference.factory import open_encoder
from vidstrata.v1 import search_pb2, search_pb2_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["VideoSearch"].full_name  # "vidstrata.v1.VideoSearch"
_METHOD_PREFIX = f"/{SERVICE_NAME}/"
_CODES: tuple[tuple[type[ServiceError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
)
_STATES = {
    IngestState.PENDING: search_pb2.Video.PENDING,
    IngestState.RUNNING: search_pb2.Video.RUNNING,
    IngestState.READY: search_pb2.Video.READY,
    IngestState.FAILED: search_pb2.Video.FAILED,
}


# A status message travels percent-encoded in a trailer that gRPC caps at 16 KiB; past it the client gets a
# transport error (RESOURCE_EXHAUSTED) instead of the status. 4000 bytes stay under the cap even fully encoded.
MAX_STATUS_MESSAGE_BYTES = 4000


def status_message(text: str) -> str:
    """The message as sent: cut to MAX_STATUS_MESSAGE_BYTES of UTF-8 (never mid-character) when longer."""
    data = text.encode("utf-8")
    if len(data) <= MAX_STATUS_MESSAGE_BYTES:
        return text
    return data[: MAX_STATUS_MESSAGE_BYTES - 40].decode("utf-8", errors="ignore") + f"... ({len(data)} bytes in all)"


def _code_of(error: ServiceError) -> grpc.StatusCode:
    return next(code for kind, code in _CODES if isinstance(error, kind))


Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]


def _rpc(method: Handler) -> Handler:
    """Map what a handler raises to a gRPC status: ServiceError by kind, anything else INTERNAL (logged)."""

    @functools.wraps(method)
    async def handle(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except ServiceError as exc:
            await context.abort(_code_of(exc), status_message(redact_text(str(exc))))
        except asyncio.TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the call finished")
        except Exception:
            log.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error (logged by the gateway)")

    return handle


def _timestamp(unix_s: float) -> Timestamp | None:
    if unix_s <= 0:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(int(unix_s * 1e9))
    return stamp


def search_response(result: SearchResult, method: FusionMethod) -> search_pb2.SearchResponse:
    """The proto of a SearchResult."""
    t = result.timings
    return search_pb2.SearchResponse(
        hits=[
            search_pb2.SearchHit(
                video_id=hit.video_id,
                score=hit.score,
                levels=search_pb2.LevelScores(**{k: v for k, v in hit.levels.items() if math.isfinite(v)}),
                best_clip=search_pb2.ClipSpan(
                    start_s=hit.best_clip.start_s, end_s=hit.best_clip.end_s, score=hit.best_clip.score
                ),
                why=search_pb2.MatchReason(level=hit.match.level, start_s=hit.match.start_s, end_s=hit.match.end_s,
                                           snippet=hit.match.snippet) if hit.match else None,
            )
            for hit in result.hits
        ],
        phrases=result.phrases,
        timings=search_pb2.StageTimings(
            encode_ms=t.encode * 1e3, ann_videos_ms=t.ann_videos * 1e3, ann_clips_ms=t.ann_clips * 1e3,
            rescore_ms=t.rescore * 1e3, rescore_fetch_ms=t.rescore_fetch * 1e3, fusion_ms=t.fusion * 1e3,
            total_ms=t.total * 1e3,
        ),
        fusion_method=search_pb2.Fusion.Method.Value(method.value),
        candidates=result.candidates,
    )


def video_message(status: VideoStatus, text: Mapping[str, Sequence[SegmentRecord]] | None = None) -> search_pb2.Video:
    """The proto of a video's status, with its timed text (kind -> segments) when asked for."""
    text = text or {}

    def timed(kind: str) -> list[search_pb2.TimedText]:
        return [search_pb2.TimedText(start_s=s.start_s, end_s=s.end_s, text=s.text) for s in text.get(kind, ())]

    return search_pb2.Video(
        transcript=timed("speech"),
        screen_text=timed("screen_text"),
        video_id=status.video_id,
        status=_STATES[status.state],
        progress=status.progress,
        stage=redact_text(status.stage),
        reason=redact_text(status.reason),
        clip_count=status.clip_count or 0,
        duration_s=status.duration_s or 0.0,
        metadata=status.metadata,
        uri=redact_uri(status.uri),
        task_id=status.task_id,
        submitted_at=_timestamp(status.submitted_at),
        updated_at=_timestamp(status.updated_at),
    )


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
        method = None
        if request.fusion.method != search_pb2.Fusion.METHOD_UNSPECIFIED:
            try:
                method = FusionMethod(search_pb2.Fusion.Method.Name(request.fusion.method))
            except ValueError as exc:
                raise InvalidArgument(f"unknown fusion method {request.fusion.method}; use WEIGHTED or RRF") from exc
        query = parse_search(
            self._settings,
            request.query,
            top_k=request.top_k if request.HasField("top_k") else None,
            filter_expr=request.filter,
            method=method,
            weights=dict(request.fusion.weights),
            image=request.image,
        )
        result = await self._call(context, lambda deadline: self._service.search(query, deadline))
        metrics.observe_stages(result.timings.stages())
        return search_response(result, query.fusion.method)

    @_rpc
    async def SubmitVideo(
        self, request: search_pb2.SubmitVideoRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.SubmitVideoResponse:
        switches = ({field.name: value for field, value in request.modalities.ListFields()}
                    if request.HasField("modalities") else None)
        modalities = requested_modalities(switches)
        submitted = await self._call(context, lambda _: self._service.submit_video(
            request.video_id, request.uri, dict(request.metadata), modalities))
        return search_pb2.SubmitVideoResponse(video_id=submitted.video_id, task_id=submitted.task_id)

    @_rpc
    async def GetVideo(self, request: search_pb2.GetVideoRequest, context: grpc.aio.ServicerContext) -> search_pb2.Video:
        status = await self._call(context, lambda _: self._service.get_video(request.video_id))
        text = await self._call(context, lambda _: self._service.video_text(request.video_id)) if request.include_text else None
        return video_message(status, text)

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


def _status_name(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> str:
    """The code the handler set or aborted with, else `default` (None means OK on success)."""
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else default.name


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Latency, count by status code and in-flight gauge of every VideoSearch RPC (gateway.metrics)."""

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(_METHOD_PREFIX):
            return handler
        rpc = method[len(_METHOD_PREFIX):]
        behavior = handler.unary_unary

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metrics.INFLIGHT.labels(rpc=rpc).inc()
            started = time.perf_counter()
            code = "OK"
            try:
                response = await behavior(request, context)
                code = _status_name(context, grpc.StatusCode.OK)
                return response
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED.name
                raise
            except BaseException:
                code = _status_name(context, grpc.StatusCode.UNKNOWN)
                raise
            finally:
                metrics.INFLIGHT.labels(rpc=rpc).dec()
                metrics.REQUEST_DURATION.labels(rpc=rpc, code=code).observe(time.perf_counter() - started)
                metrics.REQUESTS.labels(rpc=rpc, code=code).inc()

        return grpc.unary_unary_rpc_method_handler(
            observed, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


@dataclass(frozen=True)
class _Malformed:
    """What a request message that does not parse deserializes to, so its handler can refuse it cleanly.

    Left to gRPC, the parser's exception escapes before any handler runs: the client gets UNKNOWN naming a Python
    class, and the log a traceback.
    """

    size: int
    message_type: str


def _lenient(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """The deserializer, returning _Malformed instead of raising on bytes that do not parse."""
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    message_type = getattr(descriptor, "full_name", "") or "request"

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # noqa: BLE001 - DecodeError, and whatever a custom deserializer raises
            return _Malformed(len(data), message_type)

    return deserialize


async def _refuse(request: _Malformed, context: grpc.aio.ServicerContext, method: str) -> None:
    log.warning("refused a malformed request to %s from %s: %d bytes that do not parse as %s",
                method, context.peer(), request.size, request.message_type)
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"the request is not a valid {request.message_type} message ({request.size} bytes that do not parse)")


def _refusing_malformed(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """The handler, with a request that does not parse answered INVALID_ARGUMENT before its behaviour sees it.

    Each wrapper is of its behaviour's kind (coroutine or async generator), as grpc.aio tells them apart by that;
    a synchronous behaviour (none is served here) is left as it is.
    """
    codecs = {"request_deserializer": _lenient(handler.request_deserializer),
              "response_serializer": handler.response_serializer}
    streams_requests = handler.unary_unary is None and handler.unary_stream is None
    behavior = next(b for b in (handler.unary_unary, handler.unary_stream, handler.stream_unary, handler.stream_stream)
                    if b is not None)

    async def checked(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        async for request in requests:
            if isinstance(request, _Malformed):
                await _refuse(request, context, method)  # raises: the call ends here
            yield request

    async def arguments(request: Any, context: grpc.aio.ServicerContext) -> Any:
        """What the behaviour is called with: the request stream checked as it goes, a single request up front."""
        if streams_requests:
            return checked(request, context)
        if isinstance(request, _Malformed):
            await _refuse(request, context, method)
        return request

    if inspect.isasyncgenfunction(behavior):
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async for response in behavior(await arguments(request, context), context):
                yield response
    elif inspect.iscoroutinefunction(behavior):
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:  # type: ignore[misc]
            return await behavior(await arguments(request, context), context)
    else:
        return handler
    make = {"unary_unary": grpc.unary_unary_rpc_method_handler, "unary_stream": grpc.unary_stream_rpc_method_handler,
            "stream_unary": grpc.stream_unary_rpc_method_handler, "stream_stream": grpc.stream_stream_rpc_method_handler}
    kind = next(name for name in make if getattr(handler, name) is not None)
    return make[kind](wrapped, **codecs)


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):
    """Every RPC of the server (VideoSearch, health, reflection) answers bytes that do not parse as its request
    message with INVALID_ARGUMENT and a short message, and logs one warning line."""

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler  # unknown method, or one taking raw bytes (the auth refusal)
        return _refusing_malformed(handler, handler_call_details.method)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Requires `authorization: Bearer <token>` on VideoSearch RPCs; health and reflection stay open."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if not handler_call_details.method.startswith(_METHOD_PREFIX):
            return await continuation(handler_call_details)
        sent = next((value for key, value in handler_call_details.invocation_metadata or ()
                     if key == "authorization"), "")
        if hmac.compare_digest(sent.encode() if isinstance(sent, str) else sent, self._expected):
            return await continuation(handler_call_details)
        return grpc.unary_unary_rpc_method_handler(_deny)


async def _deny(request: bytes, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (authorization: Bearer <token>)")


def build_service(settings: GatewaySettings) -> SearchService:
    """The service wired to the real Triton, Milvus and Redis named in settings (connections open lazily)."""
    index = VideoIndex(settings.milvus)
    return SearchService(
        settings,
        new_encoder=lambda: open_encoder(settings.triton.url, timeout_s=settings.triton_timeout_s),
        index=index,
        status=StatusStore(settings.redis.url, settings.redis.timeout_s),
        queue=CeleryIngestQueue(settings.redis.url, settings.redis.timeout_s),
        segments=SegmentIndex(index),
    )


@dataclass
class Gateway:
    """A started gateway: the API server, the optional plaintext health server, and the metrics server."""

    settings: GatewaySettings
    service: SearchService
    server: grpc.aio.Server
    health: health_aio.HealthServicer
    health_server: grpc.aio.Server | None
    metrics_server: Any
    executor: ThreadPoolExecutor
    probe_task: asyncio.Task[None]
    port: int

    async def stop(self, grace_s: float | None = None) -> None:
        """Report NOT_SERVING, let in-flight RPCs finish (grace), then stop everything."""
        await self.health.enter_graceful_shutdown()
        self.probe_task.cancel()
        grace = self.settings.grace_s if grace_s is None else grace_s
        await asyncio.gather(*(s.stop(grace) for s in (self.server, self.health_server) if s is not None))
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        self.service.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


async def _probe_forever(service: SearchService, health: health_aio.HealthServicer) -> None:
    """Keep health in step with Triton and Milvus, so it recovers by itself when they come back.

    Probes run outside the RPC thread pool, so a flood of requests cannot delay them.
    """
    settings = service.settings
    while True:
        serving = await asyncio.to_thread(service.probe, settings.probe_timeout_s)
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await health.set(name, status)
        await asyncio.sleep(settings.probe_interval_s)


async def start(settings: GatewaySettings, service: SearchService | None = None) -> Gateway:
    """Start serving; health is NOT_SERVING until the first probe finds Triton and Milvus up."""
    service = service or build_service(settings)
    executor = ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="rpc")
    # Metrics outermost, so it counts refusals too; the malformed-request check wraps whatever auth lets through.
    interceptors: list[grpc.aio.ServerInterceptor] = [MetricsInterceptor(), MalformedRequestInterceptor()]
    if settings.auth_token:
        interceptors.append(AuthInterceptor(settings.auth_token))
    # gRPC's own 4 MiB cap would turn an image under max_image_bytes into RESOURCE_EXHAUSTED, and a cap just above the
    # largest valid Search would do the same to an image a little too large: the transport takes up to
    # max_request_bytes, so the servicer can answer INVALID_ARGUMENT naming the image limit.
    server = grpc.aio.server(interceptors=interceptors,
                             options=[("grpc.max_receive_message_length", settings.receive_limit_bytes)])
    search_pb2_grpc.add_VideoSearchServicer_to_server(VideoSearchServicer(service, executor), server)
    health = health_aio.HealthServicer()
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    address = f"{settings.host}:{settings.port}"
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        credentials = grpc.ssl_server_credentials([(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    health_server = None
    if settings.health_port:
        health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health, health_server)
        health_server.add_insecure_port(f"{settings.host}:{settings.health_port}")
    metrics_server = None
    if settings.metrics_port:
        metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.host)
        metrics.sample_ingest_queue(service.queue.length, service.queue.oldest_age_s)
        metrics.QUERY_CACHE_HIT_RATIO.set_function(service.query_cache.hit_ratio)
    await server.start()
    if health_server is not None:
        await health_server.start()
    probe_task = asyncio.create_task(_probe_forever(service, health))
    log.info("gateway listening on %s (%s), health port %s, metrics port %s",
             f"{settings.host}:{port}", "TLS" if settings.tls_cert_file else "plaintext",
             settings.health_port or "-", settings.metrics_port or "-")
    return Gateway(settings, service, server, health, health_server, metrics_server, executor, probe_task, port)


async def serve(settings: GatewaySettings) -> None:
    """Run until SIGTERM or SIGINT, then drain for grace_s."""
    gateway = await start(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: draining in-flight RPCs for up to %.0fs", settings.grace_s)
    await gateway.stop()


def main() -> None:
    """Entry point of `vidstrata gateway`: settings from VIDSTRATA_* environment variables."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    # Rescoring's matrix products are tiny ([500, D] x [D, Q]): BLAS threads gain nothing there, and OpenBLAS's
    # spin while idle, which cost 35 ms of CPU per Search on 2 cores, taken from Milvus (BENCHMARKS.md, #13).
    threadpool_limits(limits=1, user_api="blas")
    settings = GatewaySettings()
    try:
        warning = settings.exposure_warning()  # no API beyond loopback without a token, unless allowed on purpose
    except UnauthenticatedExposure as exc:
        raise SystemExit(f"vidstrata gateway: {exc}") from None
    if warning:
        log.warning(warning)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
