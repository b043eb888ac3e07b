"""The encoder benchmark runs end to end at tiny size, so it cannot rot (no timing is asserted)."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_bench_encoders_tiny(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench.encoders", "--tiny", "--results-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| triton-grpc | frames |" in out.stdout
    result = json.loads((tmp_path / "encoders.json").read_text())
    assert {r["runtime"] for r in result["rows"]} == {"torch", "onnxruntime", "triton-grpc"}
    assert result["machine"]["cores"] >= 1
