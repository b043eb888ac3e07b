"""Fusion weights and each level's cosine range, calibrated on one half of the query texts by replaying the
gateway's own fusion (gateway.fusion.fuse) over the level scores Search returned for every candidate: no new
Search per candidate setting. The eval reports what is chosen on the other, held-out half.

`bench.eval --calibrate` searches the weights and the text ranges of one dataset. The visual levels' ranges are
chosen here, on the calibration halves of several datasets at once, from the candidate levels the eval writes
(eval_levels.json):

    python -m bench.calibration visual docs/eval-issue20/before/scenes/eval_levels.json \
        docs/eval-issue20/before/narrated/eval_levels.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from bench.datasets import QUERY_KINDS, Query
from bench.metrics import RankedVideo, Response, filtered_rank
from vidstrata.gateway.fusion import (
    LEVELS, LEXICAL_LEVELS, TEXT_LEVELS, VISUAL_LEVELS, FusionConfig, FusionMethod, LevelRange, TextRange, contributions, fuse,
)
from vidstrata.gateway.settings import GatewaySettings


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


# text levels and the lexical level are on fixed [0, 1] scales, weighed against the visual sum 1
TEXT_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
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
    text level and the lexical level (its scale is fixed: fusion.lexical_evidence, so only its weight is searched)."""
    n = round(1 / step)
    grid = []
    for a, b in product(range(n + 1), repeat=2):
        if a + b <= n:
            visual = {VISUAL_LEVELS[0]: round(a * step, 6), VISUAL_LEVELS[1]: round(b * step, 6),
                      VISUAL_LEVELS[2]: round((n - a - b) * step, 6)}
            for text in product(TEXT_WEIGHTS, repeat=len(TEXT_LEVELS) + len(LEXICAL_LEVELS)):
                grid.append(visual | dict(zip(TEXT_LEVELS + LEXICAL_LEVELS, text, strict=True)))
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
        lexical = [table(level)[rows[:, LEVELS.index(level)]] for level in LEXICAL_LEVELS]
        out = np.empty((len(ranges), len(grid)))
        for k, setting in enumerate(ranges):
            fused = visual.copy()
            for level in TEXT_LEVELS:
                fused += text[(level, tuple(setting[level]))]
            for share in lexical:  # after the text levels: the order `fuse` adds them in
                fused += share
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
        fusion = FusionConfig(method, grid[0], settings.normalization, settings.rrf_k, own, settings.visual_level_ranges)
        mrr = np.round(grid_mrr(qs, full, fusion, grid, videos, ranges), 9)
        # Best objective; among equals the most of the gateway's own ranges, then the most even weights (nearest
        # the centre), so ties pick neither a corner nor a change.
        tied = np.argwhere(mrr == mrr.max())
        r, g = max(tied, key=lambda rg: (kept[rg[0]], -spread[rg[1]], -rg[0], -rg[1]))
        config = FusionConfig(method, grid[g], settings.normalization, settings.rrf_k, ranges[r],
                              settings.visual_level_ranges)
        best[method.value] = {"weights": grid[g], "text_ranges": {lv: list(ranges[r][lv]) for lv in TEXT_LEVELS},
                              "calibration_mrr": objective(qs, lambda q: replay(full[q.text].hits, config), videos)}
    return best


# -- the visual levels' ranges, on several datasets at once -----------------------------------------------------

Dataset = tuple[list[Query], dict[str, Response], int]  # queries, each text's candidates with levels, videos

# Range widths tried, in units of each level's typical spread over one query's candidates (`spread_ranges`). The
# default encoders' cosines move by about 0.1 from query to query (how close the sentence lies to the pictures'
# narrow cone) but by only 0.03-0.04 over one query's candidates, so a range that holds most queries unclipped is
# many spreads wide.
VISUAL_SCALES = (4, 6, 8, 10, 12, 16, 20, 25, 30, 40)
FLOOR_PERCENTILE = 1.0  # each level's floor: this percentile of its cosines (below it only the least related)
# Issue 14's targets, kept while the visual ranges move: `narrated` speech and on-screen text queries R@1 >= 0.9.
R1_TARGETS = {("narrated", "speech"): 0.9, ("narrated", "screen_text"): 0.9}


def read_levels(path: Path) -> dict[str, Dataset]:
    """The datasets of an eval_levels.json (bench.eval.level_dump): queries and every candidate's levels."""
    data = json.loads(Path(path).read_text())
    out = {}
    for name, d in data["datasets"].items():
        qs = [Query(q["text"], q["kind"], q["target"], tuple(q["span"]) if q["span"] else None,
                    frozenset(q["relevant"])) for q in d["queries"]]
        full = {text: Response([RankedVideo(video_id, 0.0, {lv: np.nan if x is None else x
                                                             for lv, x in zip(d["levels"], row, strict=True)}, (0.0, 0.0))
                                for video_id, row in hits], len(hits), 0.0)
                for text, hits in d["candidates"].items()}
        out[name] = (qs, full, d["videos"])
    return out


def level_statistics(datasets: Iterable[Dataset]) -> dict[str, dict[str, float]]:
    """Per visual level, over the given queries' candidates: `floor`, the FLOOR_PERCENTILE-th percentile of every
    cosine, and `spread`, the median over queries of the range (max - min) of their candidates' cosines: the span
    min-max normalisation divided by, typically."""
    cosines: dict[str, list[float]] = {lv: [] for lv in VISUAL_LEVELS}
    spreads: dict[str, list[float]] = {lv: [] for lv in VISUAL_LEVELS}
    for qs, full, _ in datasets:
        for text in sorted({q.text for q in qs}):
            for level in VISUAL_LEVELS:
                scores = [h.levels[level] for h in full[text].hits]
                if scores:
                    cosines[level] += scores
                    spreads[level].append(float(np.ptp(scores)))
    return {lv: {"floor": float(np.percentile(cosines[lv], FLOOR_PERCENTILE)), "spread": float(np.median(spreads[lv]))}
            for lv in VISUAL_LEVELS}


def spread_ranges(stats: Mapping[str, Mapping[str, float]], scale: float) -> dict[str, LevelRange]:
    """Each visual level's range: its floor, and `scale` typical spreads above it (at most 1), to 0.01. Widths in
    proportion to the spreads put the levels on one scale as min-max did on average, so the weights keep their
    meaning; one scale for all levels sets how far the visual levels move a score against the text levels."""
    out = {}
    for level in VISUAL_LEVELS:
        floor = round(stats[level]["floor"], 2)
        out[level] = (floor, round(min(1.0, max(floor + 0.01, floor + scale * stats[level]["spread"])), 2))
    return out


def _scores(qs: Sequence[Query], full: Mapping[str, Response], videos: int, config: FusionConfig) -> dict[str, Any]:
    """MRR over all queries, and per kind R@1, MRR and count, of the gateway's ranking under `config`."""
    reciprocal = np.array([1 / filtered_rank([h.video_id for h in replay(full[q.text].hits, config)], q, videos)
                           for q in qs])
    kinds = np.array([q.kind for q in qs])
    out: dict[str, Any] = {"mrr": float(reciprocal.mean()) if len(qs) else 0.0}
    for kind in sorted(set(kinds)):
        mine = reciprocal[kinds == kind]
        out[kind] = {"r1": float((mine == 1).mean()), "mrr": float(mine.mean()), "n": int(len(mine))}
    return out


def choose_visual_ranges(datasets: Mapping[str, Dataset], settings: GatewaySettings, seed: int = 0) -> dict[str, Any]:
    """One range per visual level for every dataset at once, chosen on their calibration halves (split_texts, seed):
    `level_statistics` of those halves, then the scale of VISUAL_SCALES whose `spread_ranges` give the best mean
    MRR of the datasets' calibration halves under WEIGHTED with the gateway's weights and text ranges, among the
    scales that meet R1_TARGETS there (if any does); ties go to the wider ranges. Min-max over the candidates (the
    fusion before issue 20) and the gateway's own ranges are scored beside it; the held-out halves only report."""
    fusion = FusionConfig(FusionMethod.WEIGHTED, settings.fusion_weights, "ranges", settings.rrf_k,
                          settings.text_level_ranges, settings.visual_level_ranges)
    halves = {name: dict(zip(("calibration", "held out"), split_texts(qs, seed), strict=True))
              for name, (qs, _, _) in datasets.items()}

    def part(name: str, half: str) -> list[Query]:
        return [q for q in datasets[name][0] if q.text in halves[name][half]]

    stats = level_statistics([(part(name, "calibration"), full, videos)
                              for name, (_, full, videos) in datasets.items()])
    candidates = {scale: spread_ranges(stats, scale) for scale in VISUAL_SCALES}

    def score(half: str, config: FusionConfig) -> dict[str, Any]:
        return {name: _scores(part(name, half), full, videos, config) for name, (_, full, videos) in datasets.items()}

    tried = {}
    for scale, ranges in candidates.items():
        scores = score("calibration", replace(fusion, visual_ranges=ranges))
        meets = all(scores[name][kind]["r1"] >= target - 1e-9 for (name, kind), target in R1_TARGETS.items()
                    if name in scores and kind in scores[name])
        tried[scale] = {"ranges": {lv: list(r) for lv, r in ranges.items()}, "meets_targets": meets,
                        "objective": round(float(np.mean([s["mrr"] for s in scores.values()])), 9)}
    pool = [scale for scale in VISUAL_SCALES if tried[scale]["meets_targets"]] or list(VISUAL_SCALES)
    chosen = max(pool, key=lambda scale: (tried[scale]["objective"], scale))
    compared = {"min-max over the candidates (before)": replace(fusion, normalization="minmax"),
                "the gateway's ranges": fusion, f"chosen (scale {chosen})": replace(fusion, visual_ranges=candidates[chosen])}
    return {
        "seed": seed, "weights": settings.fusion_weights,
        "text_ranges": {lv: list(r) for lv, r in settings.text_level_ranges.items()},
        "gateway_visual_ranges": {lv: list(r) for lv, r in settings.visual_level_ranges.items()},
        "statistics": stats, "tried": tried, "scale": chosen, "chosen": tried[chosen]["ranges"],
        "sets": {half: {label: score(half, config) for label, config in compared.items()}
                 for half in ("calibration", "held out")},
    }


def _print_visual(report: Mapping[str, Any]) -> None:
    print(f"weights {report['weights']}; text ranges {report['text_ranges']}; seed {report['seed']}")
    print("calibration halves: " + ", ".join(f"{lv} floor {s['floor']:.3f} spread {s['spread']:.4f}"
                                             for lv, s in report["statistics"].items()))
    for scale, tried in report["tried"].items():
        print(f"  scale {scale:>3}: objective {tried['objective']:.4f} meets targets {tried['meets_targets']}: "
              f"{tried['ranges']}")
    print(f"chosen: scale {report['scale']}, visual ranges {report['chosen']}")
    for half, rows in report["sets"].items():
        for label, sets in rows.items():
            for name, row in sets.items():
                kinds = ", ".join(f"{k} R@1 {100 * v['r1']:.1f} MRR {v['mrr']:.3f} (n={v['n']})"
                                  for k, v in row.items() if k != "mrr")
                print(f"  {half:>11} {name:>9} {label:>38}: MRR {row['mrr']:.3f} | {kinds}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    visual = sub.add_parser("visual", help="choose the visual levels' ranges on the calibration halves of datasets")
    visual.add_argument("levels", type=Path, nargs="+", help="eval_levels.json files written by bench.eval")
    visual.add_argument("--seed", type=int, default=0, help="the calibration split's seed (as bench.eval)")
    visual.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    datasets: dict[str, Dataset] = {}
    for path in args.levels:
        datasets |= read_levels(path)
    report = choose_visual_ranges(datasets, GatewaySettings(), args.seed)
    _print_visual(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
