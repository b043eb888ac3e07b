"""What every benchmark shares: the machine it ran on, medians over repeats, and result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
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
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}


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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def write_results(name: str, payload: dict[str, Any], table: str, results_dir: Path = RESULTS_DIR) -> Path:
    """<results_dir>/<name>.json and .md; returns the JSON path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    (results_dir / f"{name}.md").write_text(table + "\n")
    return path
