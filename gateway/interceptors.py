"""The gateway's server interceptors: auth, metrics, and refusing requests that do not parse.

`app.start` installs them outermost first: metrics (so it counts refusals too), the malformed-request check,
then auth when a token is set. Auth and metrics concern the VideoSearch RPCs; health and reflection stay open.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from vidstrata.gateway import metrics
from vidstrata.gateway.messages import SERVICE_NAME
from vidstrata.gateway.tenants import bound_tenant, metric_label, sent_token

log = logging.getLogger(__name__)

_METHOD_PREFIX = f"/{SERVICE_NAME}/"


def _status_name(context: grpc.aio.ServicerContext, default: grpc.StatusCode) -> str:
    """The code the handler set or aborted with, else `default` (None means OK on success)."""
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else default.name


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Latency, count by status code and in-flight gauge of every VideoSearch RPC (gateway.metrics).

    Latency and count carry the request's tenant as a label bounded by `metric_tenants` (gateway.tenants.metric_label):
    the tenant the request names, else the one its token is bound to (`tenant_tokens`).
    """

    def __init__(self, metric_tenants: frozenset[str] = frozenset(), tenant_tokens: dict[str, str] | None = None) -> None:
        self._labelled = metric_tenants
        self._tokens = tenant_tokens or {}

    def _label(self, request: Any, context: grpc.aio.ServicerContext) -> str:
        tenant = getattr(request, "tenant", "")  # "" for a malformed request (MalformedRequestInterceptor)
        if not tenant and self._tokens:
            tenant = bound_tenant(self._tokens, sent_token(context.invocation_metadata())) or ""
        return metric_label(tenant if isinstance(tenant, str) else "", self._labelled)

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(_METHOD_PREFIX):
            return handler
        rpc = method[len(_METHOD_PREFIX):]
        codecs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}

        @contextmanager
        def observing(request: Any, context: grpc.aio.ServicerContext) -> Iterator[None]:
            metrics.INFLIGHT.labels(rpc=rpc).inc()
            started = time.perf_counter()
            code = "OK"
            try:
                yield
                code = _status_name(context, grpc.StatusCode.OK)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED.name
                raise
            except BaseException:
                code = _status_name(context, grpc.StatusCode.UNKNOWN)
                raise
            finally:
                metrics.INFLIGHT.labels(rpc=rpc).dec()
                tenant = self._label(request, context)
                metrics.REQUEST_DURATION.labels(rpc=rpc, code=code, tenant=tenant).observe(time.perf_counter() - started)
                metrics.REQUESTS.labels(rpc=rpc, code=code, tenant=tenant).inc()

        if handler.unary_stream is not None:  # WatchVideo: the duration is the stream's
            streaming = handler.unary_stream

            async def observed_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                with observing(request, context):
                    async for response in streaming(request, context):
                        yield response

            return grpc.unary_stream_rpc_method_handler(observed_stream, **codecs)
        behavior = handler.unary_unary

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with observing(request, context):
                return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(observed, **codecs)


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
    """Requires `authorization: Bearer <token>` on VideoSearch RPCs, the token `token` (an operator's, bound to no
    tenant) or one of `tenant_tokens` (each bound to a tenant: the servicer holds the request to it,
    gateway.tenants); health and reflection stay open."""

    def __init__(self, token: str, tenant_tokens: dict[str, str] | None = None) -> None:
        self._expected = [f"Bearer {t}".encode() for t in ([token] if token else []) + list(tenant_tokens or {})]

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if not handler_call_details.method.startswith(_METHOD_PREFIX):
            return await continuation(handler_call_details)
        sent = next((value for key, value in handler_call_details.invocation_metadata or ()
                     if key == "authorization"), "")
        sent_bytes = sent.encode() if isinstance(sent, str) else sent
        if sum(hmac.compare_digest(sent_bytes, expected) for expected in self._expected):  # every token compared
            return await continuation(handler_call_details)
        return grpc.unary_unary_rpc_method_handler(_deny)


async def _deny(request: bytes, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token (authorization: Bearer <token>)")
