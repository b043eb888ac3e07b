"""Fusion weights and each text level's cosine range, calibrated on one half of the query texts by replaying the
gateway's own fusion (gateway.fusion.fuse) over the level scores Search returned for every candidate: no new
Search per candidate setting. The eval reports what is chosen on the other, held-out half."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from itertools import product
from typing import Any

import numpy as np

from bench.datasets import QUERY_KINDS, Query
from bench.metrics import RankedVideo, Response, filtered_rank
from gateway.fusion import (
    LEVELS, TEXT_LEVELS, VISUAL_LEVELS, FusionConfig, FusionMethod, TextRange, contributions, fuse,
)
from gateway.settings import GatewaySettings


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
# Candidate cosine ranges [floor, ceiling] of each text level (FusionConfig.text_ranges): a paraphrase scores about
# 0.3-0.7, unrelated text under 0.15, but a photo's printed words can match an unrelated caption at 0.3.
TEXT_FLOORS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)
TEXT_CEILINGS = (0.5, 0.6, 0.7)


def text_ranges() -> list[TextRange]:
    """Every (floor, ceiling) of TEXT_FLOORS x TEXT_CEILINGS: the candidates for one text level."""
    return [(floor, ceiling) for floor in TEXT_FLOORS for ceiling in TEXT_CEILINGS]


def text_range_grid(searched: Iterable[str], own: Mapping[str, TextRange]) -> list[dict[str, TextRange]]:
    """Every combination of one range per text level: `text_ranges()` for the levels in `searched`, `own` (the
    gateway's) for the others, whose range cannot change a ranking where no candidate has the level."""
    searched = set(searched)
    choices = [text_ranges() if level in searched else [tuple(own[level])] for level in TEXT_LEVELS]
    return [dict(zip(TEXT_LEVELS, combo, strict=True)) for combo in product(*choices)]


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


def grid_reciprocal_ranks(
    qs: Sequence[Query], full: Mapping[str, Response], fusion: FusionConfig, grid: Sequence[Mapping[str, float]],
    videos: int, ranges: Sequence[Mapping[str, TextRange]] | None = None,
) -> Iterator[np.ndarray]:
    """Per query, 1 / filtered rank of its target under every text-range setting in `ranges` (default: fusion's
    own) and every weighting in grid, as an array [len(ranges), len(grid)], under fusion's method and normalisation.

    The fused score is a sum of one share per level, and a share depends only on its level's weight (and, for a
    text level, its own range), so each share is taken from the gateway's own `contributions` (not a copy of its
    arithmetic) once per weight value and range, and summed and divided in the order `fuse` does: the same
    floating-point scores, ties included.
    """
    ranges = [fusion.text_ranges] if ranges is None else ranges
    values = sorted({w[level] for w in grid for level in LEVELS} - {0.0})
    weights = np.array([[w[level] for level in LEVELS] for w in grid])  # [G, L]
    rows = np.where(weights > 0, np.searchsorted(values, weights) + 1, 0)  # row 0: weight 0, no share
    scored = np.array([sum(w[level] for level in LEVELS) or 1.0 for w in grid])[:, None]
    for q in qs:
        hits = full[q.text].hits
        if not hits:
            yield np.full((len(ranges), len(grid)), 1 / filtered_rank([], q, videos))
            continue
        levels = _levels(hits)

        def table(level: str, text_range: TextRange | None = None) -> np.ndarray:
            """The level's share of every candidate at each weight value [value, candidate]; row 0 is weight 0."""
            shares = np.zeros((len(values) + 1, len(hits)))
            for i, value in enumerate(values, start=1):
                config = replace(fusion, weights={level: value},
                                 text_ranges={level: text_range} if text_range else fusion.text_ranges)
                share = contributions(levels, config).get(level)
                if share is not None:
                    shares[i] = np.nan_to_num(share, nan=0.0)
            return shares

        visual = np.zeros((len(grid), len(hits)))
        for j, level in enumerate(VISUAL_LEVELS):
            visual += table(level)[rows[:, j]]
        keys = {(level, tuple(r[level])) for r in ranges for level in TEXT_LEVELS}
        text = {key: table(*key)[rows[:, LEVELS.index(key[0])]] for key in keys}
        out = np.empty((len(ranges), len(grid)))
        for k, setting in enumerate(ranges):
            fused = visual.copy()
            for level in TEXT_LEVELS:
                fused += text[(level, tuple(setting[level]))]
            if fusion.method == FusionMethod.WEIGHTED:
                fused /= scored
            out[k] = _reciprocal_ranks(hits, fused, q, videos)
        yield out


def grid_mrr(
    qs: Sequence[Query], full: Mapping[str, Response], fusion: FusionConfig, grid: Sequence[Mapping[str, float]],
    videos: int, ranges: Sequence[Mapping[str, TextRange]] | None = None,
) -> np.ndarray:
    """`objective` of every text-range setting x weighting [len(ranges), len(grid)] at once
    (grid_reciprocal_ranks)."""
    total = np.zeros((1 if ranges is None else len(ranges), len(grid)))
    for reciprocal in grid_reciprocal_ranks(qs, full, fusion, grid, videos, ranges):
        total += reciprocal
    return total / len(qs)


def calibrate(
    qs: Sequence[Query], full: Mapping[str, Response], settings: GatewaySettings, videos: int, step: float = 0.1
) -> dict[str, dict[str, Any]]:
    """Per method, the grid weights and per-level text ranges with the best objective on `qs`, from a replay of
    every candidate's levels. A text level no candidate has keeps the gateway's own range (it changes nothing)."""
    present = {level for level in TEXT_LEVELS
               if any(not np.isnan(h.levels.get(level, np.nan)) for q in qs for h in full[q.text].hits)}
    own = settings.text_level_ranges
    ranges = text_range_grid(present, own)
    grid = weight_grid(step)
    kept = np.array([sum(tuple(r[level]) == tuple(own[level]) for level in TEXT_LEVELS) for r in ranges])
    spread = np.array([np.ptp(list(w.values())) for w in grid])
    best: dict[str, dict[str, Any]] = {}
    for method in FusionMethod:
        fusion = FusionConfig(method, grid[0], settings.normalization, settings.rrf_k, own)
        mrr = np.round(grid_mrr(qs, full, fusion, grid, videos, ranges), 9)
        # Best objective; among equals the most of the gateway's own ranges, then the most even weights (nearest
        # the centre), so ties pick neither a corner nor a change.
        tied = np.argwhere(mrr == mrr.max())
        r, g = max(tied, key=lambda rg: (kept[rg[0]], -spread[rg[1]], -rg[0], -rg[1]))
        config = FusionConfig(method, grid[g], settings.normalization, settings.rrf_k, ranges[r])
        best[method.value] = {"weights": grid[g], "text_ranges": {lv: list(ranges[r][lv]) for lv in TEXT_LEVELS},
                              "calibration_mrr": objective(qs, lambda q: replay(full[q.text].hits, config), videos)}
    return best
