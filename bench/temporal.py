"""The eval's time-aware figures (issue 23): pairwise order accuracy on the `ordered` set, and whether a scene shown
twice is found twice among a hit's moments on the `moments` set.

- Pairwise order accuracy: for a caption that states an order ("A then B", "B after A", ...), whether its video
  ranks above the video that shows the same scenes the other way round (bench.datasets.reverses). A tie in fused
  score counts one half: the gateway breaks it by video id, which says nothing about order.
- Two moments: for a scene query whose scene the target video shows twice, whether the target hit's two best
  moments (SearchHit.moments[:2]) each overlap a different one of its true spans with IoU >= 0.5.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bench.datasets import ORDER_PHRASINGS, Query, Span
from bench.metrics import RankedVideo, iou

MOMENT_IOU = 0.5


@dataclass(frozen=True)
class MomentSpan:
    """One of a hit's moments as the eval keeps it (SearchHit.moments)."""

    start_s: float
    end_s: float
    score: float
    level: str


@dataclass(frozen=True)
class MomentHit(RankedVideo):
    """A ranked video with its moments, best first."""

    moments: tuple[MomentSpan, ...] = ()


class Timed(Protocol):
    start_s: float
    end_s: float


class WithMoments(Protocol):
    video_id: str

    @property
    def moments(self) -> Sequence[Timed]: ...


def order_accuracy(
    qs: Sequence[Query], reverse: Mapping[str, str], phrasing_of: Callable[[Query], str | None],
    hits_of: Callable[[Query], Sequence[RankedVideo]],
) -> dict[str, Any] | None:
    """Pairwise order accuracy of the queries that state an order (a phrasing) and whose target has a reverse video:
    1 when the target's fused score is above its reverse's, 1/2 on a tie, 0 below (a video missing from the hits
    scores below every other). Overall and per phrasing; None when no query qualifies."""
    per_phrasing: dict[str, list[float]] = defaultdict(list)
    ties = 0
    for q in qs:
        phrasing = phrasing_of(q)
        if phrasing is None or q.target not in reverse:
            continue
        scores = {h.video_id: h.score for h in hits_of(q)}
        right = scores.get(q.target, float("-inf"))
        wrong = scores.get(reverse[q.target], float("-inf"))
        ties += right == wrong
        per_phrasing[phrasing].append(1.0 if right > wrong else 0.5 if right == wrong else 0.0)
    values = [v for vs in per_phrasing.values() for v in vs]
    if not values:
        return None
    known = [name for name in ORDER_PHRASINGS if name in per_phrasing] + sorted(set(per_phrasing) - set(ORDER_PHRASINGS))
    return {"queries": len(values), "accuracy": sum(values) / len(values), "ties": ties,
            "by_phrasing": {name: {"queries": len(per_phrasing[name]),
                                   "accuracy": sum(per_phrasing[name]) / len(per_phrasing[name])} for name in known}}


def _matched(moments: Sequence[Timed], spans: Sequence[Span], threshold: float) -> bool:
    """Whether each moment overlaps a different span with IoU >= threshold (a matching, tried every way)."""
    if not moments:
        return True
    first, rest = moments[0], moments[1:]
    return any(iou((first.start_s, first.end_s), span) >= threshold and _matched(rest, spans[:k] + spans[k + 1:], threshold)
               for k, span in enumerate(spans))


def two_moment_hits(
    qs: Sequence[Query], spans: Mapping[tuple[str, str], Sequence[Span]],
    hits_of: Callable[[Query], Sequence[WithMoments]], threshold: float = MOMENT_IOU,
) -> dict[str, Any] | None:
    """Of the queries whose target shows the queried scene at least twice (`spans[(video, text)]`, bench.datasets
    .scene_spans), the share whose target hit's two best moments each overlap a different true span with
    IoU >= threshold (`two_moments`; a missing hit or fewer than two moments fails), the share whose first moment
    overlaps one (`first_moment`), and the mean number of moments per hit. None when no query qualifies."""
    both, first, counts = [], [], []
    for q in qs:
        truth = list(spans.get((q.target, q.text), ()))
        if len(truth) < 2:
            continue
        hit = next((h for h in hits_of(q) if h.video_id == q.target), None)
        moments = list(hit.moments) if hit is not None else []
        counts.append(len(moments))
        both.append(len(moments) >= 2 and _matched(moments[:2], truth, threshold))
        first.append(bool(moments) and _matched(moments[:1], truth, threshold))
    if not both:
        return None
    return {"queries": len(both), "two_moments": sum(both) / len(both), "first_moment": sum(first) / len(first),
            "moments_per_hit": sum(counts) / len(counts)}


def temporal_tables(payload: Mapping[str, Any]) -> str:
    """Markdown tables of the order and moments figures of every dataset that has them ("" when none does)."""
    out = []
    order_rows, moment_rows = [], []
    for dataset, result in payload["datasets"].items():
        for config, halves in result.get("order", {}).items():
            for half, figures in halves.items():
                if figures:
                    phrasings = " / ".join(f"{name} {100 * f['accuracy']:.0f}" for name, f in figures["by_phrasing"].items())
                    order_rows.append(f"| {dataset} | {half} | {config} | {figures['queries']} | "
                                      f"{100 * figures['accuracy']:.1f} | {figures['ties']} | {phrasings} |")
        for config, halves in result.get("moments", {}).items():
            for half, figures in halves.items():
                if figures:
                    moment_rows.append(f"| {dataset} | {half} | {config} | {figures['queries']} | "
                                       f"{100 * figures['two_moments']:.1f} | {100 * figures['first_moment']:.1f} | "
                                       f"{figures['moments_per_hit']:.2f} |")
    if order_rows:
        out += ["Pairwise order accuracy (%): a caption that states an order ranks its video above the video showing "
                "the same scenes the other way round; a tie in score counts one half. Per phrasing: A is the earlier "
                "event. Held out: the texts of the calibration split's other half.", "",
                "| dataset | queries of | configuration | queries | accuracy | ties | per phrasing |",
                "|---|---|---|---|---|---|---|", *order_rows, ""]
    if moment_rows:
        out += [f"Scene shown twice (%): the target hit's two best moments each overlap a different true span with "
                f"IoU >= {MOMENT_IOU} (and its first moment one).", "",
                "| dataset | queries of | configuration | queries | two moments | first moment | moments per hit |",
                "|---|---|---|---|---|---|---|", *moment_rows, ""]
    return "\n".join(out)
