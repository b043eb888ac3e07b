"""Retrieval metrics of one evaluation: R@k, median and mean rank, MRR (filtered: a video the text also describes
does not count against it), and span IoU of the matched moment against the true scene."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bench.datasets import Query



@dataclass(frozen=True)
class RankedVideo:
    video_id: str
    score: float
    levels: dict[str, float]
    span: tuple[float, float]


@dataclass(frozen=True)
class Response:
    """One Search's hits (best first), how many candidates the gateway rescored, and its total time."""

    hits: list[RankedVideo]
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
    ranking_of: Callable[[Query], Sequence[RankedVideo]],
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
