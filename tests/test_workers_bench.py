"""The ingest benchmark runs end to end at tiny size, so it cannot rot (no timing is asserted)."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_bench_ingest_tiny(tmp_path, model_repository):
    command = [sys.executable, "-m", "bench.ingest", "--tiny", "--results-dir", str(tmp_path),
               "--model-repository", str(model_repository)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| 20-s | 1 |" in out.stdout
    result = json.loads((tmp_path / "ingest.json").read_text())
    assert [r["workload"] for r in result["rows"]] == ["6-s", "20-s"]
    for row in result["rows"]:
        assert row["frames"] > 0 and row["ratio"] > 0 and row["peak_rss_mb"] > 50
