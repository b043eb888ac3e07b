"""Fusion weights calibrated on held-out query halves by replaying the gateway's own fusion (gateway.fusion.fuse)
over the level scores Search returned for every candidate: no new Search per weight."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np

from bench.datasets import QUERY_KINDS, Query
from bench.metrics import RankedVideo, Response, filtered_rank
from gateway.fusion import FusionConfig, FusionMethod, LEVELS, TEXT_LEVELS, VISUAL_LEVELS, fuse
from gateway.settings import GatewaySettings



def replay(hits: Sequence[RankedVideo], fusion: FusionConfig) -> list[RankedVideo]:
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


def objective(qs: Sequence[Query], ranking_of: Callable[[Query], Sequence[RankedVideo]], videos: int) -> float:
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
