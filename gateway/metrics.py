"""Prometheus metrics of the gateway.

The names are a contract with k8s/base/monitoring/ (recording rules, alerts, dashboard):
tests/test_metrics_names.py fails when a rule or a panel uses a name that is not defined here,
in workers/metrics.py, or among Triton's own metrics.

Labels:
- `rpc`: the gRPC method name without its service, e.g. "Search", "SubmitVideo".
- `code`: the gRPC status code name, `grpc.StatusCode.X.name`, e.g. "OK", "INVALID_ARGUMENT".
  The error-ratio rule counts only server-side codes (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
  INTERNAL, UNAVAILABLE, DATA_LOSS), so a client's bad request never pages anyone.
- `stage`: one of STAGES, the steps of one Search.
- `tenant` (request latency and count only): the request's tenant when listed in VIDSTRATA_GATEWAY_METRIC_TENANTS,
  `_default` for the default tenant, `_other` for any other (gateway.tenants.metric_label), so its values stay bounded.
  Rules and panels sum it away unless they ask for it.

The gateway is one grpc.aio process, so these live on the default registry and the service exposes it
with `prometheus_client.start_http_server(9100)` (the port k8s scrapes).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Callable

from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger(__name__)

# 0.5 ms .. 10 s. A Search is a few ms (a Triton round trip is ~2 ms) up to a few hundred ms on a large
# index; 0.5 s is the default p99 SLO, and it is a bucket edge so the SLO alert compares against an exact bound.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

STAGES = ("encode", "ann_videos", "ann_clips", "rescore", "fusion")

REQUEST_DURATION = Histogram(
    "vidstrata_gateway_request_duration_seconds",
    "Time from receiving an RPC to sending its response, by method, gRPC status code and (bounded) tenant.",
    ["rpc", "code", "tenant"],
    buckets=LATENCY_BUCKETS,
)
STAGE_DURATION = Histogram(
    "vidstrata_gateway_stage_duration_seconds",
    "Time spent in one stage of a Search: encode, ann_videos, ann_clips, rescore, fusion.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS = Counter(
    "vidstrata_gateway_requests_total",
    "RPCs answered, by method, gRPC status code and (bounded) tenant.",
    ["rpc", "code", "tenant"],
)
INFLIGHT = Gauge(
    "vidstrata_gateway_inflight_requests",
    "RPCs being handled right now, by method.",
    ["rpc"],
)
QUERY_CACHE_LOOKUPS = Counter(
    "vidstrata_gateway_query_cache_lookups_total",
    "Searches that looked up their query in the query-vector cache, by result: hit (no Triton call) or miss.",
    ["result"],
)
QUERY_CACHE_HIT_RATIO = Gauge(
    "vidstrata_gateway_query_cache_hit_ratio",
    "Share of query-vector cache lookups that hit since the gateway started, sampled at scrape time.",
)
WATCHERS = Gauge(
    "vidstrata_gateway_watchers",
    "WatchVideo streams open right now (at most VIDSTRATA_GATEWAY_MAX_WATCHERS; more are RESOURCE_EXHAUSTED).",
)
INGEST_QUEUE_LENGTH = Gauge(
    "vidstrata_ingest_queue_length",
    "Ingest tasks waiting in the Redis list `ingest`, sampled at scrape time.",
)
INGEST_QUEUE_OLDEST_AGE = Gauge(
    "vidstrata_ingest_queue_oldest_age_seconds",
    "Age of the oldest ingest task still waiting in the queue (0 when empty), sampled at scrape time.",
)
REINDEX_VIDEOS = Gauge(
    "vidstrata_reindex_videos",
    "Videos of the latest re-index job (jobs.reindex) by state: done, left, failed; read every few seconds.",
    ["state"],
)
REINDEX_ETA = Gauge(
    "vidstrata_reindex_eta_seconds",
    "Seconds the latest re-index job needs at its rate so far (0 when done or unknown).",
)

for _result in ("hit", "miss"):
    QUERY_CACHE_LOOKUPS.labels(result=_result)
# Every stage exists from the start, at zero, so rates and quantiles have a series before the first Search.
for _stage in STAGES:
    STAGE_DURATION.labels(stage=_stage)


def observe_stages(seconds: Mapping[str, float]) -> None:
    """Record the stage timings of one Search (seconds by stage, named as in STAGES) in STAGE_DURATION."""
    for stage, spent in seconds.items():
        STAGE_DURATION.labels(stage=stage).observe(spent)


def set_reindex(done: int, left: int, failed: int, eta_s: float) -> None:
    """Show the latest re-index job's progress."""
    for state, count in (("done", done), ("left", left), ("failed", failed)):
        REINDEX_VIDEOS.labels(state=state).set(count)
    REINDEX_ETA.set(eta_s)


def sample_ingest_queue(length: Callable[[], float], oldest_age_seconds: Callable[[], float]) -> None:
    """Read the ingest queue at each scrape by calling these (synchronous) functions.

    They run in the metrics server's thread, so they must use a synchronous Redis client. A failure
    reports NaN for that gauge instead of failing the whole scrape: a Redis outage must not hide the
    gateway's latency and error metrics.
    """
    INGEST_QUEUE_LENGTH.set_function(_nan_on_error(length))
    INGEST_QUEUE_OLDEST_AGE.set_function(_nan_on_error(oldest_age_seconds))


def _nan_on_error(read: Callable[[], float]) -> Callable[[], float]:
    def safe() -> float:
        try:
            return float(read())
        except Exception:  # noqa: BLE001 - any failure of the sampler is reported, never raised into the scrape
            log.warning("ingest queue sample failed", exc_info=True)
            return math.nan

    return safe
