"""Text and frame preprocessing, shared by Triton's tokenizer model, the in-process encoder and training.

Torch-free on purpose: it runs inside Triton's python backend and in the workers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Clause boundaries for phrase-level matching: punctuation and the connectives that chain events.
_CONNECTIVE = r"(?:and then|and|then|while|after|before|followed by|as|but|when)"
_PHRASE_BOUNDARY = re.compile(
    rf"(?:\s*[,;:.!?]+\s*|\s+){_CONNECTIVE}\s+|\s*[,;:.!?]+\s*",
    re.IGNORECASE,
)


class TextTooLong(ValueError):
    """The query exceeds the byte limit from the checkpoint manifest."""


class EmptyText(ValueError):
    """The query has no words."""


def split_phrases(text: str, max_phrases: int) -> list[tuple[int, int]]:
    """Character spans of the query's phrases (clauses split on connectives and punctuation).

    At most `max_phrases`: the tail is merged into the last span. A query with one clause yields one
    span covering it, so every query has at least one phrase.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _PHRASE_BOUNDARY.finditer(text):
        if match.start() > start and text[start : match.start()].strip():
            spans.append((start, match.start()))
        start = match.end()
    if start < len(text) and text[start:].strip():
        spans.append((start, len(text)))
    if not spans:
        return []
    if len(spans) > max_phrases:
        spans = spans[: max_phrases - 1] + [(spans[max_phrases - 1][0], spans[-1][1])]
    return spans


def phrase_texts(text: str, max_phrases: int) -> list[str]:
    """The phrases as strings, for responses that show how a query was parsed."""
    return [text[a:b].strip() for a, b in split_phrases(text, max_phrases)]


@dataclass(frozen=True)
class TokenizedText:
    """A token batch; `phrase_ids` maps each token to its phrase (-1: special or padding).

    L is `max_tokens` for a fixed-length tokenizer, else the longest text of the batch (padding tokens are
    masked out, so both give the same vectors). `phrases[b][i]` is the text of phrase slot i of text b
    ("" for an unused slot): the phrases the vectors were computed from, returned so nobody splits again.
    """

    input_ids: np.ndarray  # [B, L] int64
    attention_mask: np.ndarray  # [B, L] int64
    phrase_ids: np.ndarray  # [B, L] int64
    phrases: list[list[str]]  # B lists of max_phrases strings


class TextTokenizer:
    """Tokenizes (truncating at `max_tokens`) and assigns every token to its phrase.

    `fixed_length=True` pads every batch to exactly `max_tokens` (TensorRT plans and training want one
    shape); `False` pads only to the batch's longest text: a short query then costs its real tokens, not 64.
    `prefix` goes before every text, as a model trained with one expects (multilingual-e5's "query: "); it is
    tokenized with the text but belongs to no phrase, and phrases are split on the text alone.
    """

    def __init__(self, tokenizer_json: Path, max_tokens: int, max_phrases: int, max_text_bytes: int,
                 fixed_length: bool = True, prefix: str = "") -> None:
        from tokenizers import Tokenizer

        self.max_tokens = max_tokens
        self.max_phrases = max_phrases
        self.max_text_bytes = max_text_bytes
        self.fixed_length = fixed_length
        self.prefix = prefix
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.no_padding()
        self._tok.enable_truncation(max_tokens)
        self._pad_id = self._tok.token_to_id("[PAD]") or 0

    def validate(self, text: str) -> None:
        """Raise a clear error for input the encoder must not see."""
        size = len(text.encode("utf-8"))
        if size > self.max_text_bytes:
            raise TextTooLong(f"text is {size} bytes; the limit is {self.max_text_bytes}")
        if not text.strip():
            raise EmptyText("text is empty")

    def __call__(self, texts: list[str]) -> TokenizedText:
        for text in texts:
            self.validate(text)
        batch = len(texts)
        encodings = self._tok.encode_batch([self.prefix + text for text in texts])
        shift = len(self.prefix)
        length = self.max_tokens if self.fixed_length else max(len(enc.ids) for enc in encodings)
        ids = np.full((batch, length), self._pad_id, dtype=np.int64)
        mask = np.zeros((batch, length), dtype=np.int64)
        phrase_ids = np.full((batch, length), -1, dtype=np.int64)
        phrases = [[""] * self.max_phrases for _ in texts]
        for row, (text, enc) in enumerate(zip(texts, encodings, strict=True)):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = enc.attention_mask
            spans = split_phrases(text, self.max_phrases)
            prefixed = self.prefix + text
            for col, ((start, end), special) in enumerate(zip(enc.offsets, enc.special_tokens_mask, strict=True)):
                while start < end and prefixed[start].isspace():  # a SentencePiece token holds the space before its word
                    start += 1
                if special or start < shift:
                    continue
                start, end = start - shift, end - shift
                for phrase, (a, b) in enumerate(spans):
                    if a <= start < b or (start == end == b):
                        phrase_ids[row, col] = phrase
                        break
            for slot in np.unique(phrase_ids[row][phrase_ids[row] >= 0]):  # slots that kept a token
                a, b = spans[slot]
                phrases[row][slot] = text[a:b].strip()
        return TokenizedText(ids, mask, phrase_ids, phrases)


def center_crop_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to `size` and crop the centre: the frame encoder's input (uint8 HWC)."""
    from PIL import Image

    img = Image.fromarray(rgb)
    scale = size / min(img.width, img.height)
    width, height = max(size, round(img.width * scale)), max(size, round(img.height * scale))
    img = img.resize((width, height), Image.BILINEAR)
    left, top = (width - size) // 2, (height - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)).convert("RGB"), dtype=np.uint8)
