"""The encoder benchmark: its table (requests per Triton row, no p99 below 1000) and a run end to end at tiny size,
so it cannot rot (no timing is asserted)."""

import json
import subprocess
import sys

import pytest

from bench.encoders import table


def test_table_prints_each_triton_rows_requests_and_no_p99_below_1000():
    rows = [{"runtime": "onnxruntime", "kind": "texts", "batch": 16, "concurrency": 1, "items_per_s": 10.5},
            {"runtime": "triton-grpc", "kind": "texts", "batch": 1, "concurrency": 1, "items_per_s": 15.6,
             "requests": 1200, "p50_ms": 59.1, "p95_ms": 99.3, "p99_ms": 114.2},
            {"runtime": "triton-grpc", "kind": "texts", "batch": 1, "concurrency": 4, "items_per_s": 16.0,
             "requests": 8, "p50_ms": 235.1, "p95_ms": 315.3, "p99_ms": None}]
    text = table(rows, {"texts": 1.5})
    assert "| onnxruntime | texts | 16 | 1 | – | 10.5 | – | – | – |" in text
    assert "| triton-grpc | texts | 1 | 1 | 1200 | 15.6 | 59.1 | 99.3 | 114.2 |" in text
    assert "| triton-grpc | texts | 1 | 4 | 8 | 16.0 | 235.1 | 315.3 | n/a (<1000) |" in text


@pytest.mark.e2e
def test_bench_encoders_tiny(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench.encoders", "--tiny", "--results-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| triton-grpc | frames |" in out.stdout
    result = json.loads((tmp_path / "encoders.json").read_text())
    assert {r["runtime"] for r in result["rows"]} == {"torch", "onnxruntime", "triton-grpc"}
    assert result["machine"]["cores"] >= 1
    triton = [r for r in result["rows"] if r["runtime"] == "triton-grpc"]
    assert all(r["requests"] == 8 and r["p99_ms"] is None for r in triton), "a tiny run never prints a p99"
