"""Page tokens: where the next page of a ranking starts, signed so that a client can neither forge nor reuse one.

A token carries the offset of the next page, the candidate window the first page searched (so every page ranks the
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

TOKEN_VERSION = 1
MAX_TOKEN_BYTES = 512


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


def encode_token(secret: bytes, digest: str, cursor: PageCursor, ttl_s: float, now: float | None = None) -> str:
    """The token of the page at `cursor` of the request with this digest, valid for ttl_s seconds."""
    expires = int((time.time() if now is None else now) + ttl_s)
    payload = _b64(json.dumps([TOKEN_VERSION, digest, cursor.offset, cursor.window, expires],
                              separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, payload)}"


def decode_token(secret: bytes, token: str, digest: str, now: float | None = None) -> PageCursor:
    """The cursor a token names; InvalidArgument when it was not made here for this request, or has expired."""
    invalid = InvalidArgument("page_token is not valid for this request: send the next_page_token of the previous page "
                              "of the same request unchanged, or no token for the first page")
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 1:
        raise invalid
    payload, mac = token.split(".")
    if not hmac.compare_digest(mac.encode(), _mac(secret, payload).encode()):
        raise invalid
    try:
        version, bound, offset, window, expires = json.loads(_unb64(payload))
    except (ValueError, TypeError, binascii.Error):
        raise invalid from None
    if version != TOKEN_VERSION or bound != digest or not isinstance(offset, int) or not isinstance(window, int):
        raise invalid
    if (time.time() if now is None else now) > expires:
        raise InvalidArgument("page_token has expired: start again from the first page")
    return PageCursor(offset, window)
