"""Prometheus metrics of the ingest workers.

The names are a contract with k8s/base/monitoring/ (recording rules, alerts, dashboard):
tests/test_metrics_names.py fails when a rule or a panel uses a name not defined here,
in gateway/metrics.py, or among Triton's own metrics.

Celery runs tasks in prefork children, so the metrics use prometheus_client's multiprocess mode:
- `PROMETHEUS_MULTIPROC_DIR` must name an empty, writable folder *before* prometheus_client is first
  imported (it picks the file-backed value class at import). Wipe it when the worker starts: files of a
  previous run's pids would otherwise be summed in. k8s mounts an emptyDir there.
- The worker's metrics HTTP server (port 9101, in the Celery main process, on the interface
  VIDSTRATA_WORKER_METRICS_HOST names) must collect with `prometheus_client.multiprocess.MultiProcessCollector`
  on a fresh registry, never the default registry, which sees only its own process: `serve_metrics` does that.
- A Gauge needs a `multiprocess_mode` ("livesum", "max", ...) to say how the children's values combine,
  and `multiprocess.mark_process_dead(pid)` in Celery's `worker_process_shutdown` for the live modes.
  There is no Gauge here; counters and histograms simply sum over all processes, dead ones included.

Labels: `outcome` is one of OUTCOMES (a retried task counts once per retry, then once as ready or
failed); `stage` is one of STAGES.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server

OUTCOMES = ("ready", "failed", "retried")
REINDEX_OUTCOMES = ("ready", "failed", "cancelled")
STAGES = ("fetch", "decode", "embed", "write")

# Seconds to minutes: a stage of one video takes from a fraction of a second (write) to many minutes
# (decode and embed of a long video).
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
# Waiting in the queue and submit-to-READY: seconds when idle, up to hours under a backlog.
WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)

TASKS = Counter(
    "vidstrata_ingest_tasks_total",
    "Ingest task runs by outcome: ready, failed (gave up), retried.",
    ["outcome"],
)
STAGE_DURATION = Histogram(
    "vidstrata_ingest_stage_duration_seconds",
    "Time spent in one stage of ingesting a video: fetch, decode, embed, write.",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
FRAMES = Counter(
    "vidstrata_ingest_frames_total",
    "Frames sampled and embedded.",
)
QUEUE_WAIT = Histogram(
    "vidstrata_ingest_queue_wait_seconds",
    "Time from submitting an ingest task to a worker starting it.",
    buckets=WAIT_BUCKETS,
)
LAG = Histogram(
    "vidstrata_ingest_lag_seconds",
    "Time from submitting a video to its status becoming READY (searchable).",
    buckets=WAIT_BUCKETS,
)
REINDEXED = Counter(
    "vidstrata_reindex_tasks_total",
    "Re-index task runs (jobs.reindex) by outcome: ready (written into the generation beside the served one), failed "
    "(a failure of the job, with its video id), cancelled (deleted or being ingested again meanwhile).",
    ["outcome"],
)

# Every label value exists from the start, at zero, so a failure ratio is 0 (not missing) on a healthy worker.
for _outcome in OUTCOMES:
    TASKS.labels(outcome=_outcome)
for _outcome in REINDEX_OUTCOMES:
    REINDEXED.labels(outcome=_outcome)
for _stage in STAGES:
    STAGE_DURATION.labels(stage=_stage)


def serve_metrics(port: int, addr: str | None = None) -> None:
    """Serve the metrics of this process and of every prefork child on http://addr:port/metrics.

    addr None: the interface VIDSTRATA_WORKER_METRICS_HOST names (all of them by default; `vidstrata up`: 127.0.0.1).
    """
    if addr is None:
        from vidstrata.workers.settings import WorkerSettings

        addr = WorkerSettings().metrics_host
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        raise RuntimeError("PROMETHEUS_MULTIPROC_DIR is not set: Celery prefork needs multiprocess metrics")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=addr, registry=registry)
