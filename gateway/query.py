"""Request validation and search planning, before anything reaches Triton, Milvus or Redis.

Every check here raises `InvalidArgument` with a message for the client, so bad input costs no
round trip and never reaches a backend.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from gateway.errors import InvalidArgument
from gateway.fusion import FusionConfig, FusionMethod, check_weights
from gateway.image_query import decode_image
from gateway.settings import GatewaySettings
from index.filters import FilterError, compile_filter
from spec.validation import check_metadata, check_video_id
from inference.encoder import TextVectors
from spec.preprocess import phrase_texts

MAX_URI_LENGTH = 4096


@dataclass(frozen=True)
class SearchQuery:
    """A validated Search: what to look for, how many hits, which videos, and how to fuse."""

    text: str
    top_k: int
    filter: str  # in the index.filters language; "" means no filter
    fusion: FusionConfig
    image: np.ndarray | None = None  # search by image: uint8 RGB [H,W,3], decoded and checked (text is then "")


def parse_search(
    settings: GatewaySettings,
    text: str,
    top_k: int | None = None,
    filter_expr: str = "",
    method: FusionMethod | None = None,
    weights: Mapping[str, float] | None = None,
    image: bytes = b"",
) -> SearchQuery:
    """Check a Search's fields against the limits in settings and fill in the defaults.

    The text is normalised first (`normalize_query`), so a query of only invisible characters is empty. With
    `image` (JPEG or PNG bytes) the search is by image: the text must then be empty.
    """
    _check_query_size(text, settings.max_query_bytes)  # before normalising: bounds its work
    text = normalize_query(text)
    _check_query_size(text, settings.max_query_bytes)  # after: NFKC may expand a character up to 18 of them
    decoded = None
    if image:
        if text:
            raise InvalidArgument("give a query or an image, not both")
        decoded = decode_image(image, settings.max_image_bytes, settings.max_image_pixels)
    elif not text:
        raise InvalidArgument("query is empty (nothing left after removing control and invisible characters)")
    if top_k is None:
        top_k = settings.default_top_k
    if not 1 <= top_k <= settings.max_top_k:
        raise InvalidArgument(f"top_k must be in [1, {settings.max_top_k}], got {top_k}")
    try:
        compile_filter(filter_expr)
    except FilterError as exc:
        raise InvalidArgument(str(exc)) from exc
    try:
        fusion_weights = check_weights(weights) if weights else settings.fusion_weights
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    fusion = FusionConfig(
        method=method or settings.fusion_method,
        weights=fusion_weights,
        normalization=settings.normalization,
        rrf_k=settings.rrf_k,
        text_range=settings.text_level_range,
    )
    return SearchQuery(text=text, top_k=top_k, filter=filter_expr, fusion=fusion, image=decoded)


# Unicode categories removed from queries: format (zero-width space, byte-order mark, bidi marks),
# surrogates, private use and unassigned code points. Controls (Cc, e.g. NUL, tab) become spaces.
_DROPPED_CATEGORIES = {"Cf", "Cs", "Co", "Cn"}


def _check_query_size(text: str, limit: int) -> None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise InvalidArgument(f"query is {size} bytes; the limit is {limit}")


def normalize_query(text: str) -> str:
    """The query as searched: Unicode NFKC (full-width and compatibility forms folded), controls turned into
    spaces, format and other invisible characters dropped, whitespace runs collapsed, ends stripped."""
    folded = unicodedata.normalize("NFKC", text)
    kept = (" " if unicodedata.category(ch) == "Cc" else ch for ch in folded
            if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    return " ".join("".join(kept).split())


def candidate_limit(query: SearchQuery, settings: GatewaySettings) -> int:
    """How many videos each ANN list asks for, and how many the union keeps: never fewer than top_k."""
    return max(settings.candidates, query.top_k)


@dataclass(frozen=True)
class QueryVectors:
    """One query as the searches use it: the sentence vector and one vector per parsed phrase."""

    sentence: np.ndarray  # (D,)
    phrases: list[str]
    phrase_vectors: np.ndarray  # (P, D), P >= 1, row i belongs to phrases[i]

    @property
    def clip_queries(self) -> np.ndarray:
        """Rows searched against clips in one ANN call: the sentence first, then each phrase."""
        return np.vstack([self.sentence[None, :], self.phrase_vectors])


def query_vectors(text: str, vectors: TextVectors, max_phrases: int) -> QueryVectors:
    """Pair the encoder's phrase slots with the phrase texts, for a query encoded alone (batch of 1).

    Slot i holds phrase i of `phrase_texts`; a slot is unused when its phrase lost all its tokens to
    truncation, so such trailing phrases are dropped. A query whose every slot is empty is matched by its
    sentence alone, so clip-phrase never averages over nothing.
    """
    texts = phrase_texts(text, max_phrases)
    used = [i for i in np.flatnonzero(vectors.phrase_mask[0]) if i < len(texts)]
    sentence = vectors.sentence[0]
    if not used:
        return QueryVectors(sentence, [text.strip()], sentence[None, :])
    return QueryVectors(sentence, [texts[i] for i in used], vectors.phrases[0, used])


def check_video_id_arg(video_id: str) -> str:
    """The id, or InvalidArgument saying which ids are allowed."""
    try:
        return check_video_id(video_id)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


def check_submission(video_id: str, uri: str, metadata: Mapping[str, str]) -> dict[str, str]:
    """Validate a SubmitVideo (id, uri, metadata); returns the metadata as a plain dict.

    A uri is an absolute path as the workers see it (plain, or a file:// URI), or an http(s) URL: a relative
    path would depend on the worker's working directory, and other schemes are not fetched.
    """
    check_video_id_arg(video_id)
    if not uri:
        raise InvalidArgument("uri is empty")
    if len(uri) > MAX_URI_LENGTH or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in uri):
        raise InvalidArgument(f"uri must be at most {MAX_URI_LENGTH} characters without control characters")
    parts = urlsplit(uri)
    is_url = parts.scheme in ("http", "https") and bool(parts.hostname)
    is_file_uri = parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/")
    if not is_url and not is_file_uri and not (parts.scheme == "" and uri.startswith("/")):
        raise InvalidArgument(f"uri must be an absolute local path, a file:// URI or an http(s) URL, got {uri!r}")
    try:
        return check_metadata(dict(metadata))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
