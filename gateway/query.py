"""Request validation and search planning, before anything reaches Triton, Milvus or Redis.

Every check here raises `InvalidArgument` with a message for the client, so bad input costs no
round trip and never reaches a backend.
"""

from __future__ import annotations

import unicodedata
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from vidstrata.gateway.errors import InvalidArgument
from vidstrata.gateway.fusion import FusionConfig, FusionMethod
from vidstrata.gateway.image_query import decode_image
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.index.filters import CompiledFilter, FilterError, compile_filters
from vidstrata.spec.validation import check_metadata, check_video_id
from vidstrata.inference.encoder import TextVectors

MAX_URI_LENGTH = 4096


@dataclass(frozen=True)
class SearchQuery:
    """A validated Search: what to look for, how many hits, which videos, and how to fuse."""

    text: str
    top_k: int
    filter: CompiledFilter  # parsed once here, rendered for both collections
    fusion: FusionConfig  # its weights are validated once, when it is built
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
        compiled = compile_filters(filter_expr)
    except FilterError as exc:
        raise InvalidArgument(str(exc)) from exc
    try:
        fusion = FusionConfig(
            method=method or settings.fusion_method,
            weights=weights or settings.fusion_weights,
            normalization=settings.normalization,
            rrf_k=settings.rrf_k,
            text_ranges=settings.text_level_ranges,
        )
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    return SearchQuery(text=text, top_k=top_k, filter=compiled, fusion=fusion, image=decoded)


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


def query_vectors(text: str, vectors: TextVectors) -> QueryVectors:
    """The used phrase slots of a query encoded alone (batch of 1), labelled with the phrase texts the encoder
    returned for them: the query is split once, by the tokenizer that made the vectors.

    A slot is unused when its phrase lost all its tokens to truncation, so such trailing phrases are dropped.
    A query whose every slot is empty is matched by its sentence alone, so clip-phrase never averages over nothing.
    """
    used = np.flatnonzero(vectors.phrase_mask[0])
    sentence = vectors.sentence[0]
    if not len(used):
        return QueryVectors(sentence, [text.strip()], sentence[None, :])
    return QueryVectors(sentence, [vectors.phrase_texts[0][i] for i in used], vectors.phrases[0, used])


class QueryVectorCache:
    """A bounded LRU of encoded queries, keyed by (model version, exact text): a repeated query skips Triton.

    The key holds the served text graph's digest (EncoderInfo.model_version), so a re-exported model never
    answers with vectors of the old one. `capacity` 0 turns it off. Thread-safe; counts hits and lookups.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.hits = 0
        self.lookups = 0
        self._entries: OrderedDict[tuple[str, str], QueryVectors] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_version: str, text: str) -> QueryVectors | None:
        if not self.capacity:
            return None
        with self._lock:
            self.lookups += 1
            found = self._entries.get((model_version, text))
            if found is not None:
                self.hits += 1
                self._entries.move_to_end((model_version, text))
            return found

    def put(self, model_version: str, text: str, vectors: QueryVectors) -> None:
        if not self.capacity:
            return
        with self._lock:
            self._entries[(model_version, text)] = vectors
            self._entries.move_to_end((model_version, text))
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def hit_ratio(self) -> float:
        """Hits / lookups since start (0 before the first lookup)."""
        return self.hits / self.lookups if self.lookups else 0.0


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
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError as exc:  # an unclosed IPv6 bracket, a bracketed host that is no address
        raise InvalidArgument(f"uri is not a valid URL: {exc}") from None
    is_url = parts.scheme in ("http", "https") and bool(host)
    is_file_uri = parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/")
    if not is_url and not is_file_uri and not (parts.scheme == "" and uri.startswith("/")):
        raise InvalidArgument(f"uri must be an absolute local path, a file:// URI or an http(s) URL, got {uri!r}")
    try:
        return check_metadata(dict(metadata))
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
