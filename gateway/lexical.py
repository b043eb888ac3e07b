"""The lexical level: BM25 over the postings the lexicon (index.lexicon) returns for a query's terms, and quoted phrases.

A query is read by spec.lexical.parse_query (the worker indexed the texts with the same normalisation). Its postings
are fetched from Milvus under the request's filter and scope, so every replica reads the same index:

- one `array_contains_any` read of all its terms, at most `max_postings` rows; when that fills up, one read per term
  (each at most `max_postings`), so a rare term's postings are never crowded out by a common one's. A term whose read
  fills up is *capped*: its document frequency (df) is counted as `max_postings` (a lower bound: its true idf is lower
  still, so a common word weighs at most that much), and its postings beyond the cut are read only for the candidate
  videos (`complete`). A term with fewer postings (the rare names, codes and numbers this channel is for) is exact.
  Capped terms are remembered (per tenant and text model, `stats_ttl_s`) and left out of the first read of later
  queries, which then read their postings only for the candidates: a query of common words costs two reads, not one
  per word.
- BM25 (Robertson/Sparck Jones idf, `k1`, `b`): score(d) = sum over the query's terms t of
  idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl)), idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)),
  with tf counted in the document's normalised text (spec.lexical.document_terms), df from the fetched postings, and
  N and avgdl from the lexicon's statistics within the request's tenant and model version (index.lexicon
  LexiconIndex.stats, cached `stats_ttl_s`). Under a user filter, df counts only the filtered rows, so a term's idf is
  its idf among the filtered videos' texts.
- a quoted phrase must appear verbatim in the segment (spec.lexical.contains_phrase); its candidate rows are read on
  their own (`array_contains_all` of its words, or its compact form), so a phrase of common words is never lost to
  the cap, unless the first read holds them all already (one of its words and its compact form were read uncapped).
  With quotes, only segments holding every quoted phrase score.

A video's lexical score is its best segment's; its segments that scored (best first) are the level's moments.
fusion.lexical_evidence puts the score on 0..1. Pure logic over a `LexiconReader`; no gRPC.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vidstrata.index.filters import CompiledFilter, RowScope
from vidstrata.index.lexicon import LexiconStats, Posting
from vidstrata.index.segments import SegmentHit
from vidstrata.spec.lexical import LexicalQuery, Phrase, contains_phrase, document_terms, parse_query


class LexiconReader(Protocol):
    """What the lexical level needs of index.lexicon.LexiconIndex."""

    def postings(self, any_of: Sequence[str], where: str, limit: int,
                 video_ids: Sequence[str] = ()) -> list[Posting]: ...
    def phrase_postings(self, phrase: Phrase, where: str, limit: int) -> list[Posting]: ...
    def stats(self, scope: RowScope = ...) -> LexiconStats: ...


@dataclass(frozen=True)
class Bm25:
    """BM25's constants (settings.lexical_k1, lexical_b) and one query's collection statistics."""

    k1: float
    b: float
    documents: int  # N
    mean_length: float  # avgdl, in tokens
    df: dict[str, int]

    def idf(self, term: str) -> float:
        df = self.df.get(term, 0)
        n = max(self.documents, df)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def score(self, query_terms: Sequence[str], posting: Posting) -> float:
        """The BM25 score of one document for these terms (0 when it holds none)."""
        tf = Counter(document_terms(posting.normalized))
        norm = self.k1 * (1.0 - self.b + self.b * posting.length / self.mean_length) if self.mean_length > 0 else self.k1
        return sum(self.idf(t) * tf[t] * (self.k1 + 1.0) / (tf[t] + norm) for t in query_terms if tf[t])


@dataclass
class LexicalMatches:
    """One query's lexical matches: per video its scored segments, best first (videos in the order of their best), the
    terms whose postings were cut (`capped`), and what `complete` needs to score more postings the same way."""

    by_video: dict[str, list[SegmentHit]] = field(default_factory=dict)
    capped: tuple[str, ...] = ()
    query: LexicalQuery = field(default_factory=lambda: LexicalQuery((), ()))
    bm25: Bm25 | None = None
    where: str = ""

    @property
    def hits(self) -> list[SegmentHit]:
        """The best segment of each video found, best first."""
        return [found[0] for found in self.by_video.values()]


def _scored(postings: Iterable[Posting], query: LexicalQuery, bm25: Bm25, per_video: int) -> dict[str, list[SegmentHit]]:
    """Per video its best `per_video` postings by BM25, those holding every quoted phrase only; videos best first."""
    hits = []
    for posting in postings:
        if not all(contains_phrase(posting.normalized, phrase) for phrase in query.phrases):
            continue
        score = bm25.score(query.terms, posting)
        if score > 0:
            hits.append(SegmentHit(posting.video_id, posting.kind, posting.index, posting.start_s, posting.end_s,
                                   posting.text, score))
    hits.sort(key=lambda h: (-h.score, h.video_id, h.start_s))
    by_video: dict[str, list[SegmentHit]] = {}
    for hit in hits:
        found = by_video.setdefault(hit.video_id, [])
        if len(found) < per_video:
            found.append(hit)
    return by_video


class LexicalSearch:
    """The lexical level of Search over a lexicon; thread-safe (the statistics cache is locked)."""

    def __init__(self, lexicon: LexiconReader, k1: float = 1.2, b: float = 0.75, max_postings: int = 4096,
                 stats_ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.lexicon = lexicon
        self.k1, self.b, self.max_postings, self.stats_ttl_s = k1, b, max_postings, stats_ttl_s
        self._clock = clock
        self._stats: dict[tuple[str | None, str | None], tuple[float, LexiconStats]] = {}
        self._common: dict[tuple[str | None, str | None], dict[str, float]] = {}  # capped terms -> until when
        self._lock = threading.Lock()

    def stats(self, scope: RowScope) -> LexiconStats:
        """The lexicon's statistics within the scope's tenant and text model, read at most every stats_ttl_s."""
        key = (scope.tenant, scope.text_model)
        now = self._clock()
        with self._lock:
            cached = self._stats.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        fresh = self.lexicon.stats(RowScope(tenant=scope.tenant, text_model=scope.text_model))
        with self._lock:
            self._stats[key] = (now + self.stats_ttl_s, fresh)
        return fresh

    def search(self, text: str, where: CompiledFilter, per_video: int = 1) -> LexicalMatches:
        """The matches of a text query within a compiled filter (its `segments` rendering and scope); empty when the
        query has no word."""
        query = parse_query(text)
        if not query.terms:
            return LexicalMatches(query=query)
        expr = where.for_collection("segments")
        limit = self.max_postings
        key = (where.scope.tenant, where.scope.text_model)
        now = self._clock()
        with self._lock:
            known = {t for t, until in self._common.get(key, {}).items() if until > now}
        capped = [t for t in query.terms if t in known]
        rare = [t for t in query.terms if t not in known]
        postings = {p_key(p): p for p in self.lexicon.postings(rare, expr, limit)} if rare else {}
        if len(postings) >= limit:  # one read per term, so no term's postings crowd out another's
            postings = {}
            for term in rare:
                found = self.lexicon.postings([term], expr, limit)
                if len(found) >= limit:
                    capped.append(term)
                postings.update((p_key(p), p) for p in found)
            with self._lock:
                self._common.setdefault(key, {}).update(dict.fromkeys(capped, now + self.stats_ttl_s))
        df = Counter(t for p in postings.values() for t in set(document_terms(p.normalized)) if t in query.terms)
        for term in capped:
            df[term] = max(df[term], limit)
        read = set(rare) - set(capped)  # terms all of whose postings were read
        for phrase in query.phrases:  # its own read, unless every row holding it was read already
            if not (read & set(phrase.required) and (phrase.compact in read or phrase.compact in phrase.required)):
                postings.update((p_key(p), p) for p in self.lexicon.phrase_postings(phrase, expr, limit))
        stats = self.stats(where.scope)
        mean_length = stats.mean_length or (sum(p.length for p in postings.values()) / len(postings) if postings else 0.0)
        bm25 = Bm25(self.k1, self.b, max(stats.documents, len(postings)), mean_length, dict(df))
        return LexicalMatches(_scored(postings.values(), query, bm25, per_video), tuple(capped), query, bm25, expr)

    def complete(self, matches: LexicalMatches, video_ids: Sequence[str], per_video: int = 1) -> LexicalMatches:
        """The matches with the postings of these videos (not found yet) read and scored, when a term was capped: a
        candidate's match on a common word cut from the first read is scored like the others."""
        missing = [v for v in video_ids if v not in matches.by_video]
        if not matches.capped or not missing or matches.bm25 is None:
            return matches
        found = self.lexicon.postings(matches.query.terms, matches.where, self.max_postings, missing)
        more = _scored(found, matches.query, matches.bm25, per_video)
        merged = dict(matches.by_video) | {v: hits for v, hits in more.items() if v not in matches.by_video}
        return LexicalMatches(merged, matches.capped, matches.query, matches.bm25, matches.where)


def p_key(posting: Posting) -> tuple[str, str, int]:
    """A posting's identity (its segment key's parts)."""
    return posting.video_id, posting.kind, posting.index
