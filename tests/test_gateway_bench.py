"""The gateway benchmark's table (a p99 only from 1000 Searches, with its count) and a smoke run
(`python -m bench.gateway --tiny`) on the session's servers."""

from __future__ import annotations

import json

import pytest

from bench.gateway import main, table


def test_table_prints_each_rows_searches_and_no_p99_below_1000():
    def run(requests, p99):
        return {"videos": 300, "clips": 1200, "load_s": 2.0, "candidates": 100, "concurrency": 1, "requests": requests,
                "qps": 20.0, "p50_ms": 40.0, "p95_ms": 55.0, "p99_ms": p99, "milvus": "lite",
                "share_of_total": {"encode": 0.2, "ann (concurrent, the longer)": 0.4, "fetch vectors": 0.3,
                                   "exact rescoring": 0.05, "fusion": 0.01},
                "overhead_in_gateway_ms": {"p50": 1.2, "p95": 1.9}, "overhead_end_to_end_ms": {"p50": 3.0}}

    text = table([run(1000, 61.25), run(20, None)])
    assert "| 300 | 1200 | 2 | 100 | 1 | 1000 | 20.0 | 40.0 | 55.0 | 61.2 | 20% |" in text
    assert "| 300 | 1200 | 2 | 100 | 1 | 20 | 20.0 | 40.0 | 55.0 | n/a (<1000) | 20% |" in text


@pytest.mark.e2e
def test_tiny_benchmark_writes_results(triton, milvus_uri, redis_url, tmp_path):
    path = main(["--tiny", "--requests", "6", "--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path),
                 "--triton-url", triton.grpc_url, "--milvus-uri", milvus_uri, "--redis-url", redis_url])
    runs = json.loads(path.read_text())["runs"]
    assert [(r["videos"], r["concurrency"], r["requests"]) for r in runs] == [(300, 1, 6), (300, 16, 6)]
    for run in runs:
        assert 0 < run["p50_ms"] <= run["p95_ms"] and run["p99_ms"] is None and run["qps"] > 0
        assert len(run["latencies_ms"]) == 6
        assert sum(run["share_of_total"].values()) == pytest.approx(1.0)
        assert run["overhead_in_gateway_ms"]["p50"] >= 0
    assert "| 300 | 1200 | " in (tmp_path / "gateway.md").read_text()
