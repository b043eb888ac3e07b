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
- lexical:        the BM25 score of the video's best timed text segment for the query's words (gateway.lexical);
                  NaN where none of its texts holds a query term (or a quoted phrase): computed by the lexical search
                  from the lexicon's postings, passed in as `lexical`.
- clip_phrase, order-aware: when the query states an order ("A then B"), the best monotonic alignment of the
                  phrases in that order to the clips in time order (gateway.order), instead of each phrase's best
                  clip anywhere: HCMI's clip-phrase level made temporal.
- the moments of each video (why it matched) are drawn from these scores by gateway.moments.

Cosines are taken on re-normalised stored vectors, so the scores are the same under COSINE and IP metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vidstrata.gateway.order import aligned_clip_phrase
from vidstrata.gateway.query import QueryVectors
from vidstrata.index.segments import Segment, SegmentHit, SegmentHits, SegmentRecord
from vidstrata.index.store import ClipRecord
from vidstrata.spec.channels import KIND_OF_LEVEL, LEVELS, LEXICAL_LEVELS, TEXT_LEVELS

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
    """Per-level raw scores of the candidates that still exist, aligned with video_ids, and what their moments are
    drawn from (gateway.moments): every clip's cosines, and each text level's matching segments per video."""

    video_ids: list[str]
    levels: dict[str, np.ndarray]  # level name (fusion.LEVELS) -> one score per video (NaN: the video lacks it)
    best_clips: list[BestClip]
    # text level (and "lexical") -> per video its segments that matched, best first (empty: none; the first is the
    # level's score)
    segments: dict[str, list[list[SegmentHit]]] = field(default_factory=dict)
    # All candidates' clips, concatenated in video order and, within a video, in time order:
    clip_spans: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # [N, 2] start_s, end_s
    clip_sentence: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [N] cosine with the sentence
    clip_phrase: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [N] best cosine with any phrase
    clip_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # [V] first clip of each video
    clip_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # [V]
    # Order-aware queries: per video the first and last clip (indices into the clips above) of the phrases'
    # monotonic alignment; None when the query states no order.
    ordered_spans: np.ndarray | None = None  # [V, 2]

    @property
    def best_segments(self) -> dict[str, list[Segment | None]]:
        """Text level -> per video its best segment (None: none matched)."""
        return {level: [found[0] if found else None for found in per_video] for level, per_video in self.segments.items()}


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
    text: Mapping[str, Mapping[str, Sequence[SegmentHit]]] | None = None,
    video_cosines: Mapping[str, float] | None = None,
    order: Sequence[int] | None = None,
    lexical: Mapping[str, Sequence[SegmentHit]] | None = None,
) -> ScoredCandidates:
    """Score each candidate that has a video vector [D] (or its cosine with the sentence in `video_cosines`, from
    the video ANN) and trusted clips; others (deleted since the ANN search, or found only through a clip its video
    row does not trust) are dropped.

    `text` (segment kind -> video -> its matching segments of that kind, best first, from `text_matches`) adds the
    text levels; None leaves them out. `order` (phrase indices in the event order the query stated, gateway.order)
    makes clip_phrase temporal: the best monotonic alignment of the phrases, in that order, to each video's clips in
    time order (gateway.order.aligned_clip_phrase), instead of each phrase's best clip anywhere. `lexical` (video ->
    its segments that matched the query's words, best first, scored by BM25: gateway.lexical) adds the lexical level;
    None leaves it out.
    """
    known = video_cosines or {}
    kept = [v for v in video_ids if (v in videos or v in known) and clips.get(v)]
    if not kept:
        searched = (TEXT_LEVELS if text is not None else ()) + (LEXICAL_LEVELS if lexical is not None else ())
        return ScoredCandidates([], {level: np.zeros(0) for level in LEVELS}, [], {level: [] for level in searched})
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

    clip_phrase = np.maximum.reduceat(to_phrases, starts, axis=0).mean(axis=1).astype(np.float64)
    ordered_spans = None
    if order is not None:
        aligned, first_clip, last_clip = aligned_clip_phrase(to_phrases, starts, counts, order)
        clip_phrase, ordered_spans = np.asarray(aligned, dtype=np.float64), np.stack([first_clip, last_clip], axis=1)
    levels = {
        "video_sentence": np.array([video_sentence[v] for v in kept], dtype=np.float64),
        "clip_sentence": np.maximum.reduceat(to_sentence, starts).astype(np.float64),
        "clip_phrase": clip_phrase,
    }
    best_clips = [BestClip(c.start_s, c.end_s, float(s)) for c, s in zip(best, best_per_video.tolist(), strict=True)]
    segments: dict[str, list[list[SegmentHit]]] = {}
    if text is not None:
        for level in TEXT_LEVELS:
            found = text.get(KIND_OF_LEVEL[level], {})
            segments[level] = [list(found.get(v, ())) for v in kept]
            levels[level] = np.array([hits[0].score if hits else np.nan for hits in segments[level]], dtype=np.float64)
    if lexical is not None:
        for level in LEXICAL_LEVELS:
            segments[level] = [list(lexical.get(v, ())) for v in kept]
            levels[level] = np.array([hits[0].score if hits else np.nan for hits in segments[level]], dtype=np.float64)
    return ScoredCandidates(
        kept, levels, best_clips, segments,
        clip_spans=np.array([(c.start_s, c.end_s) for c in all_clips], dtype=np.float64),
        clip_sentence=to_sentence.astype(np.float64), clip_phrase=to_phrases.max(axis=1).astype(np.float64),
        clip_starts=starts, clip_counts=counts, ordered_spans=ordered_spans,
    )


def text_matches(
    query: QueryVectors, found: SegmentHits, stored: Mapping[str, Sequence[SegmentRecord]], kind: str
) -> dict[str, list[SegmentHit]]:
    """Video -> its segments of this kind that matched the sentence, best first: the segment search's hits where it
    found the video, else every one of the video's stored segments, scored (read with vectors for the videos
    `found.unseen` names)."""
    matched = {video_id: list(hits) for video_id, hits in found.by_video.items()}
    for video_id, segments in stored.items():
        own = [s for s in segments if s.kind == kind and s.vector is not None]
        if video_id in matched or not own:
            continue
        cosines = _cosines(np.stack([s.vector for s in own]), query.sentence[None, :].astype(np.float32))[:, 0]
        matched[video_id] = [SegmentHit(s.video_id, kind, s.index, s.start_s, s.end_s, s.text, float(c))
                             for c, s in sorted(zip(cosines.tolist(), own, strict=True), key=lambda pair: -pair[0])]
    return matched
