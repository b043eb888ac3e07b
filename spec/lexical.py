"""Lexical normalisation and terms: what the worker indexes and the gateway queries must agree on, so both use this.

The lexical channel (issue 25) scores a query's words in the timed speech and on-screen text (BM25) and verifies
quoted phrases verbatim. Words are compared after `normalize`: case folded, accents dropped (NFKD, combining marks
removed, NFC again so Hangul stays composed), every run of other characters than letters and digits one space,
Han/kana/Hangul characters one token each (those scripts write no spaces). So "Café TX-4471" and "cafe tx 4471"
are the same text.

OCR loses and adds spaces ("TX 4471" for "TX-4471", "HELLOWORLD" for "HELLO WORLD"), so a text's terms
(`document_terms`) are its tokens, each token's letter/digit parts ("tx4471" -> "tx", "4471") and the join of each
pair of adjacent tokens ("tx" "4471" -> "tx4471"); a query's terms (`parse_query`) are its whitespace words with
their punctuation dropped ("TX-4471" -> "tx4471") and the joins of adjacent words. Then "TX 4471", "TX-4471" and
"TX4471" in a text all hold the term "tx4471", and the query "TX4471", "TX-4471" or "tx 4471" finds each.

A phrase in double quotes must appear verbatim in one segment (`contains_phrase`): its normalised tokens, spaces
removed, equal a run of the text's tokens with spaces removed, starting and ending at token boundaries; so
"TX-4471" matches "tx 4471" and "TX4471", but "TX" does not match "TX4471". Pure Python, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

MAX_TERM_LENGTH = 64  # characters; longer terms are not indexed (nor queried): no word of a spoken or shown text is
MAX_QUERY_TERMS = 32  # a query's distinct terms beyond these are ignored (bounds the index reads)

# Scripts written without spaces: each character is a token of its own.
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_UNSPACED_CHAR = re.compile(f"([{_UNSPACED}])")
_SEPARATORS = re.compile(r"[\W_]+")
_LETTER_DIGIT = re.compile(r"[^\W\d_]+|\d+")
_QUOTED = re.compile(r'"([^"]*)"')


def _fold(text: str) -> str:
    """Case folded, accents dropped, recomposed (NFC)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", stripped).casefold()


def normalize(text: str) -> str:
    """The text as lexical matching sees it: tokens of lowercase unaccented letters and digits, one space apart.

    Idempotent: normalize(normalize(t)) == normalize(t).
    """
    folded = _fold(text)
    spaced = _UNSPACED_CHAR.sub(r" \1 ", folded)
    return " ".join(token for token in _SEPARATORS.split(spaced) if token)


def tokens(normalized: str) -> list[str]:
    """The tokens of a normalised text (its length in BM25 is their count)."""
    return normalized.split()


def _parts(token: str) -> list[str]:
    """A token's letter runs and digit runs ("tx4471" -> ["tx", "4471"]); [token] when it is one run."""
    parts = _LETTER_DIGIT.findall(token)
    return parts if len(parts) > 1 else [token]


def _kept(terms: Iterable[str]) -> list[str]:
    return [t for t in terms if 0 < len(t) <= MAX_TERM_LENGTH]


def document_terms(normalized: str) -> list[str]:
    """Every term of a normalised text, with repeats (a term's count is its tf): each token, each token's letter/digit
    parts when it has several, and the join of each adjacent pair of tokens."""
    found = tokens(normalized)
    terms: list[str] = []
    for i, token in enumerate(found):
        terms.append(token)
        parts = _parts(token)
        if len(parts) > 1:
            terms.extend(parts)
        if i + 1 < len(found):
            terms.append(token + found[i + 1])
    return _kept(terms)


def index_terms(normalized: str, capacity: int) -> list[str]:
    """The distinct terms of a normalised text in first-seen order, at most `capacity` (what a lexicon row stores:
    a text's first terms when it has more)."""
    return list(dict.fromkeys(document_terms(normalized)))[:capacity]


def _has_unspaced(text: str) -> bool:
    return bool(_UNSPACED_CHAR.search(text))


def _word_terms(word: str) -> list[str]:
    """A query word's terms: its tokens joined ("TX-4471" -> "tx4471"); in unspaced scripts its adjacent pairs."""
    parts = tokens(normalize(word))
    if len(parts) <= 1 or not _has_unspaced(word):
        return ["".join(parts)] if parts else []
    return [a + b for a, b in zip(parts, parts[1:], strict=False)]


def _phrase_word_terms(word: str) -> list[str]:
    """The terms every text holding a quoted word verbatim (same spacing) holds: `_word_terms`, except that a word of
    more than two tokens ("a-b-c") needs each token (a text holds only adjacent pairs' joins)."""
    parts = tokens(normalize(word))
    return parts if len(parts) > 2 and not _has_unspaced(word) else _word_terms(word)


@dataclass(frozen=True)
class Phrase:
    """A quoted phrase: its normalised text, the terms a segment holding it verbatim holds (`required`), and its
    compact form (tokens joined: what `contains_phrase` looks for)."""

    normalized: str
    required: tuple[str, ...]
    compact: str


@dataclass(frozen=True)
class LexicalQuery:
    """A query as the lexical channel reads it: its distinct terms (words, then adjacent-word joins) and its quoted
    phrases. Empty `terms`: the query has no word to match (no lexical level)."""

    terms: tuple[str, ...]
    phrases: tuple[Phrase, ...]


def parse_query(text: str) -> LexicalQuery:
    """The terms and quoted phrases of a query. An unpaired quote is read as a plain character (dropped).

    Terms: each whitespace word's terms (`_word_terms`), then the join of each pair of adjacent words (a text whose
    OCR ran them together); at most MAX_QUERY_TERMS, words first.
    """
    phrases = []
    for quoted in _QUOTED.findall(text):
        normalized = normalize(quoted)
        if not normalized:
            continue
        required = tuple(dict.fromkeys(t for word in quoted.split() for t in _phrase_word_terms(word)))
        phrases.append(Phrase(normalized, tuple(_kept(required)), normalized.replace(" ", "")))
    words = [word for word in text.replace('"', " ").split() if normalize(word)]
    singles = [t for word in words for t in _word_terms(word)]
    compact = ["".join(tokens(normalize(word))) for word in words]
    joins = [a + b for a, b in zip(compact, compact[1:], strict=False) if not (_has_unspaced(a) or _has_unspaced(b))]
    terms = list(dict.fromkeys(_kept(singles + joins)))[:MAX_QUERY_TERMS]
    return LexicalQuery(tuple(terms), tuple(phrases))


def contains_phrase(normalized: str, phrase: Phrase) -> bool:
    """Whether a normalised text holds the phrase verbatim: its compact form equals a run of whole tokens of the text
    with their spaces removed (module docstring)."""
    found = tokens(normalized)
    compact = "".join(found)
    bounds = {0}
    at = 0
    for token in found:
        at += len(token)
        bounds.add(at)
    start = compact.find(phrase.compact)
    while start >= 0:
        if start in bounds and start + len(phrase.compact) in bounds:
            return True
        start = compact.find(phrase.compact, start + 1)
    return False
