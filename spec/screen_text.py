"""What the worker does with text read off the screen, before it is embedded: keep the lines worth indexing,
normalise them, merge repeats.

Pure functions, shared by the worker and the evaluation: the same filter and normalisation apply wherever a
screen text is compared.
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
class ReadLine:
    """One line of text as OCR read it in one frame.

    `confidence` is the recogniser's mean probability of the line's characters (0..1); `box` is (x0, y0, x1, y1)
    as fractions of the frame's width and height (0..1), so a rule about it does not depend on the frame's size.
    """

    text: str
    confidence: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class LineFilter:
    """Which read lines become screen text: the evidence that a line is text shown *to the viewer*.

    - `min_confidence`: lines the recogniser is less sure of are dropped (misreads of texture, half-hidden words).
    - `edge_margin`: a line whose box comes within this fraction of the frame's width of its left or right side
      is dropped. Text laid out for the viewer (captions, titles, slides, lower thirds) keeps a margin, as the
      title-safe area asks; text that runs off the picture is something filmed (a printed page, a sign, a
      screen), cut mid-word by the frame, and reads as unrelated words: in the `scenes` set, the photo of a page
      about segmenting coins matched "a collection of old coins" at cosine 0.43-0.49 through such lines.
      0 keeps them.
    """

    min_confidence: float
    edge_margin: float

    def keeps(self, line: ReadLine) -> bool:
        x0, _, x1, _ = line.box
        return (line.confidence >= self.min_confidence and x0 >= self.edge_margin
                and x1 <= 1.0 - self.edge_margin)

    def lines(self, found: Sequence[ReadLine]) -> tuple[str, ...]:
        """The normalised texts of the lines kept, in reading order (empty texts left out)."""
        return tuple(n for n in (normalize_text(line.text) for line in found if self.keeps(line)) if n)


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
