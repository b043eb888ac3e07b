"""The lexical channel's normalisation (spec.lexical) and BM25 (gateway.lexical) as plain logic, and the lexicon
(index.lexicon) with BM25 over it against the real Milvus Lite gRPC server: terms found whatever OCR did to the
spaces, quoted phrases verified verbatim, re-ingest, delete and the backfill from stored segments."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymilvus import MilvusClient

from vidstrata.gateway.lexical import Bm25, LexicalSearch
from vidstrata.index.filters import RowScope, compile_filters
from vidstrata.index.lexicon import LexiconIndex, LexiconStats, Posting
from vidstrata.index.schema import LEXICON_BACKFILL_PROPERTY
from vidstrata.index.segments import SegmentIndex, SegmentRecord
from vidstrata.index.store import VideoIndex
from vidstrata.spec.lexical import contains_phrase, document_terms, normalize, parse_query, tokens

from tests.test_index_store import OpenIndex, at_cos, make_video, open_index, raw  # noqa: F401 - fixtures

# -- normalisation ------------------------------------------------------------------------------------------------


@given(st.text(max_size=80))
def test_normalize_is_idempotent_and_leaves_only_lowercase_tokens(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once
    assert once == " ".join(tokens(once))
    assert all(ch.isalnum() for ch in once.replace(" ", ""))


@given(st.lists(st.sampled_from(["TX", "4471", "Café", "naïve", "Straße", "ÉCOLE"]), min_size=1, max_size=4),
       st.lists(st.sampled_from([" ", "-", "  ", ", ", ".", "/", "_"]), min_size=3, max_size=3))
def test_case_accents_punctuation_and_spaces_fold_to_one_compact_form(words: list[str], seps: list[str]) -> None:
    joined = "".join(w + seps[i % len(seps)] for i, w in enumerate(words))
    compact = normalize(joined).replace(" ", "")
    assert compact == "".join(normalize(w) for w in words).replace(" ", "")
    assert normalize(joined.upper()) == normalize(joined.lower()) == normalize(joined)


@pytest.mark.parametrize("text", ["TX-4471", "TX 4471", "tx4471", "Tx_4471", "TX–4471"])
@pytest.mark.parametrize("query", ["TX4471", "TX-4471", "tx 4471", '"TX-4471"', '"tx4471"'])
def test_a_code_matches_however_ocr_spaced_it(text: str, query: str) -> None:
    parsed = parse_query(query)
    terms = set(document_terms(normalize(f"order {text} shipped")))
    assert set(parsed.terms) & terms
    for phrase in parsed.phrases:
        assert set(phrase.required) <= terms or phrase.compact in terms
        assert contains_phrase(normalize(f"order {text} shipped"), phrase)


def test_a_phrase_matches_whole_tokens_in_order_only() -> None:
    phrase = parse_query('"red car"').phrases[0]
    assert contains_phrase(normalize("a Red-Car today"), phrase)
    assert contains_phrase(normalize("the REDCAR lost its space"), phrase)
    assert not contains_phrase(normalize("a car, red"), phrase)
    assert not contains_phrase(normalize("shredcar"), phrase)
    assert not contains_phrase(normalize("TX4471"), parse_query('"TX"').phrases[0])


def test_query_terms_are_words_then_joins_and_quotes_are_phrases() -> None:
    parsed = parse_query('where is "TX-4471" shown')
    assert parsed.terms[:4] == ("where", "is", "tx4471", "shown")
    assert "istx4471" in parsed.terms  # a join: the text may have lost the space
    assert [p.normalized for p in parsed.phrases] == ["tx 4471"]
    assert parse_query("  ... !! ").terms == ()


# -- BM25 on hand-made postings -------------------------------------------------------------------------------------


def _posting(video_id: str, text: str, index: int = 0) -> Posting:
    norm = normalize(text)
    return Posting(video_id, "speech", index, 2.0 * index, 2.0 * index + 2, text, normalized=norm, length=len(tokens(norm)))


def test_bm25_matches_the_formula_on_hand_made_postings() -> None:
    bm25 = Bm25(k1=1.2, b=0.75, documents=100, mean_length=4.0, df={"tx4471": 1, "order": 50})
    doc = _posting("a", "order TX 4471 order")  # 4 tokens; tf(order) = 2, tf(tx4471) = 1 (the join)
    idf_rare, idf_common = math.log(1 + 99.5 / 1.5), math.log(1 + 50.5 / 50.5)
    want = idf_rare * 2.2 / (1 + 1.2) + idf_common * 2 * 2.2 / (2 + 1.2)
    assert bm25.score(("tx4471", "order"), doc) == pytest.approx(want)
    assert bm25.score(("absent",), doc) == 0.0


class _Lexicon:
    """Hand-made postings standing in for index.lexicon.LexiconIndex (this module's unit only)."""

    def __init__(self, postings: list[Posting], documents: int) -> None:
        self.rows, self.documents, self.reads = postings, documents, 0

    def postings(self, any_of, where, limit, video_ids=()):
        self.reads += 1
        found = [p for p in self.rows if set(any_of) & set(document_terms(p.normalized))
                 and (not video_ids or p.video_id in video_ids)]
        return found[:limit]

    def phrase_postings(self, phrase, where, limit):
        return [p for p in self.rows if contains_phrase(p.normalized, phrase)][:limit]

    def stats(self, scope=RowScope()):
        return LexiconStats(self.documents, 5.0)


def test_the_rare_term_wins_the_best_segment_is_the_moment_and_a_capped_term_is_completed_for_candidates() -> None:
    rows = [_posting(f"common{i}", "the order was shipped today") for i in range(6)]
    rows += [_posting("coded", "the order was shipped", 0), _posting("coded", "code TX 4471 on the box", 1)]
    lexicon = _Lexicon(rows, 1000)
    search = LexicalSearch(lexicon, max_postings=4)
    where = compile_filters("")
    found = search.search("order TX4471", where, per_video=2)
    assert found.capped == ("order",)  # more postings than one read returns: counted as 4, read for candidates
    assert lexicon.reads == 1 + 3  # all terms, then one read per term ("order", "tx4471", "ordertx4471")
    again = search.search("order TX4471", where, per_video=2)
    assert lexicon.reads == 5 and again.capped == ("order",)  # a known common term is left to `complete`
    assert again.hits[0] == found.hits[0]
    assert found.hits[0].video_id == "coded" and found.hits[0].index == 1
    done = search.complete(found, ["common5", "coded"], per_video=2)
    assert "common5" in done.by_video and done.by_video["common5"][0].score < found.hits[0].score
    quoted = search.search('"TX-4471"', where)
    assert list(quoted.by_video) == ["coded"] and quoted.hits[0].index == 1
    assert search.search("a paraphrase without those words", where).by_video == {}


# -- the lexicon in Milvus Lite ---------------------------------------------------------------------------------------


def _said(video_id: str, texts: list[str], kind: str = "speech") -> list[SegmentRecord]:
    return [SegmentRecord(video_id, kind, i, 3.0 * i, 3.0 * i + 2.5, text, at_cos(0.5)) for i, text in enumerate(texts)]


def _ingest(index: VideoIndex, video_id: str, texts: dict[str, list[str]], tenant: str = "") -> None:
    """What the worker writes: segments and lexicon rows of each kind, the video row last."""
    video, clips = make_video(video_id, [at_cos(0.1)])
    video.tenant = tenant
    for kind, lines in texts.items():
        SegmentIndex(index).replace_segments(video, kind, _said(video_id, lines, kind))
        LexiconIndex(index).replace_lexicon(video, kind, _said(video_id, lines, kind))
    index.replace_video(video, clips)


def test_lexicon_postings_phrases_reingest_delete_and_tenants_on_milvus_lite(open_index: OpenIndex,  # noqa: F811
                                                                             raw: MilvusClient) -> None:  # noqa: F811
    index = open_index()
    lexicon = LexiconIndex(index)
    _ingest(index, "boxes", {"screen_text": ["SHIPPING", "ORDER TX 4471"], "speech": ["we ship boxes today"]})
    _ingest(index, "other", {"speech": ["the order of the day", "nothing to see"]})
    _ingest(index, "theirs", {"speech": ["order TX4471 for another tenant"]}, tenant="acme")
    search = LexicalSearch(lexicon)
    mine = compile_filters("", scope=RowScope(tenant=""))
    for query in ("TX4471", "tx-4471", '"TX-4471"'):
        found = search.search(query, mine)
        assert list(found.by_video) == ["boxes"], query
        hit = found.hits[0]
        assert (hit.kind, hit.index, hit.start_s, hit.text) == ("screen_text", 1, 3.0, "ORDER TX 4471")
    assert list(search.search("TX4471", compile_filters("", scope=RowScope(tenant="acme"))).by_video) == ["theirs"]
    assert set(search.search("order", mine).by_video) == {"boxes", "other"}
    assert search.search('"order of the day" TX4471', mine).hits[0].video_id == "other"
    assert search.search("unrelated paraphrase", mine).by_video == {}
    assert list(search.search("TX4471", compile_filters('video_id == "other"', scope=RowScope(tenant=""))).by_video) == []
    assert lexicon.stats(RowScope(tenant="")).documents == 5

    _ingest(index, "boxes", {"screen_text": ["SHIPPING"], "speech": []})  # re-ingest: the code is gone
    assert search.search("TX4471", mine).by_video == {}
    assert len(raw.query(lexicon.name, filter='video_id == "boxes"', output_fields=["segment_id"])) == 1
    assert index.delete_video("other") is True
    assert raw.query(lexicon.name, filter='video_id == "other"', output_fields=["segment_id"]) == []


def test_a_lexicon_created_beside_stored_segments_is_backfilled_from_their_text(open_index: OpenIndex,  # noqa: F811
                                                                                raw: MilvusClient) -> None:  # noqa: F811
    index = open_index()
    _ingest(index, "old", {"speech": ["serial number AB 1234"]})
    names = index.connection.names
    raw.drop_collection(names.lexicon)  # an index written before the lexicon existed
    index.connection.close()
    index.connection.ensure_collections()
    assert raw.describe_collection(names.lexicon)["properties"][LEXICON_BACKFILL_PROPERTY] == "complete"
    hit = LexicalSearch(LexiconIndex(index)).search('"AB1234"', compile_filters("")).hits[0]
    assert (hit.video_id, hit.text) == ("old", "serial number AB 1234")


def test_named_metadata_values_are_one_document_spanning_the_video(open_index: OpenIndex) -> None:  # noqa: F811
    from vidstrata.index.lexicon import metadata_document
    from vidstrata.workers.settings import WorkerSettings
    from vidstrata.workers.text_stages import write_lexicon

    index = open_index()
    video, clips = make_video("m", [at_cos(0.1)], metadata={"title": "Quarterly report Q3-2026", "lang": "en"})
    settings = WorkerSettings(lexical_metadata_keys="title,missing")  # comma-separated from the environment
    assert settings.lexical_metadata_keys == ["title", "missing"]
    write_lexicon(LexiconIndex(index), video, {"speech": _said("m", ["nothing in common"])}, "unversioned", settings)
    index.replace_video(video, clips)
    hit = LexicalSearch(LexiconIndex(index)).search("q3 2026 report", compile_filters("")).hits[0]
    assert (hit.kind, hit.start_s, hit.end_s, hit.text) == ("metadata", 0.0, video.duration_s, "Quarterly report Q3-2026")
    assert metadata_document("m", video.metadata, [], 1.0).text == ""  # no keys named: no document
    write_lexicon(LexiconIndex(index), video, {"speech": []}, "unversioned", WorkerSettings())
    assert LexicalSearch(LexiconIndex(index)).search("report", compile_filters("")).hits == []
