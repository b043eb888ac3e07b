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

`--calibrate` splits the distinct query texts in two (seeded, per kind), searches a weight grid on one half
by replaying the gateway's own fusion (gateway.fusion.fuse) over the level scores Search returned for every
candidate, then reports the best weights of each method on the other half through the real gateway.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from itertools import product
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.common import RESULTS_DIR, machine, write_results
from bench.datasets import GENERATORS, QUERY_KINDS, TINY, Item, Query, Sizes, queries, read_jsonl
from gateway.fusion import LEVELS, TEXT_LEVELS, VISUAL_LEVELS, FusionConfig, FusionMethod, fuse
from gateway.settings import GatewaySettings

READY, FAILED = 3, 4  # search_pb2.Video.Status, without importing the generated stubs at module import
LEVEL_NAMES = {level: level.replace("_", "-") for level in LEVELS}  # video_sentence -> video-sentence
DEFAULT_VIDEOS = 40
TINY_VIDEOS = 6
SEARCH_ATTEMPTS = 3


@dataclass(frozen=True)
class Config:
    """One way of ranking: a fusion method and its weights (empty: the gateway's defaults)."""

    name: str
    method: FusionMethod
    weights: Mapping[str, float] = field(default_factory=dict)


BASE_CONFIGS = [Config(LEVEL_NAMES[level], FusionMethod.WEIGHTED, {level: 1.0}) for level in LEVELS] + [
    Config("fused WEIGHTED", FusionMethod.WEIGHTED),
    Config("fused RRF", FusionMethod.RRF),
]


@dataclass(frozen=True)
class Hit:
    video_id: str
    score: float
    levels: dict[str, float]
    span: tuple[float, float]


@dataclass(frozen=True)
class Response:
    """One Search's hits (best first), how many candidates the gateway rescored, and its total time."""

    hits: list[Hit]
    candidates: int
    total_ms: float


# -- metrics -------------------------------------------------------------------------------------------


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two time spans."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def filtered_rank(ranking: Sequence[str], query: Query, videos: int) -> int:
    """1 + the videos ranked above the target that the text does not describe; a target missing from the
    ranking gets the worst rank (every other non-relevant video above it)."""
    above = 0
    for video_id in ranking:
        if video_id == query.target:
            return above + 1
        if video_id not in query.relevant:
            above += 1
    return videos - len(query.relevant) + 1


@dataclass(frozen=True)
class Metrics:
    queries: int
    r1: float
    r5: float
    r10: float
    median_rank: float
    mean_rank: float
    mrr: float
    span_iou: float | None = None  # scene queries: mean IoU of the target video's best clip with its scene
    span_hit: float | None = None  # share of scene queries with that IoU >= 0.5
    top1_span_hit: float | None = None  # first hit is relevant and its best clip has IoU >= 0.5

    def row(self) -> list[str]:
        def pct(value: float | None) -> str:
            return "" if value is None else f"{100 * value:.1f}"

        return [str(self.queries), pct(self.r1), pct(self.r5), pct(self.r10), f"{self.median_rank:g}",
                f"{self.mean_rank:.1f}", f"{self.mrr:.3f}", pct(self.span_iou), pct(self.span_hit),
                pct(self.top1_span_hit)]


METRIC_HEADER = ["queries", "R@1", "R@5", "R@10", "MdR", "MnR", "MRR", "span IoU", "IoU≥0.5", "top-1 span"]


def score_queries(
    qs: Sequence[Query],
    ranking_of: Callable[[Query], Sequence[Hit]],
    spans: Mapping[tuple[str, str], tuple[float, float]],
    videos: int,
) -> Metrics:
    """Metrics of queries of one kind; `spans[(video_id, caption)]` is that scene's true span."""
    if not qs:
        raise ValueError("no queries to score")
    ranks, ious, top1 = [], [], []
    for q in qs:
        hits = ranking_of(q)
        ranks.append(filtered_rank([h.video_id for h in hits], q, videos))
        if q.span is not None:
            target = next((h for h in hits if h.video_id == q.target), None)
            ious.append(iou(target.span, q.span) if target else 0.0)
            first = hits[0] if hits else None
            top1.append(bool(first and first.video_id in q.relevant
                             and iou(first.span, spans[first.video_id, q.text]) >= 0.5))
    r = np.asarray(ranks, dtype=np.float64)
    scene = bool(ious)
    return Metrics(
        queries=len(qs), r1=float((r <= 1).mean()), r5=float((r <= 5).mean()), r10=float((r <= 10).mean()),
        median_rank=float(np.median(r)), mean_rank=float(r.mean()), mrr=float((1 / r).mean()),
        span_iou=float(np.mean(ious)) if scene else None,
        span_hit=float(np.mean(np.asarray(ious) >= 0.5)) if scene else None,
        top1_span_hit=float(np.mean(top1)) if scene else None,
    )


# -- fusion replay and calibration ----------------------------------------------------------------------


def replay(hits: Sequence[Hit], fusion: FusionConfig) -> list[Hit]:
    """The gateway's ranking of these candidates under another fusion: gateway.fusion.fuse, ties by id."""
    if not hits:
        return []
    levels = {level: np.array([h.levels.get(level, np.nan) for h in hits]) for level in LEVELS}
    fused = fuse(levels, fusion)
    order = sorted(range(len(hits)), key=lambda i: (-fused[i], hits[i].video_id))
    return [hits[i] for i in order]


TEXT_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)  # text levels are on a fixed [0, 1] scale, weighed against the visual sum 1


def weight_grid(step: float = 0.1) -> list[dict[str, float]]:
    """Every weighting of the visual levels on a simplex grid (weights sum to 1), times TEXT_WEIGHTS for each
    text level."""
    n = round(1 / step)
    grid = []
    for a, b in product(range(n + 1), repeat=2):
        if a + b <= n:
            visual = {VISUAL_LEVELS[0]: round(a * step, 6), VISUAL_LEVELS[1]: round(b * step, 6),
                      VISUAL_LEVELS[2]: round((n - a - b) * step, 6)}
            for text in product(TEXT_WEIGHTS, repeat=len(TEXT_LEVELS)):
                grid.append(visual | dict(zip(TEXT_LEVELS, text, strict=True)))
    return grid


def split_texts(qs: Sequence[Query], seed: int) -> tuple[set[str], set[str]]:
    """Distinct query texts in two halves (calibration, held out), shuffled per kind with the seed."""
    rng = np.random.default_rng(seed)
    calibration, held_out = set(), set()
    for kind in QUERY_KINDS:
        texts = sorted({q.text for q in qs if q.kind == kind})
        order = rng.permutation(len(texts))
        half = (len(texts) + 1) // 2
        calibration |= {texts[i] for i in order[:half]}
        held_out |= {texts[i] for i in order[half:]}
    return calibration, held_out - calibration


def objective(qs: Sequence[Query], ranking_of: Callable[[Query], Sequence[Hit]], videos: int) -> float:
    """Mean reciprocal filtered rank: what calibration maximises (smooth, and rewards R@1 most)."""
    return float(np.mean([1 / filtered_rank([h.video_id for h in ranking_of(q)], q, videos) for q in qs]))


def calibrate(
    qs: Sequence[Query], full: Mapping[str, Response], settings: GatewaySettings, videos: int, step: float = 0.1
) -> dict[str, dict[str, Any]]:
    """Per method, the grid weights with the best objective on `qs`, from a replay of every candidate's levels."""
    best: dict[str, dict[str, Any]] = {}
    for method in FusionMethod:
        scored = []
        for weights in weight_grid(step):
            config = FusionConfig(method, weights, settings.normalization, settings.rrf_k, settings.text_level_range)
            value = objective(qs, lambda q, c=config: replay(full[q.text].hits, c), videos)
            scored.append((value, weights))
        # Best objective; among equals the most even weights (nearest the centre), so ties do not pick a corner.
        value, weights = max(scored, key=lambda s: (round(s[0], 9), -np.ptp(list(s[1].values()))))
        best[method.value] = {"weights": weights, "calibration_mrr": value}
    return best


# -- the stack -------------------------------------------------------------------------------------------


# Quality runs measure rankings, not latency: on a busy machine a Search may outlast the production
# deadlines, so the eval's gateway waits longer instead of failing queries. Everything else stays default.
EVAL_GATEWAY_ENV = {"VIDSTRATA_GATEWAY_REQUEST_TIMEOUT_S": "120", "VIDSTRATA_GATEWAY_TRITON_TIMEOUT_S": "60"}


@contextmanager
def real_stack(data_dir: Path, model_repository: Path, env: Mapping[str, str] = EVAL_GATEWAY_ENV) -> Iterator[str]:
    """vidstrata.up's stack on free ports with its data in data_dir; yields the gateway address.

    `env` is added to the children's environment (vidstrata.up passes os.environ on) while they start.
    """
    from vidstrata.stack.process import free_port
    from vidstrata.up import Stack, UpSettings, launch

    ports = {name: free_port() for name in (
        "redis_port", "milvus_port", "triton_http_port", "triton_grpc_port", "triton_metrics_port",
        "gateway_port", "gateway_metrics_port", "worker_metrics_port")}
    stack = Stack(UpSettings(data_dir=data_dir, model_repository=model_repository, ingest_samples=False, **ports))
    saved = {key: os.environ.get(key) for key in env}
    try:
        os.environ.update(env)
        stack.lock()
        launch(stack)
        yield f"127.0.0.1:{ports['gateway_port']}"
    finally:
        stack.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Gateway:
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
        hits = [Hit(h.video_id, h.score, {level: _level(h.levels, level) for level in LEVELS}, _moment(h))
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


def search_all(gateway: Gateway, texts: Sequence[str], config: Config, top_k: int, threads: int) -> dict[str, Response]:
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
    gateway: Gateway, name: str, items: Sequence[Item], seed: int, calibrate_weights: bool, threads: int,
    ingest_timeout_s: float,
) -> dict[str, Any]:
    """Ingest one dataset, search every query in every configuration, score; deletes the videos after."""
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
                         "normalization": settings.normalization, "rrf_k": settings.rrf_k},
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
                                  settings.text_level_range)
            for text in texts:
                replayed = [h.video_id for h in replay(full[text].hits, fusion)]
                mismatches += replayed != [h.video_id for h in responses[config.name][text].hits]
        result["replay_mismatches"] = mismatches
        if calibrate_weights:
            result["calibration"] = calibration(gateway, qs, full, responses, settings, spans, videos, top_k, seed,
                                                threads)
        result["search_retries"] = gateway.retries
        return result
    finally:
        gateway.clear(items)


def calibration(
    gateway: Gateway, qs: Sequence[Query], full: Mapping[str, Response], responses: Mapping[str, Mapping[str, Response]],
    settings: GatewaySettings, spans: Mapping[tuple[str, str], tuple[float, float]], videos: int, top_k: int,
    seed: int, threads: int,
) -> dict[str, Any]:
    """Weights searched on one half of the texts, then every configuration scored on the other half."""
    cal_texts, held_texts = split_texts(qs, seed)
    cal = [q for q in qs if q.text in cal_texts]
    held = [q for q in qs if q.text in held_texts]
    best = calibrate(cal, full, settings, videos)
    configs = list(BASE_CONFIGS)
    held_responses = {name: dict(rs) for name, rs in responses.items()}
    for method, found in best.items():
        config = Config(f"calibrated {method}", FusionMethod(method), found["weights"])
        configs.append(config)
        held_responses[config.name] = search_all(gateway, sorted(held_texts), config, top_k, threads)
        found["held_out_mrr"] = objective(held, lambda q, c=config.name: held_responses[c][q.text].hits, videos)
    chosen = max(best, key=lambda m: best[m]["calibration_mrr"])
    held_out_mrr = {config.name: objective(held, lambda q, c=config.name: held_responses[c][q.text].hits, videos)
                    for config in configs}
    return {
        "split": {"seed": seed, "calibration_texts": len(cal_texts), "held_out_texts": len(held_texts),
                  "calibration_queries": len(cal), "held_out_queries": len(held)},
        "grid_step": 0.1, "objective": "mean reciprocal filtered rank (all query kinds)",
        "best": best, "chosen": {"method": chosen, "weights": best[chosen]["weights"]},
        "held_out_mrr": held_out_mrr,
        "held_out": {
            config.name: {kind: asdict(score_queries(group, lambda q, c=config.name: held_responses[c][q.text].hits,
                                                     spans, videos))
                          for kind, group in by_kind(held).items()}
            for config in configs
        },
    }


# -- report ------------------------------------------------------------------------------------------------


def _table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(["\n".join(lines)] + ["| " + " | ".join(r) + " |" for r in rows])


def tables(payload: Mapping[str, Any]) -> str:
    """The Markdown report: one table of all configurations, and the held-out table where calibrated."""
    m = payload["machine"]
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}. Date: {m['date']}. "
           f"Command: `{payload['command']}`.", ""]
    rows = []
    for name, ds in payload["datasets"].items():
        for config, kinds in ds["configs"].items():
            for kind, metrics in kinds.items():
                rows.append([name, kind, config] + Metrics(**metrics).row())
    out += ["Every query, gateway default fusion weights "
            f"({_weights(next(iter(payload['datasets'].values()))['defaults']['weights'])}). "
            "Ranks are filtered; R@k, span IoU and shares in %.", "",
            _table(rows, ["dataset", "query", "configuration"] + METRIC_HEADER), ""]
    for name, ds in payload["datasets"].items():
        cal = ds.get("calibration")
        if not cal:
            continue
        split = cal["split"]
        out += [f"Calibration on `{name}` (seed {split['seed']}): weights searched on {split['calibration_texts']} "
                f"query texts ({split['calibration_queries']} queries), reported on the other "
                f"{split['held_out_texts']} texts ({split['held_out_queries']} queries).", ""]
        for method, found in cal["best"].items():
            out.append(f"- {method}: {_weights(found['weights'])} (calibration MRR {found['calibration_mrr']:.3f}, "
                       f"held-out MRR {found['held_out_mrr']:.3f})")
        if "held_out_mrr" in cal:
            out.append("- held-out MRR (all queries) of every configuration: "
                       + ", ".join(f"{name} {mrr:.3f}" for name, mrr in cal["held_out_mrr"].items()))
        out += ["", _table([[kind, config] + Metrics(**metrics).row()
                            for config, kinds in cal["held_out"].items() for kind, metrics in kinds.items()],
                           ["query", "configuration"] + METRIC_HEADER), ""]
    return "\n".join(out)


def _weights(weights: Mapping[str, float]) -> str:
    return ", ".join(f"{LEVEL_NAMES[k]} {v:g}" for k, v in weights.items())


def plot(payload: Mapping[str, Any], path: Path) -> Path:
    """Bars of R@1/R@5/R@10 per configuration, one panel per dataset and query kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, kind, ds["configs"]) for name, ds in payload["datasets"].items()
              for kind in next(iter(ds["configs"].values()))]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (name, kind, configs) in zip(axes[0], panels):
        names = list(configs)
        x = np.arange(len(names))
        for offset, (key, label) in zip((-0.27, 0, 0.27), (("r1", "R@1"), ("r5", "R@5"), ("r10", "R@10"))):
            ax.bar(x + offset, [100 * configs[n][kind][key] for n in names], 0.27, label=label)
        ax.set_xticks(x, [n.replace("fused ", "fused\n").replace("-", "-\n") for n in names], fontsize=7)
        ax.set_ylim(0, 100)
        n_queries = configs[names[0]][kind]["queries"]
        ax.set_title(f"{name}: {kind} queries (n={n_queries}, {payload['datasets'][name]['videos']} videos)",
                     fontsize=9)
        ax.set_ylabel("recall (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- main ----------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vidstrata eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", nargs="+", choices=sorted(GENERATORS), default=["scenes", "shapes"],
                        help="built-in datasets to generate and evaluate (default: both)")
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
    with real_stack(work / "stack", args.model_repository.resolve()) as address:
        print(f"stack up in {time.perf_counter() - started:.0f}s; gateway at {address}", flush=True)
        gateway = Gateway(address)
        try:
            for name, items in datasets.items():
                payload["datasets"][name] = evaluate(gateway, name, items, args.seed, args.calibrate, args.threads,
                                                     args.ingest_timeout)
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
    report = tables(payload)
    write_results("eval", {k: v for k, v in payload.items() if k != "machine"}, report, args.results_dir)
    if args.report:
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "eval.md").write_text("# Retrieval quality (`vidstrata eval`)\n\n" + report + "\n\n"
                                             "![recall per configuration](eval.png)\n")
        plot(payload, args.report / "eval.png")
        (args.report / "eval.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(report, flush=True)
    return payload


if __name__ == "__main__":
    main()
