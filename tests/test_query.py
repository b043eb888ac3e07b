"""Request validation and query planning: every bad input is refused with a clear message, before any backend."""

from __future__ import annotations

import numpy as np
import pytest

from vidstrata.gateway.errors import InvalidArgument
from vidstrata.gateway.fusion import FusionMethod
from vidstrata.gateway.query import candidate_limit, check_submission, normalize_query, parse_search, query_vectors
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.inference.encoder import TextVectors


@pytest.fixture
def settings() -> GatewaySettings:
    return GatewaySettings(candidates=50)


def test_defaults_fill_in_top_k_fusion_and_filter(settings):
    query = parse_search(settings, "a cat on a sofa")
    assert (query.text, query.top_k, query.filter.text) == ("a cat on a sofa", 10, "")
    assert query.fusion.method == FusionMethod.WEIGHTED
    assert query.fusion.weights == settings.fusion_weights
    assert (query.fusion.normalization, query.fusion.rrf_k) == ("ranges", 60.0)


def test_request_choices_override_the_defaults(settings):
    query = parse_search(settings, "cat", top_k=3, filter_expr='meta.lang == "en"', method=FusionMethod.RRF,
                         weights={"clip_phrase": 2.0})
    assert (query.top_k, query.filter.text, query.fusion.method) == (3, 'meta.lang == "en"', FusionMethod.RRF)
    assert query.fusion.weights == {"video_sentence": 0.0, "clip_sentence": 0.0, "clip_phrase": 2.0,
                                    "speech_sentence": 0.0, "screen_text_sentence": 0.0, "lexical": 0.0}


@pytest.mark.parametrize("kwargs, message", [
    ({"text": ""}, "query is empty"),
    ({"text": " \n\t"}, "query is empty"),
    ({"text": "\x00\u200b\ufeff"}, "query is empty"),
    ({"text": "\u200e \u2060\x7f"}, "query is empty"),
    ({"text": "é" * 1025}, "query is 2050 bytes; the limit is 2048"),
    ({"text": "cat", "top_k": 0}, r"top_k must be in \[1, 1000\], got 0"),
    ({"text": "cat", "top_k": -5}, "got -5"),
    ({"text": "cat", "top_k": 1001}, "got 1001"),
    ({"text": "cat", "filter_expr": "duration_s <"}, "invalid filter at position 12"),
    ({"text": "cat", "filter_expr": "drop_collection()"}, "unknown field"),
    ({"text": "cat", "filter_expr": 'meta.lang == 1'}, "compares with strings only"),
    ({"text": "cat", "weights": {"frame_word": 1.0}}, "unknown fusion levels"),
    ({"text": "cat", "weights": {"clip_phrase": -1.0}}, ">= 0"),
])
def test_bad_requests_are_invalid_arguments(settings, kwargs, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_search(settings, **kwargs)


def test_query_at_the_byte_limit_is_accepted(settings):
    assert parse_search(settings, "a" * 2048).text == "a" * 2048


def test_candidate_limit_is_the_setting_but_never_below_top_k(settings):
    assert candidate_limit(parse_search(settings, "cat", top_k=10), settings) == 50
    assert candidate_limit(parse_search(settings, "cat", top_k=200), settings) == 200


def _vectors(mask: list[bool], labels: list[str] | None = None, dim: int = 4) -> TextVectors:
    slots = len(mask)
    phrases = np.arange(slots * dim, dtype=np.float32).reshape(1, slots, dim)
    labels = labels or [f"phrase {i}" if used else "" for i, used in enumerate(mask)]
    return TextVectors(
        sentence=np.ones((1, dim), dtype=np.float32), phrases=phrases,
        phrase_mask=np.array([mask]), tokens=np.zeros((1, 3, dim), dtype=np.float32), phrase_texts=[labels],
    )


def test_phrases_pair_with_their_vector_slots():
    text = "a rocket lifts off, then a cat sleeps while rain falls"
    labels = ["a rocket lifts off", "a cat sleeps", "rain falls", ""]
    planned = query_vectors(text, _vectors([True, True, True, False], labels))
    assert planned.phrases == ["a rocket lifts off", "a cat sleeps", "rain falls"]
    np.testing.assert_array_equal(planned.phrase_vectors, _vectors([True] * 4).phrases[0, :3])
    assert planned.clip_queries.shape == (4, 4)  # the sentence, then three phrases
    np.testing.assert_array_equal(planned.clip_queries[0], np.ones(4))


def test_phrase_labels_come_from_the_encoder_never_from_splitting_again():
    # An encoder that split differently from spec.preprocess: its labels win, so they always match the vectors.
    planned = query_vectors("a rocket, then a cat", _vectors([True, True], ["a rocket, then", "a cat"]))
    assert planned.phrases == ["a rocket, then", "a cat"]


def test_phrases_truncated_away_by_the_tokenizer_are_dropped():
    planned = query_vectors("a rocket, then a cat", _vectors([True, False], ["a rocket", ""]))
    assert planned.phrases == ["a rocket"]
    assert planned.phrase_vectors.shape == (1, 4)


def test_a_query_without_phrase_slots_uses_its_sentence_as_the_phrase():
    planned = query_vectors("  cat  ", _vectors([False, False]))
    assert planned.phrases == ["cat"]
    np.testing.assert_array_equal(planned.phrase_vectors, np.ones((1, 4)))


@pytest.mark.parametrize("uri", ["/data/videos/a.mp4", "https://cdn.example.com/v/a.mp4?sig=1", "http://10.0.0.1:8080/a",
                                 "file:///data/videos/a%20b.mp4", "file://localhost/a.mp4"])
def test_good_submissions_pass(uri):
    assert check_submission("vid-1", uri, {"lang": "en"}) == {"lang": "en"}


@pytest.mark.parametrize("video_id, uri, metadata, message", [
    ("", "/a.mp4", {}, "video_id"),
    ("bad id with spaces", "/a.mp4", {}, "video_id"),
    ("v", "", {}, "uri is empty"),
    ("v", "videos/a.mp4", {}, "absolute local path, a file:// URI or an http"),
    ("v", "ftp://host/a.mp4", {}, "absolute local path, a file:// URI or an http"),
    ("v", "file://otherhost/a.mp4", {}, "absolute local path, a file:// URI or an http"),
    ("v", "file:a.mp4", {}, "absolute local path, a file:// URI or an http"),
    ("v", "https:///no-host", {}, "absolute local path, a file:// URI or an http"),
    ("v", "/a\n.mp4", {}, "control characters"),
    ("v", "/" + "a" * 5000, {}, "at most 4096"),
    ("v", "/a.mp4", {"bad key!": "x"}, "metadata key"),
    ("v", "http://user:secret@[::1/x", {}, "not a valid URL: Invalid IPv6 URL$"),  # was INTERNAL (a new-user pass)
    ("v", "http://[x]/a.mp4", {}, "not a valid URL"),
])
def test_bad_submissions_are_invalid_arguments(video_id, uri, metadata, message):
    with pytest.raises(InvalidArgument, match=message):
        check_submission(video_id, uri, metadata)


def test_queries_are_normalised_before_searching():
    settings = GatewaySettings()
    assert parse_search(settings, "\ufeffａ\u200bcat\x00 on\ta  sofa ").text == "acat on a sofa"
    assert normalize_query("ﬁsh\u00a0tank") == "fish tank"
