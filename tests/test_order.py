"""Order-aware queries (gateway.order): the order a query states, and the monotonic clip-phrase alignment."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vidstrata.gateway.order import aligned_clip_phrase, aligned_scores, read_order
from vidstrata.spec.preprocess import phrase_texts

MAX_PHRASES = 8  # the default checkpoint's phrase slots

# Phrases the splitter keeps whole and that open with no order word: "the dog runs out", "a red door".
WORDS = ("a", "the", "red", "dog", "cat", "door", "opens", "runs", "out", "clock", "ticks", "rocket", "lifts")
phrase = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join).filter(
    lambda p: p.split()[0] not in ("a", "the") or len(p.split()) > 1)

# The phrasings of issue 23 and a few more; in each, event A happens before event B, wherever the text puts them.
PHRASINGS = (
    "{a} then {b}",
    "{a} and then {b}",
    "{a}, then {b}",
    "after {a}, {b}",
    "After {a}, {b}",
    "{b} after {a}",
    "{b}, after {a}",
    "{a} before {b}",
    "before {b}, {a}",
    "{a} followed by {b}",
    "{a}, followed by {b}",
    "first {a}, then {b}",
    "First, {a}, then {b}",
    "at first {a}, then {b}",
    "{a}. Then {b}",
    "{a}; afterwards {b}",
    "{a}, after that {b}",
)
UNORDERED = ("{a} and {b}", "{a} while {b}", "{a} as {b}", "{a} when {b}", "{a}, {b}", "{a} but {b}", "{a}")

# Boundaries of a chain: each connective and the order it states between its neighbours (+1 left first).
CONNECTIVES = {", then ": 1, " then ": 1, " and then ": 1, " followed by ": 1, " before ": 1, " after ": -1,
               " and ": 0, " while ": 0, " when ": 0, ", ": 0}


def _order(text):
    return read_order(text, phrase_texts(text, MAX_PHRASES))


@pytest.mark.parametrize("template", PHRASINGS)
def test_each_phrasing_states_its_order(template):
    text = template.format(a="someone opens the door", b="the dog runs out")
    phrases = phrase_texts(text, MAX_PHRASES)
    found = read_order(text, phrases)
    assert found is not None and found.cues, text
    events = [phrases[i] for i in found.order]
    door = next(k for k, p in enumerate(events) if "door" in p)
    dog = next(k for k, p in enumerate(events) if "dog" in p)
    assert door < dog, (text, phrases, found)


def test_cue_words_are_reported():
    assert _order("first a cat, then a dog").cues == ("first", "then")
    assert _order("a dog after a cat").cues == ("after",)
    assert _order("a cat followed by a dog").cues == ("followed by",)
    assert _order("a cat, after that a dog").cues == ("after that",)


@settings(max_examples=200, deadline=None)
@given(a=phrase, b=phrase, template=st.sampled_from(PHRASINGS))
def test_two_phrase_orders_follow_the_phrasing(a, b, template):
    text = template.format(a=a, b=b)
    phrases = phrase_texts(text, MAX_PHRASES)
    found = read_order(text, phrases)
    assert found is not None and sorted(found.order) == list(range(len(phrases)))
    events = [phrases[i] for i in found.order]
    # "first A" and "after A" stay one phrase with their cue (the encoder embedded them so); "First, A" is a phrase
    # "First" before A.
    assert events[-2].endswith(a) and events[-1].endswith(b), (text, phrases, found)


@settings(max_examples=200, deadline=None)
@given(a=phrase, b=phrase, template=st.sampled_from(UNORDERED))
def test_no_order_word_reads_no_order(a, b, template):
    assert _order(template.format(a=a, b=b)) is None


def test_fewer_than_two_phrases_or_unknown_phrases_read_no_order():
    assert read_order("then a cat", ["then a cat"]) is None
    assert read_order("a cat then a dog", ["a cat"]) is None
    assert read_order("a cat then a dog", ["a cat", "a horse"]) is None, "not the text's phrases: no order"
    assert _order("first day of school and a bus") is None, "'first' as an adjective is no order word"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(CONNECTIVES)), min_size=1, max_size=4), st.data())
def test_chains_are_the_earliest_first_order_that_keeps_every_stated_constraint(connectives, data):
    """Three or more phrases, each boundary ordered or not: the order read is the lexicographically smallest
    permutation that keeps every stated constraint (a stable sort by the constraints), by brute force."""
    names = [f"the {w} event" for w in ("red", "green", "blue", "white", "black")][: len(connectives) + 1]
    text = names[0] + "".join(c + n for c, n in zip(connectives, names[1:]))
    phrases = phrase_texts(text, MAX_PHRASES)
    assert phrases == names
    found = read_order(text, phrases)
    directions = [CONNECTIVES[c] for c in connectives]
    if not any(directions):
        assert found is None
        return
    def keeps(perm):
        position = {p: k for k, p in enumerate(perm)}
        return all(d == 0 or (position[i] < position[i + 1]) == (d > 0) for i, d in enumerate(directions))
    expected = min(p for p in itertools.permutations(range(len(names))) if keeps(p))
    assert found.order == expected, (text, found)


def test_chains_of_three():
    assert _order("a cat, then a dog, then a clock").order == (0, 1, 2)
    assert _order("a clock after a dog after a cat").order == (2, 1, 0)
    assert _order("a cat and a dog, then a clock").order == (0, 1, 2)
    assert _order("a cat and a dog after a clock").order == (0, 2, 1), "unordered 'and' keeps the text's order"


# -- the alignment -----------------------------------------------------------------------------------------


def _brute_force(matrix, order):
    """Largest mean cosine over every strictly increasing assignment of the phrases (in event order) to clips, or
    every non-decreasing one where there are fewer clips than phrases."""
    columns = matrix[:, list(order)]
    paths = (itertools.combinations(range(len(matrix)), len(order)) if len(matrix) >= len(order)
             else itertools.combinations_with_replacement(range(len(matrix)), len(order)))
    best = max(paths, key=lambda path: columns[list(path), range(len(order))].sum())
    return columns[list(best), range(len(order))].mean(), list(best)


cosines = st.integers(1, 6).flatmap(lambda c: st.integers(1, 4).flatmap(lambda p: arrays(
    np.float64, (c, p), elements=st.floats(-1, 1, allow_nan=False, width=32))))


@settings(max_examples=300, deadline=None)
@given(cosines, st.randoms(use_true_random=False))
def test_alignment_is_the_best_monotonic_assignment(matrix, random):
    order = list(range(matrix.shape[1]))
    random.shuffle(order)
    score, path = aligned_scores(matrix, order)
    expected, _ = _brute_force(matrix, order)
    assert score == pytest.approx(expected, abs=1e-9)
    assert path == sorted(path) and len(path) == len(order) and 0 <= path[0] and path[-1] < len(matrix)
    assert len(set(path)) == len(order) or len(matrix) < len(order), "each phrase its own clip where there are enough"
    assert matrix[path, order].mean() == pytest.approx(score, abs=1e-9), "the path reaches the score"
    assert score <= matrix.max(axis=0).mean() + 1e-12, "ordered <= unordered clip-phrase"


@settings(max_examples=200, deadline=None)
@given(cosines)
def test_equal_to_the_unordered_level_when_the_best_clips_come_in_order(matrix):
    best_clip = matrix.argmax(axis=0)
    assume(len(set(best_clip)) == len(best_clip) or len(matrix) < matrix.shape[1])  # distinct, or too few to be
    order = sorted(range(matrix.shape[1]), key=lambda j: best_clip[j])  # the events in the order the video shows them
    score, path = aligned_scores(matrix, order)
    assert score == pytest.approx(matrix.max(axis=0).mean(), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(cosines, min_size=1, max_size=5).filter(lambda ms: len({m.shape[1] for m in ms}) == 1),
       st.randoms(use_true_random=False))
def test_batched_alignment_matches_one_video_at_a_time(matrices, random):
    order = list(range(matrices[0].shape[1]))
    random.shuffle(order)
    counts = np.array([len(m) for m in matrices])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    scores, first, last = aligned_clip_phrase(np.vstack(matrices).astype(np.float32), starts, counts, order)
    for v, matrix in enumerate(matrices):
        score, path = aligned_scores(matrix.astype(np.float32), order)
        assert scores[v] == score and first[v] == starts[v] + path[0] and last[v] == starts[v] + path[-1]
        assert starts[v] <= first[v] <= last[v] < starts[v] + counts[v]
    unordered = np.maximum.reduceat(np.vstack(matrices).astype(np.float32), starts, axis=0).mean(axis=1)
    assert (scores <= unordered + 1e-6).all()


def test_a_video_showing_the_reverse_scores_lower():
    """Phrases "the door opens" (0) and "the dog runs out" (1), stated in that order. Clip cosines as the bridge
    encoder gives them: every clip is near every phrase (0.30-0.33), its own phrase a little nearer."""
    door_clip, dog_clip, street_clip = [0.33, 0.30], [0.30, 0.32], [0.29, 0.29]
    right = np.array([street_clip, door_clip, dog_clip])
    reverse = np.array([street_clip, dog_clip, door_clip])
    order = _order("the door opens, then the dog runs out").order
    assert order == (0, 1)
    right_score, right_path = aligned_scores(right, order)
    reverse_score, _ = aligned_scores(reverse, order)
    assert right_path == [1, 2] and right_score == pytest.approx(0.325)
    assert reverse_score < right_score
    assert right.max(axis=0).mean() == reverse.max(axis=0).mean(), "without the order both score the same"
    counts = np.array([3, 3])
    scores, first, last = aligned_clip_phrase(np.vstack([right, reverse]), np.array([0, 3]), counts, order)
    assert scores[0] > scores[1] and (first[0], last[0]) == (1, 2), "the moment spans the door's clip to the dog's"


def test_a_clip_nearest_to_both_phrases_cannot_take_both():
    """The hub case of the default encoder: the door's clip is nearer to both phrases than the dog's clip is. Were the
    phrases allowed to share it, both videos would align both phrases there and score alike."""
    door_clip, dog_clip = [0.34, 0.33], [0.30, 0.32]
    right, reverse = np.array([door_clip, dog_clip]), np.array([dog_clip, door_clip])
    right_score, right_path = aligned_scores(right, (0, 1))
    reverse_score, reverse_path = aligned_scores(reverse, (0, 1))
    assert right_path == reverse_path == [0, 1]
    assert right_score == pytest.approx((0.34 + 0.32) / 2) and reverse_score == pytest.approx((0.30 + 0.33) / 2)


def test_one_clip_videos_and_bad_input():
    score, path = aligned_scores(np.array([[0.2, 0.4]]), (1, 0))
    assert score == pytest.approx(0.3) and path == [0, 0], "fewer clips than phrases: they share"
    with pytest.raises(ValueError):
        aligned_scores(np.zeros((2, 2)), (0, 0))
    with pytest.raises(ValueError):
        aligned_clip_phrase(np.zeros((2, 2)), np.array([0, 2]), np.array([2, 0]), (0, 1))
    scores, first, last = aligned_clip_phrase(np.zeros((0, 2)), np.zeros(0), np.zeros(0), (0, 1))
    assert scores.shape == first.shape == last.shape == (0,)
