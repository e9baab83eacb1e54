"""Two-step HTTP: a request written now, its answer read when the caller wants it.

A marker listing is a chain: page n+1 can only be asked for with the marker page n ended on.
Written as soon as that marker is known, before page n is handled, the request for page n+1 is
being answered while the caller checks and hashes page n, in the caller's own thread.
(Not a thread of its own reading ahead: its reading and the caller's hashing would take turns
at the interpreter lock, which on the no-op benchmark costs more than it saves.)

``requests`` has no such call; urllib3, its transport, has: a connection's ``request`` writes,
its ``getresponse`` reads. The connection comes from the pool the session's adapter would use
for the same URL (so the same TLS settings, and kept alive across calls) and goes back to it
once the answer is read. What breaks on the way (a connection the server closed, a reset)
returns None, and the caller asks again through ``requests``, whose errors the client already
knows how to report and retry. One failure is told apart: no answer within the read timeout
(``ReadTimedOut``). The server has that request, so it is not sent again at once; the caller
reports a read timeout, which its retry policy retries after its delay.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from http.client import HTTPException
from typing import Any

import requests
import urllib3
import urllib3.connection
from requests.adapters import HTTPAdapter

#: Status, headers and body of one answer, as ``parse_answer`` takes them.
Answer = tuple[int, Mapping[str, str], bytes]

#: What a broken exchange raises: sockets, the HTTP layer under urllib3, urllib3 itself, and a
#: URL or TLS setting the pool refuses (``requests`` then reports it properly).
_BROKEN = (OSError, ValueError, HTTPException, urllib3.exceptions.HTTPError)


def _supported() -> bool:
    """Whether this urllib3's connections write a request and read its answer in two steps
    (urllib3 2: ``request(..., preload_content=...)``, then ``getresponse``). ``requests``
    accepts urllib3 1.26 too, whose connection is ``http.client``'s: every sync there failed on
    the first early write ("unexpected keyword argument 'preload_content'")."""
    try:
        parameters = inspect.signature(urllib3.connection.HTTPConnection.request).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    return "preload_content" in parameters


#: False: nothing is written early; every call is made the ordinary way, through ``requests``.
SUPPORTED = _supported()


class ReadTimedOut(Exception):
    """The request was written and its answer did not come within the read timeout."""


class Written:
    """A request on the wire on a connection taken from ``pool``; read it or cancel it."""

    def __init__(self, pool: Any, conn: Any, read_timeout: float) -> None:
        self._pool = pool
        self._conn: Any = conn
        self._read_timeout = read_timeout

    def receive(self) -> Answer | None:
        """The answer, whole (its body decoded as ``requests`` would); None when the exchange
        broke (the connection is then closed, not reused). Raises ``ReadTimedOut``."""
        conn, self._conn = self._conn, None
        if conn is None:
            return None
        try:
            conn.timeout = self._read_timeout
            response = conn.getresponse()
            content = response.data
        except (TimeoutError, urllib3.exceptions.ReadTimeoutError):
            self._give_back(conn, broken=True)
            raise ReadTimedOut from None
        except _BROKEN:
            self._give_back(conn, broken=True)
            return None
        self._give_back(conn, broken=False)
        return response.status, response.headers, content

    def cancel(self) -> None:
        """Leave the answer unread: the connection is closed (an answer still on its way would
        otherwise be read as the next request's)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._give_back(conn, broken=True)

    def _give_back(self, conn: Any, broken: bool) -> None:
        if broken:
            conn.close()  # a closed connection in the pool reconnects when next used
        self._pool._put_conn(conn)


def write(
    adapter: HTTPAdapter,
    request: requests.PreparedRequest,
    timeout: tuple[float, float],
    verify: bool | str,
    cert: Any = None,
) -> Written | None:
    """``request`` (signed, with its body) written on one of ``adapter``'s pooled connections;
    None when it could not be written. Only for a request that goes straight to its host: the
    caller does not use this through a proxy."""
    if not SUPPORTED:
        return None
    connect, read = timeout
    try:
        # As ``HTTPAdapter.send`` does: the pool for the URL, its TLS settings set again.
        pool: Any = adapter.get_connection_with_tls_context(request, verify, None, cert)
        adapter.cert_verify(pool, request.url or "", verify, cert)  # type: ignore[no-untyped-call]
        # The pool's own way to lend a connection (urlopen's); an urllib3 without it only
        # loses the early write: every call is then made the ordinary way.
        conn = pool._get_conn()
    except (*_BROKEN, AttributeError):
        return None
    try:
        conn.timeout = connect
        conn.request(
            request.method or "POST",
            request.path_url,
            body=request.body,
            headers=request.headers,
            preload_content=True,
            decode_content=True,
        )
    except _BROKEN:
        Written(pool, conn, read).cancel()
        return None
    return Written(pool, conn, read)
