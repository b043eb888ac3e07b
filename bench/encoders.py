"""`make bench-encoders`: frames/s and texts/s of the encoders in-process (torch, ONNX Runtime) and
through the real Triton (gRPC, concurrency 1/4/16, one item per request so the dynamic batcher works).

perf_analyzer is not installable here (PyPI serves only an empty 0.1.0), so the Triton sweep is a
Python gRPC client with perf_analyzer's columns: concurrency, throughput, p50/p95/p99 latency. Each Triton row pools
the requests of --repeats runs of --requests each (3 x 400 by default): a p99 needs 1000 (bench.common.percentiles).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import RESULTS_DIR, format_percentile, latency_summary, machine, median_of, rate, write_results
from vidstrata.encoders.factory import load_checkpoint
from vidstrata.export.pipeline import export_checkpoint, resolve_checkpoint
from vidstrata.inference.onnx_encoder import OnnxEncoder
from vidstrata.inference.triton_encoder import TritonEncoder
from vidstrata.stack.triton import TritonPorts, start_tritonserver

QUERIES = ["a red circle moves left, then a blue square appears", "a cat sleeping on a sofa", "rocket launch at night",
           "two people talk while walking in the park", "a cup of coffee on a table"]


def in_process(checkpoint: Path, repository: Path, batch: int, seconds: float, repeats: int) -> list[dict]:
    pair = load_checkpoint(checkpoint)
    ort = OnnxEncoder.from_repository(repository)
    size = pair.manifest.preprocessing.image_size
    frames = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    texts = (QUERIES * batch)[:batch]
    tokens = ort.tokenizer(texts)
    token_tensors = [torch.from_numpy(a) for a in (tokens.input_ids, tokens.attention_mask, tokens.phrase_ids)]

    @torch.no_grad()
    def torch_frames() -> int:
        pair.frames(torch.from_numpy(frames))
        return batch

    @torch.no_grad()
    def torch_texts() -> int:
        pair.text(*token_tensors)
        return batch

    rows = []
    for runtime, kind, fn in (
        ("torch", "frames", torch_frames), ("torch", "texts", torch_texts),
        ("onnxruntime", "frames", lambda: len(ort.encode_frames(frames))),
        ("onnxruntime", "texts", lambda: len(ort.encode_text(texts).sentence)),
    ):
        rows.append({"runtime": runtime, "kind": kind, "batch": batch, "concurrency": 1,
                     "items_per_s": median_of(repeats, lambda: rate(fn, seconds))})
    return rows


def triton_sweep(encoder: TritonEncoder, kind: str, concurrency: int, requests: int,
                 image_size: int) -> tuple[list[float], float]:
    """`concurrency` threads sending one-item requests back to back until `requests` are answered: their latencies
    (s) and the seconds they took, for bench.common.latency_summary."""
    frame = np.random.default_rng(1).integers(0, 256, (1, image_size, image_size, 3), dtype=np.uint8)
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        mine = []
        for i in counter:
            start = time.perf_counter()
            if kind == "frames":
                encoder.encode_frames(frame)
            else:
                encoder.encode_text([QUERIES[i % len(QUERIES)]])
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    begin = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - begin


def through_triton(repository: Path, work: Path, requests: int, repeats: int, concurrencies: list[int]) -> list[dict]:
    """A row per kind and concurrency: `repeats` runs of `requests` one-item requests, pooled (latency_summary)."""
    process = start_tritonserver(repository, work, TritonPorts.free())
    url = f"127.0.0.1:{process.argv[process.argv.index('--grpc-port') + 1]}"
    encoder = TritonEncoder(url, frame_batch=1, max_inflight=1)
    try:
        process.wait_ready(encoder.ready, timeout_s=120)
        size = encoder.info().image_size
        rows = []
        for kind in ("frames", "texts"):
            for concurrency in concurrencies:
                triton_sweep(encoder, kind, concurrency, 4 * concurrency, size)  # warm-up
                pooled = latency_summary([triton_sweep(encoder, kind, concurrency, requests, size)
                                          for _ in range(repeats)])
                rows.append({"runtime": "triton-grpc", "kind": kind, "batch": 1, "concurrency": concurrency,
                             "items_per_s": pooled.pop("qps"), **pooled})
        return rows
    finally:
        encoder.close()
        process.stop()


def table(rows: list[dict], ratios: dict[str, float]) -> str:
    lines = ["| runtime | kind | batch | concurrency | requests | items/s | p50 ms | p95 ms | p99 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lat = " | ".join(format_percentile(r[k]) if k in r else "–" for k in ("p50_ms", "p95_ms", "p99_ms"))
        lines.append(f"| {r['runtime']} | {r['kind']} | {r['batch']} | {r['concurrency']} | {r.get('requests', '–')} "
                     f"| {r['items_per_s']:.1f} | {lat} |")
    lines += [""] + [f"- Triton c=16 / in-process ONNX Runtime, {k}: **{v:.2f}**" for k, v in ratios.items()]
    lines += ["", "In-process rows: the median of --repeats timed runs of --seconds each, no latencies. Triton rows: "
              "latency percentiles over the requests of every run pooled (a p99 only from 1000 or more), items/s = "
              "those requests / the seconds they took."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each in-process measurement")
    parser.add_argument("--requests", type=int, default=400, help="one-item requests per Triton run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure: in process the median is reported, "
                        "through Triton the runs' requests are pooled (a p99 needs --requests x --repeats >= 1000)")
    parser.add_argument("--batch", type=int, default=16, help="in-process batch size")
    parser.add_argument("--tiny", action="store_true", help="smoke run: short, one repeat")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON and Markdown go")
    args = parser.parse_args()
    if args.tiny:
        args.seconds, args.repeats, args.batch, args.requests = 0.3, 1, 2, min(args.requests, 8)
    concurrencies = [1, 4] if args.tiny else [1, 4, 16]
    checkpoint = resolve_checkpoint(None, Path("build"))
    with tempfile.TemporaryDirectory(prefix="bench-encoders-") as tmp:
        repository = export_checkpoint(checkpoint, "python", Path(tmp) / "repo").repository
        rows = in_process(checkpoint, repository, args.batch, args.seconds, args.repeats)
        rows += through_triton(repository, Path(tmp) / "triton", args.requests, args.repeats, concurrencies)
    best = {(r["runtime"], r["kind"], r["concurrency"]): r["items_per_s"] for r in rows}
    top = max(concurrencies)
    ratios = {k: best[("triton-grpc", k, top)] / best[("onnxruntime", k, 1)] for k in ("frames", "texts")}
    text = table(rows, ratios)
    path = write_results("encoders", {"rows": rows, "triton_vs_ort": ratios, "args": {**vars(args), "results_dir": str(args.results_dir)}},
                         text, args.results_dir)
    print(f"{machine()}\n\n{text}\n\nwrote {path}")


if __name__ == "__main__":
    main()
