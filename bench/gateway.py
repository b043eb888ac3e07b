"""`make bench-gateway` (`python -m bench.gateway`): Search latency and throughput through the real gateway.

Stack: tritonserver (python target of the default checkpoint), redis-server, Milvus (the C++ 2.3.5 standalone by
default; `--milvus lite` for Milvus Lite, `--milvus lite standalone` for each in turn, `--milvus-uri` for a running
one) and the gateway as a subprocess, all on this machine; clients speak gRPC (grpc.aio) to it.

Index: N videos of C clips each. Their vectors are synthesised (random unit clip vectors, the video vector their
normalised mean) and inserted in bulk straight into the index's collections, since ingesting N real videos
would take hours; the queries are real sentences, encoded by Triton inside each Search.

Per index size and client concurrency: QPS and client-side p50/p95/p99 over --requests Searches (1000 by default: a
p99 needs bench.common.P99_MIN_SAMPLES, else it is n/a); the time of each stage from the responses' own timings; and the gateway's overhead = latency minus the time it waited on Triton and Milvus on
the critical path (encode + the longer of the two concurrent ANN searches + the vector fetch), measured both
inside the gateway (from its total_ms) and end to end (from the client's latency, so gRPC and the client count).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from pymilvus import MilvusClient

from bench.common import RESULTS_DIR, format_percentile, latency_summary, machine, percentiles, write_results
from vidstrata.media.photos import CAPTIONS
from vidstrata.export.pipeline import export_checkpoint, resolve_checkpoint
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.index.schema import DEFAULT_TENANT, UNVERSIONED, VECTOR_FIELD, clip_id
from vidstrata.stack.milvus import MILVUS_STANDALONE_VERSION, start_milvus_lite, start_milvus_standalone
from vidstrata.index.errors import StorageError
from vidstrata.index.settings import IndexSettings
from vidstrata.index.connection import connect_milvus
from vidstrata.index.store import VideoIndex
from vidstrata.inference.triton_encoder import TritonEncoder
from vidstrata.stack.triton import TritonPorts, start_tritonserver
from vidstrata.stack.gateway import start_gateway
from vidstrata.stack.process import free_port, process_rss
from vidstrata.stack.redis import find_or_install_redis, start_redis
from vidstrata.v1 import search_pb2, search_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[1]
_captions = list(CAPTIONS.values())
# One-event and two-event queries, so the clip search runs with one to three query vectors.
QUERIES = _captions + [f"{a}, then {b}" for a, b in zip(_captions, _captions[1:] + _captions[:1])]
LANGS = ("en", "de", "fr", "es")


def synthetic_batches(videos: int, clips_per_video: int, dim: int, seed: int = 0, batch_videos: int = 500,
                      intrinsic_dim: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first video number, clip vectors [n,C,D], video vectors [n,D]) per batch; the video vector is the normalised
    mean of its clips. Deterministic in the seed, so the exact-search check can regenerate what `synthesise` stored.

    intrinsic_dim 0: independent uniform unit vectors, the worst case for any ANN index (in 384 dimensions every
    vector is nearly equidistant from a query, so HNSW's top 10 is close to arbitrary). intrinsic_dim k > 0: vectors
    near a random k-dimensional subspace, clips of one video close to each other, as real embeddings are (low
    intrinsic dimension, scenes that repeat within a video).
    """
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(seed + 1).standard_normal((intrinsic_dim, dim)) if intrinsic_dim else None
    for first in range(0, videos, batch_videos):
        count = min(batch_videos, videos - first)
        if basis is None:
            clips = rng.standard_normal((count, clips_per_video, dim)).astype(np.float32)
        else:
            topics = rng.standard_normal((count, 1, intrinsic_dim)) + 0.5 * rng.standard_normal(
                (count, clips_per_video, intrinsic_dim))
            clips = (topics @ basis + rng.standard_normal((count, clips_per_video, dim))).astype(np.float32)
        clips /= np.linalg.norm(clips, axis=-1, keepdims=True)
        means = clips.mean(axis=1)
        means /= np.linalg.norm(means, axis=-1, keepdims=True)
        yield first, clips, means


def bench_prefix(videos: int, args: argparse.Namespace) -> str:
    """Collections of one synthetic index: its size, clips per video and structure (so each is loaded once)."""
    return f"bench{videos}x{args.clips_per_video}{f'd{args.intrinsic_dim}' if args.intrinsic_dim else ''}_"


def video_name(number: int) -> str:
    return f"v{number:07d}"


def synthesise(index: VideoIndex, client: MilvusClient, videos: int, clips_per_video: int, seed: int = 0,
               batch_videos: int = 500, intrinsic_dim: int = 0, visual_model: str = UNVERSIONED) -> float:
    """Fill the index's collections with `videos` synthetic videos (rows as index.store writes them); seconds taken,
    index build included (searches before the build ends scan unindexed segments and measure nothing real).

    `visual_model`: the version the rows are marked with (a gateway finds only rows of the version its encoder
    serves, EncoderInfo.visual_model). Skipped when the collections already hold exactly these rows, of that version
    (a persistent --data-dir keeps them; a version-1 folder is migrated when the index opens it). Ends with
    a flush: Milvus Lite scans unflushed rows in Python (a top-1 search at 10k videos: 4.5 s before, 0.03 s after).
    """
    if index.counts() == (videos, videos * clips_per_video) and [
            (c.model_version, c.videos) for c in index.version_counts() if c.channel == "visual"] == [(visual_model, videos)]:
        return 0.0
    dim = index.settings.vector_dim
    started = time.perf_counter()
    for name in (index.names.videos, index.names.clips):
        client.delete(name, filter='video_id != ""')
    for first, clips, means in synthetic_batches(videos, clips_per_video, dim, seed, batch_videos, intrinsic_dim):
        count = len(clips)
        video_rows, clip_rows = [], []
        for i in range(count):
            video_id = video_name(first + i)
            metadata = {"lang": LANGS[(first + i) % len(LANGS)]}
            duration = 5.0 * clips_per_video
            video_rows.append({"video_id": video_id, VECTOR_FIELD: means[i], "duration_s": duration,
                               "clip_count": clips_per_video, "status": "READY", "metadata": metadata,
                               "created_at": 1_700_000_000.0, "visual_model": visual_model, "tenant": DEFAULT_TENANT})
            clip_rows += [{"clip_id": clip_id(video_id, k), "video_id": video_id, "clip_index": k,
                           "start_s": 5.0 * k, "end_s": 5.0 * (k + 1), VECTOR_FIELD: clips[i, k],
                           "metadata": metadata, "video_duration_s": duration,
                           "video_clip_count": clips_per_video, "video_created_at": 1_700_000_000.0,
                           "visual_model": visual_model, "tenant": DEFAULT_TENANT}
                          for k in range(clips_per_video)]
        client.insert(index.names.clips, clip_rows)
        client.insert(index.names.videos, video_rows)
        if (first // batch_videos) % 20 == 0:
            print(f"  loaded {first + count}/{videos} videos ({time.perf_counter() - started:.0f} s)", flush=True)
    index.connection.note_model(index.names.videos, visual_model)
    for name in (index.names.videos, index.names.clips):
        client.flush(name)
    wait_indexed(client, (index.names.videos, index.names.clips))
    return time.perf_counter() - started


def wait_indexed(client: MilvusClient, collections: tuple[str, ...], timeout_s: float = 3600.0) -> None:
    """Block until every row of these collections is in a vector index (Milvus builds it in the background; the
    2.3.5 standalone then keeps compacting segments and re-indexing the merged ones for minutes)."""
    deadline = time.monotonic() + timeout_s
    for name in collections:
        while time.monotonic() < deadline:
            info = client.describe_index(name, VECTOR_FIELD)
            # indexed_rows, not pending_index_rows: 2.3.5 keeps rows pending while compaction merges indexed segments
            if int(info.get("indexed_rows", 0)) >= int(info.get("total_rows", 0)):
                break
            time.sleep(2.0)


def search_request(query: str, top_k: int, page_size: int = 0, moments: int = 0) -> search_pb2.SearchRequest:
    """The Search a benchmark client sends: `top_k` hits, or with page_size > 0 the first page of that many (top_k
    left unset: the gateway ignores it on a paged request); moments_per_video = `moments` when > 0, else unset (the
    gateway's default, 3). The defaults build the same request as before the Search API, so older gateways take it."""
    fields: dict[str, int] = {"page_size": page_size} if page_size else {"top_k": top_k}
    if moments:
        fields["moments_per_video"] = moments
    return search_pb2.SearchRequest(query=query, **fields)


async def _run_clients(address: str, concurrency: int, requests: int, top_k: int, page_size: int = 0,
                       moments: int = 0) -> tuple[list[float], list[Any], float]:
    """`concurrency` clients sending Searches (`search_request`) back to back until `requests` are answered."""
    latencies: list[float] = []
    timings: list[Any] = []
    next_query = iter(range(requests))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = search_pb2_grpc.VideoSearchStub(channel)

        async def client() -> None:
            for i in next_query:
                request = search_request(QUERIES[i % len(QUERIES)], top_k, page_size, moments)
                started = time.perf_counter()
                reply = await stub.Search(request, timeout=120)
                latencies.append(time.perf_counter() - started)
                timings.append(reply.timings)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return latencies, timings, time.perf_counter() - began


def run_load(address: str, concurrency: int, requests: int, top_k: int, page_size: int = 0,
             moments: int = 0) -> tuple[list[float], list[Any], float]:
    """`concurrency` clients sending `requests` Searches back to back (`search_request(query, top_k, page_size,
    moments)`): latencies (s), timings, seconds taken."""
    return asyncio.run(_run_clients(address, concurrency, requests, top_k, page_size, moments))


def measure(address: str, concurrency: int, requests: int, top_k: int, page_size: int = 0,
            moments: int = 0) -> tuple[list[float], list[Any], float]:
    """One run at a load level after a warm-up: what `run_load` returns, for `summarise`."""
    run_load(address, concurrency, max(concurrency, 8), top_k, page_size, moments)  # warm-up
    return run_load(address, concurrency, requests, top_k, page_size, moments)


def summarise(concurrency: int, loads: list[tuple[list[float], list[Any], float]]) -> dict[str, Any]:
    """One row from the runs of a load level, each (latencies s, the Searches' timings, seconds it took), pooled:
    bench.common.latency_summary (requests, QPS, percentiles, every latency), the stage times (ms, means), the
    share of each stage and the gateway's overhead percentiles (ms)."""
    latencies = [lat for run, _, _ in loads for lat in run]
    timings = [t for _, run, _ in loads for t in run]
    waited = [t.encode_ms + max(t.ann_videos_ms, t.ann_clips_ms) + t.rescore_fetch_ms for t in timings]
    inside = [t.total_ms - w for t, w in zip(timings, waited, strict=True)]
    end_to_end = [1e3 * lat - w for lat, w in zip(latencies, waited, strict=True)]
    mean = {name: statistics.fmean(getattr(t, f"{name}_ms") for t in timings)
            for name in ("encode", "ann_videos", "ann_clips", "rescore", "rescore_fetch", "fusion", "total")}
    critical = {  # these add up to the gateway's total
        "encode": mean["encode"],
        "ann (concurrent, the longer)": statistics.fmean(max(t.ann_videos_ms, t.ann_clips_ms) for t in timings),
        "fetch vectors": mean["rescore_fetch"],
        "exact rescoring": mean["rescore"] - mean["rescore_fetch"],
        "fusion": mean["fusion"],
    }
    critical["rest of the gateway"] = mean["total"] - sum(critical.values())
    return {
        "concurrency": concurrency,
        **latency_summary([(run, elapsed) for run, _, elapsed in loads]),
        # what a gateway with the default deadline (VIDSTRATA_GATEWAY_REQUEST_TIMEOUT_S) would have cut off
        "over_default_deadline": sum(lat > GatewaySettings().request_timeout_s for lat in latencies),
        "stages_ms": mean,
        "share_of_total": {name: ms / mean["total"] for name, ms in critical.items()},
        "overhead_in_gateway_ms": {f"p{q}": value for q, value in percentiles([inside], (50, 95)).items()},
        "overhead_end_to_end_ms": {f"p{q}": value for q, value in percentiles([end_to_end], (50, 95)).items()},
    }


@contextmanager
def _gateway(work: Path, triton_url: str, milvus_uri: str, redis_url: str, prefix: str, candidates: int,
             query_cache: int, clip_overfetch: int, label: str = "") -> Iterator[str]:
    """A gateway on free ports, with benchmark-sized deadlines; yields its address once it is SERVING."""
    env = dict(os.environ, VIDSTRATA_TRITON_URL=triton_url, VIDSTRATA_MILVUS_URI=milvus_uri,
               VIDSTRATA_REDIS_URL=redis_url, VIDSTRATA_MILVUS_COLLECTION_PREFIX=prefix, VIDSTRATA_MILVUS_TIMEOUT_S="120",
               VIDSTRATA_GATEWAY_REQUEST_TIMEOUT_S="120", VIDSTRATA_GATEWAY_PROBE_TIMEOUT_S="30",
               VIDSTRATA_GATEWAY_TRITON_TIMEOUT_S="120", VIDSTRATA_GATEWAY_CANDIDATES=str(candidates),
               VIDSTRATA_GATEWAY_QUERY_CACHE_SIZE=str(query_cache), VIDSTRATA_MILVUS_CLIP_OVERFETCH=str(clip_overfetch))
    gateway = start_gateway(env, work / f"gateway-{label}{prefix}.log")
    try:
        yield gateway.address
    finally:
        gateway.stop()


@dataclass
class SearchStack:
    """The running dependencies of a Search benchmark, and one index per size, all on this machine."""

    work: Path
    triton_url: str
    redis_url: str
    milvus_uri: str
    encoder: TritonEncoder
    client: MilvusClient
    indexes: dict[int, VideoIndex]
    milvus_rss: Callable[[], int] | None = None  # resident bytes of the Milvus we started; None for --milvus-uri
    query_cache: int = 0
    milvus: str = ""  # which Milvus: lite, standalone or external

    def gateway(self, index: VideoIndex, candidates: int) -> AbstractContextManager[str]:
        """A gateway subprocess over `index`; yields its address once it is SERVING."""
        return _gateway(self.work, self.triton_url, self.milvus_uri, self.redis_url,
                        index.settings.collection_prefix, candidates, self.query_cache, index.settings.clip_overfetch,
                        f"{self.milvus}-" if self.milvus else "")


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `search_stack` and the Search benchmarks share: index sizes, candidates, where the servers are."""
    parser.add_argument("--videos", type=int, nargs="+", default=[10_000, 100_000], help="index sizes (videos)")
    parser.add_argument("--clips-per-video", type=int, default=4)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=GatewaySettings().candidates,
                        help="VIDSTRATA_GATEWAY_CANDIDATES of the gateway (and the bare baseline's ANN limit)")
    parser.add_argument("--data-dir", type=Path, default=Path("build/bench-gateway"),
                        help="Milvus data and logs; synthetic rows are kept here and reused by the next run")
    parser.add_argument("--milvus", "--backend", choices=("standalone", "lite"), nargs="+", default=["standalone"],
                        help=f"Milvus to start: the C++ {MILVUS_STANDALONE_VERSION} standalone (PyPI `milvus`, installed "
                        "into build/milvus-venv on first use) or Milvus Lite (pure Python); several: each in turn, "
                        "back to back, with the same Triton, Redis and queries")
    parser.add_argument("--triton-url", help="use this Triton instead of starting one")
    parser.add_argument("--milvus-uri", help="use this running Milvus instead of starting one (--milvus)")
    parser.add_argument("--intrinsic-dim", type=int, default=16,
                        help="synthetic vectors near a random subspace of this dimension, like real embeddings; "
                        "0: uniform random vectors (the worst case for ANN recall)")
    parser.add_argument("--clip-overfetch", type=int, default=IndexSettings().clip_overfetch,
                        help="VIDSTRATA_MILVUS_CLIP_OVERFETCH of the gateway and of this process's index (the exact check)")
    parser.add_argument("--query-cache", type=int, default=0,
                        help="VIDSTRATA_GATEWAY_QUERY_CACHE_SIZE of the gateway; 0 (default) so every Search encodes")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)


def _ensure_collections(index: VideoIndex, timeout_s: float = 300.0) -> None:
    """index.ensure_collections, retried: a 2.3.5 standalone restarted after an unclean stop (its engine killed)
    refuses to load collections ("unrecoverable error": the old data node's session) until that session expires."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return index.ensure_collections()
        except StorageError as exc:
            if time.monotonic() > deadline:
                raise
            print(f"  Milvus cannot load the collections yet ({exc}); retrying", flush=True)
            time.sleep(15.0)


def wait_engine_idle(client: MilvusClient, timeout_s: float = 3600.0) -> float:
    """Block until no collection of this Milvus has rows waiting for an index; seconds waited.

    The 2.3.5 standalone re-indexes compacted segments in the background for many minutes after a load (and again
    after a restart), at up to both cores here: a latency measured meanwhile measures that work. Gives up with a
    warning after timeout_s (then the figures are taken anyway and the warning says they are not quiet).
    """
    started = deadline = time.monotonic()
    deadline += timeout_s
    last_report = 0.0
    while True:
        pending = {name: int(client.describe_index(name, VECTOR_FIELD).get("pending_index_rows", 0))
                   for name in client.list_collections()}
        busy = {name: rows for name, rows in pending.items() if rows}
        waited = time.monotonic() - started
        if not busy:
            return waited
        if time.monotonic() > deadline:
            print(f"  warning: Milvus still indexing after {waited:.0f} s ({busy}); measuring anyway", flush=True)
            return waited
        if waited - last_report >= 60:
            print(f"  waiting for Milvus to finish indexing: {busy} rows pending ({waited:.0f} s)", flush=True)
            last_report = waited
        time.sleep(5.0)


@dataclass
class Services:
    """What every Milvus backend of one benchmark run shares: Redis, Triton and the encoder used by the checks."""

    work: Path
    redis_url: str
    triton_url: str
    encoder: TritonEncoder


@contextmanager
def services(args: argparse.Namespace) -> Iterator[Services]:
    """Redis and Triton, each started here unless args names one (exported once, whatever the backends)."""
    work = args.data_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        redis_url = args.redis_url
        if redis_url is None:
            port = free_port()
            stack.callback(start_redis(find_or_install_redis()[0], work / "redis", port).stop)
            redis_url = f"redis://127.0.0.1:{port}/0"
        triton_url = args.triton_url
        if triton_url is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-search-")))
            repository = export_checkpoint(resolve_checkpoint(None, Path("build")), "python", tmp / "repo").repository
            ports = TritonPorts.free()
            triton = start_tritonserver(repository, tmp / "triton", ports)
            stack.callback(triton.stop)
            triton_url = f"127.0.0.1:{ports.grpc}"
        encoder = TritonEncoder(triton_url)
        stack.callback(encoder.close)
        if args.triton_url is None:
            triton.wait_ready(encoder.ready, timeout_s=180)
        yield Services(work, redis_url, triton_url, encoder)


def backends(args: argparse.Namespace) -> list[str]:
    """The Milvus backends to measure in turn: "external" for --milvus-uri, else each --milvus once, in order."""
    return ["external"] if args.milvus_uri else list(dict.fromkeys(args.milvus))


@contextmanager
def search_stack(args: argparse.Namespace, milvus: str | None = None,
                 shared: Services | None = None) -> Iterator[SearchStack]:
    """Redis, Triton (both from `shared` when given) and Milvus `milvus` (default: the first of args.milvus, or
    args.milvus_uri), with an index per args.videos size."""
    milvus = milvus or backends(args)[0]
    with ExitStack() as stack:
        if shared is None:
            shared = stack.enter_context(services(args))
        work, encoder = shared.work, shared.encoder
        dim = encoder.info().dim
        milvus_uri, milvus_rss = args.milvus_uri, None
        if milvus == "lite":
            lite, milvus_uri = start_milvus_lite(work / "milvus")
            stack.callback(lite.stop)
            milvus_rss = lambda: process_rss(lite.pid, children=True)  # noqa: E731
        elif milvus == "standalone":
            print(f"starting Milvus {MILVUS_STANDALONE_VERSION} standalone in {work / 'milvus-standalone'} ...", flush=True)
            standalone = start_milvus_standalone(work / "milvus-standalone")
            stack.callback(standalone.stop)
            milvus_uri, milvus_rss = standalone.uri, standalone.rss_bytes
        # Every Milvus client of this process is opened now, back to back: pymilvus 3 shares one connection per
        # URI and health-checks it when a new client arrives after 30 s idle, which fails on a loaded machine.
        client = connect_milvus(milvus_uri)
        stack.callback(client.close)
        indexes = {videos: VideoIndex(IndexSettings(milvus_uri=milvus_uri, vector_dim=dim, milvus_timeout_s=600,
                                                    clip_overfetch=args.clip_overfetch,
                                                    collection_prefix=bench_prefix(videos, args)))
                   for videos in args.videos}
        for index in indexes.values():
            _ensure_collections(index)
            stack.callback(index.close)
        yield SearchStack(work, shared.triton_url, shared.redis_url, milvus_uri, encoder, client, indexes, milvus_rss,
                          args.query_cache, milvus)


def table(runs: list[dict[str, Any]]) -> str:
    """The Markdown summary: one row per index size and concurrency."""
    lines = [
        "| videos | clips | load s | candidates | concurrency | Searches | QPS | p50 ms | p95 ms | p99 ms | encode "
        "| ANN (longer) | fetch | rescore | fusion | gateway overhead p50 / p95 ms | end-to-end overhead p50 ms | Milvus |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        share = r["share_of_total"]
        lines.append(
            f"| {r['videos']} | {r['clips']} | {r['load_s']:.0f} | {r['candidates']} | {r['concurrency']} "
            f"| {r['requests']} | {r['qps']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {format_percentile(r['p99_ms'])} "
            f"| {share['encode']:.0%} | {share['ann (concurrent, the longer)']:.0%} | {share['fetch vectors']:.0%} "
            f"| {share['exact rescoring']:.0%} | {share['fusion']:.1%} "
            f"| {r['overhead_in_gateway_ms']['p50']:.2f} / {r['overhead_in_gateway_ms']['p95']:.2f} "
            f"| {r['overhead_end_to_end_ms']['p50']:.2f} | {r.get('milvus', '')} |"
        )
    lines.append("")
    lines.append("Latency columns: client-side, over the row's Searches (a p99 only from 1000 or more). Stage columns: "
                 "share of the gateway's mean total time. Overhead: latency minus the time spent waiting on Triton and "
                 "Milvus (encode + the longer ANN + the vector fetch).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stack_arguments(parser)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--requests", type=int, default=1000,
                        help="Searches measured per size and concurrency (a p99 needs 1000)")
    parser.add_argument("--tiny", action="store_true", help="smoke run: 300 videos, at most 20 requests per level")
    args = parser.parse_args(argv)
    if args.tiny:
        args.videos, args.requests = [300], min(args.requests, 20)
    runs = []
    with services(args) as shared:
        for milvus in backends(args):
            with search_stack(args, milvus, shared) as stack:
                for videos, index in stack.indexes.items():
                    print(f"Milvus {milvus}, index of {videos} videos x {args.clips_per_video} clips ...", flush=True)
                    load_s = synthesise(index, stack.client, videos, args.clips_per_video,
                                        intrinsic_dim=args.intrinsic_dim, visual_model=stack.encoder.info().visual_model)
                    with stack.gateway(index, args.candidates) as address:
                        for concurrency in args.concurrency:
                            run = summarise(concurrency, [measure(address, concurrency, args.requests, args.top_k)])
                            runs.append({"milvus": milvus, "videos": videos, "clips": videos * args.clips_per_video,
                                         "load_s": load_s, "candidates": args.candidates, **run})
                            print(f"  concurrency {concurrency}: {run['qps']:.1f} QPS, p50 {run['p50_ms']:.1f} ms, "
                                  f"gateway overhead p50 {run['overhead_in_gateway_ms']['p50']:.2f} ms", flush=True)
    text = table(runs)
    arguments = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    path = write_results("gateway", {"runs": runs, "args": arguments, "milvus": backends(args)}, text,
                         args.results_dir)
    print(f"{machine()}\n\n{text}\n\nwrote {path}")
    return path


if __name__ == "__main__":
    main()
