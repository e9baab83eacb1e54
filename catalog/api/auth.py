"""BCE authentication v1 signing.

The signing rules are the vendor's (bce-auth-v1): a signing key derived from the secret key and the
auth-string prefix, then an HMAC-SHA256 over the canonical request. The same pure functions
serve the client (to sign) and the fake server (to verify), and the test suite checks them
against the vendor's own signer, so the fake cannot drift from what the real service expects.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

import requests

AUTH_VERSION = "bce-auth-v1"
DEFAULT_EXPIRY_SECONDS = 1800
#: Headers signed on every request; ``host`` and ``x-bce-date`` are the minimum the service accepts.
DEFAULT_SIGNED_HEADERS: tuple[str, ...] = ("content-type", "host", "x-bce-date")

_ASCII_SPACE = " \t\n\r\x0b\x0c"
# RFC 3986 unreserved characters are the only ones left as they are.
_UNRESERVED = "-_.~"


@functools.lru_cache(maxsize=4096)
def uri_encode(value: str, keep_slash: bool = False) -> str:
    """Percent-encode like the vendor: everything but unreserved characters, upper-case hex.

    Cached: a run signs the same few header names, host, paths and content type on every call,
    and ``quote`` was most of the signing's cost.
    """
    safe = _UNRESERVED + ("/" if keep_slash else "")
    return quote(value, safe=safe)


def canonical_uri(path: str) -> str:
    """The path as sent, decoded once and encoded the vendor's way, slashes kept."""
    from urllib.parse import unquote

    return uri_encode(unquote(path or "/"), keep_slash=True)


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    pairs = [f"{uri_encode(k)}={uri_encode(v)}" for k, v in params if k.lower() != "authorization"]
    return "&".join(sorted(pairs))


def canonical_headers(headers: Mapping[str, str], signed: Iterable[str]) -> str:
    wanted = {h.lower() for h in signed}
    lines = []
    for name, value in headers.items():
        # The vendor strips bytes, i.e. ASCII whitespace only; U+00A0 and friends are signed.
        key = name.strip(_ASCII_SPACE).lower()
        text = str(value).strip(_ASCII_SPACE)
        if key in wanted and text:
            lines.append(f"{uri_encode(key)}:{uri_encode(text)}")
    return "\n".join(sorted(lines))


def bce_timestamp(epoch: float | None = None) -> str:
    """The UTC second-resolution timestamp used in both ``x-bce-date`` and the auth string."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if epoch is None else epoch))


def signature(
    secret_key: str,
    auth_prefix: str,
    method: str,
    path: str,
    params: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: Iterable[str],
) -> str:
    """Hex signature of a request; ``auth_prefix`` is ``bce-auth-v1/{ak}/{timestamp}/{expiry}``."""
    signing_key = hmac.new(secret_key.encode(), auth_prefix.encode(), hashlib.sha256).hexdigest()
    string_to_sign = "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(params),
            canonical_headers(headers, signed_headers),
        ]
    )
    return hmac.new(signing_key.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(
    access_key: str,
    secret_key: str,
    method: str,
    path: str,
    params: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    timestamp: str,
    expiry: int = DEFAULT_EXPIRY_SECONDS,
    signed_headers: Iterable[str] = DEFAULT_SIGNED_HEADERS,
) -> str:
    signed = sorted(h.lower() for h in signed_headers)
    prefix = f"{AUTH_VERSION}/{access_key}/{timestamp}/{expiry}"
    sig = signature(secret_key, prefix, method, path, params, headers, signed)
    return f"{prefix}/{';'.join(signed)}/{sig}"


def key_problem(access_key: str, secret_key: str) -> str | None:
    """Why this key pair cannot sign a request, or ``None``; never quotes a key.

    Both travel in (or sign) an HTTP header, so each must be printable ASCII without spaces. A
    trailing carriage return, what a systemd ``EnvironmentFile`` with Windows line ends gives,
    made ``requests`` refuse the header with an error that quoted the whole signed header.
    """
    for name, value in (("QIANFAN_ACCESS_KEY", access_key), ("QIANFAN_SECRET_KEY", secret_key)):
        bad = [i for i, c in enumerate(value) if not "!" <= c <= "~"]
        if not bad:
            continue
        if value.endswith(("\r", "\n")):
            what = "ends with a line break (a file with Windows line ends?)"
        elif value != value.strip():
            what = "starts or ends with white space"
        else:
            what = f"holds a space, control or non-ASCII character (at position {bad[0] + 1})"
        return f"{name} (or its flag) {what}: give the key alone, as the console shows it"
    return None


@dataclass(frozen=True)
class ParsedAuthorization:
    access_key: str
    timestamp: str
    expiry: int
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def prefix(self) -> str:
        return f"{AUTH_VERSION}/{self.access_key}/{self.timestamp}/{self.expiry}"


def parse_authorization(header: str) -> ParsedAuthorization | None:
    """Split an Authorization header; ``None`` when it is not a well-formed bce-auth-v1 string."""
    parts = header.split("/")
    if len(parts) != 6 or parts[0] != AUTH_VERSION or not parts[4]:
        return None
    try:
        expiry = int(parts[3])
    except ValueError:
        return None
    return ParsedAuthorization(parts[1], parts[2], expiry, tuple(parts[4].split(";")), parts[5])


class BceAuth(requests.auth.AuthBase):
    """Signs every prepared request; the secret lives only here and ``repr`` never shows it."""

    def __init__(self, access_key: str, secret_key: str, expiry: int = DEFAULT_EXPIRY_SECONDS):
        self.access_key = access_key
        self._secret_key = secret_key
        self.expiry = expiry

    def __repr__(self) -> str:
        return f"BceAuth(access_key={self.access_key!r}, secret_key='***')"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(request.url or "")
        timestamp = bce_timestamp()
        request.headers["Host"] = url.netloc
        request.headers["x-bce-date"] = timestamp
        request.headers["Authorization"] = authorization(
            self.access_key,
            self._secret_key,
            request.method or "POST",
            url.path,
            parse_qsl(url.query, keep_blank_values=True),
            dict(request.headers),
            timestamp,
            self.expiry,
        )
        return request
