"""Order-aware queries: the event order a query states, and the clip-phrase level made temporal (issue 23, point 5).

"Someone opens the door, then the dog runs out" is split into phrases by `spec.preprocess.split_phrases`, which
drops the connectives between them. `read_order` reads those connectives back from the query text and returns
the phrases in the order the events happen; `aligned_scores` / `aligned_clip_phrase` then align the phrases, in
that order, to a video's clips monotonically (each phrase's clip after the previous phrase's), so a video that
shows B before A loses to one that shows A then B. Without an order word nothing changes: the
clip-phrase level stays HCMI's late interaction (each phrase's best clip anywhere).

Pure functions over numpy arrays: no I/O, no settings.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Event order across one phrase boundary: the left phrase happens first (+1), the right one does (-1), or the
# text does not say (0: "and", "while", "as", "when", "but", or punctuation alone).
FORWARD, BACKWARD, UNSTATED = 1, -1, 0

# Connectives that spec.preprocess.split_phrases drops between two phrases, and the order each states.
_BOUNDARY_CUES = (("followed by", FORWARD), ("then", FORWARD), ("before", FORWARD), ("after", BACKWARD))
# "A, after that B" / "A, before that B": the splitter cuts after the preposition, leaving the pronoun in the next
# phrase; the pronoun points back to the left phrase, so the order is the other way round.
_ANAPHORA = re.compile(r"(?:that|this|which)\b", re.IGNORECASE)
# Words opening the query and relating its first phrase to the next one: "after A, B" (A first), "before A, B"
# (B first), "first A, B" (A first). "first" counts only before a comma, an article or a pronoun ("first, a cat",
# "first the door opens"), not as an adjective ("first day of school and a bus").
_LEADING_CUES = (("at first", FORWARD), ("firstly", FORWARD), ("first", FORWARD), ("after", FORWARD),
                 ("before", BACKWARD))
_AFTER_FIRST = re.compile(r"first(?:\s*[,;:]|\s+(?:a|an|the|some|someone|somebody|i|we|you|he|she|it|they|this|"
                          r"that|these|those|my|our|your|his|her|its|their)\b)")
# Adverbs opening a later phrase and relating it to the previous one: "A; afterwards B", "A, later B" ("next" is
# left out: "a cat, next to a dog" is a place).
_FOLLOWING_CUES = ("afterwards", "afterward", "later", "finally", "subsequently")


@dataclass(frozen=True)
class StatedOrder:
    """The event order a query states.

    `order`: the phrase indices (positions in the encoder's `phrases`) in the order the events happen, a
    permutation of range(len(phrases)); `cues`: the order words read, lower case, in text order ("then", "after",
    "first", "followed by", ...)."""

    order: tuple[int, ...]
    cues: tuple[str, ...]


def _words_at(text: str, cue: str) -> bool:
    """Whether `text` (lower case) starts with the words of `cue`, as whole words."""
    return re.match(rf"{re.escape(cue)}\b", text) is not None


def _locate(text: str, phrases: Sequence[str]) -> list[tuple[int, int]] | None:
    """Each phrase's character span in `text`, left to right; None when one is not found (then no order is read).
    The encoder's phrases are slices of the text it was given, so they are found as they are."""
    spans, position = [], 0
    for phrase in phrases:
        start = text.find(phrase, position) if phrase.strip() else -1
        if start < 0:
            return None
        position = start + len(phrase)
        spans.append((start, position))
    return spans


def _boundary(gap: str, right: str) -> tuple[int, str]:
    """The order across one boundary from the text between two phrases (`gap`) and the right phrase."""
    words = " ".join(re.findall(r"[a-z]+", gap.lower()))
    for cue, direction in _BOUNDARY_CUES:
        if re.search(rf"\b{cue}\b", words):
            if cue in ("after", "before") and _ANAPHORA.match(right.strip()):
                return -direction, f"{cue} {right.split()[0].lower()}"
            return direction, cue
    opening = right.strip().lower()
    for cue in _FOLLOWING_CUES:
        if _words_at(opening, cue):
            return FORWARD, cue
    return UNSTATED, ""


def read_order(text: str, phrases: Sequence[str]) -> StatedOrder | None:
    """The event order `text` states over its `phrases` (the texts the encoder embedded, as split by
    `spec.preprocess.split_phrases`, in text order), or None when it states none or has fewer than 2 phrases.

    Read per boundary between neighbouring phrases: "then", "and then", ", then", "followed by", "before" put the
    left phrase first; "after" the right one ("B after A"), except "after that"/"after this" ("A, after that B");
    "after"/"first"/"at first"/"firstly" opening the query put its first phrase first ("after A, B",
    "first A, then B") and "before" opening it the second ("before B, A"); "afterwards", "later", "finally",
    "subsequently" opening a later phrase put it after the previous one. "and", "while", "as", "when",
    "but" and punctuation state no order.

    A query may state the order of some boundaries and not others ("A and B, then C"): the order is then a stable
    topological sort of the stated constraints, earliest text position first among the phrases free to go next, so
    a boundary that states nothing keeps the text's order wherever no stated constraint moves it (and the alignment
    then keeps those phrases in that order too). Phrases that cannot be found in `text` give None (scored as
    without order). The tail merged into the last phrase past `max_phrases` is one phrase: its inside is not read.
    """
    if len(phrases) < 2:
        return None
    spans = _locate(text, phrases)
    if spans is None:
        return None
    directions, cues = [], []
    lead = text[: spans[1][0]].strip().lower()  # the first phrase and what follows it up to the second
    for cue, direction in _LEADING_CUES:
        if _words_at(lead, cue) and (not cue.endswith("first") or _AFTER_FIRST.match(lead, len(cue) - 5)):
            cues.append(cue)
            leading = direction
            break
    else:
        leading = UNSTATED
    for i in range(len(phrases) - 1):
        direction, cue = _boundary(text[spans[i][1] : spans[i + 1][0]], phrases[i + 1])
        if i == 0 and direction == UNSTATED:
            direction = leading
        if cue:
            cues.append(cue)
        directions.append(direction)
    if not any(directions):
        return None
    return StatedOrder(_stable_topological_order(directions), tuple(cues))


def _stable_topological_order(directions: Sequence[int]) -> tuple[int, ...]:
    """Phrase indices (len(directions) + 1 of them) ordered by the constraints between neighbours, smallest index
    first among those with no earlier event left (Kahn's algorithm with a min-heap). A path has no cycle."""
    count = len(directions) + 1
    after: list[list[int]] = [[] for _ in range(count)]
    waiting = [0] * count
    for i, direction in enumerate(directions):
        first, second = (i, i + 1) if direction == FORWARD else (i + 1, i)
        if direction != UNSTATED:
            after[first].append(second)
            waiting[second] += 1
    ready = [i for i in range(count) if not waiting[i]]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in after[i]:
            waiting[j] -= 1
            if not waiting[j]:
                heapq.heappush(ready, j)
    return tuple(order)


def _align(padded: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best monotonic alignment per video. `padded` [V, C, P]: cosines of each video's clips (time order, -inf past
    its last clip, counts[v] clips) with the phrases in event order. Returns the mean cosine [V] and the clip per
    phrase [V, P]: strictly increasing clips where a video has at least P clips, else non-decreasing.

    Dynamic program: best[j][c] = M[c, j] + max over c' < c (c' <= c) of best[j-1][c'] (a running maximum along the
    clips, shifted by one clip for the strict rule), so O(V*C*P); the path is read back from the last phrase, each
    phrase taking the earliest clip that reaches its maximum before (at or before) the next phrase's clip."""
    videos, clips, phrases = padded.shape
    step = (counts >= phrases).astype(np.int64)  # 1: the next phrase's clip comes strictly later
    strict = step.astype(bool)[:, None]
    layers = [padded[:, :, 0]]
    for j in range(1, phrases):
        running = np.maximum.accumulate(layers[-1], axis=1)
        shifted = np.concatenate([np.full((videos, 1), -np.inf), running[:, :-1]], axis=1)
        layers.append(np.where(strict, shifted, running) + padded[:, :, j])
    path = np.empty((videos, phrases), dtype=np.int64)
    path[:, -1] = layers[-1].argmax(axis=1)
    rows = np.arange(videos)
    columns = np.arange(clips)
    for j in range(phrases - 2, -1, -1):
        allowed = np.where(columns[None, :] <= (path[:, j + 1] - step)[:, None], layers[j], -np.inf)
        path[:, j] = allowed.argmax(axis=1)
    return layers[-1][rows, path[:, -1]] / phrases, path


def aligned_scores(to_phrases: np.ndarray, order: Sequence[int]) -> tuple[float, list[int]]:
    """Clip-phrase score of one video under a stated order, and the clip chosen for each phrase in event order.

    `to_phrases` [C, P]: cosines of the video's clips (in time order) with each phrase (columns in the encoder's
    phrase order); `order`: `StatedOrder.order`. The score is the largest mean cosine over assignments of the
    phrases, taken in event order, to clips c_1 < c_2 < ... < c_P: each event its own clip, in order. A video with
    fewer clips than phrases (segmentation found one clip, or missed a cut) cannot give each its own, and is
    aligned with c_1 <= c_2 <= ... <= c_P instead, phrases sharing clips.

    Strict where it can be, because the encoder's clips are hubs: with the default bridge encoder a phrase is often
    nearer to the other photo's clip than to its own (one of the two is, for 54 % of the `ordered` set's 105 photo
    pairs), one clip then being the best for both. Letting phrases share a clip aligns both to that hub in either
    video, and a video scores as its reverse (median
    difference 0 against the codec's 0.001 noise); giving each phrase its own clip compares cos(A, a) + cos(B, b) with
    cos(B, a) + cos(A, b), where the hub cancels (median difference 0.017, above 0.001 for 98 % of the pairs:
    docs/scripts/order_alignment_whatif.py). Both rules keep the score <= the unordered clip-phrase level (each
    phrase's best clip anywhere), equal to it when the best clips already come in strictly increasing order.
    """
    matrix = np.asarray(to_phrases, dtype=np.float64)
    if matrix.ndim != 2 or not matrix.shape[0] or sorted(order) != list(range(matrix.shape[1])):
        raise ValueError(f"need cosines [C>=1, P] and a permutation of range(P); got {matrix.shape} and {list(order)}")
    score, path = _align(matrix[None, :, list(order)], np.array([matrix.shape[0]]))
    return float(score[0]), path[0].tolist()


def aligned_clip_phrase(
    to_phrases_all: np.ndarray, starts: np.ndarray, counts: np.ndarray, order: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`aligned_scores` for many videos at once, in `gateway.scoring.score_candidates`'s layout.

    `to_phrases_all` [N, P]: every candidate's clips concatenated (each video's run in time order) against each
    phrase; video v's clips are rows starts[v] .. starts[v] + counts[v] - 1 (counts >= 1). Returns the ordered
    clip-phrase score [V] (float64) and the rows of the first and the last phrase's clips [V] (indices into the
    concatenated clips): the moment of an order-aware hit spans from the first one's start to the last one's end.

    Videos are padded to the longest one's clip count (-inf past their end), so the work is V x max(counts) x P.
    """
    matrix = np.asarray(to_phrases_all, dtype=np.float64)
    starts, counts = np.asarray(starts, dtype=np.int64), np.asarray(counts, dtype=np.int64)
    if not len(counts):
        return np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if sorted(order) != list(range(matrix.shape[1])) or (counts < 1).any():
        raise ValueError(f"need a permutation of range({matrix.shape[1]}) and every video with a clip; "
                         f"got {list(order)} and counts {counts.tolist()}")
    offsets = np.arange(int(counts.max()))
    inside = offsets[None, :] < counts[:, None]
    rows = np.where(inside, starts[:, None] + offsets[None, :], 0)
    padded = np.where(inside[:, :, None], matrix[rows][:, :, list(order)], -np.inf)
    scores, path = _align(padded, counts)
    return scores, starts + path[:, 0], starts + path[:, -1]
