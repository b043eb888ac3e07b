"""Request validation and search planning, before anything reaches Triton, Milvus or Redis.

Every check here raises `InvalidArgument` with a message for the client, so bad input costs no
round trip and never reaches a backend.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from urllib.parse import urlsplit

import numpy as np

from vidstrata.gateway.errors import InvalidArgument
from vidstrata.gateway.fusion import IMAGE_QUERY_RANGES, FusionConfig, FusionMethod
from vidstrata.gateway.image_query import decode_image
from vidstrata.gateway.pages import PageCursor, decode_token, request_digest
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.index.filters import CompiledFilter, FilterError, RowScope, compile_filters
from vidstrata.index.schema import DEFAULT_TENANT
from vidstrata.spec.validation import check_metadata, check_video_id
from vidstrata.inference.encoder import TextVectors

MAX_URI_LENGTH = 4096


DEFAULT_MOMENTS_PER_VIDEO = 3
MAX_MOMENTS_PER_VIDEO = 20
_PROCESS_PAGE_SECRET = os.urandom(32)  # signs page tokens when the deployment set no page_token_secret


class GroupBy(StrEnum):
    """What a Search ranks: videos, each with its moments, or the moments themselves across videos."""

    VIDEO = "VIDEO"
    MOMENT = "MOMENT"


class Confidence(IntEnum):
    """How sure a hit or moment is, from its moment score (settings.confidence_thresholds); 0: none asked for."""

    UNSPECIFIED = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3


@dataclass(frozen=True)
class SearchQuery:
    """A validated Search: what to look for, how many hits, which videos, and how to fuse.

    Exactly one of text, image and like_video_id says what to look for. The ranking is cut to the page
    [offset, offset + size) of the candidate window (`window`: the videos searched, the same for every page).
    """

    text: str
    top_k: int
    filter: CompiledFilter  # parsed once here (with the scope), rendered for both collections
    fusion: FusionConfig  # its weights are validated once, when it is built; with the visual ranges of this kind of query
    image: np.ndarray | None = None  # search by image: uint8 RGB [H,W,3], decoded and checked (text is then "")
    moments_per_video: int = DEFAULT_MOMENTS_PER_VIDEO
    group_by: GroupBy = GroupBy.VIDEO
    scope: tuple[str, ...] = ()  # video_ids searched; empty: all
    like_video_id: str = ""  # search by a stored video
    min_confidence: Confidence = Confidence.UNSPECIFIED
    paged: bool = False  # page_size was set: the response carries next_page_token
    offset: int = 0
    window: int = 0  # candidate videos every page of this request searches; 0: candidate_limit's default
    digest: str = ""  # what a page token of this request is bound to
    tenant: str = DEFAULT_TENANT  # whose videos are searched (pinned on every read: index.filters.RowScope)

    @property
    def visual_only(self) -> bool:
        """An image or a stored video is matched against the visual levels only."""
        return self.image is not None or bool(self.like_video_id)


def page_secret(settings: GatewaySettings) -> bytes:
    """The key that signs page tokens: the deployment's, else this process's own random one."""
    return settings.page_token_secret.encode() if settings.page_token_secret else _PROCESS_PAGE_SECRET


def _check_ids(ids: Sequence[str], limit: int) -> tuple[str, ...]:
    if len(ids) > limit:
        raise InvalidArgument(f"video_ids holds {len(ids)} ids; the limit is {limit}")
    for video_id in ids:
        check_video_id_arg(video_id)
    return tuple(dict.fromkeys(ids))


def parse_search(
    settings: GatewaySettings,
    text: str,
    top_k: int | None = None,
    filter_expr: str = "",
    method: FusionMethod | None = None,
    weights: Mapping[str, float] | None = None,
    image: bytes = b"",
    *,
    moments_per_video: int | None = None,
    group_by: GroupBy = GroupBy.VIDEO,
    page_size: int | None = None,
    page_token: str = "",
    video_ids: Sequence[str] = (),
    like_video_id: str = "",
    min_confidence: Confidence = Confidence.UNSPECIFIED,
    tenant: str = DEFAULT_TENANT,
) -> SearchQuery:
    """Check a Search's fields against the limits in settings and fill in the defaults.

    The text is normalised first (`normalize_query`), so a query of only invisible characters is empty. Give one of
    text, `image` (JPEG or PNG bytes) and `like_video_id`. With `page_size` the ranking is paged: `page_token` (from
    the previous page's response, bound to everything else given here) says where this page starts. `tenant`
    (checked by the caller, gateway.tenants) is pinned beside the filter: no filter reaches another tenant's rows.
    """
    _check_query_size(text, settings.max_query_bytes)  # before normalising: bounds its work
    text = normalize_query(text)
    _check_query_size(text, settings.max_query_bytes)  # after: NFKC may expand a character up to 18 of them
    decoded = None
    if sum(map(bool, (text, image, like_video_id))) > 1:
        raise InvalidArgument("give one of query, image and like_video_id")
    if image:
        decoded = decode_image(image, settings.max_image_bytes, settings.max_image_pixels)
    elif like_video_id:
        check_video_id_arg(like_video_id)
    elif not text:
        raise InvalidArgument("query is empty (nothing left after removing control and invisible characters)")
    if top_k is None:
        top_k = settings.default_top_k
    if not 1 <= top_k <= settings.max_top_k:
        raise InvalidArgument(f"top_k must be in [1, {settings.max_top_k}], got {top_k}")
    if page_size is not None and not 1 <= page_size <= settings.max_top_k:
        raise InvalidArgument(f"page_size must be in [1, {settings.max_top_k}], got {page_size}")
    if page_token and page_size is None:
        raise InvalidArgument("page_token needs page_size")
    if moments_per_video is None:
        moments_per_video = DEFAULT_MOMENTS_PER_VIDEO
    if not 1 <= moments_per_video <= MAX_MOMENTS_PER_VIDEO:
        raise InvalidArgument(f"moments_per_video must be in [1, {MAX_MOMENTS_PER_VIDEO}], got {moments_per_video}")
    scope = _check_ids(video_ids, settings.max_scope_videos)
    try:
        compiled = compile_filters(filter_expr, only=scope, leave_out=(like_video_id,) if like_video_id else (),
                                   scope=RowScope(tenant=tenant))
    except FilterError as exc:
        raise InvalidArgument(str(exc)) from exc
    try:
        fusion = FusionConfig(
            method=method or settings.fusion_method,
            weights=weights or settings.fusion_weights,
            normalization=settings.normalization,
            rrf_k=settings.rrf_k,
            text_ranges=settings.text_level_ranges,
            # calibrated for sentences; an image or a video is fused on its raw cosines (fusion.IMAGE_QUERY_RANGES)
            visual_ranges=IMAGE_QUERY_RANGES if decoded is not None or like_video_id else settings.visual_level_ranges,
        )
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    size = page_size if page_size is not None else top_k
    digest = request_digest([
        text, hashlib.sha256(image).hexdigest() if image else "", like_video_id, filter_expr, list(scope),
        fusion.method.value, fusion.weights, group_by.value, moments_per_video, int(min_confidence), tenant,
    ])
    # The candidate window: the videos every page searches. Ranked videos are at most the window, so it holds at least
    # a page of them; ranked moments come several per video, so their window is the deployment's alone, the same for a
    # page and for one request of any top_k (concatenated pages equal that request's ranking).
    cursor = PageCursor(0, settings.candidates if group_by == GroupBy.MOMENT else max(settings.candidates, size))
    if page_token:
        cursor = decode_token(page_secret(settings), page_token, digest)
    return SearchQuery(
        text=text, top_k=size, filter=compiled, fusion=fusion, image=decoded, moments_per_video=moments_per_video,
        group_by=group_by, scope=scope, like_video_id=like_video_id, min_confidence=min_confidence,
        paged=page_size is not None, offset=cursor.offset, window=cursor.window, digest=digest, tenant=tenant,
    )


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
    """How many videos each ANN list asks for, and how many the union keeps: never fewer than top_k; for a paged
    request the window its first page fixed, so every page ranks the same candidates."""
    return query.window or max(settings.candidates, query.top_k)  # window is set by parse_search


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
