"""SearchService without a network: in-memory fakes of Triton, Milvus, Redis and the queue."""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidstrata.gateway.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable
from vidstrata.gateway.fusion import FusionMethod
from vidstrata.gateway.query import GroupBy, QueryVectors, parse_search
from vidstrata.gateway.scoring import LEVEL_OF_KIND, score_candidates
from vidstrata.gateway.service import SearchService, union_by_rank
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.index.filters import RowScope, compile_filter, compile_filters
from vidstrata.index.segments import SegmentHit, SegmentHits, SegmentRecord
from vidstrata.index.store import CandidateVectors, VersionCount
from vidstrata.jobs.status import IngestState
from tests.fixtures.gateway import FakeBackends, FakeEncoder, FakeIndex, FakeStatus, embed, scene_video


# The fake encoder's one-hot words give cosines over all of [0, 1], not the default encoders' narrow cone.
FAKE_RANGES = dict.fromkeys(("video_sentence", "clip_sentence", "clip_phrase"), (0.0, 1.0))


def _service(fakes: FakeBackends, **settings: object) -> SearchService:
    settings.setdefault("visual_level_ranges", FAKE_RANGES)
    return SearchService(GatewaySettings(**settings), lambda: fakes.encoder, fakes.index, fakes.status, fakes.queue)


@pytest.fixture
def library(fakes: FakeBackends) -> FakeBackends:
    """Five videos; `trip` has three events, each in its own 4-second clip."""
    for video_id, scenes in {
        "trip": ["a boat on the sea", "a rocket on the launch pad", "a cup of coffee"],
        "pets": ["a cat", "a dog", "a cat and a dog"],
        "space": ["the moon", "a rocket"],
        "garden": ["a tree", "a tree"],
        "street": ["a car", "a car", "a dog"],
    }.items():
        fakes.index.add(*scene_video(video_id, scenes))
    return fakes


def _search(service: SearchService, text: str, timeout_s: float = 5.0, **kwargs: object):
    query = parse_search(service.settings, text, **kwargs)  # type: ignore[arg-type]
    return service.search(query, time.monotonic() + timeout_s)


def test_a_query_naming_one_event_finds_the_video_and_the_span_of_that_event(library):
    result = _search(_service(library), "coffee")
    assert result.hits[0].video_id == "trip"
    assert (result.hits[0].best_clip.start_s, result.hits[0].best_clip.end_s) == (8.0, 12.0)
    assert result.phrases == ["coffee"]


def test_phrases_are_matched_in_different_clips_late_interaction(library):
    # "space" shows a rocket, "trip" a rocket and coffee in separate clips: only late interaction sees both.
    result = _search(_service(library), "a rocket, then a cup of coffee")
    assert result.phrases == ["a rocket", "a cup of coffee"]
    assert [h.video_id for h in result.hits[:2]] == ["trip", "space"]
    trip = result.hits[0]
    assert trip.levels["clip_phrase"] > trip.levels["clip_sentence"]
    assert trip.levels["clip_phrase"] == pytest.approx(1.0, abs=0.01)


def test_hits_are_sorted_cut_to_top_k_and_carry_every_level(library):
    result = _search(_service(library), "a dog", top_k=2)
    assert len(result.hits) == 2 and result.candidates == 5
    assert result.hits[0].score >= result.hits[1].score
    assert set(result.hits[0].levels) == {"video_sentence", "clip_sentence", "clip_phrase"}
    assert {h.video_id for h in result.hits} == {"pets", "street"}


def test_rrf_fusion_ranks_too(library):
    result = _search(_service(library), "coffee", method=FusionMethod.RRF)
    assert result.hits[0].video_id == "trip"
    visual = ("video_sentence", "clip_sentence", "clip_phrase")  # no segments are served here: no text levels
    assert result.hits[0].score == pytest.approx(sum(GatewaySettings().fusion_weights[lv] for lv in visual) / 61)


def test_timings_cover_every_stage(library):
    timings = _search(_service(library), "coffee").timings
    assert all(seconds > 0 for seconds in timings.stages().values())
    assert timings.total >= timings.encode + timings.rescore + timings.fusion
    assert 0 < timings.rescore_fetch <= timings.rescore


def test_filter_reaches_both_ann_searches_and_nothing_else(library):
    _search(_service(library), "coffee", filter_expr='meta.lang == "en"')
    filters = {name: arg for name, arg in library.index.calls if name.startswith("search")}
    served = RowScope(tenant="", visual_model="fake-1/", text_model="fake-1")  # the default tenant, FakeEncoder's versions
    assert filters == {"search_videos": compile_filters('meta.lang == "en"', scope=served),
                       "search_clips_grouped": compile_filters('meta.lang == "en"', scope=served)}
    # compiled once by parse_search, narrowed to the served versions: both searches get the same object
    assert filters["search_videos"].videos == \
        '((metadata["lang"] == "en") and (tenant == "") and (visual_model == "fake-1/"))'
    assert filters["search_clips_grouped"].clips == \
        '((metadata["lang"] == "en") and (tenant == "") and (visual_model == "fake-1/"))'
    assert filters["search_videos"].segments == '((metadata["lang"] == "en") and (tenant == "") and (text_model == "fake-1"))'
    assert library.index.scopes == [served]  # the candidates' rows are read under the served versions too


def test_a_search_sees_only_the_served_model_versions_whatever_its_filter(library):
    """The version conjunct is a node of the parsed filter, ANDed at the top: no user filter can widen it."""
    library.encoder.model_version = "new"
    for expr in ('', 'video_id == "a" or video_id != "a"', 'not (duration_s > 0)'):
        _search(_service(library), "coffee", filter_expr=expr)
        where = [arg for name, arg in library.index.calls if name == "search_videos"][-1]
        assert where.videos.endswith('(visual_model == "new/"))') or where.videos == '(visual_model == "new/")'
        assert where.scope == RowScope(tenant="", visual_model="new/", text_model="new")


def test_the_candidate_union_is_cut_to_the_candidate_limit(library):
    result = _search(_service(library, candidates=2), "a dog", top_k=1)
    fetched = next(arg for name, arg in library.index.calls if name == "get_candidate_vectors")
    assert len(fetched) == 2 and result.candidates == 2


def test_candidates_deleted_after_the_ann_search_are_dropped(library):
    service = _service(library)
    original = library.index.get_candidate_vectors

    def without_trip(ids, clip_counts=None, video_hits=(), scope=RowScope()):
        rows = original(ids, clip_counts, video_hits, scope)
        return CandidateVectors(rows.videos, {k: v for k, v in rows.clips.items() if k != "trip"})

    library.index.get_candidate_vectors = without_trip  # type: ignore[method-assign]
    result = _search(service, "coffee")
    assert "trip" not in [h.video_id for h in result.hits]


def test_an_empty_index_gives_no_hits(fakes):
    result = _search(_service(fakes), "coffee")
    assert result.hits == [] and result.candidates == 0


def test_union_keeps_each_lists_best_before_any_seconds():
    assert union_by_rank([["a", "b", "c"], ["d", "a", "e"], ["f"]], 4) == ["a", "d", "f", "b"]
    assert union_by_rank([[], ["x"]], 10) == ["x"]


def test_best_clip_prefers_the_clip_matching_one_phrase_strongly():
    video, clips = scene_video("v", ["a cat", "a rocket", "a cat and a rocket"])
    query = QueryVectors(embed(["rocket"]), ["rocket"], embed(["rocket"])[None])
    scored = score_candidates(query, ["v"], {"v": video.vector}, {"v": clips})
    assert (scored.best_clips[0].start_s, scored.best_clips[0].end_s) == (4.0, 8.0)
    assert scored.levels["clip_sentence"][0] == pytest.approx(float(clips[1].vector @ embed(["rocket"])))


def test_a_video_level_from_the_ann_equals_the_one_from_the_vector():
    """score_candidates takes the video ANN's cosine in place of the video vector and scores the same."""
    video, clips = scene_video("v", ["a cat", "a rocket", "a cat and a rocket"])
    other, other_clips = scene_video("w", ["a dog", "a boat"])
    query = QueryVectors(embed(["rocket"]), ["rocket"], embed(["rocket"])[None])
    from_vectors = score_candidates(query, ["v", "w"], {"v": video.vector, "w": other.vector}, {"v": clips, "w": other_clips})
    cosine = float(video.vector @ query.sentence / np.linalg.norm(video.vector) / np.linalg.norm(query.sentence))
    from_ann = score_candidates(query, ["v", "w"], {"w": other.vector}, {"v": clips, "w": other_clips},
                                video_cosines={"v": cosine})
    for level, scores in from_vectors.levels.items():
        np.testing.assert_allclose(from_ann.levels[level], scores, rtol=1e-6)
    got, want = from_ann.best_clips[0], from_vectors.best_clips[0]  # w's clips tie against "rocket"
    assert (got.start_s, got.end_s) == (want.start_s, want.end_s) == (4.0, 8.0) and got.score == pytest.approx(want.score)


# -- failures -------------------------------------------------------------------------------------


def test_a_dependency_found_down_by_the_probe_fails_search_at_once(library):
    service = _service(library)
    library.encoder.up = False
    assert service.probe(timeout_s=1.0) is False
    calls = len(library.index.calls)
    started = time.perf_counter()
    with pytest.raises(Unavailable, match="Triton is unavailable"):
        _search(service, "coffee")
    assert time.perf_counter() - started < 0.05
    assert len(library.index.calls) == calls and library.encoder.texts == []
    library.encoder.up = True
    assert service.probe(timeout_s=1.0) is True
    assert _search(service, "coffee").hits[0].video_id == "trip"


def test_milvus_down_is_unavailable(library):
    service = _service(library)
    library.index.up = False
    with pytest.raises(Unavailable, match="fake Milvus is down"):
        _search(service, "coffee")
    assert service.probe(timeout_s=1.0) is False and not service.milvus.up


def test_a_hung_dependency_is_down_after_the_probe_timeout_without_piling_up_threads(library):
    service = _service(library)
    library.index.hang.set()
    try:
        started = time.perf_counter()
        assert service.probe(timeout_s=0.2) is False
        assert time.perf_counter() - started < 1.0
        assert "no answer within 0.2s" in service.milvus.error
        assert service.probe(timeout_s=0.2) is False
        assert sum(name == "get_videos" for name, _ in library.index.calls) == 1
    finally:
        library.index.hang.clear()
    assert service.probe(timeout_s=1.0) is True


def test_a_slow_dependency_that_answered_before_is_down_only_after_three_probes_without_an_answer(library):
    service = _service(library)
    assert service.probe(timeout_s=1.0) is True
    library.index.hang.set()
    try:
        assert service.probe(timeout_s=0.1) is True and service.probe(timeout_s=0.1) is True  # a busy host: still up
        assert service.probe(timeout_s=0.1) is False
        assert "no answer within 0.1s (3 probes in a row)" in service.milvus.error
    finally:
        library.index.hang.clear()
    assert service.probe(timeout_s=1.0) is True and service.milvus.misses == 0


def test_a_passed_deadline_stops_the_search(library):
    with pytest.raises(DeadlineExceeded):
        _search(_service(library), "coffee", timeout_s=-1.0)


def test_encoder_input_errors_are_invalid_arguments(library):
    service = _service(library)
    query = parse_search(service.settings, "coffee")
    bad = query.__class__(text="   ", top_k=query.top_k, filter=query.filter, fusion=query.fusion)
    with pytest.raises(InvalidArgument, match="empty"):
        service.search(bad, time.monotonic() + 5)


# -- videos ---------------------------------------------------------------------------------------


def test_submit_marks_pending_before_queueing_and_generates_an_id(fakes):
    service = _service(fakes)
    submitted = service.submit_video("", "/videos/a.mp4", {"lang": "en"})
    assert len(submitted.video_id) == 32 and submitted.task_id
    assert fakes.queue.state_at_send == [IngestState.PENDING]
    assert fakes.queue.sent == [(submitted.task_id, submitted.video_id, "/videos/a.mp4", {"lang": "en"})]
    status = service.get_video(submitted.video_id)
    assert (status.state, status.task_id, status.uri) == (IngestState.PENDING, submitted.task_id, "/videos/a.mp4")


def test_a_submit_the_queue_refuses_is_unavailable_and_recorded_as_failed(fakes):
    fakes.queue.error = ConnectionError("broker down")
    service = _service(fakes)
    with pytest.raises(Unavailable, match="broker down"):
        service.submit_video("v1", "/a.mp4", {})
    status = service.get_video("v1")
    assert status.state == IngestState.FAILED and "broker down" in status.reason


def test_bad_submissions_never_reach_the_status_store(fakes):
    with pytest.raises(InvalidArgument):
        _service(fakes).submit_video("v1", "relative.mp4", {})
    assert fakes.status.records == {} and fakes.queue.state_at_send == []


def test_get_video_falls_back_to_the_index_for_videos_indexed_directly(library):
    status = _service(library).get_video("trip")
    assert (status.state, status.clip_count, status.duration_s, status.submitted_at) == (IngestState.READY, 3, 12.0, 0.0)


def test_unknown_and_malformed_ids(library):
    service = _service(library)
    with pytest.raises(NotFound, match="'nope' does not exist"):
        service.get_video("nope")
    with pytest.raises(NotFound):
        service.delete_video("nope")
    with pytest.raises(InvalidArgument, match="video_id"):
        service.get_video("no spaces allowed")


def test_delete_removes_the_video_and_its_status(library):
    service = _service(library)
    service.submit_video("trip", "/trip.mp4", {})
    service.delete_video("trip")
    assert "trip" not in library.index.videos and library.status.get("trip") is None
    with pytest.raises(NotFound):
        service.get_video("trip")
    assert "trip" not in [h.video_id for h in _search(service, "coffee").hits]


def test_stats_count_the_index_and_the_queue(library):
    service = _service(library)
    service.submit_video("new", "/new.mp4", {})
    stats = service.stats()
    assert (stats.videos, stats.clips, stats.queue_length) == (5, 13, 1)
    assert stats.versions == library.index.version_counts() == [VersionCount("visual", "unversioned", 5, 13)]


def test_scores_use_cosines_even_for_unnormalised_stored_vectors():
    video, clips = scene_video("v", ["a cat"])
    video.vector = video.vector * 7
    for clip in clips:
        clip.vector = clip.vector * 3
    query = QueryVectors(embed(["cat"]), ["cat"], embed(["cat"])[None])
    scored = score_candidates(query, ["v"], {"v": video.vector}, {"v": clips})
    np.testing.assert_allclose([scored.levels[lv][0] for lv in scored.levels], [1.0, 1.0, 1.0], atol=1e-5)


def test_after_an_outage_probes_reconnect_with_a_fresh_encoder(fakes):
    made: list[FakeEncoder] = []

    def new_encoder() -> FakeEncoder:
        made.append(FakeEncoder())
        return made[-1]

    service = SearchService(GatewaySettings(), new_encoder, fakes.index, fakes.status, fakes.queue)
    made[0].up = False  # its channel would now sit in reconnect backoff
    assert service.probe(timeout_s=1.0) is False and len(made) == 1
    assert service.probe(timeout_s=1.0) is True and len(made) == 2
    assert service.encoder is made[1]
    assert service.probe(timeout_s=1.0) is True and len(made) == 2


def test_an_image_finds_the_video_that_shows_it_on_the_visual_levels(library):
    from tests.fixtures.gateway import word_image

    for image_format in ("PNG", "JPEG"):
        result = _search(_service(library), "", image=word_image("coffee", image_format=image_format))
        assert result.hits[0].video_id == "trip" and result.phrases == []
        assert (result.hits[0].best_clip.start_s, result.hits[0].best_clip.end_s) == (8.0, 12.0)
        assert set(result.hits[0].levels) == {"video_sentence", "clip_sentence", "clip_phrase"}
    assert library.encoder.texts == ["<image>", "<image>"]  # no text was encoded


def _png_header(width: int, height: int) -> bytes:
    """A PNG claiming width x height RGB pixels (its header), with an empty IDAT: PIL opens it without decoding."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


@pytest.mark.parametrize(("text", "image", "message"), [
    ("", b"not an image at all", "not a JPEG or PNG \\(its bytes match no image format\\)$"),
    ("", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "JPEG or PNG"),  # a PNG signature, then garbage
    ("", _png_header(20_000, 20_000), "more pixels than the limit of 40000000$"),  # past PIL's own bomb limit
    ("coffee", b"\x89PNG", "give one of query, image and like_video_id"),
    ("", b"x" * (8 * 1024 * 1024 + 1), "limit"),
])
def test_bad_images_are_invalid_arguments_before_any_backend(library, text, image, message):
    with pytest.raises(InvalidArgument, match=message):
        _search(_service(library), text, image=image)
    assert library.encoder.texts == [] and library.index.calls == []


def test_other_image_formats_and_bombs_are_refused(library):
    from tests.fixtures.gateway import word_image

    with pytest.raises(InvalidArgument, match="JPEG or PNG"):
        _search(_service(library), "", image=word_image("cat", image_format="GIF"))
    with pytest.raises(InvalidArgument, match="pixels"):
        _search(_service(library, max_image_pixels=1000), "", image=word_image("cat", size=(100, 100)))


def test_a_submission_can_narrow_the_modalities(fakes):
    service = _service(fakes)
    service.submit_video("v1", "/videos/a.mp4", {})
    service.submit_video("v2", "/videos/b.mp4", {}, modalities=["screen_text"])
    assert fakes.queue.modalities == [None, ["screen_text"]]
def test_a_repeated_query_does_not_pay_the_encoder_twice(library):
    service = _service(library, query_cache_size=2)
    first = _search(service, "a cup of coffee, then a rocket")
    again = _search(service, "a cup of coffee, then a rocket")
    assert library.encoder.texts == ["a cup of coffee, then a rocket"]  # encoded once
    assert [h.video_id for h in again.hits] == [h.video_id for h in first.hits] and again.phrases == first.phrases
    assert (service.query_cache.hits, service.query_cache.lookups) == (1, 2) and service.query_cache.hit_ratio() == 0.5


def test_the_query_cache_is_bounded_and_keyed_by_the_model_version(library):
    service = _service(library, query_cache_size=2)
    for text in ("coffee", "rocket", "boat", "coffee"):  # "coffee" was evicted by the third query
        _search(service, text)
    assert library.encoder.texts == ["coffee", "rocket", "boat", "coffee"] and len(service.query_cache) == 2
    library.encoder.model_version = "a re-exported model"
    _search(service, "coffee")
    assert library.encoder.texts[-1] == "coffee" and len(library.encoder.texts) == 5


def test_a_query_cache_of_size_zero_is_off(library):
    service = _service(library, query_cache_size=0)
    _search(service, "coffee")
    _search(service, "coffee")
    assert library.encoder.texts == ["coffee", "coffee"] and service.query_cache.lookups == 0


class _Segments:
    """In-memory segment search: exact best segment per video, cut to the limit like index.segments."""

    def __init__(self, segments: list[SegmentRecord]) -> None:
        self.segments, self.reads = segments, []

    def search(self, vector, kind, limit_videos, filter_expr=None, per_video=1) -> SegmentHits:
        found: dict[str, list[SegmentHit]] = {}
        for s in sorted((s for s in self.segments if s.kind == kind), key=lambda s: -float(s.vector @ vector)):
            hits = found.setdefault(s.video_id, [])
            if len(hits) < per_video:
                hits.append(SegmentHit(s.video_id, kind, s.index, s.start_s, s.end_s, s.text, float(s.vector @ vector)))
        ranked = list(found)
        cut = found[ranked[limit_videos]][0].score if len(ranked) > limit_videos else -np.inf
        return SegmentHits({v: found[v] for v in ranked[:limit_videos]}, cut)

    def get_segments(self, video_ids, kinds=("speech", "screen_text"), vectors=True, scope=None):
        self.reads.append((sorted(video_ids), list(kinds)))
        found: dict[str, list[SegmentRecord]] = {}
        for s in self.segments:
            if s.video_id in video_ids and s.kind in kinds:
                found.setdefault(s.video_id, []).append(s)
        return found


def test_text_levels_come_from_the_segment_search_and_only_unreached_candidates_are_read(library):
    said = [SegmentRecord(v, "speech", 0, 1.0, 2.0, f"{text} ({v})", embed(text.split()))
            for v, text in (("trip", "coffee"), ("pets", "a dog"), ("garden", "a cat"), ("street", "a car"))]
    segments = _Segments(said)
    def service(floor: float) -> SearchService:
        return SearchService(GatewaySettings(candidates=2, text_level_ranges={"speech_sentence": (floor, 0.5)}),
                             lambda: library.encoder,
                             library.index, library.status, library.queue, segments)

    result = _search(service(0.01), "coffee", top_k=2)
    assert result.hits[0].video_id == "trip" and result.hits[0].match.snippet == "coffee (trip)"
    # the speech list was cut at 2 videos, and the first one cut off still scores above the floor 0.01 (the words'
    # shared component): the candidates it did not reach have their speech read and scored from the vectors
    assert segments.reads and all(kinds == ["speech"] for _, kinds in segments.reads)
    assert "trip" not in segments.reads[0][0]
    exact = {h.video_id: h.levels["speech_sentence"] for h in result.hits}
    for hit in said:
        if hit.video_id in exact:
            assert exact[hit.video_id] == pytest.approx(float(hit.vector @ embed(["coffee"])), abs=1e-6)

    segments.reads.clear()
    again = _search(service(0.15), "coffee", top_k=2)  # the default floor: nothing unseen can reach it
    assert segments.reads == [] and again.hits[0].match.snippet == "coffee (trip)"


@pytest.mark.parametrize("low", ["speech", "screen_text"])
def test_segments_are_read_only_for_the_kind_whose_own_floor_an_unseen_video_could_reach(library, low):
    """Each kind's unseen candidates are read against its own level's floor: the kind with the low floor (0.01,
    under the words' shared component) is read, the other (0.15: nothing unseen reaches it) is not."""
    segments = _Segments([SegmentRecord(v, kind, 0, 1.0, 2.0, f"{text} ({v})", embed(text.split()))
                          for kind in ("speech", "screen_text")
                          for v, text in (("trip", "coffee"), ("pets", "a dog"), ("garden", "a cat"), ("street", "a car"))])
    floors = {"speech_sentence": 0.15, "screen_text_sentence": 0.15, LEVEL_OF_KIND[low]: 0.01}
    settings = GatewaySettings(candidates=2, text_level_ranges={lv: (f, 0.5) for lv, f in floors.items()})
    service = SearchService(settings, lambda: library.encoder, library.index, library.status, library.queue, segments)
    result = _search(service, "coffee", top_k=2)
    assert result.hits[0].video_id == "trip"
    assert segments.reads and all(kinds == [low] for _, kinds in segments.reads), segments.reads


LIBRARY = {
    "trip": ["a boat on the sea", "a rocket on the launch pad", "a cup of coffee"],
    "pets": ["a cat", "a dog", "a cat and a dog"],
    "space": ["the moon", "a rocket"],
    "garden": ["a tree", "a tree"],
    "street": ["a car", "a car", "a dog"],
}
TEXTS = [SegmentRecord("trip", "screen_text", 0, 0.0, 2.0, "coffee (trip)", embed(["coffee"])),
         SegmentRecord("pets", "speech", 0, 5.0, 6.0, "a dog and a cat (pets)", embed(["dog", "cat"])),
         SegmentRecord("street", "speech", 0, 1.0, 3.0, "a car (street)", embed(["car"]))]


def _only(videos: Sequence[str], ranges: dict = FAKE_RANGES) -> SearchService:
    """A service whose index holds only `videos` of LIBRARY: what a filter on their ids leaves as candidates."""
    fakes = FakeBackends(FakeEncoder(), FakeIndex(), FakeStatus(), None)  # type: ignore[arg-type]
    for video_id in videos:
        fakes.index.add(*scene_video(video_id, LIBRARY[video_id]))
    return SearchService(GatewaySettings(visual_level_ranges=ranges), lambda: fakes.encoder, fakes.index,
                         fakes.status, fakes.queue, _Segments([s for s in TEXTS if s.video_id in videos]))


@pytest.mark.parametrize("method", list(FusionMethod))
@pytest.mark.parametrize("text", ["coffee", "a dog", "a rocket, then a cup of coffee", "a car and a tree"])
def test_a_hit_is_the_same_whichever_other_videos_are_candidates(text, method):
    """Score (WEIGHTED), order (WEIGHTED), best clip and why of every video are those it has among all five, with
    any one to four of the others left out (RRF ranks among the candidates: only its why is the video's own)."""
    everyone = {h.video_id: h for h in _search(_only(list(LIBRARY)), text, top_k=10, method=method).hits}
    assert set(everyone) == set(LIBRARY)
    for size in range(1, len(LIBRARY)):
        for videos in combinations(LIBRARY, size):
            hits = _search(_only(videos), text, top_k=10, method=method).hits
            assert [h.video_id for h in hits] == [v for v in everyone if v in videos] or method == FusionMethod.RRF
            for hit in hits:
                assert (hit.match, hit.best_clip) == (everyone[hit.video_id].match, everyone[hit.video_id].best_clip)
                if method == FusionMethod.WEIGHTED:
                    assert hit.score == everyone[hit.video_id].score, (videos, hit.video_id)


def test_the_only_candidate_left_is_explained_by_its_on_screen_text_as_among_others():
    alone = _search(_only(["trip"]), "coffee").hits[0]
    among = next(h for h in _search(_only(list(LIBRARY)), "coffee").hits if h.video_id == "trip")
    assert alone.match.level == among.match.level == "screen_text_sentence"
    assert (alone.match.start_s, alone.match.end_s, alone.score) == (0.0, 2.0, among.score)


def test_an_image_is_fused_on_its_raw_cosines_not_on_the_ranges_calibrated_for_sentences():
    """Visual ranges for sentences put an image's cosines (0.9 and more with the default encoders) above every
    ceiling, where all candidates would tie at 1 (here: ranges so narrow that every fake cosine is above them). An
    image is ranked by its raw cosines, with the same score whichever other candidates there are."""
    from tests.fixtures.gateway import word_image

    narrow = dict.fromkeys(("video_sentence", "clip_sentence", "clip_phrase"), (0.0, 0.01))
    hits = _search(_only(list(LIBRARY), narrow), "", image=word_image("coffee")).hits
    assert hits[0].video_id == "trip" and hits[0].score > hits[1].score, [(h.video_id, h.score) for h in hits]
    assert hits[0].score == pytest.approx(sum(GatewaySettings().fusion_weights[lv] * hits[0].levels[lv]
                                              for lv in ("video_sentence", "clip_sentence", "clip_phrase")))
    alone = _search(_only(["trip"], narrow), "", image=word_image("coffee")).hits[0]
    assert (alone.score, alone.match) == (hits[0].score, hits[0].match)
    sentence = _search(_only(list(LIBRARY), narrow), "coffee").hits  # a sentence is scaled by the narrow ranges:
    assert {h.video_id: h.score for h in sentence if h.video_id in ("space", "garden")} == {  # tied at the ceiling
        "space": pytest.approx(1 / 5), "garden": pytest.approx(1 / 5)}


# -- pages and moments (issue 23) ---------------------------------------------------------------------------------

def _ranked(result) -> list[tuple]:
    if result.moments:
        return [(m.video_id, m.start_s, m.score) for m in result.moments]
    return [(h.video_id, h.score, tuple(h.moments)) for h in result.hits]


@settings(max_examples=60, deadline=None)
@given(page_size=st.integers(1, 6), candidates=st.integers(1, 6), method=st.sampled_from(list(FusionMethod)),
       group_by=st.sampled_from(list(GroupBy)), moments=st.integers(1, 3),
       text=st.sampled_from(["coffee", "a dog", "a rocket, then a cup of coffee", "a car and a tree", "dog after cat"]))
def test_pages_concatenate_to_one_requests_ranking_without_duplicates_or_gaps(page_size, candidates, method, group_by,
                                                                             moments, text):
    service = _only(list(LIBRARY))
    service.settings.candidates = candidates
    fields = dict(method=method, group_by=group_by, moments_per_video=moments)
    paged, token, last = [], "", None
    for _ in range(100):
        last = _search(service, text, page_size=page_size, page_token=token, **fields)
        paged += _ranked(last)
        token = last.next_page_token
        if not token:
            break
    assert not token
    whole = _search(service, text, top_k=max(len(paged), 1), **fields)
    assert paged == _ranked(whole)
    assert len({row[:2] for row in paged}) == len(paged)
    # all five videos match every query: past a window smaller than the library the ranking says it stopped there
    window = candidates if group_by == GroupBy.MOMENT else max(candidates, page_size)
    assert last.window_exhausted == (window < len(LIBRARY))


def test_each_hit_has_non_overlapping_moments_best_first_and_why_is_the_first():
    result = _search(_only(list(LIBRARY)), "a rocket, then a cup of coffee", moments_per_video=3)
    for hit in result.hits:
        spans = [(m.start_s, m.end_s) for m in hit.moments]
        assert spans and all(min(a[1], b[1]) <= max(a[0], b[0]) for i, a in enumerate(spans) for b in spans[i + 1:])
        assert hit.match == hit.moments[0] and all(m.video_id == hit.video_id for m in hit.moments)
    trip = next(h for h in result.hits if h.video_id == "trip")
    assert result.order == ["a rocket", "a cup of coffee"]
    clip = next(m for m in trip.moments if m.level == "clip")  # its on-screen text "coffee (trip)" may come first
    assert (clip.start_s, clip.end_s) == (4.0, 12.0)  # the rocket's clip to the coffee's
