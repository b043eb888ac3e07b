"""Page tokens: where the next page of a ranking starts, signed so that a client can neither forge nor reuse one.

A token carries the kind of listing it pages (a Search ranking, the ListVideos listing), where the next page starts:
for Search the offset of the next page and the candidate window the first page searched (so every page ranks the
same candidates: concatenated pages equal one request whose top_k is their total), an expiry, and a digest of the
request it continues (query, filter, fusion, scope, grouping). It is `base64url(payload).base64url(HMAC-SHA256)`
under the gateway's page-token secret: a changed byte, another request's token, another deployment's or an expired
one is InvalidArgument. The payload is not secret (offsets and a digest), only authenticated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

from vidstrata.gateway.errors import InvalidArgument

TOKEN_VERSION = 2  # 2: [version, kind, digest, cursor, expires]
MAX_TOKEN_BYTES = 512
INVALID_TOKEN = InvalidArgument("page_token is not valid for this request: send the next_page_token of the previous page "
                                "of the same request unchanged, or no token for the first page")


@dataclass(frozen=True)
class PageCursor:
    """Where a page starts in the ranking (0-based) and the candidate window every page of the request searches."""

    offset: int
    window: int


def request_digest(parts: Iterable[object]) -> str:
    """A short digest of what a request asks (every field that changes its ranking), to bind a token to it."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode()
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def sign_cursor(secret: bytes, kind: str, digest: str, cursor: object, ttl_s: float, now: float | None = None) -> str:
    """A token for `cursor` (any JSON value: where the next page starts) of a `kind` of listing ("search", "list")
    of the request with this digest, valid for ttl_s seconds."""
    expires = int((time.time() if now is None else now) + ttl_s)
    payload = _b64(json.dumps([TOKEN_VERSION, kind, digest, cursor, expires], separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, payload)}"


def read_cursor(secret: bytes, token: str, kind: str, digest: str, now: float | None = None) -> object:
    """The cursor of a token made by sign_cursor with this kind and digest; InvalidArgument when it was not made here
    for this request, or has expired. The caller checks the cursor's shape (InvalidArgument on another)."""
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 1:
        raise INVALID_TOKEN
    payload, mac = token.split(".")
    if not hmac.compare_digest(mac.encode(), _mac(secret, payload).encode()):
        raise INVALID_TOKEN
    try:
        version, bound_kind, bound, cursor, expires = json.loads(_unb64(payload))
    except (ValueError, TypeError, binascii.Error):
        raise INVALID_TOKEN from None
    if version != TOKEN_VERSION or bound_kind != kind or bound != digest or not isinstance(expires, int):
        raise INVALID_TOKEN
    if (time.time() if now is None else now) > expires:
        raise InvalidArgument("page_token has expired: start again from the first page")
    return cursor


def encode_token(secret: bytes, digest: str, cursor: PageCursor, ttl_s: float, now: float | None = None) -> str:
    """The token of the Search page at `cursor` of the request with this digest, valid for ttl_s seconds."""
    return sign_cursor(secret, "search", digest, [cursor.offset, cursor.window], ttl_s, now)


def decode_token(secret: bytes, token: str, digest: str, now: float | None = None) -> PageCursor:
    """The Search cursor a token names; InvalidArgument when it was not made here for this request, or has expired."""
    cursor = read_cursor(secret, token, "search", digest, now)
    if not (isinstance(cursor, list) and len(cursor) == 2 and all(type(x) is int and x >= 0 for x in cursor)):
        raise INVALID_TOKEN
    return PageCursor(*cursor)
