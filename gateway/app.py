"""The gateway process: settings -> `SearchService` -> a grpc.aio server, and its lifecycle (`vidstrata gateway`).

Here the pieces meet: the servicer (gateway.servicer) and the interceptors (gateway.interceptors) on the API port,
grpc.health.v1 driven by a background probe of Triton and Milvus (also on a plaintext health port when set), server
reflection (grpcurl needs no .proto), the Prometheus /metrics HTTP server, and draining on SIGTERM.
`python -m vidstrata.gateway.app` runs `main()`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server
from threadpoolctl import threadpool_limits

from vidstrata.gateway import metrics
from vidstrata.gateway.ingest import CeleryIngestQueue
from vidstrata.gateway.lexical import LexicalSearch
from vidstrata.gateway.interceptors import AuthInterceptor, MalformedRequestInterceptor, MetricsInterceptor
from vidstrata.gateway.messages import SERVICE_NAME
from vidstrata.gateway.service import SearchService
from vidstrata.gateway.servicer import VideoSearchServicer
from vidstrata.gateway.settings import GatewaySettings, UnauthenticatedExposure
from vidstrata.index.lexicon import LexiconIndex
from vidstrata.index.segments import SegmentIndex
from vidstrata.index.store import VideoIndex
from vidstrata.inference.factory import open_encoder
from vidstrata.jobs.errors import StatusError
from vidstrata.jobs.reindex import Generation, ReindexStore, generation_settings
from vidstrata.jobs.status import StatusStore
from vidstrata.spec.redaction import install_log_redaction
from vidstrata.v1 import search_pb2_grpc

log = logging.getLogger(__name__)
SERVING_POLL_S = 2.0  # how often the gateway reads which generation to serve, and the re-index job's progress


def build_service(settings: GatewaySettings, generation: Generation | None = None) -> SearchService:
    """The service wired to the real Triton, Milvus and Redis named in settings (connections open lazily), for the
    collections and Triton of `generation` (jobs.reindex) when given."""
    settings = generation_settings(settings, generation)
    index = VideoIndex(settings.milvus)
    service = SearchService(
        settings,
        new_encoder=lambda: open_encoder(settings.triton.url, timeout_s=settings.triton_timeout_s),
        index=index,
        status=StatusStore(settings.redis.url, settings.redis.timeout_s),
        queue=CeleryIngestQueue(settings.redis.url, settings.redis.timeout_s),
        segments=SegmentIndex(index),
        lexical=LexicalSearch(LexiconIndex(index), settings.lexical_k1, settings.lexical_b,
                              settings.lexical_max_postings, settings.lexical_stats_ttl_s),
    )
    index.connection.served = service.served_models  # a schema migration backfills the versions this gateway serves
    service.reindex_jobs = ReindexStore(settings.redis.url, settings.redis.timeout_s)
    return service


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
    servicer: VideoSearchServicer
    follow_task: asyncio.Task[None] | None = None

    async def stop(self, grace_s: float | None = None) -> None:
        """Report NOT_SERVING, let in-flight RPCs finish (grace), then stop everything."""
        await self.health.enter_graceful_shutdown()
        self.probe_task.cancel()
        if self.follow_task is not None:
            self.follow_task.cancel()
        grace = self.settings.grace_s if grace_s is None else grace_s
        await asyncio.gather(*(s.stop(grace) for s in (self.server, self.health_server) if s is not None))
        await self.servicer.close()
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


def _read_serving(jobs: ReindexStore) -> Generation | None:
    """The generation to serve (jobs.reindex); None when none was cut over, or Redis cannot say now (the follower
    reads it again)."""
    try:
        return jobs.serving()
    except StatusError as exc:
        log.warning("could not read which generation to serve (serving the settings' until Redis answers): %s", exc)
        return None


async def _follow_serving(gateway: Gateway, jobs: ReindexStore, current: Generation | None) -> None:
    """Every SERVING_POLL_S: show the re-index job's progress in the metrics, and after a cutover or rollback serve
    the generation it names (jobs.reindex): a service for its collections and Triton is built and probed, then
    takes every RPC from the next one on; RPCs running on the previous one finish there (so a Search never mixes
    generations), and the previous one is closed once the longest of them is over."""
    settings = gateway.settings
    while True:
        await asyncio.sleep(SERVING_POLL_S)
        try:
            serving, job = await asyncio.to_thread(lambda: (jobs.serving(), jobs.latest()))
        except StatusError as exc:
            log.warning("could not read the serving generation: %s", exc)
            continue
        if job is not None:
            metrics.set_reindex(job.done, job.left, job.failed, job.eta_s)
        if serving is None or serving == current:
            continue
        service = await asyncio.to_thread(build_service, settings, serving)
        if not await asyncio.to_thread(service.probe, settings.probe_timeout_s):
            log.warning("generation %s is not serving yet (%s, %s); trying again", serving.collection_prefix,
                        service.triton.error, service.milvus.error)
            service.close()
            continue
        old = gateway.service
        gateway.servicer.use(service)
        gateway.service = service
        gateway.probe_task.cancel()
        gateway.probe_task = asyncio.create_task(_probe_forever(service, gateway.health))
        asyncio.get_running_loop().call_later(settings.request_timeout_s + SERVING_POLL_S, old.close)
        log.info("serving generation %r (%s, Triton %s)", serving.collection_prefix, serving.visual_model,
                 serving.triton_url)
        current = serving


async def start(settings: GatewaySettings, service: SearchService | None = None) -> Gateway:
    """Start serving; health is NOT_SERVING until the first probe finds Triton and Milvus up."""
    jobs = ReindexStore(settings.redis.url, settings.redis.timeout_s)
    generation = await asyncio.to_thread(_read_serving, jobs)
    service = service or build_service(settings, generation)
    executor = ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="rpc")
    # Metrics outermost, so it counts refusals too; the malformed-request check wraps whatever auth lets through.
    interceptors: list[grpc.aio.ServerInterceptor] = [
        MetricsInterceptor(frozenset(settings.metric_tenants), settings.tenant_tokens), MalformedRequestInterceptor()]
    if settings.auth_token or settings.tenant_tokens:
        interceptors.append(AuthInterceptor(settings.auth_token, settings.tenant_tokens))
    # gRPC's own 4 MiB cap would turn an image under max_image_bytes into RESOURCE_EXHAUSTED, and a cap just above the
    # largest valid Search would do the same to an image a little too large: the transport takes up to
    # max_request_bytes, so the servicer can answer INVALID_ARGUMENT naming the image limit.
    server = grpc.aio.server(interceptors=interceptors,
                             options=[("grpc.max_receive_message_length", settings.receive_limit_bytes)])
    servicer = VideoSearchServicer(service, executor)
    search_pb2_grpc.add_VideoSearchServicer_to_server(servicer, server)
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
    gateway = Gateway(settings, service, server, health, health_server, metrics_server, executor, probe_task, port,
                      servicer)
    gateway.follow_task = asyncio.create_task(_follow_serving(gateway, jobs, generation))
    return gateway


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
