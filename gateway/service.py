"""`SearchService`: the gateway's logic, with no gRPC in sight (servicer.py only converts messages).

Search runs in four stages: encode the query (Triton), find candidates by ANN (Milvus: videos with the
sentence, clips with the sentence and each phrase, timed texts with the sentence) and by the query's words
(the lexicon's postings, gateway.lexical), rescore every candidate exactly from its stored vectors
(gateway.scoring), and fuse the levels (gateway.fusion). The union of the ANN lists is cut to the candidate
limit by each video's best rank in any list, so every list contributes its top videos first.

Dependencies are probed in the background (`probe`); while the last probe found Triton or Milvus down,
Search fails at once with Unavailable instead of waiting on a dead backend. Every method is blocking and
thread-safe: the server runs them in a thread pool.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

import numpy as np

from vidstrata.gateway.errors import (
    AlreadyExists, DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound, Unavailable,
)
from vidstrata.gateway.fusion import fuse
from vidstrata.gateway.lexical import LexicalMatches, LexicalSearch
from vidstrata.gateway import metrics
from vidstrata.gateway.moments import Moment, clip_scores, video_moments
from vidstrata.gateway.order import read_order
from vidstrata.gateway.pages import PageCursor, encode_token
from vidstrata.gateway.query import (
    Confidence,
    GroupBy,
    QueryVectorCache,
    QueryVectors,
    SearchQuery,
    candidate_limit,
    check_submission,
    check_video_id_arg,
    page_secret,
    query_vectors,
)
from vidstrata.gateway.scoring import LEVEL_OF_KIND, BestClip, ScoredCandidates, score_candidates, text_matches
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.gateway.videos import ready_from_row
from vidstrata.gateway.similar import copy_score, like_query
from vidstrata.index.errors import IndexUnavailable
from vidstrata.jobs.errors import StatusUnavailable
from vidstrata.jobs.reindex import ReindexJob, ReindexStore
from vidstrata.jobs.status import IngestState, VideoIdTaken, VideoStatus
from vidstrata.index.filters import CompiledFilter, RowScope
from vidstrata.index.schema import DEFAULT_TENANT, ModelVersions
from vidstrata.index.segments import SegmentHits, SegmentRecord
from vidstrata.index.store import CandidateVectors, ClipHit, TenantRows, VersionCount, VideoHit, VideoRecord
from vidstrata.inference.encoder import Encoder, EncoderInputError, EncoderUnavailable
from vidstrata.spec.channels import KIND_OF_LEVEL, LEVELS, TEXT_LEVELS, TIMED_TEXT_CHANNELS
from vidstrata.spec.preprocess import center_crop_square
from vidstrata.spec.redaction import redact_uri

log = logging.getLogger(__name__)
T = TypeVar("T")
PROBE_VIDEO_ID = "vidstrata-probe"  # looked up by the Milvus probe; need not exist


class SearchIndex(Protocol):
    """What the service needs of index.VideoIndex."""

    def search_videos(
        self, vector: np.ndarray, limit: int, filter_expr: str | CompiledFilter | None = None
    ) -> list[VideoHit]: ...
    def search_clips_grouped(
        self, vectors: np.ndarray, limit_videos: int, filter_expr: str | CompiledFilter | None = None
    ) -> list[list[ClipHit]]: ...
    def get_videos(self, video_ids: Iterable[str], scope: RowScope = ...) -> dict[str, VideoRecord]: ...
    def get_candidate_vectors(
        self, video_ids: Iterable[str], clip_counts: Mapping[str, int] | None = None, video_hits: Iterable[VideoHit] = (),
        scope: RowScope = RowScope(),
    ) -> CandidateVectors: ...
    def delete_video(self, video_id: str, tenant: str | None = None) -> bool: ...
    def delete_tenant(self, tenant: str) -> TenantRows: ...
    def counts(self, tenant: str | None = None) -> tuple[int, int]: ...
    def version_counts(self, tenant: str | None = None) -> list[VersionCount]: ...


class SegmentSearch(Protocol):
    """What the service needs of index.SegmentIndex (timed speech and on-screen text)."""

    def search(self, vector: np.ndarray, kind: str, limit_videos: int,
               filter_expr: str | CompiledFilter | None = None) -> SegmentHits: ...
    def get_segments(
        self, video_ids: Iterable[str], kinds: Sequence[str] = ..., vectors: bool = True, scope: RowScope = ...
    ) -> dict[str, list[SegmentRecord]]: ...


class StatusRecords(Protocol):
    """What the service needs of index.StatusStore."""

    def mark_pending(self, video_id: str, task_id: str, uri: str, metadata: dict[str, str], tenant: str = ...) -> None: ...
    def mark_failed(self, video_id: str, reason: str) -> bool: ...
    def get(self, video_id: str) -> VideoStatus | None: ...
    def delete(self, video_id: str, tenant: str | None = None) -> bool: ...
    def delete_tenant(self, tenant: str) -> int: ...
    def count(self, state: IngestState, tenant: str) -> int: ...


class IngestQueue(Protocol):
    """What the service needs of gateway.ingest.CeleryIngestQueue."""

    def enqueue(self, task_id: str, video_id: str, uri: str, metadata: dict[str, str],
                modalities: list[str] | None = None, tenant: str = ...) -> None: ...
    def length(self) -> int: ...
    def remove_tenant(self, tenant: str) -> int: ...
    def oldest_age_s(self) -> float: ...


@dataclass(frozen=True)
class Hit:
    """One ranked video: fused score, raw level scores (fusion.LEVELS; NaN: lacks it), best clip, and its moments
    (best first: the first is why it matched)."""

    video_id: str
    score: float
    levels: dict[str, float]
    best_clip: BestClip
    moments: list[Moment] = field(default_factory=list)
    near_duplicate: bool = False  # like_video_id: a copy of the query video

    @property
    def match(self) -> Moment | None:
        """Why it matched: its best moment."""
        return self.moments[0] if self.moments else None

    @property
    def confidence(self) -> Confidence:
        return self.moments[0].confidence if self.moments else Confidence.LOW


@dataclass
class StageTimings:
    """Seconds spent in each stage of one Search; the ANN searches run concurrently."""

    encode: float = 0.0
    ann_videos: float = 0.0
    ann_clips: float = 0.0
    rescore: float = 0.0
    rescore_fetch: float = 0.0  # the Milvus part of rescore
    fusion: float = 0.0
    total: float = 0.0

    def stages(self) -> dict[str, float]:
        """The stages of gateway.metrics.STAGES, by name."""
        return {"encode": self.encode, "ann_videos": self.ann_videos, "ann_clips": self.ann_clips,
                "rescore": self.rescore, "fusion": self.fusion}


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]  # group_by VIDEO: this page of the ranked videos
    phrases: list[str]
    candidates: int
    timings: StageTimings
    moments: list[Moment] = field(default_factory=list)  # group_by MOMENT: this page of the ranked moments
    next_page_token: str = ""  # paged requests: where the next page starts; "" on the last
    window_exhausted: bool = False  # the ranking ended at the candidate window, and more videos may match
    order: list[str] = field(default_factory=list)  # the phrases in the event order the query stated; [] for none


@dataclass(frozen=True)
class Submitted:
    video_id: str
    task_id: str


@dataclass(frozen=True)
class Stats:
    videos: int
    clips: int
    queue_length: int
    versions: list[VersionCount] = field(default_factory=list)  # rows per model version
    reindex: ReindexJob | None = None  # the latest re-index job (jobs.reindex); None: there has been none


@dataclass(frozen=True)
class TenantDeleted:
    """What DeleteTenant removed: rows of each collection, status records, and ingest tasks taken off the queue."""

    tenant: str
    videos: int
    clips: int
    segments: int
    status_records: int
    queued_tasks: int


@dataclass
class DependencyState:
    """The probes' verdict on one dependency; `up` until a probe says otherwise."""

    name: str
    up: bool = True
    error: str = ""
    answered: bool = False  # a probe has had an answer (until then one without an answer counts as down at once)
    misses: int = 0  # probes in a row without an answer in time
    _pending: Future[None] | None = field(default=None, repr=False)


@contextmanager
def _stage(timings: StageTimings, name: str) -> Iterator[None]:
    """Record the wall time of the block as timings.<name>."""
    started = time.perf_counter()
    try:
        yield
    finally:
        setattr(timings, name, time.perf_counter() - started)


@contextmanager
def _encoder_errors(deadline: float, what: str) -> Iterator[None]:
    """Encoder errors as the service's: bad input INVALID_ARGUMENT, Triton down UNAVAILABLE (or past the deadline)."""
    try:
        yield
    except EncoderInputError as exc:
        raise InvalidArgument(str(exc)) from exc
    except EncoderUnavailable as exc:
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(f"the deadline passed while encoding {what}: {exc}") from exc
        raise Unavailable(f"Triton is unavailable: {exc}") from exc


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("the deadline passed before the search finished")
    return left


class SearchService:
    """Search, submit, get and delete videos; owns no network listener.

    `new_encoder`, `index`, `status` and `queue` are the real clients in production (see app.build_service)
    and fakes in unit tests. The encoder comes from a factory because a Triton channel that failed sits in
    gRPC's reconnect backoff (up to 2 minutes): while Triton is down, probes use a fresh one, which replaces
    the old one as soon as it answers.
    """

    reindex_jobs: ReindexStore | None = None  # set by gateway.app: GetStats reports the latest re-index job

    def __init__(
        self,
        settings: GatewaySettings,
        new_encoder: Callable[[], Encoder],
        index: SearchIndex,
        status: StatusRecords,
        queue: IngestQueue,
        segments: SegmentSearch | None = None,
        lexical: LexicalSearch | None = None,
    ) -> None:
        self.settings = settings
        self.segments = segments
        self.lexical = lexical
        self._new_encoder = new_encoder
        self.encoder = new_encoder()
        self.index = index
        self.status = status
        self.queue = queue
        self.triton = DependencyState("Triton")
        self.milvus = DependencyState("Milvus")
        self.query_cache = QueryVectorCache(settings.query_cache_size)
        # ANN fan-out and probes: separate from the server's request threads, so neither waits on the other.
        self._pool = ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="search")

    # -- search -----------------------------------------------------------------------------------

    def search(self, query: SearchQuery, deadline: float) -> SearchResult:
        """Ranked hits (or moments) for a validated query, cut to its page; `deadline` is a time.monotonic() value.

        Every page of a request ranks the same candidate window (query.window), so pages concatenate to one
        request's ranking. FailedPrecondition / NotFound for a like_video_id that is not READY / does not exist.
        """
        timings = StageTimings()
        fusion = query.fusion
        with _stage(timings, "total"):
            self._require(self.triton, self.milvus)
            with _stage(timings, "encode"):
                with _encoder_errors(deadline, "the served model versions"):
                    scope = replace(self.served_scope(), tenant=query.tenant)
                where = query.filter.within(scope)  # rows of the served versions only, whatever the filter
                if query.like_video_id:
                    vectors = self._like_vectors(query.like_video_id, scope)
                elif query.image is not None:
                    vectors = self._encode_image(query.image, deadline)
                else:
                    vectors = self._encode(query.text, deadline)
            order = read_order(query.text, vectors.phrases) if query.text else None
            limit = candidate_limit(query, self.settings)
            probe = limit + 1  # one past the window: whether more videos match than the window holds
            _remaining(deadline)

            def ann_videos() -> list[VideoHit]:
                with _stage(timings, "ann_videos"):
                    return self._milvus(lambda: self.index.search_videos(vectors.sentence, probe, where))

            def ann_clips() -> list[list[ClipHit]]:
                with _stage(timings, "ann_clips"):
                    return self._milvus(lambda: self.index.search_clips_grouped(vectors.clip_queries, probe, where))

            # The longest search is sent first: Milvus runs a few reads at a time, in the order they arrive.
            clips_future = self._pool.submit(ann_clips)
            videos_future = self._pool.submit(ann_videos)
            kinds = self._text_kinds(query)
            segment_futures = {k: self._pool.submit(self._milvus, lambda k=k: self.segments.search(  # type: ignore[union-attr]
                vectors.sentence, k, probe, where, per_video=query.moments_per_video)) for k in kinds}
            lexical_future = self._pool.submit(self._milvus, lambda: self.lexical.search(  # type: ignore[union-attr]
                query.text, where, query.moments_per_video)) if self._searches_lexical(query) else None
            clip_lists = clips_future.result()
            video_hits = videos_future.result()
            hit_lists: list[list[VideoHit] | list[ClipHit]] = [video_hits, *clip_lists]
            segment_lists = {k: f.result() for k, f in segment_futures.items()}
            lexical: LexicalMatches | None = lexical_future.result() if lexical_future else None
            ranked_lists = [[h.video_id for h in hits] for hits in
                            [*hit_lists, *(found.hits for found in segment_lists.values()),
                             *([lexical.hits] if lexical is not None else [])]]
            # The union is cut to the window by best rank, so the lists' extra last rank never enters it.
            candidates = union_by_rank(ranked_lists, limit)
            window_full = len({v for ranked in ranked_lists for v in ranked}) > limit
            clip_counts = {h.video_id: h.clip_count for hits in hit_lists for h in hits}
            _remaining(deadline)

            with _stage(timings, "rescore"):
                # Text levels come from the segment searches; segments are read (beside the videos and clips)
                # only for candidates those did not reach and that could still score above their level's floor.
                unseen = {k: found.unseen(candidates, fusion.text_ranges[LEVEL_OF_KIND[k]][0])
                          for k, found in segment_lists.items()}
                with _stage(timings, "rescore_fetch"):
                    stored_future = self._pool.submit(self._milvus, lambda: self.segments.get_segments(  # type: ignore[union-attr]
                        {v for videos in unseen.values() for v in videos}, [k for k, v in unseen.items() if v], scope=scope),
                    ) if any(unseen.values()) else None
                    rows = self._milvus(lambda: self.index.get_candidate_vectors(candidates, clip_counts, video_hits,
                                                                                 scope=scope))
                    stored = stored_future.result() if stored_future else {}
                    if lexical is not None:  # reads the candidates' postings only when a common term was capped
                        found_words = lexical
                        lexical = self._milvus(lambda: self.lexical.complete(  # type: ignore[union-attr]
                            found_words, candidates, query.moments_per_video))
                text = {k: text_matches(vectors, found, stored, k) for k, found in segment_lists.items()} if kinds else None
                scored = score_candidates(vectors, candidates, rows.videos, rows.clips, text, rows.video_cosines,
                                          order.order if order else None,
                                          lexical.by_video if lexical is not None else None)
            with _stage(timings, "fusion"):
                page = self._rank(query, scored, fuse(scored.levels, fusion))
        return replace(page, phrases=[] if query.like_video_id else vectors.phrases, candidates=len(scored.video_ids),
                       timings=timings, window_exhausted=window_full and not page.next_page_token,
                       order=[vectors.phrases[i] for i in order.order] if order else [])

    def _rank(self, query: SearchQuery, scored: ScoredCandidates, fused: np.ndarray) -> SearchResult:
        """This page of the ranking: videos by fused score (ties by id), each with its moments; or, grouped by
        moment, every candidate's moments by score. Moments are drawn only for the videos the page needs."""
        thresholds = self.settings.confidence_thresholds
        clip_score = clip_scores(scored, query.fusion)
        order = sorted(range(len(fused)), key=lambda i: (-fused[i], scored.video_ids[i]))
        start, end = query.offset, query.offset + query.top_k

        def moments(i: int) -> list[Moment]:
            found = video_moments(scored, i, query.fusion, clip_score, query.moments_per_video, thresholds)
            return [m for m in found if m.confidence >= query.min_confidence]

        hits: list[Hit] = []
        flat: list[Moment] = []
        if query.group_by == GroupBy.MOMENT:
            flat = sorted((m for i in order for m in moments(i)), key=lambda m: (-m.score, m.video_id, m.start_s))
            total = len(flat)
            flat = flat[start:end]
        else:
            if query.min_confidence:  # a hit is as sure as its best moment: every candidate's moments decide the ranking
                kept = [(i, found) for i in order if (found := moments(i))]
            else:
                kept = [(i, None) for i in order]
            total = len(kept)
            for i, found in kept[start:end]:
                found = found if found is not None else moments(i)
                hits.append(Hit(scored.video_ids[i], float(fused[i]),
                                {lv: float(scored.levels[lv][i]) for lv in LEVELS if lv in scored.levels},
                                scored.best_clips[i], found, self._near_duplicate(query, scored, i)))
        token = ""
        if query.paged and end < total:
            token = encode_token(page_secret(self.settings), query.digest, PageCursor(end, query.window),
                                 self.settings.page_token_ttl_s)
        return SearchResult(hits, [], 0, StageTimings(), moments=flat, next_page_token=token)

    def _near_duplicate(self, query: SearchQuery, scored: ScoredCandidates, i: int) -> bool:
        """like_video_id: whether candidate i is a copy of the query video (gateway.similar.copy_score)."""
        return bool(query.like_video_id) and copy_score(scored, i) >= self.settings.near_duplicate_threshold

    def served_scope(self) -> RowScope:
        """The rows a Search may compare its query with: those of the model versions the encoder serves
        (EncoderUnavailable while it cannot say)."""
        models = self.served_models()
        return RowScope(visual_model=models.visual_model, text_model=models.text_model)

    def served_models(self) -> ModelVersions:
        """The model versions of the served encoders (EncoderInfo): what a Search compares with, and what a schema
        migration run by this gateway backfills."""
        info = self.encoder.info()
        return ModelVersions(info.visual_model, info.text_model)

    def _like_vectors(self, video_id: str, scope: RowScope) -> QueryVectors:
        """A stored READY video as a query: its video vector for the sentence, its clips (at most like_max_clips,
        evenly spaced) for the phrases. NotFound when it is not indexed (under the served version), FailedPrecondition
        while it is not READY; another tenant's video (scope.tenant) is NotFound, as a missing one."""
        status = self._redis(lambda: self.status.get(video_id))
        if status is not None and status.tenant != scope.tenant:
            status = None
        if status is not None and status.state != IngestState.READY:
            raise FailedPrecondition(f"video {video_id!r} is {status.state.value}, not READY: like_video_id searches "
                                     "with a READY video's stored vectors")
        rows = self._milvus(lambda: self.index.get_candidate_vectors([video_id], scope=scope))
        if video_id not in rows.videos or not rows.clips.get(video_id):
            raise NotFound(f"video {video_id!r} does not exist")
        return like_query(rows.videos[video_id], rows.clips[video_id], self.settings.like_max_clips)

    def _text_kinds(self, query: SearchQuery) -> list[str]:
        """Segment kinds this Search reads: served here, switched on for the deployment, weighted by the query."""
        if self.segments is None or query.visual_only:  # an image or a video searches the visual levels only
            return []
        enabled = {c.segment_kind: getattr(self.settings, c.switch) for c in TIMED_TEXT_CHANNELS if c.switch}
        return [KIND_OF_LEVEL[lv] for lv in TEXT_LEVELS if query.fusion.weights.get(lv) and enabled[KIND_OF_LEVEL[lv]]]

    def _searches_lexical(self, query: SearchQuery) -> bool:
        """Whether this Search scores the query's words: a text query, the lexicon served and switched on, the
        lexical level weighted."""
        return (self.lexical is not None and self.settings.lexical and not query.visual_only and bool(query.text)
                and bool(query.fusion.weights.get("lexical")))

    def _encode(self, text: str, deadline: float) -> QueryVectors:
        """The query's vectors: from the cache when this model encoded this text before, else from Triton."""
        timeout = min(_remaining(deadline), self.settings.triton_timeout_s)
        with _encoder_errors(deadline, "the query"):
            version = self.encoder.info().model_version
            cached = self.query_cache.get(version, text)
            if self.query_cache.capacity:
                metrics.QUERY_CACHE_LOOKUPS.labels(result="miss" if cached is None else "hit").inc()
            if cached is not None:
                return cached
            encoded = self.encoder.encode_text([text], timeout_s=timeout)
        vectors = query_vectors(text, encoded)
        self.query_cache.put(version, text, vectors)
        return vectors

    def _encode_image(self, image: np.ndarray, deadline: float) -> QueryVectors:
        """An image query's vector from the frame encoder: it stands for the sentence and the one phrase."""
        timeout = min(_remaining(deadline), self.settings.triton_timeout_s)
        with _encoder_errors(deadline, "the image"):
            frame = center_crop_square(image, self.encoder.info().image_size)
            vector = self.encoder.encode_frames(frame[None], timeout_s=timeout)[0]
        return QueryVectors(vector, [], vector[None, :])

    @staticmethod
    def _milvus(call: Callable[[], T]) -> T:
        try:
            return call()
        except IndexUnavailable as exc:
            raise Unavailable(str(exc)) from exc

    # -- videos -----------------------------------------------------------------------------------

    def submit_video(self, video_id: str, uri: str, metadata: Mapping[str, str],
                     modalities: list[str] | None = None, tenant: str = DEFAULT_TENANT) -> Submitted:
        """Record the video as PENDING, then queue its ingest; an empty video_id gets a fresh one.

        The status comes first so that a fast worker always finds the record it reports progress to.
        Submitting an existing id again re-ingests it. `modalities` (a subset of jobs.contract.MODALITIES) limits
        the timed texts this ingest extracts; None leaves it to the deployment. A video id is global: one that another
        tenant's video holds is AlreadyExists, without saying whose.
        """
        video_id = video_id or uuid.uuid4().hex
        clean_metadata = check_submission(video_id, uri, metadata)
        task_id = str(uuid.uuid4())
        # The status record decides atomically (mark_pending); the index holds videos indexed without a record. While
        # Milvus is down a submit still goes through on the record alone, as before tenants.
        try:
            held = self.index.get_videos([video_id]).get(video_id)
        except IndexUnavailable:
            held = None
        if held is not None and held.tenant != tenant:
            raise AlreadyExists(f"video id {video_id!r} is taken: choose another")
        try:
            # the status keeps the uri without its credentials; only the task (what the worker fetches with) has them
            self._redis(lambda: self.status.mark_pending(video_id, task_id, redact_uri(uri), clean_metadata, tenant))
        except VideoIdTaken as exc:
            raise AlreadyExists(str(exc)) from exc
        try:
            self.queue.enqueue(task_id, video_id, uri, clean_metadata,
                               **({"modalities": modalities} if modalities is not None else {}), tenant=tenant)
        except Exception as exc:  # noqa: BLE001 - kombu and redis raise many types; all mean "not queued"
            log.warning("could not queue ingest of %s: %s", video_id, exc)
            self._redis(lambda: self.status.mark_failed(video_id, f"could not queue the ingest task: {exc}"))
            raise Unavailable(f"the ingest queue is unavailable: {exc}") from exc
        return Submitted(video_id, task_id)

    def get_video(self, video_id: str, tenant: str = DEFAULT_TENANT) -> VideoStatus:
        """The ingest status of `tenant`'s video; a video indexed without SubmitVideo reads as READY from the index.
        Another tenant's video is NotFound, as a missing one."""
        check_video_id_arg(video_id)
        status = self._redis(lambda: self.status.get(video_id))
        if status is not None and status.tenant == tenant:
            return status
        if status is not None:
            raise NotFound(f"video {video_id!r} does not exist")
        record = self._milvus(lambda: self.index.get_videos([video_id], RowScope(tenant=tenant))).get(video_id)
        if record is None:
            raise NotFound(f"video {video_id!r} does not exist")
        return ready_from_row(record)

    def video_text(self, video_id: str, tenant: str = DEFAULT_TENANT) -> dict[str, list[SegmentRecord]]:
        """The timed text of `tenant`'s video by kind ("speech", "screen_text"), each in time order; empty when none
        is served."""
        check_video_id_arg(video_id)
        if self.segments is None:
            return {}
        segments = self._milvus(lambda: self.segments.get_segments(  # type: ignore[union-attr]
            [video_id], vectors=False, scope=RowScope(tenant=tenant))).get(video_id, [])
        by_kind: dict[str, list[SegmentRecord]] = {}
        for segment in segments:
            by_kind.setdefault(segment.kind, []).append(segment)
        return by_kind

    def delete_video(self, video_id: str, tenant: str = DEFAULT_TENANT) -> None:
        """Remove `tenant`'s video, its clips and its status; NotFound when none of them existed (or they are another
        tenant's)."""
        check_video_id_arg(video_id)
        in_index = self._milvus(lambda: self.index.delete_video(video_id, tenant))
        had_status = self._redis(lambda: self.status.delete(video_id, tenant))
        if not (in_index or had_status):
            raise NotFound(f"video {video_id!r} does not exist")

    def delete_tenant(self, tenant: str) -> TenantDeleted:
        """Remove everything of a named tenant: its queued ingest tasks first (taken off the queue), then its status
        records (so a task of it already running finds none and writes nothing more: jobs.status's owner rule, and a
        task caught between its index write and READY deletes its rows again), then its rows."""
        if tenant == DEFAULT_TENANT:
            raise InvalidArgument("name the tenant to delete (the default tenant cannot be deleted)")
        try:
            queued = self.queue.remove_tenant(tenant)
        except Exception as exc:  # noqa: BLE001 - redis raises many types; all mean "cannot change the queue"
            raise Unavailable(f"the ingest queue is unavailable: {exc}") from exc
        records = self._redis(lambda: self.status.delete_tenant(tenant))
        rows = self._milvus(lambda: self.index.delete_tenant(tenant))
        return TenantDeleted(tenant, rows.videos, rows.clips, rows.segments, records, queued)

    def stats(self, tenant: str | None = None) -> Stats:
        """Rows in the index (in all, and per model version) and tasks waiting in the ingest queue; of one tenant
        when given (its queue_length: its videos still PENDING), of the whole deployment for None."""
        videos, clips = self._milvus(lambda: self.index.counts(tenant))
        versions = self._milvus(lambda: self.index.version_counts(tenant))
        if tenant is not None:
            return Stats(videos, clips, self._redis(lambda: self.status.count(IngestState.PENDING, tenant)), versions)
        try:
            queue_length = self.queue.length()
        except Exception as exc:  # noqa: BLE001 - redis raises many types; all mean "cannot read the queue"
            raise Unavailable(f"the ingest queue is unavailable: {exc}") from exc
        return Stats(videos, clips, queue_length, versions,
                     self._redis(self.reindex_jobs.latest) if self.reindex_jobs is not None else None)

    @staticmethod
    def _redis(call: Callable[[], T]) -> T:
        try:
            return call()
        except StatusUnavailable as exc:
            raise Unavailable(str(exc)) from exc

    # -- dependencies -----------------------------------------------------------------------------

    def _require(self, *dependencies: DependencyState) -> None:
        for dependency in dependencies:
            if not dependency.up:
                raise Unavailable(f"{dependency.name} is unavailable: {dependency.error}")

    def probe(self, timeout_s: float) -> bool:
        """Check Triton and Milvus (at most timeout_s); True when both can serve Search.

        A probe still running from last time is awaited again rather than started twice, so a hung
        backend never piles up threads. A dependency that fails a check is down at once; one that has answered
        before and is only slow (a busy host) is down after `probe_misses_to_down` probes in a row without an
        answer, so one slow answer does not fail every Search until the next probe.
        """
        checks = ((self.triton, self._check_triton), (self.milvus, self._check_milvus))
        for state, check in checks:
            if state._pending is None or state._pending.done():
                state._pending = self._pool.submit(check)
        until = time.monotonic() + timeout_s
        for state, _ in checks:
            assert state._pending is not None
            try:
                state._pending.result(timeout=max(0.0, until - time.monotonic()))
            except FutureTimeout:
                state.misses += 1
                if not state.answered or state.misses >= self.settings.probe_misses_to_down:
                    self._set(state, False, f"no answer within {timeout_s:g}s"
                                            + (f" ({state.misses} probes in a row)" if state.misses > 1 else ""))
                continue
            except Exception as exc:  # noqa: BLE001 - any failure of a probe means "down"
                self._set(state, False, str(exc) or type(exc).__name__)
            else:
                self._set(state, True, "")
            state.answered, state.misses = True, 0
        return self.triton.up and self.milvus.up

    def _check_triton(self) -> None:
        encoder = self.encoder if self.triton.up else self._new_encoder()
        if not encoder.ready():
            raise EncoderUnavailable(f"the encoder models are not ready at {self.settings.triton.url}")
        encoder.info()  # cached from here on: Search keys its query cache on the model version
        self.encoder = encoder

    def _check_milvus(self) -> None:
        # A primary-key lookup: cheap on every Milvus, unlike count(*), which Milvus Lite answers by scanning.
        # The first one connects and ensures the collections.
        self.index.get_videos([PROBE_VIDEO_ID])

    @staticmethod
    def _set(state: DependencyState, up: bool, error: str) -> None:
        if up != state.up:
            log.warning("%s is %s%s", state.name, "back" if up else "down", f": {error}" if error else "")
        state.up, state.error = up, error

    def close(self) -> None:
        """Stop the fan-out threads (running calls finish in the background)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def union_by_rank(lists: list[list[str]], limit: int) -> list[str]:
    """The videos of several ranked lists, ordered by their best rank in any list, at most `limit`.

    Rank 1 of every list comes before rank 2 of any list, so no list (the video ANN, or the clip ANN of
    one phrase) is crowded out by another; ties keep list order.
    """
    best: dict[str, int] = {}
    for ranked in lists:
        for rank, video_id in enumerate(ranked):
            if rank < best.get(video_id, rank + 1):
                best[video_id] = rank
    return sorted(best, key=best.__getitem__)[:limit]
