"""The user filter language: what it renders, and that nothing outside it reaches Milvus."""

from __future__ import annotations

import pytest

from vidstrata.index.filters import MAX_DEPTH, MAX_FILTER_LENGTH, MAX_LIST_ITEMS, FilterError, compile_filter


@pytest.mark.parametrize(
    ("expr", "videos", "clips"),
    [
        ("", "", ""),
        ("   ", "", ""),
        ('video_id == "v1"', '(video_id == "v1")', '(video_id == "v1")'),
        ("duration_s >= 10", "(duration_s >= 10)", "(video_duration_s >= 10)"),
        ("duration_s < 2.5", "(duration_s < 2.5)", "(video_duration_s < 2.5)"),
        ("created_at > 1.7e9", "(created_at > 1700000000.0)", "(video_created_at > 1700000000.0)"),
        ("clip_count != -3", "(clip_count != -3)", "(video_clip_count != -3)"),
        ("duration_s > .5", "(duration_s > 0.5)", "(video_duration_s > 0.5)"),
        ('meta.lang == "en"', '(metadata["lang"] == "en")', '(metadata["lang"] == "en")'),
        ('metadata["a.b-c_9"] <= "z"', '(metadata["a.b-c_9"] <= "z")', '(metadata["a.b-c_9"] <= "z")'),
        (
            'meta.lang in ["en", "fr"]',
            '(metadata["lang"] == "en" or metadata["lang"] == "fr")',
            '(metadata["lang"] == "en" or metadata["lang"] == "fr")',
        ),
        ('meta.lang not in ["en"]', '(not (metadata["lang"] == "en"))', '(not (metadata["lang"] == "en"))'),
        ("clip_count in [1, 2]", "(clip_count in [1, 2])", "(video_clip_count in [1, 2])"),
        ('video_id NOT IN ["a"]', '(not (video_id in ["a"]))', '(not (video_id in ["a"]))'),
        (
            'not (duration_s > 1 or meta.k == "v") AND clip_count >= 2',
            '((not ((duration_s > 1) or (metadata["k"] == "v"))) and (clip_count >= 2))',
            '((not ((video_duration_s > 1) or (metadata["k"] == "v"))) and (video_clip_count >= 2))',
        ),
        (
            'video_id == "a" or video_id == "b" and clip_count == 1',
            '((video_id == "a") or ((video_id == "b") and (clip_count == 1)))',
            '((video_id == "a") or ((video_id == "b") and (video_clip_count == 1)))',
        ),
    ],
)
def test_renders_for_each_collection(expr: str, videos: str, clips: str) -> None:
    assert compile_filter(expr) == videos
    assert compile_filter(expr, "clips") == clips


def test_string_escapes_round_trip() -> None:
    assert compile_filter(r'video_id == "a\"b\\c"') == r'(video_id == "a\"b\\c")'
    assert compile_filter('meta.title == "café ☕"') == '(metadata["title"] == "café ☕")'


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ('video_id == "x" || true', "unexpected character '|'"),
        ('video_id == "x" && clip_count == 1', "unexpected character '&'"),
        ('video_id == "x") or (1 == 1', "expected 'and', 'or' or the end"),
        ("1 == 1", "expected a field name"),
        ("true", "expected a field name"),
        ('video_id == "x" or true', "expected a field name"),
        ('video_id == "a" or video_id == "b" or ""', "expected a field name"),
        ("video_id == video_id", "expected a literal"),
        ('json_contains(metadata["tags"], "x")', "unknown field 'json_contains'"),
        ('array_length(metadata) > 0', "unknown field 'array_length'"),
        ('status == "READY"', "unknown field 'status'"),
        ('clip_id == "a:1"', "unknown field 'clip_id'"),
        ('vector == "x"', "unknown field 'vector'"),
        ('video_id == "x"; drop', "unexpected character ';'"),
        ('video_id == "x" -- comment', "unexpected character '-'"),
        ("video_id == 'x'", "unexpected character \"'\""),
        ('video_id == "x', "unterminated string"),
        ('video_id == "x\\"', "unterminated string"),
        ('video_id == "x\\n"', "only \\\" and \\\\ escapes"),
        ('video_id == "a\nb"', "control characters"),
        ('video_id == "x" or video_id == "y" ) ', "expected 'and', 'or' or the end"),
        ('((video_id == "x")', "expected ')'"),
        ("(", "expected a field name"),
        ("()", "expected a field name"),
        ('video_id = "x"', "unexpected character '='"),
        ('video_id === "x"', "unexpected character '='"),
        ('video_id like "x%"', "expected an operator"),
        ('video_id in "x"', "expected '[' to open the list"),
        ("video_id in []", "expected a literal"),
        ('video_id in ["a",]', "expected a literal"),
        ('video_id in ["a" "b"]', "expected ',' or ']'"),
        ('video_id not == "a"', "expected 'in'"),
        ('not video_id', "expected an operator"),
        ("video_id == 1", "video_id compares with strings only"),
        ('duration_s > "10"', "duration_s compares with numbers only"),
        ("clip_count > 2.5", "clip_count compares with integers only"),
        ("clip_count == 99999999999999999999", "out of the 64-bit range"),
        ("duration_s > 1e999", "not finite"),
        ("meta.year == 2020", 'metadata["year"] compares with strings only; metadata values are strings: write "2020"'),
        ('meta.year in ["2020", 2021]', "compares with strings only"),
        ("meta.flag == true", "is not boolean"),
        ("duration_s == false", "is not boolean"),
        ('metadata[lang] == "en"', 'expected a double-quoted metadata key'),
        ('metadata["la\\"ng"] == "en"', "must match [A-Za-z0-9_.-]{1,64}"),
        ('metadata["' + "k" * 65 + '"] == "x"', "must match"),
        ('metadata["a b"] == "x"', "must match"),
        ('metadata["lang"]["x"] == "en"', "expected an operator"),
        ('metadata == "x"', "expected '[' after metadata"),
        ('meta.' + "k" * 65 + ' == "x"', "must match"),
        ('meta. == "x"', "unexpected character '.'"),
        ('meta.lang" or 1==1 or "x == "y"', "expected an operator"),
        ('video_id == "x" or video_id == "\x00"', "control characters"),
        ('video_id == "x" ∧ clip_count == 1', "unexpected character '∧'"),
        ("Video_ID == \"x\"", "unknown field 'Video_ID'"),
    ],
)
def test_rejects_with_a_clear_message(expr: str, message: str) -> None:
    with pytest.raises(FilterError, match="invalid filter at position") as info:
        compile_filter(expr)
    assert message in str(info.value)
    assert 0 <= info.value.position <= len(expr)


def test_error_position_points_at_the_problem() -> None:
    with pytest.raises(FilterError) as info:
        compile_filter('duration_s > 1 and colour == "red"')
    assert info.value.position == len("duration_s > 1 and ")
    assert isinstance(info.value, ValueError)


def test_limits() -> None:
    long_ok = " or ".join(['video_id == "x"'] * 50)
    assert len(long_ok) < MAX_FILTER_LENGTH
    compile_filter(long_ok)
    with pytest.raises(FilterError, match="longer than"):
        compile_filter(" or ".join(['video_id == "x"'] * 70))
    nested = "(" * MAX_DEPTH + "clip_count == 1" + ")" * MAX_DEPTH
    compile_filter(nested)
    with pytest.raises(FilterError, match="nesting deeper"):
        compile_filter("(" + nested + ")")
    with pytest.raises(FilterError, match="nesting deeper"):
        compile_filter("not " * (MAX_DEPTH + 1) + "clip_count == 1")
    too_many = "clip_count in [" + ", ".join("1" for _ in range(MAX_LIST_ITEMS + 1)) + "]"
    with pytest.raises(FilterError, match=f"at most {MAX_LIST_ITEMS} items"):
        compile_filter(too_many)


def test_unknown_collection_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="collection must be"):
        compile_filter("clip_count == 1", "frames")  # type: ignore[arg-type]
