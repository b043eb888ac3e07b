"""Property tests (Hypothesis): whatever a user sends, the filter compiler, the id and metadata validators and
query normalisation answer with their documented error or a well-formed value, never anything else."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidstrata.gateway.errors import InvalidArgument
from vidstrata.gateway.query import normalize_query, parse_search
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.index.filters import FilterError, compile_filter
from vidstrata.spec.validation import MAX_METADATA_BYTES, VIDEO_ID_RE, check_metadata, check_video_id

GATEWAY = GatewaySettings()
FIELDS = ["video_id", "duration_s", "clip_count", "created_at", "meta.lang", 'metadata["a.b-c"]', "meta.x_1"]
OPERATORS = ["==", "!=", "<", "<=", ">", ">="]
literals = st.one_of(
    st.text(max_size=12).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "false", "TRUE", "nan", "inf", "1e999", "-0", "0x10"]),
)
comparisons = st.builds(lambda f, o, v: f"{f} {o} {v}", st.sampled_from(FIELDS), st.sampled_from(OPERATORS), literals)
memberships = st.builds(lambda f, n, vs: f"{f} {n}in [{', '.join(vs)}]", st.sampled_from(FIELDS),
                        st.sampled_from(["", "not "]), st.lists(literals, max_size=4))
expressions = st.recursive(
    st.one_of(comparisons, memberships),
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["and", "or", "AND"]), inner),
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"({e})"),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_compiles_or_is_a_filter_error(expr):
    for collection in ("videos", "clips"):
        try:
            out = compile_filter(expr, collection)
        except FilterError:
            continue
        assert out == "" or (out.startswith("(") and out.endswith(")"))


@settings(max_examples=300, deadline=None)
@given(expressions)
def test_grammar_shaped_filters_compile_or_say_why(expr):
    try:
        out = compile_filter(expr)
    except FilterError as exc:
        assert str(exc).startswith("invalid filter at position ")
        return
    assert out.count("(") >= 1 and compile_filter(expr, "clips")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=140), st.integers(100, 20_000).map(lambda n: "x" * n), st.from_regex(VIDEO_ID_RE, fullmatch=True), st.integers(), st.none()))
def test_video_ids_are_accepted_exactly_when_they_match(video_id):
    ok = isinstance(video_id, str) and VIDEO_ID_RE.fullmatch(video_id) is not None
    if ok:
        assert check_video_id(video_id) == video_id
    else:
        with pytest.raises(ValueError, match="video_id") as refused:
            check_video_id(video_id)
        assert len(str(refused.value)) < 200  # a long id is shortened: the message travels in gRPC metadata


keys = st.one_of(st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True), st.text(max_size=70))
values = st.one_of(st.text(max_size=50), st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.dictionaries(keys, values, max_size=6), st.lists(st.text(), max_size=2), st.text(max_size=5)))
def test_metadata_is_a_copy_or_a_value_error(metadata):
    try:
        checked = check_metadata(metadata)
    except ValueError as exc:
        assert "metadata" in str(exc)
        return
    assert checked == metadata and checked is not metadata
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in checked.items())


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=20), st.integers(1, 4))
def test_oversized_metadata_is_a_value_error(piece, copies):
    value = piece * (MAX_METADATA_BYTES // len(piece.encode()) + 1)
    with pytest.raises(ValueError, match="larger than"):
        check_metadata({f"k{i}": value for i in range(copies)})


INVISIBLE = st.sampled_from(["\x00", "\u200b", "\ufeff", "\u200e", "\u2060", "\x7f", "\t", "\n", " ", "\u00a0"])


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_query_normalisation_is_idempotent_and_leaves_nothing_invisible(text):
    normal = normalize_query(text)
    assert normalize_query(normal) == normal
    assert normal == normal.strip()
    assert not any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} for ch in normal)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(INVISIBLE, max_size=20).map("".join)))
def test_a_search_query_is_valid_and_visible_or_an_invalid_argument(text):
    try:
        query = parse_search(GATEWAY, text)
    except InvalidArgument as exc:
        assert str(exc).startswith("query is")
        return
    assert query.text and query.text == normalize_query(text)
    assert len(query.text.encode("utf-8")) <= GATEWAY.max_query_bytes
