"""bench.query and bench.common: latency percentiles of pooled runs (never a p99 from fewer than 1000 samples),
medians over runs, and a smoke run against the session's real Triton, Milvus Lite and Redis."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.common import (
    P99_MIN_SAMPLES,
    format_percentile,
    latency_summary,
    median_runs,
    percentile,
    percentiles,
)
from bench.query import main, table

latency = st.floats(min_value=0.0, max_value=60.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(latency, max_size=700), min_size=1, max_size=4))
def test_a_p99_needs_1000_pooled_samples_and_pooled_runs_equal_their_concatenation(runs):
    pooled = [x for run in runs for x in run]
    got = percentiles(runs)
    assert got == percentiles([pooled]) == percentiles(list(reversed(runs)))
    assert (got[99] is None) == (len(pooled) < P99_MIN_SAMPLES)
    if pooled:
        assert got[50] <= got[95] and got[50] in pooled and got[95] in pooled
        assert got[99] is None or (got[95] <= got[99] and got[99] in pooled)
    else:
        assert got == {50: None, 95: None, 99: None}


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=2500), st.integers(min_value=1, max_value=5))
def test_p99_is_absent_below_1000_and_the_nearest_rank_from_1000(n, parts):
    samples = [float(i) for i in range(n)]
    runs = [samples[k::parts] for k in range(parts)]  # any split into runs gives the same figures
    got = percentiles(runs, (50, 99), scale=1e3)
    assert got[50] == 1e3 * percentile(samples, 50) == 1e3 * round(0.5 * (n - 1))
    assert got[99] == (None if n < 1000 else 1e3 * round(0.99 * (n - 1)))


def test_latency_summary_pools_the_runs_of_a_row():
    runs = [([0.010] * 300, 3.0), ([0.020] * 300 + [0.5] * 100, 5.0), ([0.030] * 300, 4.0)]
    row = latency_summary(runs)
    assert row["requests"] == 1000 and row["qps"] == pytest.approx(1000 / 12.0)
    assert row["runs_qps"] == pytest.approx([100.0, 80.0, 75.0])
    assert row["p50_ms"] == pytest.approx(20.0) and row["p99_ms"] == pytest.approx(500.0)
    assert len(row["latencies_ms"]) == 1000 and row["latencies_ms"][0] == 10.0
    short = latency_summary(runs[:2])
    assert short["requests"] == 700 and short["p99_ms"] is None and short["p95_ms"] == pytest.approx(500.0)
    assert format_percentile(short["p99_ms"]) == "n/a (<1000)" and format_percentile(512.345) == "512.3"


def test_median_runs_takes_each_field_over_the_runs_nested_too():
    runs = [{"qps": q, "p50_ms": p, "stages_ms": {"encode": e}, "note": "x"}
            for q, p, e in ((10, 5.0, 1.0), (30, 3.0, 2.0), (20, 4.0, 9.0))]
    assert median_runs(runs) == {"qps": 20, "p50_ms": 4.0, "stages_ms": {"encode": 2.0}}


def test_table_shows_gateway_bare_and_ratio():
    stages = {"encode": 3.0, "ann_videos": 4.0, "ann_clips": 6.0, "rescore": 2.5, "rescore_fetch": 2.0,
              "fusion": 0.1, "total": 12.0}
    row = {"videos": 10, "clips": 40, "candidates": 100, "concurrency": 4, "ratio_p50": 1.25, "ratio_qps": 0.8,
           "gateway": {"requests": 1200, "qps": 80.0, "p50_ms": 15.0, "p95_ms": 20.0, "p99_ms": 25.0,
                       "stages_ms": stages, "overhead_in_gateway_ms": {"p50": 0.9, "p95": 1.5}},
           "bare": {"requests": 1200, "qps": 100.0, "p50_ms": 12.0, "p95_ms": 14.0, "p99_ms": 15.0}}
    size = {"videos": 10, "clips": 40, "load_s": 12.4, "milvus_rss_mib": 250.0, "index_rss_mib": 40.0,
            "agreements": [{"candidates": 100, "queries": 240, "recall_at_k": 0.9975, "identical_share": 0.975,
                            "grouped_clip_recall_at_k": 0.995}]}
    few = {**row, "concurrency": 16, "gateway": {**row["gateway"], "requests": 300, "p99_ms": None}}
    text = table([row, few], [size], repeats=3)
    assert "| 10 | 40 | 100 | 4 | 1200 | 80.0 | 15.0 | 20.0 | 25.0 | 3.0 | 4.0 | 6.0 | 2.0 | 0.5 | 0.10 | 12.0 | 0.90 | 12.0 | 100.0 | 1.25 |" in text
    assert "| 10 | 40 | 100 | 16 | 300 | 80.0 | 15.0 | 20.0 | n/a (<1000) | 3.0 |" in text
    assert "| 10 | 12 | 250 | 40 |" in text and "| 10 | 100 | 0.9975 | 0.975 | 0.9950 | 240 |" in text
    assert "pools the Searches of 3 runs" in text


@pytest.mark.e2e
def test_tiny_query_benchmark_writes_results(triton, milvus_uri, redis_url, tmp_path):
    path = main(["--tiny", "--requests", "6", "--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path),
                 "--triton-url", triton.grpc_url, "--milvus-uri", milvus_uri, "--redis-url", redis_url,
                 "--check-queries", "6"])
    saved = json.loads(path.read_text())
    assert saved["machine"]["cores"] and saved["command"].startswith("python -m bench.query --tiny")
    rows = saved["rows"]
    assert [(r["videos"], r["concurrency"]) for r in rows] == [(60, 1), (60, 4)]
    for row in rows:
        for side in ("gateway", "bare"):
            got = row[side]
            assert got["requests"] == 6 and len(got["latencies_ms"]) == 6 and got["qps"] > 0
            assert 0 < got["p50_ms"] <= got["p95_ms"] and got["p99_ms"] is None, "no p99 from 6 Searches"
        assert row["ratio_p50"] > 0 and len(row["gateway"]["runs_qps"]) == 1
    [size] = saved["sizes"]
    [agreement] = size["agreements"]
    assert agreement["queries"] == 6 and 0 <= agreement["recall_at_k"] <= 1
    markdown = (tmp_path / "query.md").read_text()
    assert "| 60 | 120 | 100 | 4 | 6 |" in markdown and "Command: `python -m bench.query --tiny" in markdown
    assert "n/a (<1000)" in markdown


def test_run_all_runs_each_benchmark_in_order_and_summarises(tmp_path, monkeypatch):
    from bench import run_all

    calls = []

    def fake_call(argv):
        name = argv[2].split(".")[1]
        calls.append(argv[2:])
        if name == "ingest":
            return 3
        (tmp_path / f"{name}.md").write_text(f"| {name} table |\n")
        return 0

    monkeypatch.setattr(run_all.subprocess, "call", fake_call)
    assert run_all.main(["--tiny", "--results-dir", str(tmp_path), "--keep-going"]) == 1
    assert [c[0] for c in calls] == ["bench.encoders", "bench.ingest", "bench.gateway", "bench.query", "bench.chaos"]
    assert all(c[1:] == ["--tiny", "--results-dir", str(tmp_path)] for c in calls)
    summary = (tmp_path / "bench.md").read_text()
    assert "| query table |" in summary and "failed with exit code 3" in summary and "Machine:" in summary
    calls.clear()
    assert run_all.main(["--results-dir", str(tmp_path)]) == 1
    assert [c[0] for c in calls] == ["bench.encoders", "bench.ingest"], "stops at the first failure by default"


def test_compare_backends_puts_each_milvus_side_by_side_with_the_qps_ratio():
    from bench.query import compare_backends

    def row(milvus, concurrency, qps, p50, p99, requests=1000):
        return {"milvus": milvus, "videos": 1000, "candidates": 100, "concurrency": concurrency,
                "gateway": {"qps": qps, "p50_ms": p50, "p99_ms": p99, "requests": requests}}

    rows = [row("lite", 1, 5.0, 180.0, 400.0), row("lite", 16, 6.0, 2500.0, None, 300),
            row("standalone", 1, 30.0, 30.0, 60.0), row("standalone", 16, 45.0, 340.0, None, 300)]
    text = compare_backends(rows, ["lite", "standalone"])
    lines = text.splitlines()
    assert lines[0] == ("| videos | candidates | concurrency | lite QPS | lite p50 ms | lite p99 ms | standalone QPS "
                        "| standalone p50 ms | standalone p99 ms | Searches each | QPS standalone / lite |")
    assert lines[1].count("---") == 11
    assert "| 1000 | 100 | 1 | 5.0 | 180.0 | 400.0 | 30.0 | 30.0 | 60.0 | 1000 | 6.0x |" in text
    assert "| 1000 | 100 | 16 | 6.0 | 2500.0 | n/a (<1000) | 45.0 | 340.0 | n/a (<1000) | 300 | 7.5x |" in text


def test_interleaved_turns_alternate_the_backends_and_pool_every_search(monkeypatch):
    import argparse
    from contextlib import contextmanager
    from types import SimpleNamespace

    from bench import query

    calls = []

    def fake_run_load(address, concurrency, requests, top_k, page_size=0, moments=0):
        assert (top_k, page_size, moments) == (10, 20, 5), "every turn and warm-up sends the request's shape"
        calls.append((address, concurrency, requests))
        per = {"lite": 0.5, "standalone": 0.05}[address]
        timing = SimpleNamespace(encode_ms=1.0, ann_videos_ms=2.0, ann_clips_ms=3.0, rescore_ms=4.0,
                                 rescore_fetch_ms=2.0, fusion_ms=0.1, total_ms=10.0)
        return [per] * requests, [timing] * requests, per * requests / concurrency

    class FakeStack:
        def __init__(self, name):
            self.name, self.indexes = name, {100: object()}

        @contextmanager
        def gateway(self, index, candidates):
            yield self.name

    monkeypatch.setattr(query, "run_load", fake_run_load)
    args = argparse.Namespace(requests=1000, interleave=3, concurrency=[1, 4], top_k=10, candidates=100,
                              clips_per_video=4, page_size=20, moments=5)
    rows = query.measure_interleaved({"lite": FakeStack("lite"), "standalone": FakeStack("standalone")}, 100, args)
    measured = [c for c in calls if c[2] == 334]  # turns of ceil(1000 / 3) Searches; warm-ups send max(concurrency, 8)
    assert [c[0] for c in measured[:6]] == ["lite", "standalone", "standalone", "lite", "lite", "standalone"]
    by = {(r["milvus"], r["concurrency"]): r["gateway"] for r in rows}
    assert by["lite", 1]["requests"] == 1002 and by["lite", 1]["qps"] == pytest.approx(2.0)
    assert by["standalone", 4]["qps"] == pytest.approx(80.0) and by["standalone", 4]["p99_ms"] == pytest.approx(50.0)
    assert len(by["lite", 4]["runs_qps"]) == 3 and rows[0]["bare"] is None
    assert {(r["page_size"], r["moments"]) for r in rows} == {(20, 5)}


def test_search_request_sends_top_k_by_default_and_a_first_page_with_page_size():
    from bench.gateway import search_request

    plain = search_request("a dog runs", 10)
    assert plain.query == "a dog runs" and plain.top_k == 10, "the default request is the one before the Search API"
    assert not plain.HasField("page_size") and not plain.HasField("moments_per_video") and not plain.page_token
    paged = search_request("a dog runs", 10, page_size=25)
    assert paged.page_size == 25 and not paged.HasField("top_k") and not paged.HasField("moments_per_video")
    with_moments = search_request("a dog runs", 10, page_size=25, moments=7)
    assert with_moments.page_size == 25 and with_moments.moments_per_video == 7
    assert search_request("x", 5, moments=2).top_k == 5


def test_page_size_and_moments_reach_every_search_and_the_rows(monkeypatch):
    import argparse
    from contextlib import contextmanager
    from types import SimpleNamespace

    from bench import query

    sent, probed = [], []
    timing = SimpleNamespace(encode_ms=1.0, ann_videos_ms=2.0, ann_clips_ms=3.0, rescore_ms=4.0, rescore_fetch_ms=2.0,
                             fusion_ms=0.1, total_ms=10.0)

    def fake_measure(address, concurrency, requests, top_k, page_size=0, moments=0):
        sent.append((address, concurrency, requests, top_k, page_size, moments))
        return [0.01] * requests, [timing] * requests, 0.01 * requests

    def fake_probe(address, request):
        probed.append(request)
        return {"hits": 10, "moments": 30, "next_page": 1}

    class FakeStack:
        @contextmanager
        def gateway(self, index, candidates):
            yield "gw"

    monkeypatch.setattr(query, "measure", fake_measure)
    monkeypatch.setattr(query, "probe_search", fake_probe)
    args = argparse.Namespace(top_k=10, page_size=10, moments=4, concurrency=[1, 16], repeats=2, requests=600,
                              no_bare=True, check_queries=0, clips_per_video=4)
    rows, agreement = query.measure_limit(FakeStack(), object(), 100, 100, args)
    assert agreement is None and sent == [("gw", c, 600, 10, 10, 4) for c in (1, 1, 16, 16)]
    [request] = probed
    assert request.page_size == 10 and request.moments_per_video == 4 and not request.HasField("top_k")
    assert [(r["concurrency"], r["page_size"], r["moments"], r["gateway"]["requests"]) for r in rows] == [
        (1, 10, 4, 1200), (16, 10, 4, 1200)]
    assert rows[0]["probe"] == {"hits": 10, "moments": 30, "next_page": 1} and rows[0]["gateway"]["p99_ms"] == 10.0


def test_page_size_and_moments_default_to_unset(monkeypatch, tmp_path):
    from contextlib import contextmanager

    from bench import query

    seen = []

    @contextmanager
    def no_services(args):
        yield None

    def fake_backend(args, milvus, shared):
        seen.append(args)
        return [], []

    monkeypatch.setattr(query, "services", no_services)
    monkeypatch.setattr(query, "one_backend", fake_backend)
    query.main(["--results-dir", str(tmp_path)])
    query.main(["--results-dir", str(tmp_path), "--page-size", "10", "--moments", "3"])
    assert [(a.page_size, a.moments) for a in seen] == [(0, 0), (10, 3)]
    assert "--page-size 10 --moments 3" in json.loads((tmp_path / "query.json").read_text())["command"]
