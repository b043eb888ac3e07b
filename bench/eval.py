"""`vidstrata eval` / `make eval`: retrieval quality per level and fused, through the real stack.

For each dataset (bench.datasets: generated `scenes` / `shapes`, or a JSONL of your own) this starts the
real stack (redis, milvus-lite, tritonserver, a Celery worker, the gateway: vidstrata.up), ingests every
video through the gateway (SubmitVideo, then GetVideo until READY), and sends every query to Search once
per configuration:

- one level alone: `fusion.weights` = {that level: 1} (video-sentence, clip-sentence, clip-phrase);
- fused WEIGHTED and fused RRF with the gateway's default weights.

Each Search asks for every indexed video (top_k = videos, so the candidate limit covers the whole index and
ranks are exact, not cut by ANN recall). Metrics, per query kind (bench.datasets.Query):
R@1/5/10 (%), median and mean rank (filtered: only videos the text does not also describe count against
it), and for scene queries the span accuracy of the target video's `best_clip` (mean IoU with the true
scene, share with IoU >= 0.5) and "top-1 span" (the first hit is relevant and its best clip has IoU >= 0.5).

Sets with pairs of videos showing the same scenes in opposite orders (`ordered`) also get the pairwise order accuracy
of their order-stating captions, and sets showing a scene twice (`moments`) the share of hits whose two best moments
find both of its spans (bench.temporal), each on every query and on the held-out half of the calibration split.

`--calibrate` splits the distinct query texts in two (seeded, per kind), searches a grid of weights and of each
text level's cosine range on one half by replaying the gateway's own fusion (gateway.fusion.fuse) over the level
scores Search returned for every candidate, then reports the best of each method on the other half through a
real gateway: the stack's own, or one more started on the same servers with the chosen text ranges (a deployment
setting, VIDSTRATA_GATEWAY_TEXT_LEVEL_RANGES, not a request field).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from bench.common import RESULTS_DIR, machine, write_results
from bench.datasets import (
    GENERATORS, QUERY_KINDS, TINY, Item, Query, Sizes, order_phrasing, queries, read_jsonl, reverses, scene_spans,
)
from vidstrata.gateway.fusion import FusionConfig, FusionMethod
from vidstrata.spec.channels import LEVELS, VISUAL_LEVELS
from vidstrata.gateway.settings import GatewaySettings
from bench.calibration import calibrate, objective, replay, split_texts
from bench.confidence import PRECISION_TARGETS, band_report, choose_thresholds, scored_hits
from bench.metrics import RankedVideo, Response, score_queries
from bench.report import LEVEL_NAMES, plot, ranges_label, tables
from bench.temporal import MomentHit, MomentSpan, order_accuracy, temporal_tables, two_moment_hits

if TYPE_CHECKING:
    from vidstrata.up import Stack

READY, FAILED = 3, 4  # search_pb2.Video.Status, without importing the generated stubs at module import
DEFAULT_DATASETS = ["scenes", "shapes", "ordered", "moments"]
DEFAULT_VIDEOS = 40
TINY_VIDEOS = 6
SEARCH_ATTEMPTS = 3


@dataclass(frozen=True)
class Config:
    """One way of ranking: a fusion method and its weights (empty: the gateway's defaults). The text levels' ranges
    are the gateway's: a setting of the gateway it is sent to, not of the request."""

    name: str
    method: FusionMethod
    weights: Mapping[str, float] = field(default_factory=dict)


BASE_CONFIGS = [Config(LEVEL_NAMES[level], FusionMethod.WEIGHTED, {level: 1.0}) for level in LEVELS] + [
    Config("fused WEIGHTED", FusionMethod.WEIGHTED),
    Config("fused RRF", FusionMethod.RRF),
]


# -- the stack -------------------------------------------------------------------------------------------


# Quality runs measure rankings, not latency: on a busy machine a Search may outlast the production
# deadlines, so the eval's gateway waits longer instead of failing queries. Everything else stays default.
EVAL_GATEWAY_ENV = {"VIDSTRATA_GATEWAY_REQUEST_TIMEOUT_S": "120", "VIDSTRATA_GATEWAY_TRITON_TIMEOUT_S": "60"}


@contextmanager
def real_stack(data_dir: Path, model_repository: Path, media: Sequence[Path] = (),
               env: Mapping[str, str] = EVAL_GATEWAY_ENV) -> Iterator[Stack]:
    """vidstrata.up's stack on free ports with its data in data_dir; yields it (its gateway: `gateway_address`).

    `media`: the folders whose videos it ingests, the only local files its worker may read
    (VIDSTRATA_WORKER_LOCAL_ROOTS). `env` goes to the worker and gateway on top of this process's environment,
    which is left as it was.
    """
    env = {**env, "VIDSTRATA_WORKER_LOCAL_ROOTS": os.pathsep.join(str(Path(m).resolve()) for m in media)}
    from vidstrata.stack.process import free_port
    from vidstrata.up import Stack, UpSettings, launch

    ports = {name: free_port() for name in (
        "redis_port", "milvus_port", "triton_http_port", "triton_grpc_port", "triton_metrics_port",
        "gateway_port", "gateway_metrics_port", "worker_metrics_port")}
    stack = Stack(UpSettings(data_dir=data_dir, model_repository=model_repository, ingest_samples=False, **ports),
                  child_env=env)
    try:
        stack.lock()
        launch(stack)
        yield stack
    finally:
        stack.stop()


def gateway_address(stack: Stack) -> str:
    """The address of the stack's own gateway."""
    return f"127.0.0.1:{stack.settings.gateway_port}"


GatewayOpener = Callable[[Mapping[str, str]], AbstractContextManager["EvalClient"]]


@contextmanager
def extra_gateway(stack: Stack, env: Mapping[str, str]) -> Iterator[EvalClient]:
    """One more gateway on the stack's servers, with `env` on top of the stack's settings (other text ranges)."""
    from vidstrata.stack.gateway import start_gateway

    process = start_gateway(stack.env() | dict(env), stack.logs / "gateway-extra.log")
    client = EvalClient(process.address)
    try:
        yield client
    finally:
        client.close()
        process.stop()


class EvalClient:
    """The eval's view of the gateway: ingest via GatewayClient, Search with fusion via the stub."""

    def __init__(self, address: str, timeout_s: float = 150.0) -> None:
        from vidstrata.client import GatewayClient
        from vidstrata.v1 import search_pb2, search_pb2_grpc

        self.pb = search_pb2
        self.client = GatewayClient(address, timeout_s=timeout_s)
        self.channel = grpc.insecure_channel(address)
        self.stub = search_pb2_grpc.VideoSearchStub(self.channel)
        self.timeout_s = timeout_s
        self.retries = 0  # Searches that failed UNAVAILABLE or DEADLINE_EXCEEDED and were sent again

    def search(self, text: str, config: Config, top_k: int) -> Response:
        method = self.pb.Fusion.WEIGHTED if config.method == FusionMethod.WEIGHTED else self.pb.Fusion.RRF
        request = self.pb.SearchRequest(query=text, top_k=top_k,
                                        fusion=self.pb.Fusion(method=method, weights=dict(config.weights)))
        for attempt in range(1, SEARCH_ATTEMPTS + 1):
            try:
                reply = self.stub.Search(request, timeout=self.timeout_s)
                break
            except grpc.RpcError as exc:
                retry = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                if not retry or attempt == SEARCH_ATTEMPTS:
                    raise
                self.retries += 1
                time.sleep(2.0 * attempt)
        hits: list[RankedVideo] = [
            MomentHit(h.video_id, h.score, {level: _level(h.levels, level) for level in LEVELS}, _moment(h),
                      tuple(MomentSpan(m.start_s, m.end_s, m.score, m.level) for m in h.moments))
            for h in reply.hits]
        return Response(hits, reply.candidates, reply.timings.total_ms)

    def ingest(self, items: Sequence[Item], dataset: str, timeout_s: float) -> dict[str, float]:
        """Submit every video, wait until all are READY; FAILED or a timeout raises with the reasons."""
        started = time.perf_counter()
        for item in items:
            self.client.submit(str(item.video), video_id=item.video_id, metadata={"dataset": dataset})
        pending = {item.video_id for item in items}
        failed: dict[str, str] = {}
        duration_s = clips = 0.0
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for video_id in sorted(pending):
                video = self.client.get(video_id)
                if video.status == READY:
                    pending.discard(video_id)
                    duration_s += video.duration_s
                    clips += video.clip_count
                elif video.status == FAILED:
                    pending.discard(video_id)
                    failed[video_id] = video.reason
            if pending:
                time.sleep(0.5)
        if failed or pending:
            raise RuntimeError(f"ingest did not finish: failed {failed}, still pending after {timeout_s:.0f}s: "
                               f"{sorted(pending)}")
        wall = time.perf_counter() - started
        return {"wall_s": wall, "videos": len(items), "video_seconds": duration_s, "clips": clips,
                "videos_per_s": len(items) / wall, "video_seconds_per_s": duration_s / wall}

    def clear(self, items: Sequence[Item]) -> None:
        """Delete the dataset's videos, and check the index is empty again (so datasets never mix)."""
        for item in items:
            self.client.delete(item.video_id)
        stats = self.client.stats()
        if stats.videos or stats.clips:
            raise RuntimeError(f"the index still holds {stats.videos} videos and {stats.clips} clips after deleting "
                               "the dataset; the next dataset would be searched among them")

    def close(self) -> None:
        self.channel.close()
        self.client.close()


# -- one dataset -----------------------------------------------------------------------------------------


def search_all(gateway: EvalClient, texts: Sequence[str], config: Config, top_k: int, threads: int) -> dict[str, Response]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        replies = pool.map(lambda t: gateway.search(t, config, top_k), texts)
        return dict(zip(texts, replies))


def _level(levels: Any, level: str) -> float:
    """A level's raw score from LevelScores; NaN for an optional level the video lacks."""
    if level in VISUAL_LEVELS or levels.HasField(level):
        return float(getattr(levels, level))
    return float("nan")


def _moment(hit: Any) -> tuple[float, float]:
    """The span a hit's best moment covers: `why` (clip, speech or on-screen text), else the best clip."""
    if hit.HasField("why"):
        return (hit.why.start_s, hit.why.end_s)
    return (hit.best_clip.start_s, hit.best_clip.end_s)


def by_kind(qs: Sequence[Query]) -> dict[str, list[Query]]:
    kinds = {kind: [q for q in qs if q.kind == kind] for kind in QUERY_KINDS}
    return {kind: group for kind, group in kinds.items() if group}


def evaluate(
    gateway: EvalClient, name: str, items: Sequence[Item], seed: int, calibrate_weights: bool, threads: int,
    ingest_timeout_s: float, open_gateway: GatewayOpener,
) -> dict[str, Any]:
    """Ingest one dataset, search every query in every configuration, score; deletes the videos after.

    open_gateway(env): another gateway on the same servers with these settings, for calibrated text ranges."""
    settings = GatewaySettings()
    qs = queries(items)
    spans = {(item.video_id, s.caption): (s.start_s, s.end_s) for item in items for s in item.scenes}
    videos = len(items)
    top_k = min(videos, settings.max_top_k)
    print(f"[{name}] ingesting {videos} videos through the gateway ...", flush=True)
    ingest = gateway.ingest(items, name, ingest_timeout_s)
    print(f"[{name}] ingested in {ingest['wall_s']:.1f}s ({ingest['clips']:.0f} clips); "
          f"searching {len({q.text for q in qs})} texts x {len(BASE_CONFIGS)} configurations", flush=True)
    try:
        texts = sorted({q.text for q in qs})
        responses = {c.name: search_all(gateway, texts, c, top_k, threads) for c in BASE_CONFIGS}
        result: dict[str, Any] = {
            "videos": videos, "queries": {k: len(g) for k, g in by_kind(qs).items()}, "texts": len(texts),
            "ingest": ingest, "top_k": top_k,
            "defaults": {"method": settings.fusion_method.value, "weights": settings.fusion_weights,
                         "text_ranges": _ranges(settings.text_level_ranges),
                         "visual_ranges": _ranges(settings.visual_level_ranges), "normalization": settings.normalization,
                         "rrf_k": settings.rrf_k},
            "configs": {}, "exhaustive": all(r.candidates == len(r.hits) for r in responses["fused WEIGHTED"].values()),
            "search_total_ms_median": statistics.median(r.total_ms for rs in responses.values() for r in rs.values()),
        }
        for config in BASE_CONFIGS:
            result["configs"][config.name] = {
                kind: asdict(score_queries(group, lambda q, c=config.name: responses[c][q.text].hits, spans, videos))
                for kind, group in by_kind(qs).items()
            }
        # The replay must reproduce the gateway's own rankings, or calibrating on it would be meaningless.
        full = responses["fused WEIGHTED"]
        mismatches = 0
        for config in BASE_CONFIGS:
            weights = dict(config.weights) or settings.fusion_weights
            fusion = FusionConfig(config.method, weights, settings.normalization, settings.rrf_k,
                                  settings.text_level_ranges, settings.visual_level_ranges)
            for text in texts:
                replayed = [h.video_id for h in replay(full[text].hits, fusion)]
                mismatches += replayed != [h.video_id for h in responses[config.name][text].hits]
        result["replay_mismatches"] = mismatches
        if calibrate_weights:
            result["calibration"] = calibration(gateway, open_gateway, qs, full, responses, settings, spans, videos,
                                                top_k, seed, threads)
        result.update(temporal(items, qs, responses, seed))
        result["search_retries"] = gateway.retries
        result[LEVELS_KEY] = level_dump(qs, full, videos)
        return result
    finally:
        gateway.clear(items)


def calibration(
    gateway: EvalClient, open_gateway: GatewayOpener, qs: Sequence[Query], full: Mapping[str, Response],
    responses: Mapping[str, Mapping[str, Response]], settings: GatewaySettings,
    spans: Mapping[tuple[str, str], tuple[float, float]], videos: int, top_k: int, seed: int, threads: int,
) -> dict[str, Any]:
    """Weights and text ranges searched on one half of the texts, then every configuration scored on the other
    half through a real gateway (one started with the calibrated text ranges where they are not the stack's).

    Where a method's calibrated ranges are not the stack's, the held-out half is also searched with the default
    weights at those ranges (`fused <method>, text ranges ...`): whether the ranges alone should change."""
    cal_texts, held_texts = split_texts(qs, seed)
    cal = [q for q in qs if q.text in cal_texts]
    held = [q for q in qs if q.text in held_texts]
    best = calibrate(cal, full, settings, videos)
    configs = list(BASE_CONFIGS)
    held_responses = {name: dict(rs) for name, rs in responses.items()}
    for method, found in best.items():
        ranges = found["text_ranges"]
        config = Config(f"calibrated {method}", FusionMethod(method), found["weights"])
        if ranges == _ranges(settings.text_level_ranges):
            configs.append(config)
            held_responses[config.name] = search_all(gateway, sorted(held_texts), config, top_k, threads)
        else:
            default_weights = Config(f"fused {method}, text ranges {ranges_label(ranges)}", FusionMethod(method))
            env = {"VIDSTRATA_GATEWAY_TEXT_LEVEL_RANGES": json.dumps(ranges)}
            with open_gateway(env) as other:
                for c in (config, default_weights):
                    configs.append(c)
                    held_responses[c.name] = search_all(other, sorted(held_texts), c, top_k, threads)
        found["held_out_mrr"] = objective(held, lambda q, c=config.name: held_responses[c][q.text].hits, videos)
    chosen = max(best, key=lambda m: best[m]["calibration_mrr"])
    thresholds = choose_thresholds(scored_hits(cal, full))  # on the default fusion's hits, as the gateway serves
    held_out_mrr = {config.name: objective(held, lambda q, c=config.name: held_responses[c][q.text].hits, videos)
                    for config in configs}
    return {
        "split": {"seed": seed, "calibration_texts": len(cal_texts), "held_out_texts": len(held_texts),
                  "calibration_queries": len(cal), "held_out_queries": len(held)},
        "grid_step": 0.1, "objective": "mean reciprocal filtered rank (all query kinds)",
        "best": best,
        "chosen": {"method": chosen, "weights": best[chosen]["weights"], "text_ranges": best[chosen]["text_ranges"]},
        "held_out_mrr": held_out_mrr,
        # VIDSTRATA_GATEWAY_CONFIDENCE_THRESHOLDS: chosen for a precision on the calibration half, reported held out
        "confidence": {"targets": PRECISION_TARGETS, "thresholds": thresholds,
                       "calibration": band_report(scored_hits(cal, full), thresholds),
                       "held_out": band_report(scored_hits(held, full), thresholds)},
        "held_out": {
            config.name: {kind: asdict(score_queries(group, lambda q, c=config.name: held_responses[c][q.text].hits,
                                                     spans, videos))
                          for kind, group in by_kind(held).items()}
            for config in configs
        },
    }


def temporal(items: Sequence[Item], qs: Sequence[Query], responses: Mapping[str, Mapping[str, Response]],
             seed: int) -> dict[str, Any]:
    """The order and moments figures (bench.temporal) of every configuration, on all queries and on the held-out
    half of the calibration split (`split_texts` with the same seed): {"order": ..., "moments": ...}, each only
    where the dataset has such queries."""
    by_id = {item.video_id: item for item in items}
    reverse, spans = reverses(items), scene_spans(items)
    held = split_texts(qs, seed)[1]
    halves = {"all": list(qs), "held out": [q for q in qs if q.text in held]}

    def phrasing(q: Query) -> str | None:
        return order_phrasing(by_id[q.target], q.text) if q.kind == "video" else None

    out: dict[str, Any] = {}
    for key, figures in (
        ("order", lambda group, hits_of: order_accuracy(group, reverse, phrasing, hits_of)),
        ("moments", lambda group, hits_of: two_moment_hits(group, spans, hits_of)),
    ):
        found = {name: {half: figures(group, lambda q, rs=rs: rs[q.text].hits) for half, group in halves.items()}
                 for name, rs in responses.items()}
        if any(f for halves_of in found.values() for f in halves_of.values()):
            out[key] = found
    return out


LEVELS_KEY = "candidate_levels"  # moved out of eval.json into eval_levels.json by `main`


def level_dump(qs: Sequence[Query], full: Mapping[str, Response], videos: int) -> dict[str, Any]:
    """Every query and every candidate's raw level scores (fusion.LEVELS order, null where a video lacks the level)
    as Search returned them: what bench.calibration replays offline (`python -m bench.calibration visual`)."""
    return {
        "videos": videos, "levels": list(LEVELS),
        "queries": [{"text": q.text, "kind": q.kind, "target": q.target, "span": list(q.span) if q.span else None,
                     "relevant": sorted(q.relevant)} for q in qs],
        "candidates": {text: [[h.video_id, [None if math.isnan(h.levels.get(lv, math.nan)) else h.levels[lv] for lv in LEVELS]]
                              for h in response.hits] for text, response in full.items()},
    }


def _ranges(ranges: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """Text ranges as JSON has them (lists), to compare with and to write."""
    return {level: list(r) for level, r in ranges.items()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vidstrata eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", nargs="+", choices=sorted(GENERATORS), default=DEFAULT_DATASETS,
                        help=f"built-in datasets to generate and evaluate (default: {' '.join(DEFAULT_DATASETS)})")
    parser.add_argument("--jsonl", type=Path, action="append", default=[],
                        help="also evaluate a dataset JSONL of your own (repeatable); named by its file stem")
    parser.add_argument("--videos", type=int, help=f"videos per generated dataset (default {DEFAULT_VIDEOS}, "
                        f"{TINY_VIDEOS} with --tiny)")
    parser.add_argument("--seed", type=int, default=0, help="dataset generation and calibration split seed")
    parser.add_argument("--calibrate", action="store_true",
                        help="search fusion weights on half the query texts, report them on the other half")
    parser.add_argument("--tiny", action="store_true", help="few small, short videos: a smoke run")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where eval.json and eval.md go")
    parser.add_argument("--report", type=Path, help="also write eval.md and eval.png into this folder (e.g. docs/)")
    parser.add_argument("--work-dir", type=Path, help="keep generated videos and the stack's data here "
                        "(default: a temporary folder, removed afterwards)")
    parser.add_argument("--model-repository", type=Path, default=Path("build/model_repository"),
                        help="Triton model repository (exported there on first use)")
    parser.add_argument("--threads", type=int, default=1, help="concurrent Search calls")
    parser.add_argument("--ingest-timeout", type=float, default=1800.0, help="seconds to wait for ingest")
    args = parser.parse_args(argv)
    if args.videos is None:
        args.videos = TINY_VIDEOS if args.tiny else DEFAULT_VIDEOS
    if args.videos < 1:
        parser.error("--videos must be at least 1")
    if not args.dataset and not args.jsonl:
        parser.error("nothing to evaluate")
    return args


def run(args: argparse.Namespace, work: Path, command: str) -> dict[str, Any]:
    sizes = TINY if args.tiny else Sizes()
    datasets: dict[str, list[Item]] = {}
    for name in args.dataset:
        print(f"[{name}] writing {args.videos} videos ...", flush=True)
        datasets[name] = read_jsonl(GENERATORS[name](work / name, args.videos, args.seed, sizes))
    for path in args.jsonl:
        datasets[path.stem] = read_jsonl(path)
    payload: dict[str, Any] = {"command": command, "seed": args.seed, "tiny": args.tiny, "datasets": {}}
    started = time.perf_counter()
    folders = {work} | {item.video.parent for items in datasets.values() for item in items}
    with real_stack(work / "stack", args.model_repository.resolve(), sorted(folders)) as stack:
        address = gateway_address(stack)
        print(f"stack up in {time.perf_counter() - started:.0f}s; gateway at {address}", flush=True)
        gateway = EvalClient(address)
        try:
            for name, items in datasets.items():
                payload["datasets"][name] = evaluate(gateway, name, items, args.seed, args.calibrate, args.threads,
                                                     args.ingest_timeout, lambda env: extra_gateway(stack, env))
        finally:
            gateway.close()
    payload["wall_s"] = time.perf_counter() - started
    return payload


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    command = "python -m bench.eval " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        payload = run(args, args.work_dir.resolve(), command)
    else:
        with tempfile.TemporaryDirectory(prefix="vidstrata-eval-") as tmp:
            payload = run(args, Path(tmp), command)
    payload["machine"] = machine()
    payload["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    levels = {"command": command, "date": payload["date"],
              "datasets": {name: result.pop(LEVELS_KEY) for name, result in payload["datasets"].items()}}
    report = "\n".join(part for part in (tables(payload), temporal_tables(payload)) if part)
    write_results("eval", {k: v for k, v in payload.items() if k != "machine"}, report, args.results_dir)
    (args.results_dir / "eval_levels.json").write_text(json.dumps(levels) + "\n")
    if args.report:
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "eval.md").write_text("# Retrieval quality (`vidstrata eval`)\n\n" + report + "\n\n"
                                             "![recall per configuration](eval.png)\n")
        plot(payload, args.report / "eval.png")
        (args.report / "eval.json").write_text(json.dumps(payload, indent=2) + "\n")
        (args.report / "eval_levels.json").write_text(json.dumps(levels) + "\n")
    print(report, flush=True)
    return payload


if __name__ == "__main__":
    main()
