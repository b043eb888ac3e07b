"""Smoke run of the gateway benchmark (`python -m bench.gateway --tiny`) on the session's servers."""

from __future__ import annotations

import json

import pytest

from bench.gateway import main

pytestmark = pytest.mark.e2e


def test_tiny_benchmark_writes_results(triton, milvus_uri, redis_url, tmp_path):
    path = main(["--tiny", "--requests", "6", "--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path),
                 "--triton-url", triton.grpc_url, "--milvus-uri", milvus_uri, "--redis-url", redis_url])
    runs = json.loads(path.read_text())["runs"]
    assert [(r["videos"], r["concurrency"], r["requests"]) for r in runs] == [(300, 1, 6), (300, 16, 6)]
    for run in runs:
        assert 0 < run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"] and run["qps"] > 0
        assert sum(run["share_of_total"].values()) == pytest.approx(1.0)
        assert run["overhead_in_gateway_ms"]["p50"] >= 0
    assert "| 300 | 1200 | " in (tmp_path / "gateway.md").read_text()
