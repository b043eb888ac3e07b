"""Fusion weights and the text levels' cosine range, calibrated on one half of the query texts by replaying the
gateway's own fusion (gateway.fusion.fuse) over the level scores Search returned for every candidate: no new
Search per candidate setting. The eval reports what is chosen on the other, held-out half."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from itertools import product
from typing import Any

import numpy as np

from bench.datasets import QUERY_KINDS, Query
from bench.metrics import RankedVideo, Response, filtered_rank
from gateway.fusion import LEVELS, TEXT_LEVELS, VISUAL_LEVELS, FusionConfig, FusionMethod, contributions, fuse
from gateway.settings import GatewaySettings

TextRange = tuple[float, float]


def _levels(hits: Sequence[RankedVideo]) -> dict[str, np.ndarray]:
    """Each level's raw scores over the candidates (NaN where a video lacks the level), as the gateway fuses them."""
    return {level: np.array([h.levels.get(level, np.nan) for h in hits]) for level in LEVELS}


def replay(hits: Sequence[RankedVideo], fusion: FusionConfig) -> list[RankedVideo]:
    """The gateway's ranking of these candidates under another fusion: gateway.fusion.fuse, ties by id."""
    if not hits:
        return []
    fused = fuse(_levels(hits), fusion)
    order = sorted(range(len(hits)), key=lambda i: (-fused[i], hits[i].video_id))
    return [hits[i] for i in order]


TEXT_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)  # text levels are on a fixed [0, 1] scale, weighed against the visual sum 1
# Candidate cosine ranges [floor, ceiling] of the text levels (FusionConfig.text_range): a paraphrase scores about
# 0.3-0.7, unrelated text under 0.15.
TEXT_FLOORS = (0.05, 0.1, 0.15, 0.2, 0.25)
TEXT_CEILINGS = (0.4, 0.5, 0.6, 0.7)


def text_ranges() -> list[TextRange]:
    """Every (floor, ceiling) of TEXT_FLOORS x TEXT_CEILINGS."""
    return [(floor, ceiling) for floor in TEXT_FLOORS for ceiling in TEXT_CEILINGS]


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


def _reciprocal_ranks(hits: Sequence[RankedVideo], fused: np.ndarray, query: Query, videos: int) -> np.ndarray:
    """1 / filtered rank of the query's target under each row of fused scores [G, N]; ties go by video id, as in
    the gateway."""
    ids = [h.video_id for h in hits]
    if query.target not in ids:
        return np.full(len(fused), 1 / filtered_rank(ids, query, videos))
    target = ids.index(query.target)
    others = [i for i, video_id in enumerate(ids) if video_id not in query.relevant]
    mine, theirs = fused[:, [target]], fused[:, others]
    earlier = np.array([ids[i] < query.target for i in others], dtype=bool)
    above = (theirs > mine) | ((theirs == mine) & earlier)
    return 1.0 / (1 + above.sum(axis=1))


def grid_mrr(qs: Sequence[Query], full: Mapping[str, Response], fusion: FusionConfig,
             grid: Sequence[Mapping[str, float]], videos: int) -> np.ndarray:
    """`objective` of every weighting in grid under fusion's method, normalisation and text range, at once.

    The fused score is a sum of one share per level, and a share depends only on its level's weight, so each
    level's share at each weight value in the grid is taken from the gateway's own `contributions` (not a copy of
    its arithmetic) and summed and divided in the order `fuse` does: the same floating-point scores, ties included.
    """
    values = sorted({w[level] for w in grid for level in LEVELS} - {0.0})
    weights = np.array([[w[level] for level in LEVELS] for w in grid])  # [G, L]
    rows = np.where(weights > 0, np.searchsorted(values, weights) + 1, 0)  # row 0: weight 0, no share
    scored = np.array([sum(w[level] for level in LEVELS) or 1.0 for w in grid])[:, None]
    total = np.zeros(len(grid))
    for q in qs:
        hits = full[q.text].hits
        if not hits:
            total += 1 / filtered_rank([], q, videos)
            continue
        levels = _levels(hits)
        table = np.zeros((len(values) + 1, len(LEVELS), len(hits)))  # [weight value, level, candidate]
        for i, value in enumerate(values, start=1):
            shares = contributions(levels, replace(fusion, weights=dict.fromkeys(LEVELS, value)))
            for j, level in enumerate(LEVELS):
                if level in shares:
                    table[i, j] = np.nan_to_num(shares[level], nan=0.0)
        fused = np.zeros((len(grid), len(hits)))
        for j in range(len(LEVELS)):
            fused += table[rows[:, j], j]
        if fusion.method == FusionMethod.WEIGHTED:
            fused /= scored
        total += _reciprocal_ranks(hits, fused, q, videos)
    return total / len(qs)


def calibrate(
    qs: Sequence[Query], full: Mapping[str, Response], settings: GatewaySettings, videos: int, step: float = 0.1
) -> dict[str, dict[str, Any]]:
    """Per method, the grid weights and text range with the best objective on `qs`, from a replay of every
    candidate's levels. Where no candidate has a text level the range changes nothing, and only the gateway's
    own is tried."""
    has_text = any(not np.isnan(h.levels.get(level, np.nan)) for q in qs for h in full[q.text].hits
                   for level in TEXT_LEVELS)
    ranges = text_ranges() if has_text else [tuple(settings.text_level_range)]
    grid = weight_grid(step)
    best: dict[str, dict[str, Any]] = {}
    for method in FusionMethod:
        scored = []
        for text_range in ranges:
            fusion = FusionConfig(method, grid[0], settings.normalization, settings.rrf_k, text_range)
            scored += [(value, text_range, w) for value, w in zip(grid_mrr(qs, full, fusion, grid, videos), grid)]
        # Best objective; among equals the gateway's own range, then the most even weights (nearest the centre),
        # so ties pick neither a corner nor a change.
        _, text_range, chosen = max(scored, key=lambda s: (
            round(s[0], 9), tuple(s[1]) == tuple(settings.text_level_range), -np.ptp(list(s[2].values()))))
        config = FusionConfig(method, chosen, settings.normalization, settings.rrf_k, text_range)
        best[method.value] = {"weights": chosen, "text_range": list(text_range),
                              "calibration_mrr": objective(qs, lambda q: replay(full[q.text].hits, config), videos)}
    return best
