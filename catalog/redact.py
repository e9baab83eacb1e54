"""What must never leave the process: the run's credentials and the service's signatures.

The code never prints, logs or stores a credential on purpose. This module is for the day
something it did not write quotes one: an API error that echoes the request's Authorization
header or the keys, a pre-signed link inside an answer, a driver's message. Two rules:

- :func:`scrub`: a message (printed, logged, stored in ``sync_runs`` / ``sync_errors``) loses
  every registered secret (the access and secret keys, database passwords) and every
  bce-auth-v1 signature. :class:`catalog.errors.ApiError` scrubs its message as it is made.
- :func:`unsigned`: an answer loses the query string of any pre-signed link in it, before it is
  hashed, built into a row, stored or recorded: a signature authorises whoever holds it for as
  long as it lasts, and the service signs afresh on every call.
"""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "****"
#: Secrets shorter than this are not masked: replacing every "a" would wreck messages, and no
#: real key or password worth the name is that short.
MIN_SECRET_LENGTH = 4
#: A bce-auth-v1 signature (an Authorization header, or a pre-signed link's query) and what
#: follows it: a credential for as long as it lasts. Percent-encoded too (``%3D``, ``%2F``): a
#: link quoted inside another link's query, or its query alone, spells it so.
SIGNATURE = re.compile(
    r"(authorization(?:=|%3D)|bce-auth-v1(?:/|%2F))[^\s&\"'<>]*", re.IGNORECASE
)
#: A link with a query string, inside longer text.
_URL_QUERY = re.compile(r"(?P<url>https?://[^\s?#\"'<>]+)\?[^\s#\"'<>]*", re.IGNORECASE)

#: What :func:`content_looks_signed` looks for, without copying the bytes to lower them: the
#: service writes a signature in lower case, and a link's query parameter as ``authorization=``
#: (``uthorization=`` takes ``Authorization=`` too).
_SIGNED_BYTES = (b"bce-auth-v1", b"uthorization=")

_secrets: set[str] = set()
_lock = threading.Lock()


def add(*secrets: str | None) -> None:
    """Register values that must never appear in a message (kept for the process's life)."""
    with _lock:
        _secrets.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)


def scrub(text: str) -> str:
    """``text`` with every registered secret and every signature masked."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, MASK)
    return SIGNATURE.sub(lambda m: m.group(1) + MASK, text)


def scrub_value(value: Any) -> Any:
    """:func:`scrub` on every string of ``value`` (a log record's fields: dicts, lists)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    return value


def looks_signed(text: str) -> bool:
    lowered = text.lower()
    return "authorization=" in lowered or "bce-auth-v1" in lowered


def content_looks_signed(content: bytes) -> bool:
    """Whether an answer's bytes may hold a signature: two substring searches, so the answers
    without one (nearly all) are never walked."""
    return any(mark in content for mark in _SIGNED_BYTES)


def unsign_text(text: str, *, is_url: bool = False) -> str:
    """``text`` without the query string of a pre-signed link in it: a bare link (or any
    ``is_url`` value) loses its query and fragment, links inside longer text their query, and a
    signature left with no link around it is masked."""
    if not (is_url or looks_signed(text)):
        return text
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.netloc and not any(c.isspace() for c in text):
        text = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    else:
        text = _URL_QUERY.sub(lambda m: m.group("url"), text)
    return SIGNATURE.sub(lambda m: m.group(1) + MASK, text)


def unsigned(value: Any) -> Any:
    """A parsed answer with every signed string cleaned by :func:`unsign_text`; the parts
    without one are the same objects."""
    if isinstance(value, str):
        return unsign_text(value)
    if isinstance(value, dict):
        return {k: unsigned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unsigned(v) for v in value]
    return value
