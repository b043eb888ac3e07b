"""Page tokens (gateway.pages): signed, bound to their request, expiring; and the windowed paging of the service."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vidstrata.gateway.errors import InvalidArgument
from vidstrata.gateway.pages import PageCursor, decode_token, encode_token, request_digest

SECRET = b"k" * 32


@given(offset=st.integers(0, 10**6), window=st.integers(1, 10**4), query=st.text(max_size=50))
def test_a_token_names_the_cursor_it_was_made_with(offset, window, query):
    digest = request_digest([query, "WEIGHTED"])
    token = encode_token(SECRET, digest, PageCursor(offset, window), ttl_s=60)
    assert decode_token(SECRET, token, digest) == PageCursor(offset, window)


@given(position=st.integers(0, 200), replacement=st.sampled_from("AQgw-_0."))
def test_any_changed_character_is_refused(position, replacement):
    digest = request_digest(["a rocket"])
    token = encode_token(SECRET, digest, PageCursor(10, 100), ttl_s=60)
    position %= len(token)
    if token[position] == replacement:
        return
    tampered = token[:position] + replacement + token[position + 1:]
    with pytest.raises(InvalidArgument, match="page_token is not valid"):
        decode_token(SECRET, tampered, digest)


def test_a_token_of_another_request_secret_or_past_its_ttl_is_refused():
    digest = request_digest(["a rocket"])
    token = encode_token(SECRET, digest, PageCursor(10, 100), ttl_s=60, now=1000.0)
    assert decode_token(SECRET, token, digest, now=1059.0) == PageCursor(10, 100)
    with pytest.raises(InvalidArgument, match="not valid"):
        decode_token(SECRET, token, request_digest(["a cat"]), now=1000.0)
    with pytest.raises(InvalidArgument, match="not valid"):
        decode_token(b"other", token, digest, now=1000.0)
    with pytest.raises(InvalidArgument, match="expired"):
        decode_token(SECRET, token, digest, now=1061.0)
    for garbage in ("", ".", "a.b.c", "x" * 600, "%%%.%%%"):
        with pytest.raises(InvalidArgument):
            decode_token(SECRET, garbage, digest)


def test_the_digest_tells_apart_what_changes_a_ranking():
    base = ["a rocket", "", "", "", [], "WEIGHTED", {"clip_phrase": 1.0}, "VIDEO", 3, 0]
    variants = [["a rocket!", *base[1:]], [*base[:3], "video_id == \"x\"", *base[4:]], [*base[:4], ["v"], *base[5:]],
                [*base[:5], "RRF", *base[6:]], [*base[:7], "MOMENT", *base[8:]], [*base[:8], 4, 0], [*base[:9], 2]]
    digests = {request_digest(v) for v in [base, *variants]}
    assert len(digests) == len(variants) + 1
