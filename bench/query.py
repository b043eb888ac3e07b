"""`python -m bench.query`: Search latency and QPS through the real gateway next to the bare dependency calls.

What it adds to bench.gateway (whose stack, synthetic index and load generator it reuses):

- every row pools the Searches of `--repeats` runs of `--requests` each (3 x 400 by default, at concurrency 1, 4
  and 16): latency percentiles over all of them (a p99 only from 1000 or more, bench.common.percentiles), QPS =
  Searches / the seconds the runs took, each run's QPS beside it;
- a *bare* baseline at the same concurrency: the calls the gateway must make, sent straight from this process
  with no gateway in between: Triton text encode (TritonEncoder), then the two ANN searches concurrently
  (VideoIndex.search_videos, search_clips_grouped), then the candidates' vectors (get_candidate_vectors);
- ratio = gateway latency / bare latency (p50), and gateway QPS / bare QPS: how close Search runs to the speed
  of its encoder and Milvus.

- the exact-search agreement of the gateway's top 10 (brute force over every stored vector, `exact_agreement`),
  the Milvus engine's memory and the load + index time per index size; `--plot` draws them against the size.

Milvus is the C++ 2.3.5 standalone, installed, started and stopped by the benchmark (`--milvus lite` for Milvus
Lite, `--milvus lite standalone` for both one after the other, compared side by side, and with `--interleave TURNS`
both at once, measured in alternating turns so that a shared machine's load falls on each alike; `--milvus-uri` for a
running one); its data folder keeps each loaded index for the next run.
The index is synthetic (bench.gateway.synthesise: unit vectors near a 16-dimensional subspace by default, 4 clips
per video) because ingesting 10^5 real videos would take days here; the queries are real sentences, encoded by
Triton in every Search (the gateway's query cache is off unless --query-cache).

`--transcripts K` adds K synthetic timed speech segments per video (`synthesise_transcripts`: Zipf-distributed words
from the photo captions, and a unique code "TX-<n>" in each video's first segment) to the segments collection and
the lexicon, so the text levels and the lexical channel (issue 25) search 10^5 videos' worth of text; compare a run
with `VIDSTRATA_GATEWAY_LEXICAL=false` (the gateway inherits the environment) to measure what the lexical level costs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from pymilvus import MilvusClient

from bench.common import format_percentile, latency_summary, machine, write_results
from bench.gateway import (
    QUERIES,
    SearchStack,
    Services,
    add_stack_arguments,
    backends,
    measure,
    run_load,
    search_request,
    search_stack,
    services,
    summarise,
    LANGS,
    synthesise,
    synthetic_batches,
    video_name,
    wait_engine_idle,
    wait_indexed,
)
from vidstrata.media.photos import CAPTIONS
from vidstrata.gateway.fusion import FusionConfig, fuse
from vidstrata.gateway.query import query_vectors
from vidstrata.gateway.scoring import score_candidates
from vidstrata.gateway.service import union_by_rank
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.index.lexicon import lexicon_row
from vidstrata.index.schema import DEFAULT_TENANT, VECTOR_FIELD, segment_id
from vidstrata.index.segments import Segment
from vidstrata.index.store import ClipRecord, VideoIndex
from vidstrata.inference.triton_encoder import TritonEncoder
from vidstrata.v1 import search_pb2, search_pb2_grpc

STAGES = ("encode", "ann_videos", "ann_clips", "rescore", "rescore_fetch", "fusion", "total")


def bare_search(encoder: TritonEncoder, index: VideoIndex, pool: ThreadPoolExecutor, text: str, limit: int) -> None:
    """The dependency calls of one Search, with nothing around them: encode, both ANN searches, the fetch."""
    vectors = query_vectors(text, encoder.encode_text([text]))
    videos_future = pool.submit(index.search_videos, vectors.sentence, limit)
    clip_lists = index.search_clips_grouped(vectors.clip_queries, limit)
    video_hits = videos_future.result()
    hit_lists = [video_hits, *clip_lists]
    candidates = union_by_rank([[h.video_id for h in hits] for hits in hit_lists], limit)
    index.get_candidate_vectors(candidates, {h.video_id: h.clip_count for hits in hit_lists for h in hits}, video_hits)


def measure_bare(encoder: TritonEncoder, index: VideoIndex, concurrency: int, requests: int,
                 limit: int) -> tuple[list[float], float]:
    """`concurrency` threads sending bare searches back to back until `requests` are done (after a warm-up):
    their latencies (s) and the seconds they took, for bench.common.latency_summary."""
    pool = ThreadPoolExecutor(max_workers=2 * concurrency, thread_name_prefix="bare-fanout")
    latencies: list[float] = []
    lock = threading.Lock()

    def run(count: int, record: bool) -> float:
        counter = iter(range(count))

        def client() -> None:
            for i in counter:
                started = time.perf_counter()
                bare_search(encoder, index, pool, QUERIES[i % len(QUERIES)], limit)
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
    return latencies, elapsed


# The agreement check's queries: every caption, and every ordered pair of captions as a two-event query.
_captions = list(CAPTIONS.values())
# The candidate limit that defines the exact answer: the gateway default before issue 13.
REFERENCE_CANDIDATES = 100
CHECK_QUERIES = _captions + [f"{a}, then {b}" for a in _captions for b in _captions if a != b]


def exact_agreement(stack: SearchStack, index: VideoIndex, address: str, videos: int, clips_per_video: int,
                    candidates: int, top_k: int, queries: list[str], intrinsic_dim: int = 0) -> dict[str, float]:
    """How often the ANN path's top_k equals the exact one, on the synthetic index (brute force over all vectors).

    Exact: the same Search with every ANN list replaced by a brute-force one (video cosines, and per query vector
    each video's best clip cosine) of at least REFERENCE_CANDIDATES videos, then the gateway's own union, rescoring
    and fusion. ANN: the gateway's hits, at its own candidate limit (so a smaller limit shows what it costs).
    Also the grouped clip lists alone: `search_clips_grouped`'s top_k videos per query vector vs brute force.
    Returns mean recall@top_k of both, and the share of queries whose end-to-end top_k set is exactly the exact one.
    """
    dim = index.settings.vector_dim
    clip_matrix = np.empty((videos, clips_per_video, dim), np.float32)
    video_matrix = np.empty((videos, dim), np.float32)
    for first, clips, means in synthetic_batches(videos, clips_per_video, dim, intrinsic_dim=intrinsic_dim):
        clip_matrix[first : first + len(clips)], video_matrix[first : first + len(clips)] = clips, means
    names = [video_name(i) for i in range(videos)]
    settings = GatewaySettings()
    fusion = FusionConfig(settings.fusion_method, settings.fusion_weights, settings.normalization, settings.rrf_k)
    limit = max(candidates, top_k, REFERENCE_CANDIDATES)
    end_to_end, grouped, identical = [], [], 0
    with grpc.insecure_channel(address) as channel:
        stub = search_pb2_grpc.VideoSearchStub(channel)
        for text in queries:
            vectors = query_vectors(text, stack.encoder.encode_text([text]))
            best_clip = np.einsum("vcd,qd->vqc", clip_matrix, vectors.clip_queries, optimize=True).max(axis=2)  # [V,Q]
            video_cos = video_matrix @ vectors.sentence
            exact_lists = [np.argsort(-video_cos, kind="stable")[:limit]] + [
                np.argsort(-best_clip[:, q], kind="stable")[:limit] for q in range(best_clip.shape[1])]
            chosen = union_by_rank([[names[i] for i in ranked] for ranked in exact_lists], limit)
            numbers = [int(v[1:]) for v in chosen]
            clips = {names[n]: [ClipRecord(names[n], k, 5.0 * k, 5.0 * (k + 1), clip_matrix[n, k])
                                for k in range(clips_per_video)] for n in numbers}
            scored = score_candidates(vectors, chosen, {names[n]: video_matrix[n] for n in numbers}, clips)
            fused = fuse(scored.levels, fusion)
            exact = {scored.video_ids[i] for i in sorted(range(len(fused)), key=lambda i: (-fused[i], scored.video_ids[i]))[:top_k]}
            reply = stub.Search(search_pb2.SearchRequest(query=text, top_k=top_k), timeout=120)
            ann = {hit.video_id for hit in reply.hits}
            end_to_end.append(len(ann & exact) / top_k)
            identical += ann == exact
            ann_lists = index.search_clips_grouped(vectors.clip_queries, max(candidates, top_k))
            for q, hits in enumerate(ann_lists):
                truth = {names[i] for i in exact_lists[q + 1][:top_k]}
                grouped.append(len({h.video_id for h in hits[:top_k]} & truth) / top_k)
    return {"queries": len(queries), "recall_at_k": float(np.mean(end_to_end)), "identical_share": identical / len(queries),
            "grouped_clip_recall_at_k": float(np.mean(grouped))}


def transcript_lines(video: int, count: int, rng: np.random.Generator, words: list[str]) -> list[str]:
    """`count` synthetic lines of 8-16 words (Zipf-ranked `words`), the first holding the video's code TX-<video>."""
    ranks = np.minimum(rng.zipf(1.3, size=(count, 16)), len(words)) - 1
    lengths = rng.integers(8, 17, size=count)
    lines = [" ".join(words[r] for r in ranks[i, : lengths[i]]) for i in range(count)]
    if lines:
        lines[0] = f"{lines[0]} code TX-{video:06d}"
    return lines


def synthesise_transcripts(index: VideoIndex, client: MilvusClient, videos: int, clips_per_video: int, per_video: int,
                           text_model: str, seed: int = 0, batch_videos: int = 500) -> float:
    """Give each synthetic video `per_video` timed speech segments (random unit text vectors; rows as index.segments
    and index.lexicon write them), or none (per_video 0 removes them); seconds taken. Skipped when the collections
    already hold that many."""
    names = index.names
    want = videos * per_video
    have = [int(client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"])
            for name in (names.segments, names.lexicon)]
    if have == [want, want]:
        return 0.0
    started = time.perf_counter()
    for name in (names.segments, names.lexicon):
        client.delete(name, filter='video_id != ""')
    rng = np.random.default_rng(seed + 7)
    words = list(dict.fromkeys(w.strip(".,").lower() for caption in CAPTIONS for w in caption.split()))
    dim = index.settings.vector_dim
    for first in range(0, videos if per_video else 0, batch_videos):
        segment_rows, lexicon_rows = [], []
        for number in range(first, min(first + batch_videos, videos)):
            video_id = video_name(number)
            copies = {"metadata": {"lang": LANGS[number % len(LANGS)]}, "video_duration_s": 5.0 * clips_per_video,
                      "video_clip_count": clips_per_video, "video_created_at": 1_700_000_000.0,
                      "text_model": text_model, "tenant": DEFAULT_TENANT}
            vectors = rng.standard_normal((per_video, dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            for i, line in enumerate(transcript_lines(number, per_video, rng, words)):
                segment = Segment(video_id, "speech", i, 4.0 * i, 4.0 * i + 3.5, line)
                segment_rows.append({"segment_id": segment_id(video_id, "speech", i), "video_id": video_id,
                                     "kind": "speech", "segment_index": i, "start_s": segment.start_s,
                                     "end_s": segment.end_s, "text": line, VECTOR_FIELD: vectors[i], **copies})
                lexicon_rows.append(lexicon_row(segment, copies))
        client.insert(names.segments, segment_rows)
        client.insert(names.lexicon, lexicon_rows)
        if (first // batch_videos) % 20 == 0:
            print(f"  transcripts of {min(first + batch_videos, videos)}/{videos} videos ({time.perf_counter() - started:.0f} s)",
                  flush=True)
    if per_video:
        index.connection.note_model(names.segments, text_model)
    for name in (names.segments, names.lexicon):
        client.flush(name)
    wait_indexed(client, (names.segments,))
    return time.perf_counter() - started


def load_alone(stack: SearchStack, index: VideoIndex) -> tuple[int, int]:
    """Release every collection of the benchmark's Milvus, then (re)load this index's: the engine's resident bytes
    afterwards, and what loading this index added to them (its memory on its own). (0, 0) for a Milvus not
    started here (--milvus-uri: its collections are not ours to release).

    Without this the engine holds every size ever loaded in its data folder, and its memory says nothing about one.
    """
    if stack.milvus_rss is None:
        return 0, 0
    own = (index.names.videos, index.names.clips)
    for name in stack.client.list_collections():
        stack.client.release_collection(name)
    time.sleep(5.0)  # let the engine hand freed segments back before the baseline
    before = stack.milvus_rss()
    for name in own:
        stack.client.load_collection(name)
    after = stack.milvus_rss()
    return after, max(after - before, 0)


def probe_search(address: str, request: search_pb2.SearchRequest) -> dict[str, int]:
    """One Search as the load sends it: its hits, their moments (0 from a gateway before the Search API) and
    whether it offers a next page, so a result shows the work it timed. Raises RuntimeError on no hits (an index
    whose rows are of another model version than the gateway serves answers none: it would time empty Searches)."""
    with grpc.insecure_channel(address) as channel:
        reply = search_pb2_grpc.VideoSearchStub(channel).Search(request, timeout=120)
    if not reply.hits:
        raise RuntimeError(f"the gateway at {address} answered no hits to {request.query!r}: nothing to time")
    return {"hits": len(reply.hits), "moments": sum(len(getattr(hit, "moments", ())) for hit in reply.hits),
            "next_page": int(bool(getattr(reply, "next_page_token", "")))}


def table(rows: list[dict[str, Any]], sizes: list[dict[str, Any]], repeats: int) -> str:
    lines = [
        "| videos | clips | candidates | concurrency | Searches | QPS | p50 ms | p95 ms | p99 ms | encode | ANN videos "
        "| ANN clips | fetch | rescore | fusion | gateway total | gateway overhead p50 | bare p50 ms | bare QPS "
        "| p50 gateway / bare |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g, b, s = r["gateway"], r["bare"], r["gateway"]["stages_ms"]
        bare = f"{b['p50_ms']:.1f} | {b['qps']:.1f} | {r['ratio_p50']:.2f}" if b else "– | – | –"
        lines.append(
            f"| {r['videos']} | {r['clips']} | {r['candidates']} | {r['concurrency']} | {g['requests']} | {g['qps']:.1f} "
            f"| {g['p50_ms']:.1f} | {g['p95_ms']:.1f} | {format_percentile(g['p99_ms'])} | {s['encode']:.1f} "
            f"| {s['ann_videos']:.1f} | {s['ann_clips']:.1f} "
            f"| {s['rescore_fetch']:.1f} | {s['rescore'] - s['rescore_fetch']:.1f} | {s['fusion']:.2f} | {s['total']:.1f} "
            f"| {g['overhead_in_gateway_ms']['p50']:.2f} | {bare} |"
        )
    lines += ["", f"Each row pools the Searches of {repeats} runs (Searches: how many): latency columns are client-side "
              "percentiles over all of them (a p99 only from 1000 or more), QPS = Searches / the seconds the runs "
              "took, the bare columns likewise over as many bare calls; stage columns (ms, means of "
              "the responses' own timings) are inside the gateway: ANN videos and ANN clips run concurrently, fetch "
              "is the candidates' vectors, rescore the exact scoring after it. Bare: the same Triton and Milvus "
              "calls sent straight from the benchmark process, at the same concurrency. Gateway overhead: the gateway's "
              "total minus its waits on Triton and Milvus (encode + the longer ANN + fetch), as in bench.gateway.", "",
              "| videos | load + index s | Milvus RSS MiB | of which this index MiB |", "|---|---|---|---|"]
    lines += [f"| {z['videos']} | {z['load_s']:.0f} | {z['milvus_rss_mib']:.0f} | {z['index_rss_mib']:.0f} |" for z in sizes]
    lines += ["", "Load + index: 0 when the data folder already held the rows. Memory: the engine's resident set with "
              "only this size loaded (the others released), and what loading it added (bench.query.load_alone).", "",
              "| videos | candidates | top-10 recall vs exact | top-10 identical | grouped clip top-10 recall | queries |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {z['videos']} | {a['candidates']} | {a['recall_at_k']:.4f} | {a['identical_share']:.3f} "
              f"| {a['grouped_clip_recall_at_k']:.4f} | {a['queries']} |" for z in sizes for a in z["agreements"]]
    lines += ["", f"Exact: brute force over every stored vector, ANN lists of {REFERENCE_CANDIDATES} videos, then the "
              "gateway's own union, rescoring and fusion (bench.query.exact_agreement); the ANN path at each limit."]
    return "\n".join(lines)


def measure_limit(stack: SearchStack, index: VideoIndex, videos: int, candidates: int,
                  args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, float] | None]:
    """One gateway at this candidate limit over `index`: a row per concurrency (args.repeats runs pooled, with
    the bare baseline unless --no-bare), and its exact-search agreement (None with --check-queries 0). Each row
    keeps the request's shape (`page_size`, `moments`: 0 when unset) and what one such Search answered (`probe`)."""
    limit = max(candidates, args.top_k)  # what the gateway asks each ANN list for (gateway.query.candidate_limit)
    shape = {"page_size": args.page_size, "moments": args.moments}
    rows = []
    with stack.gateway(index, candidates) as address:
        probe = probe_search(address, search_request(QUERIES[0], args.top_k, **shape))
        print(f"    one Search (page_size {args.page_size or '-'}, moments {args.moments or 'default'}): {probe}",
              flush=True)
        for concurrency in args.concurrency:
            gateway_runs, bare_runs = [], []
            for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
                gateway_runs.append(measure(address, concurrency, args.requests, args.top_k, **shape))
                if not args.no_bare:
                    bare_runs.append(measure_bare(stack.encoder, index, concurrency, args.requests, limit))
            gateway = summarise(concurrency, gateway_runs)
            bare = latency_summary(bare_runs) if bare_runs else None
            rows.append({"videos": videos, "clips": videos * args.clips_per_video, "candidates": candidates,
                         "concurrency": concurrency, **shape, "probe": probe, "gateway": gateway, "bare": bare,
                         "ratio_p50": gateway["p50_ms"] / bare["p50_ms"] if bare else None,
                         "ratio_qps": gateway["qps"] / bare["qps"] if bare else None})
            print(f"    concurrency {concurrency}: gateway {gateway['qps']:.1f} QPS p50 {gateway['p50_ms']:.1f} ms "
                  f"p99 {format_percentile(gateway['p99_ms'])} ms over {gateway['requests']} Searches, overhead p50 "
                  f"{gateway['overhead_in_gateway_ms']['p50']:.2f} ms"
                  + (f"; bare {bare['qps']:.1f} QPS p50 {bare['p50_ms']:.1f} ms" if bare else ""), flush=True)
        agreement = None
        if args.check_queries:
            agreement = exact_agreement(stack, index, address, videos, args.clips_per_video, candidates,
                                        args.top_k, CHECK_QUERIES[: args.check_queries], args.intrinsic_dim)
            print(f"    exact-search agreement: {agreement}", flush=True)
    return rows, agreement


def measure_interleaved(stacks: dict[str, SearchStack], videos: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every backend's gateway at once, measured in turns: per concurrency, args.interleave rounds of
    args.requests / args.interleave Searches on each backend, the order flipped every round, so that a shared
    machine's load falls on all of them alike. A row per backend and concurrency (gateway only: no bare baseline),
    its percentiles over all its Searches and its QPS = Searches / the seconds they took (`runs_qps`: each turn's)."""
    rows = []
    chunk = -(-args.requests // args.interleave)
    with ExitStack() as gateways:
        addresses = {name: gateways.enter_context(stack.gateway(stack.indexes[videos], args.candidates))
                     for name, stack in stacks.items()}
        for concurrency in args.concurrency:
            for address in addresses.values():  # warm-up
                run_load(address, concurrency, max(concurrency, 8), args.top_k, args.page_size, args.moments)
            got: dict[str, list[tuple[list[float], list[Any], float]]] = {name: [] for name in addresses}
            for turn in range(args.interleave):
                for name in list(addresses)[:: 1 if turn % 2 == 0 else -1]:
                    got[name].append(run_load(addresses[name], concurrency, chunk, args.top_k, args.page_size,
                                              args.moments))
            for name, turns in got.items():
                gateway = summarise(concurrency, turns)
                rows.append({"milvus": name, "videos": videos, "clips": videos * args.clips_per_video,
                             "candidates": args.candidates, "concurrency": concurrency, "page_size": args.page_size,
                             "moments": args.moments, "gateway": gateway,
                             "bare": None, "ratio_p50": None, "ratio_qps": None})
                print(f"    {name}, concurrency {concurrency}: {gateway['qps']:.1f} QPS p50 {gateway['p50_ms']:.1f} ms "
                      f"p99 {format_percentile(gateway['p99_ms'])} ms over {gateway['requests']} Searches in "
                      f"{args.interleave} turns", flush=True)
    return rows


def _header(command: str) -> str:
    m = machine()
    return f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}. Date: {m['date']}. Command: `{command}`."


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stack_arguments(parser)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=400, help="Searches measured per run")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per row, their Searches pooled (a p99 needs --requests x --repeats >= 1000)")
    parser.add_argument("--page-size", type=int, default=0, metavar="N",
                        help="Searches ask for the first page of N hits (page_size; top_k unset) instead of --top-k "
                        "hits; 0 (default): top_k, no paging")
    parser.add_argument("--moments", type=int, default=0, metavar="K",
                        help="moments_per_video of every Search; 0 (default): unset, the gateway's default (3)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-dependency baseline (halves the time)")
    parser.add_argument("--check-queries", type=int, default=len(CHECK_QUERIES),
                        help="queries of the exact-search agreement check (0: skip it)")
    parser.add_argument("--candidate-limits", type=int, nargs="+",
                        help="measure each of these candidate limits in turn (latency and agreement; default: --candidates)")
    parser.add_argument("--plot", type=Path, help="write the cost curve (figures against index size) to this PNG")
    parser.add_argument("--interleave", type=int, default=0, metavar="TURNS",
                        help="with several --milvus: run them all at once and measure them in TURNS alternating turns "
                        "of --requests/TURNS Searches each (the gateway only), so a shared machine's load hits each "
                        "alike; 0 (default): one after the other")
    parser.add_argument("--transcripts", type=int, default=0, metavar="K",
                        help="K synthetic speech segments per video in the segments collection and the lexicon "
                        "(synthesise_transcripts); 0 (default): none")
    parser.add_argument("--tiny", action="store_true", help="smoke run: 60 videos of 2 clips, concurrency 1 and 4, "
                        "at most 10 requests, 1 repeat")
    args = parser.parse_args(argv)
    if args.tiny:
        args.videos, args.clips_per_video, args.concurrency = [60], 2, [1, 4]
        args.requests, args.repeats, args.check_queries = min(args.requests, 10), 1, min(args.check_queries, 10)
    command = "python -m bench.query " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.plot and len(backends(args)) > 1:
        parser.error("--plot draws one Milvus: give one --milvus")
    rows, sizes = [], []
    if args.interleave and len(backends(args)) > 1:
        rows, sizes = interleaved(args)
    else:
        with services(args) as shared:
            for milvus in backends(args):  # back to back, over the same Triton and Redis
                more_rows, more_sizes = one_backend(args, milvus, shared)
                rows += more_rows
                sizes += more_sizes
    names = backends(args)
    if len(names) == 1:
        text = table(rows, sizes, args.repeats)
    else:
        text = "\n\n".join([compare_backends(rows, names, args.interleave)] + [
            f"Milvus {name}:\n\n" + table([r for r in rows if r["milvus"] == name],
                                            [z for z in sizes if z["milvus"] == name], args.repeats) for name in names])
    arguments = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    milvus = names[0] if len(names) == 1 else names
    path = write_results("query", {"command": command, "rows": rows, "sizes": sizes, "args": arguments,
                                   "milvus": milvus}, f"{_header(command)}\n\n{text}", args.results_dir)
    if args.plot:
        plot_cost(rows, sizes, names[0], args.plot)
    print(f"\n{text}\n\nwrote {path}")
    return path


def one_backend(args: argparse.Namespace, milvus: str, shared: Services) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every index size on one Milvus: rows (a row per candidate limit and concurrency) and sizes."""
    rows, sizes = [], []
    with search_stack(args, milvus, shared) as stack:
        for videos, index in stack.indexes.items():
            print(f"Milvus {milvus}, index of {videos} videos x {args.clips_per_video} clips ...", flush=True)
            load_s = synthesise(index, stack.client, videos, args.clips_per_video, intrinsic_dim=args.intrinsic_dim,
                                visual_model=stack.encoder.info().visual_model)
            load_s += synthesise_transcripts(index, stack.client, videos, args.clips_per_video, args.transcripts,
                                             stack.encoder.info().text_model)
            rss, index_rss = load_alone(stack, index)
            idle_wait_s = wait_engine_idle(stack.client)
            agreements = []
            for candidates in args.candidate_limits or [args.candidates]:
                print(f"  candidate limit {candidates}:", flush=True)
                row_group, agreement = measure_limit(stack, index, videos, candidates, args)
                rows += [{"milvus": milvus, **row} for row in row_group]
                if agreement:
                    agreements.append({"candidates": candidates, **agreement})
            sizes.append({"milvus": milvus, "videos": videos, "clips": videos * args.clips_per_video, "load_s": load_s,
                          "milvus_rss_mib": rss / 2**20, "index_rss_mib": index_rss / 2**20, "idle_wait_s": idle_wait_s,
                          "agreements": agreements})
    return rows, sizes


def interleaved(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every --milvus at once, over the same Triton and Redis, measured in alternating turns (measure_interleaved)."""
    rows, sizes = [], []
    with services(args) as shared, ExitStack() as opened:
        stacks = {name: opened.enter_context(search_stack(args, name, shared)) for name in backends(args)}
        for videos in args.videos:
            for name, stack in stacks.items():
                index = stack.indexes[videos]
                print(f"Milvus {name}, index of {videos} videos x {args.clips_per_video} clips ...", flush=True)
                load_s = synthesise(index, stack.client, videos, args.clips_per_video, intrinsic_dim=args.intrinsic_dim,
                                    visual_model=stack.encoder.info().visual_model)
                load_s += synthesise_transcripts(index, stack.client, videos, args.clips_per_video, args.transcripts,
                                                 stack.encoder.info().text_model)
                rss, index_rss = load_alone(stack, index)
                sizes.append({"milvus": name, "videos": videos, "clips": videos * args.clips_per_video, "load_s": load_s,
                              "milvus_rss_mib": rss / 2**20, "index_rss_mib": index_rss / 2**20, "agreements": []})
            for (name, stack), size in zip(stacks.items(), sizes[-len(stacks):], strict=True):
                size["idle_wait_s"] = wait_engine_idle(stack.client)
            print(f"  {', '.join(stacks)} in {args.interleave} alternating turns:", flush=True)
            rows += measure_interleaved(stacks, videos, args)
    return rows, sizes


def compare_backends(rows: list[dict[str, Any]], names: list[str], interleave: int = 0) -> str:
    """One line per index size, candidate limit and concurrency: each backend's QPS, p50 and p99 through the gateway,
    the Searches measured, and each backend's QPS over the first's."""
    head = " | ".join(f"{n} QPS | {n} p50 ms | {n} p99 ms" for n in names)
    ratios = " | ".join(f"QPS {n} / {names[0]}" for n in names[1:])
    lines = [f"| videos | candidates | concurrency | {head} | Searches each | {ratios} |",
             "|" + "---|" * (4 + 3 * len(names) + len(names) - 1)]
    at = {(r["milvus"], r["videos"], r["candidates"], r["concurrency"]): r["gateway"] for r in rows}
    for videos, candidates, concurrency in dict.fromkeys((r["videos"], r["candidates"], r["concurrency"]) for r in rows):
        got = [at.get((n, videos, candidates, concurrency)) for n in names]
        cells = " | ".join(f"{g['qps']:.1f} | {g['p50_ms']:.1f} | {format_percentile(g['p99_ms'])}" if g else "– | – | –"
                           for g in got)
        base = got[0]
        ratio = " | ".join(f"{g['qps'] / base['qps']:.1f}x" if g and base else "–" for g in got[1:])
        requests = min(int(g["requests"]) for g in got if g)
        lines.append(f"| {videos} | {candidates} | {concurrency} | {cells} | {requests} | {ratio} |")
    how = (f"all at once, measured in {interleave} alternating turns of Searches per backend (--interleave), so the "
           "machine's load fell on each alike; percentiles over all of a backend's Searches, QPS = its Searches / the "
           "seconds they took" if interleave else
           "each measured in turn; latency percentiles over a backend's Searches of every --repeats run pooled, QPS = "
           "those Searches / the seconds they took")
    lines += ["", f"Client-side, through the real gateway, with the same Triton, Redis, queries and synthetic index; {how}."]
    return "\n".join(lines)


def plot_cost(rows: list[dict[str, Any]], sizes: list[dict[str, Any]], milvus: str, path: Path) -> Path:
    """p50/p99 at concurrency 1, QPS at the highest concurrency, and Milvus memory, against index size (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    videos = [s["videos"] for s in sizes]
    low, high = min(r["concurrency"] for r in rows), max(r["concurrency"] for r in rows)
    at = {(r["videos"], r["candidates"], r["concurrency"]): r["gateway"] for r in rows}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for limit in sorted({r["candidates"] for r in rows}, reverse=True):  # a line per candidate limit measured
        sized = [v for v in videos if (v, limit, low) in at]
        axes[0].plot(sized, [at[v, limit, low]["p50_ms"] for v in sized], "o-", label=f"p50, {limit} candidates")
        tails = [v for v in sized if at[v, limit, low]["p99_ms"] is not None]  # none from fewer than 1000 Searches
        if tails:
            axes[0].plot(tails, [at[v, limit, low]["p99_ms"] for v in tails], "s--", label=f"p99, {limit} candidates")
        axes[1].plot(sized, [at[v, limit, high]["qps"] for v in sized], "o-", label=f"{limit} candidates")
    axes[0].set_ylabel(f"Search latency at concurrency {low} (ms)")
    axes[1].set_ylabel(f"Search QPS at concurrency {high}")
    axes[2].plot(videos, [s["milvus_rss_mib"] for s in sizes], "o-", label="Milvus RSS, this size loaded")
    axes[2].plot(videos, [s["index_rss_mib"] for s in sizes], "s--", label="of which the index")
    axes[2].set_ylabel("MiB")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("videos (4 clips each)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"Search cost against index size, Milvus {milvus}, 2-core CPU VM")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
