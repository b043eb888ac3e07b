"""Secrets in source URLs, kept out of everything a caller or an operator sees: status fields, logs, metrics.

A submitted URL may carry credentials: userinfo (`https://alice:s3cret@host/v.mp4`) or the signature and token
parameters of a presigned URL (`?X-Amz-Signature=…`, `?sig=…`, `?token=…`). The worker fetches with the URL as
given (the Celery task carries it whole); whatever is stored, returned or logged goes through here first.

- `redact_uri(uri)`: one URI, userinfo replaced by `***` and the values of secret-looking query (and fragment)
  parameters replaced by `***`; a URI without secrets comes back unchanged, character for character.
- `redact_text(text, secrets)`: every URL inside a free text (an error message, a log line) redacted the same
  way, and each of `secrets` (strings the caller knows to be secret) replaced wherever it appears.
- `RedactingFilter`: a `logging.Filter` for handlers, applying `redact_text` to each record's message and
  traceback.

A parameter is secret when its name contains one of SECRET_PARAM_WORDS (case-insensitive): this catches
`X-Amz-Signature`, `X-Amz-Credential`, `X-Amz-Security-Token`, `X-Goog-Signature`, Azure SAS `sig`, CloudFront
`Signature`/`Policy`/`Key-Pair-Id`, `access_token`, `api_key`, `password`, …; a harmless parameter that happens
to match loses only its value in what is shown.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

REDACTED = "***"
SECRET_PARAM_WORDS = ("sig", "token", "key", "secret", "pass", "pwd", "credential", "auth", "policy", "session")
_SECRET_NAME = re.compile("|".join(SECRET_PARAM_WORDS), re.IGNORECASE)
# A URL inside free text: a scheme, "://", then everything up to white space or a quote or bracket around it, less
# the punctuation that ends a sentence or a clause after it ("…/v.mp4: HTTP 404", "(see …/v.mp4).").
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]*[^\s'\"<>`.,:;!?)\]}]")
# userinfo of a URL whose scheme and authority urlsplit would not parse (e.g. cut off, or with a bad port)
_USERINFO = re.compile(r"(?<=://)[^/?#@\s]*@")


def _redact_params(text: str) -> str:
    """`a=1&sig=xyz` -> `a=1&sig=***`: the values of secret-named parameters, the rest as it was."""
    if "=" not in text:
        return text
    parts = []
    for pair in re.split(r"([&;])", text):
        name, eq, value = pair.partition("=")
        parts.append(f"{name}={REDACTED}" if eq and value and _SECRET_NAME.search(name) else pair)
    return "".join(parts)


def redact_uri(uri: str) -> str:
    """The URI with its userinfo and the values of its secret-looking parameters replaced by `***`."""
    if "://" not in uri:
        return uri  # a local path: nothing a fetch would authenticate with
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. an unbalanced "[" in the host: redact what can be found without parsing
        return _USERINFO.sub(f"{REDACTED}@", uri)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query, fragment = _redact_params(parts.query), _redact_params(parts.fragment)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return uri  # nothing secret: the URI as given, not as urlunsplit would normalise it
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every URL in it redacted (redact_uri) and each of `secrets` replaced by `***`."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda found: redact_uri(found.group(0)), text)


def url_secrets(uri: str) -> list[str]:
    """The secret strings inside uri, raw and percent-decoded: what `redact_text` should also hide in a message
    that quotes them outside the URL. These are the password (the user name when there is none: a token given as
    the user) and the values of secret-named parameters; strings under 3 characters are left out."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return []
    found = [parts.password or parts.username or ""]
    for text in (parts.query, parts.fragment):
        for pair in re.split(r"[&;]", text):
            name, eq, value = pair.partition("=")
            if eq and value and _SECRET_NAME.search(name):
                found.append(value)
    return sorted({variant for s in found for variant in (s, unquote(s)) if len(variant) >= 3})


class RedactingFilter(logging.Filter):
    """A handler filter that redacts the URLs in each record's message and traceback before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: let the handler report it as usual
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text and isinstance(record.exc_info, tuple):
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add a RedactingFilter to every handler of logger (the root logger by default) that lacks one."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
