"""What every benchmark shares: the machine it ran on, medians over repeats, latency percentiles of pooled runs,
and result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS_DIR = Path("bench/results")


def machine() -> dict[str, Any]:
    """Cores, CPU model and Python, so every figure names where it was measured."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "load_average": list(os.getloadavg())}


def rate(fn: Callable[[], int], seconds: float) -> float:
    """Items per second of `fn` (which returns how many items it processed), over about `seconds`."""
    fn()  # warm-up
    items, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        items += fn()
    return items / (time.perf_counter() - start)


def median_of(repeats: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(repeats))


def median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Field-wise median of several runs (nested dicts too); lists of the raw values stay in the JSON."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            out[key] = median_runs([r[key] for r in runs])
        elif isinstance(value, (int, float)):
            out[key] = statistics.median(r[key] for r in runs)
    return out


# A p99 from n samples is about the (n/100)-th largest: from 100 it is the second-largest, one slow request. At least
# 1000 samples put 10 above it, so a figure is not one outlier; below that the p99 is absent, never a number.
P99_MIN_SAMPLES = 1000
PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 <= q <= 100) of `values` (not empty), in their unit."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def percentiles(runs: Iterable[Iterable[float]], qs: Sequence[float] = PERCENTILES,
                scale: float = 1.0) -> dict[float, float | None]:
    """Each q-th percentile of the samples of every run pooled (so a row of 3 repeats of 400 requests is one
    sample of 1200, never a median of three p99s), times `scale` (1e3: s -> ms).

    A percentile of 99 or above is None from fewer than P99_MIN_SAMPLES samples, and every one is None from none.
    """
    pooled = [value for run in runs for value in run]
    return {q: None if not pooled or (q >= 99 and len(pooled) < P99_MIN_SAMPLES) else scale * percentile(pooled, q)
            for q in qs}


def latency_summary(runs: Sequence[tuple[Sequence[float], float]]) -> dict[str, Any]:
    """One row of a latency table from its runs, each (latencies in s, seconds the run took): `requests` pooled,
    `qps` = requests / the runs' seconds together, `runs_qps` (each run's, for the spread), `p50_ms`, `p95_ms` and
    `p99_ms` (None below P99_MIN_SAMPLES requests) over the pooled latencies, and those latencies in ms (0.01 ms
    resolution) so the result file keeps every sample."""
    latencies = [lat for run, _ in runs for lat in run]
    return {
        "requests": len(latencies),
        "qps": len(latencies) / sum(elapsed for _, elapsed in runs),
        "runs_qps": [len(run) / elapsed for run, elapsed in runs],
        **{f"p{q}_ms": value for q, value in percentiles([latencies], scale=1e3).items()},
        "latencies_ms": [round(1e3 * lat, 2) for lat in latencies],
    }


def format_percentile(value: float | None, digits: int = 1) -> str:
    """A percentile's table cell: the number, or why there is none (a p99 from fewer than P99_MIN_SAMPLES)."""
    return f"n/a (<{P99_MIN_SAMPLES})" if value is None else f"{value:.{digits}f}"


def write_results(name: str, payload: dict[str, Any], table: str, results_dir: Path = RESULTS_DIR) -> Path:
    """<results_dir>/<name>.json and .md; returns the JSON path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    (results_dir / f"{name}.md").write_text(table + "\n")
    return path
