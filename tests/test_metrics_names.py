"""Every metric that the Prometheus rules and the Grafana dashboard query is one the code really exports.

The names come from what each service would serve on /metrics: the gateway's default registry, and the
workers' multiprocess collector (run in a child process, as Celery prefork runs it). A rule or a panel
may also use Triton's own metrics, listed below, and the recording rules the rule file defines.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "k8s" / "base" / "monitoring"

# Triton's metrics, from its documentation for this release (Triton 2.51 = 24.10):
# https://github.com/triton-inference-server/server/blob/r24.10/docs/user_guide/metrics.md
# test_triton_serves_the_metrics_we_use checks the ones we use against the real tritonserver 2.51.
KNOWN_TRITON = {
    # inference request counts, per model
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count", "nv_inference_exec_count",
    "nv_inference_pending_request_count",
    # cumulative latency counters, per model, microseconds
    "nv_inference_request_duration_us", "nv_inference_queue_duration_us", "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us", "nv_inference_compute_output_duration_us",
    # GPU and CPU, per interval
    "nv_gpu_utilization", "nv_gpu_memory_total_bytes", "nv_gpu_memory_used_bytes", "nv_gpu_power_usage",
    "nv_gpu_power_limit", "nv_energy_consumption", "nv_cpu_utilization", "nv_cpu_memory_total_bytes",
    "nv_cpu_memory_used_bytes",
    # response cache, per model
    "nv_cache_num_hits_per_model", "nv_cache_num_misses_per_model", "nv_cache_hit_duration_per_model",
    "nv_cache_miss_duration_per_model",
}

# Sample names a metric family of each type exposes.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}

WORKER_EXPOSITION = """
import sys
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
import vidstrata.workers.metrics
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
sys.stdout.write(generate_latest(registry).decode())
"""


def _sample_names(exposition: str, prefix: str = "vidstrata_") -> set[str]:
    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        if family.name.startswith(prefix)
        for suffix in SUFFIXES[family.type]
    }


def gateway_names() -> set[str]:
    import vidstrata.gateway.metrics  # noqa: F401 - registers the gateway's metrics on the default registry

    return _sample_names(generate_latest(REGISTRY).decode())


def worker_names(tmp_path: Path) -> set[str]:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", WORKER_EXPOSITION], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return _sample_names(done.stdout)


def rule_file() -> list[dict]:
    return [rule for group in yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())["spec"]["groups"]
            for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "dashboards" / "vidstrata.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    # Grafana's label_values(<selector>, <label>) is not PromQL: keep its selector.
    exprs += [re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["query"]["query"])
              for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan", "le"}


def metric_names(expr: str) -> set[str]:
    """The metric (or recording rule) names a PromQL expression selects: no functions, labels or keywords."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings: label values, regexes, label_values() args
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries ([5m], [$__rate_interval])
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        name, call = match.groups()
        if not call and name not in PROMQL_WORDS:
            names.add(name)
    return names


def test_metric_names_parser() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, rpc) (rate(a_bucket{code=~"OK|x"}[5m]))) / on(rpc) b:c:d > 1e6'
    ) == {"a_bucket", "b:c:d"}
    assert metric_names("sum(rate(x_total[$__rate_interval])) by (pod) unless y") == {"x_total", "y"}


def test_rules_and_dashboard_use_exported_metrics(tmp_path: Path) -> None:
    exported = gateway_names() | worker_names(tmp_path)
    rules = rule_file()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    known = exported | KNOWN_TRITON | recorded
    used = {expr: metric_names(expr) for expr in [rule["expr"] for rule in rules] + dashboard_exprs()}
    assert {expr: names - known for expr, names in used.items() if names - known} == {}
    assert all(names for names in used.values()), "an expression selects no metric: is the parser broken?"


def test_contract_names_are_exported(tmp_path: Path) -> None:
    """The names other modules instrument with (the contract in gateway/metrics.py and workers/metrics.py)."""
    assert {
        "vidstrata_gateway_request_duration_seconds_bucket", "vidstrata_gateway_stage_duration_seconds_bucket",
        "vidstrata_gateway_requests_total", "vidstrata_gateway_inflight_requests", "vidstrata_ingest_queue_length",
        "vidstrata_ingest_queue_oldest_age_seconds",
    } <= gateway_names()
    assert {
        "vidstrata_ingest_tasks_total", "vidstrata_ingest_stage_duration_seconds_bucket", "vidstrata_ingest_frames_total",
        "vidstrata_ingest_queue_wait_seconds_bucket", "vidstrata_ingest_lag_seconds_bucket",
    } <= worker_names(tmp_path)


def test_every_metric_is_watched(tmp_path: Path) -> None:
    """Each vidstrata metric appears in a rule or on the dashboard: none is exported for nobody."""
    used = set().union(*(metric_names(e) for e in [r["expr"] for r in rule_file()] + dashboard_exprs()))
    families = {re.sub(r"_(bucket|sum|count|total|created)$", "", n) for n in gateway_names() | worker_names(tmp_path)}
    watched = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in used}
    assert families - watched == set()


@pytest.mark.e2e
def test_triton_serves_the_metrics_we_use(triton) -> None:  # noqa: ANN001 - the session fixture in tests/fixtures
    """The real tritonserver (2.51, from nvidia-pytriton) serves every nv_* name the rules and dashboard use.

    GPU metrics are left out: this Triton runs on CPU, where it has none.
    """
    from vidstrata.inference.triton_encoder import TritonEncoder

    TritonEncoder(triton.grpc_url).encode_text(["a dog runs along the beach"])  # per-model series appear on use
    with urllib.request.urlopen(f"http://127.0.0.1:{triton.ports.metrics}/metrics", timeout=10) as response:
        served = set(re.findall(r"^# TYPE (\S+) ", response.read().decode(), re.M))
    used = set().union(*(metric_names(e) for e in [r["expr"] for r in rule_file()] + dashboard_exprs()))
    assert {n for n in used if n.startswith("nv_") and not n.startswith("nv_gpu_")} - served == set()


def test_the_gateway_and_worker_metrics_load_into_one_registry():
    """One process (a test session, `make up`'s supervisor) may import both: no name may clash, e.g. a gauge
    `x` beside a counter `x_total`, whose sample `x` prometheus_client also registers."""
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", "import vidstrata.gateway.metrics, vidstrata.workers.metrics"],
                            capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
