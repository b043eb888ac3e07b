"""What the worker does with text read off the screen, before it is embedded: normalise it, merge repeats.

Pure functions, shared by the worker and the evaluation: the same normalisation applies wherever a screen text
is compared.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

_SPACES = re.compile(r"\s+")
_REPEATS = re.compile(r"(.)\1{2,}")  # a character three or more times in a row


def normalize_text(text: str) -> str:
    """NFKC, lower case, one space between words, runs of 3+ equal characters cut to one ("!!!!" -> "!").

    Returns "" for text with no letter or digit (OCR noise such as "|" or "..."), which is then dropped.
    """
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()
    text = _REPEATS.sub(r"\1", text)
    return text if any(c.isalnum() for c in text) else ""


@dataclass(frozen=True)
class Sighting:
    """The normalised lines read in one sampled frame, shown from `time_s` until `until_s` (the next sample)."""

    time_s: float
    until_s: float
    lines: tuple[str, ...]


@dataclass(frozen=True)
class ScreenTextSpan:
    """One on-screen text and the span it was seen in: first sighting to the end of the last."""

    start_s: float
    end_s: float
    text: str


def merge_sightings(sightings: Sequence[Sighting]) -> list[ScreenTextSpan]:
    """One span per run of consecutive frames that show the same text (all lines of a frame joined in reading
    order); a frame without text ends the run. Spans come out in time order."""
    spans: list[ScreenTextSpan] = []
    current: ScreenTextSpan | None = None
    for sighting in sorted(sightings, key=lambda s: s.time_s):
        text = " ".join(line for line in sighting.lines if line)
        if current is not None and text == current.text:
            current = ScreenTextSpan(current.start_s, sighting.until_s, text)
            continue
        if current is not None:
            spans.append(current)
        current = ScreenTextSpan(sighting.time_s, sighting.until_s, text) if text else None
    if current is not None:
        spans.append(current)
    return spans
