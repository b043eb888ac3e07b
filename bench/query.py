"""`python -m bench.query`: Search latency and QPS through the real gateway next to the bare dependency calls.

What it adds to bench.gateway (whose stack, synthetic index and load generator it reuses):

- every figure is the median of `--repeats` (>= 3) runs, at concurrency 1, 4 and 16 by default;
- a *bare* baseline at the same concurrency: the calls the gateway must make, sent straight from this process
  with no gateway in between: Triton text encode (TritonEncoder), then the two ANN searches concurrently
  (VideoIndex.search_videos, search_clips_grouped), then the candidates' vectors (get_videos_with_clips);
- ratio = gateway latency / bare latency (p50), and gateway QPS / bare QPS: how close Search runs to the speed
  of its encoder and Milvus.

The index is synthetic (bench.gateway.synthesise: random unit vectors, 4 clips per video) because ingesting
10^5 real videos would take days here; the queries are real sentences, encoded by Triton in every Search.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import machine, median_runs, percentile, write_results
from bench.gateway import QUERIES, add_stack_arguments, measure, search_stack, synthesise
from gateway.query import query_vectors
from gateway.service import union_by_rank
from index.store import VideoIndex
from inference.triton_encoder import TritonEncoder

STAGES = ("encode", "ann_videos", "ann_clips", "rescore", "rescore_fetch", "fusion", "total")


def bare_search(encoder: TritonEncoder, index: VideoIndex, pool: ThreadPoolExecutor, text: str, limit: int,
                max_phrases: int) -> None:
    """The dependency calls of one Search, with nothing around them: encode, both ANN searches, the fetch."""
    vectors = query_vectors(text, encoder.encode_text([text]), max_phrases)
    videos_future = pool.submit(index.search_videos, vectors.sentence, limit)
    clip_lists = index.search_clips_grouped(vectors.clip_queries, limit)
    video_hits = videos_future.result()
    candidates = union_by_rank([[h.video_id for h in video_hits]] + [[h.video_id for h in c] for c in clip_lists],
                               limit)
    index.get_videos_with_clips(candidates)


def measure_bare(encoder: TritonEncoder, index: VideoIndex, concurrency: int, requests: int, limit: int) -> dict[str, float]:
    """`concurrency` threads sending bare searches back to back until `requests` are done (after a warm-up)."""
    max_phrases = encoder.info().max_phrases
    pool = ThreadPoolExecutor(max_workers=2 * concurrency, thread_name_prefix="bare-fanout")
    latencies: list[float] = []
    lock = threading.Lock()

    def run(count: int, record: bool) -> float:
        counter = iter(range(count))

        def client() -> None:
            for i in counter:
                started = time.perf_counter()
                bare_search(encoder, index, pool, QUERIES[i % len(QUERIES)], limit, max_phrases)
                if record:
                    with lock:
                        latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - began

    try:
        run(max(concurrency, 8), record=False)
        elapsed = run(requests, record=True)
    finally:
        pool.shutdown()
    return {"qps": len(latencies) / elapsed, **{f"p{q}_ms": 1e3 * percentile(latencies, q) for q in (50, 95, 99)}}


def table(rows: list[dict[str, Any]], repeats: int) -> str:
    lines = [
        "| videos | clips | concurrency | QPS | p50 ms | p95 ms | p99 ms | encode | ANN videos | ANN clips | fetch "
        "| rescore | fusion | gateway total | gateway overhead p50 | bare p50 ms | bare QPS | p50 gateway / bare "
        "| QPS gateway / bare |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g, b, s = r["gateway"], r["bare"], r["gateway"]["stages_ms"]
        lines.append(
            f"| {r['videos']} | {r['clips']} | {r['concurrency']} | {g['qps']:.1f} | {g['p50_ms']:.1f} "
            f"| {g['p95_ms']:.1f} | {g['p99_ms']:.1f} | {s['encode']:.1f} | {s['ann_videos']:.1f} | {s['ann_clips']:.1f} "
            f"| {s['rescore_fetch']:.1f} | {s['rescore'] - s['rescore_fetch']:.1f} | {s['fusion']:.2f} | {s['total']:.1f} "
            f"| {g['overhead_in_gateway_ms']['p50']:.2f} | {b['p50_ms']:.1f} | {b['qps']:.1f} | {r['ratio_p50']:.2f} | {r['ratio_qps']:.2f} |"
        )
    lines += ["", f"Median of {repeats} runs per row. Latency columns are client-side; stage columns (ms, means of "
              "the responses' own timings) are inside the gateway: ANN videos and ANN clips run concurrently, fetch "
              "is the candidates' vectors, rescore the exact scoring after it. Bare: the same Triton and Milvus "
              "calls sent straight from the benchmark process, at the same concurrency. Gateway overhead: the gateway's "
              "total minus its waits on Triton and Milvus (encode + the longer ANN + fetch), as in bench.gateway."]
    return "\n".join(lines)


def _header(command: str) -> str:
    m = machine()
    return f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}. Date: {m['date']}. Command: `{command}`."


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stack_arguments(parser)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=100, help="Searches measured per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--tiny", action="store_true", help="smoke run: 60 videos of 2 clips, concurrency 1 and 4, "
                        "at most 10 requests, 1 repeat")
    args = parser.parse_args(argv)
    if args.tiny:
        args.videos, args.clips_per_video, args.concurrency = [60], 2, [1, 4]
        args.requests, args.repeats = min(args.requests, 10), 1
    command = "python -m bench.query " + shlex.join(sys.argv[1:] if argv is None else argv)
    limit = max(args.candidates, args.top_k)  # what the gateway asks each ANN list for (gateway.query.candidate_limit)
    rows = []
    with search_stack(args) as stack:
        for videos, index in stack.indexes.items():
            print(f"index of {videos} videos x {args.clips_per_video} clips ...", flush=True)
            load_s = synthesise(index, stack.client, videos, args.clips_per_video)
            with stack.gateway(index, args.candidates) as address:
                for concurrency in args.concurrency:
                    gateway_runs, bare_runs = [], []
                    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
                        gateway_runs.append(measure(address, concurrency, args.requests, args.top_k))
                        bare_runs.append(measure_bare(stack.encoder, index, concurrency, args.requests, limit))
                    gateway, bare = median_runs(gateway_runs), median_runs(bare_runs)
                    row = {"videos": videos, "clips": videos * args.clips_per_video, "load_s": load_s,
                           "candidates": args.candidates, "concurrency": concurrency, "gateway": gateway, "bare": bare,
                           "ratio_p50": gateway["p50_ms"] / bare["p50_ms"], "ratio_qps": gateway["qps"] / bare["qps"],
                           "runs": {"gateway": gateway_runs, "bare": bare_runs}}
                    rows.append(row)
                    print(f"  concurrency {concurrency}: gateway {gateway['qps']:.1f} QPS p50 {gateway['p50_ms']:.1f} ms; "
                          f"bare {bare['qps']:.1f} QPS p50 {bare['p50_ms']:.1f} ms; ratio p50 {row['ratio_p50']:.2f}",
                          flush=True)
    text = table(rows, args.repeats)
    arguments = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    path = write_results("query", {"command": command, "rows": rows, "args": arguments,
                                   "milvus": "external" if args.milvus_uri else "milvus-lite server"},
                         f"{_header(command)}\n\n{text}", args.results_dir)
    print(f"\n{text}\n\nwrote {path}")
    return path


if __name__ == "__main__":
    main()
