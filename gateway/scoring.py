"""Exact multi-level scores of candidate videos from their stored vectors (the rescoring stage).

ANN scores are approximate and exist only for the lists a video was found in, so every candidate is
scored again, exactly and at every level, from its video vector and all its clip vectors:

- video_sentence: cosine(video vector, sentence): the video ANN's own cosine where it found the video, so
                  only the other candidates' video rows are read;
- clip_sentence:  max over the video's clips of cosine(clip, sentence);
- clip_phrase:    for each phrase the max over clips of cosine(clip, phrase), then the mean over phrases
                  (late interaction: each event of the query may be found in a different clip);
- best clip:      the clip with the highest (cosine(clip, sentence) + max over phrases cosine(clip, phrase)) / 2.
                  A clip usually shows one event, so it earns phrase evidence from the one phrase it matches
                  best; the sentence term breaks ties toward the clip closest to the whole query.
- speech_sentence, screen_text_sentence: max over the video's timed segments of that kind (index.segments)
                  of cosine(segment text vector, sentence); NaN for a video without any (never a zero). These
                  come from the segment search itself (Milvus's cosine of the video's best segment), and from
                  the stored vectors only for candidates it did not reach (`text_matches`): a text level below
                  its floor is no evidence, so a video whose segments all score under it needs no read.
- why it matched: `explain` names the level with the largest share of each hit's score on the fixed scales (the
                  clip levels together, speech or on-screen text), with that moment's span and, for text, its
                  snippet: from the video's own scores, so the same among any other candidates.

Cosines are taken on re-normalised stored vectors, so the scores are the same under COSINE and IP metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vidstrata.gateway.fusion import FusionConfig
from vidstrata.gateway.query import QueryVectors
from vidstrata.index.segments import Segment, SegmentHit, SegmentHits, SegmentRecord
from vidstrata.index.store import ClipRecord
from vidstrata.spec.channels import KIND_OF_LEVEL, LEVELS, TEXT_LEVELS

# The text level of each segment kind (spec.channels).
LEVEL_OF_KIND = {kind: level for level, kind in KIND_OF_LEVEL.items()}


@dataclass(frozen=True)
class BestClip:
    """The span of a video that matched best, and its clip score."""

    start_s: float
    end_s: float
    score: float


@dataclass(frozen=True)
class ScoredCandidates:
    """Per-level raw scores of the candidates that still exist, aligned with video_ids."""

    video_ids: list[str]
    levels: dict[str, np.ndarray]  # level name (fusion.LEVELS) -> one score per video (NaN: the video lacks it)
    best_clips: list[BestClip]
    best_segments: dict[str, list[Segment | None]] = field(default_factory=dict)  # text level -> per video


@dataclass(frozen=True)
class Match:
    """Why a hit matched: the level that gave it most of its score (on the fixed scales), that moment's span and text."""

    level: str  # "clip" (the visual clip levels) or a text level of fusion.TEXT_LEVELS
    start_s: float
    end_s: float
    snippet: str = ""  # the matched speech or on-screen text; empty for a clip


def _cosines(stored: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Cosine of every stored row [N,D] with every query row [Q,D], as [N,Q].

    Rows are normalised after the product (N*Q divisions instead of N*D), and the queries go in as a
    contiguous [D,Q] matrix: BLAS takes a transposed view on a slow path (2 ms instead of 0.02 ms here).
    """
    unit_queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    products = stored @ np.ascontiguousarray(unit_queries.T)
    return products / np.maximum(np.sqrt(np.einsum("ij,ij->i", stored, stored)), 1e-12)[:, None]


def score_candidates(
    query: QueryVectors,
    video_ids: Sequence[str],
    videos: Mapping[str, np.ndarray],
    clips: Mapping[str, Sequence[ClipRecord]],
    text: Mapping[str, Mapping[str, SegmentHit]] | None = None,
    video_cosines: Mapping[str, float] | None = None,
) -> ScoredCandidates:
    """Score each candidate that has a video vector [D] (or its cosine with the sentence in `video_cosines`, from
    the video ANN) and trusted clips; others (deleted since the ANN search, or found only through a clip its video
    row does not trust) are dropped.

    `text` (segment kind -> video -> its best segment of that kind, from `text_matches`) adds the text levels;
    None leaves them out.
    """
    known = video_cosines or {}
    kept = [v for v in video_ids if (v in videos or v in known) and clips.get(v)]
    if not kept:
        return ScoredCandidates([], {level: np.zeros(0) for level in LEVELS}, [])
    all_clips = [clip for v in kept for clip in clips[v]]
    counts = np.array([len(clips[v]) for v in kept])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    read = [v for v in kept if v not in known]

    # One matrix product for everything: rows are the videos read then all the clips, columns the sentence then
    # each phrase. Small products like this are memory-bound; one call beats several.
    stored = np.stack([videos[v] for v in read] + [clip.vector for clip in all_clips])
    cosines = _cosines(stored, np.vstack([query.sentence[None, :], query.phrase_vectors]).astype(np.float32))  # (V+C, 1+P)
    to_sentence, to_phrases = cosines[len(read):, 0], cosines[len(read):, 1:]
    clip_score = (to_sentence + to_phrases.max(axis=1)) / 2
    video_sentence = dict(zip(read, cosines[: len(read), 0].tolist(), strict=True)) | dict(known)

    # Per-video maxima over each video's run of clips; reduceat needs non-empty runs, which `kept` ensures.
    best_per_video = np.maximum.reduceat(clip_score, starts)
    owner = np.repeat(np.arange(len(kept)), counts)
    at_max = np.flatnonzero(clip_score == best_per_video[owner])
    _, first = np.unique(owner[at_max], return_index=True)
    best = [all_clips[i] for i in at_max[first]]

    levels = {
        "video_sentence": np.array([video_sentence[v] for v in kept], dtype=np.float64),
        "clip_sentence": np.maximum.reduceat(to_sentence, starts).astype(np.float64),
        "clip_phrase": np.maximum.reduceat(to_phrases, starts, axis=0).mean(axis=1).astype(np.float64),
    }
    best_clips = [BestClip(c.start_s, c.end_s, float(s)) for c, s in zip(best, best_per_video.tolist(), strict=True)]
    best_segments: dict[str, list[Segment | None]] = {}
    if text is not None:
        for level in TEXT_LEVELS:
            best = text.get(KIND_OF_LEVEL[level], {})
            levels[level] = np.array([best[v].score if v in best else np.nan for v in kept], dtype=np.float64)
            best_segments[level] = [best.get(v) for v in kept]
    return ScoredCandidates(kept, levels, best_clips, best_segments)


def text_matches(
    query: QueryVectors, found: SegmentHits, stored: Mapping[str, Sequence[SegmentRecord]], kind: str
) -> dict[str, SegmentHit]:
    """Video -> its best segment of this kind against the sentence: the segment search's hit where it has one,
    else the best of the video's stored segments (read with vectors for the videos `found.unseen` names)."""
    best = {hit.video_id: hit for hit in found.hits}
    for video_id, segments in stored.items():
        own = [s for s in segments if s.kind == kind and s.vector is not None]
        if video_id in best or not own:
            continue
        cosines = _cosines(np.stack([s.vector for s in own]), query.sentence[None, :].astype(np.float32))[:, 0]
        top = own[int(cosines.argmax())]
        best[video_id] = SegmentHit(top.video_id, kind, top.index, top.start_s, top.end_s, top.text, float(cosines.max()))
    return best


def explain(scored: ScoredCandidates, level_evidence: Mapping[str, np.ndarray]) -> list[Match]:
    """Per candidate, the moment behind its score: the level with the largest share of it on the fixed scales
    (fusion.evidence: weight * the cosine scaled by the level's range; the clip levels count as one, "clip"), and
    that level's best clip or segment. A text level explains a hit only where its share is above the clip levels'
    (ties keep the clip) and above nothing: under its floor it is no evidence.

    Each video's match depends on its own scores only, under either method: the same moment whether a filter leaves
    it alone or among a hundred others (RRF ranks the candidates, but its ranks say how a video compares with the
    others, not where in the video the query is; so RRF is explained on the same scales as WEIGHTED).
    `level_evidence` is `fusion.evidence(scored.levels, config)`, the one fusion summed."""
    shares = level_evidence
    clip = np.zeros(len(scored.video_ids))
    for level in ("clip_sentence", "clip_phrase"):
        clip = clip + np.nan_to_num(shares.get(level, 0.0), nan=0.0)
    texts = {level: np.nan_to_num(shares[level], nan=0.0) for level in scored.best_segments if level in shares}
    matches = []
    for i, best_clip in enumerate(scored.best_clips):
        match, top = Match("clip", best_clip.start_s, best_clip.end_s), clip[i]
        for level, share in texts.items():
            segment = scored.best_segments[level][i]
            if segment is not None and share[i] > max(top, 0.0):
                match, top = Match(level, segment.start_s, segment.end_s, segment.text), share[i]
        matches.append(match)
    return matches
