"""A scripted HTTP server on 127.0.0.1 for client tests.

Independent of ``catalog.fake`` on purpose: these tests pin the client's behaviour against exact
bytes, statuses and headers, including answers no well-behaved fake would ever give.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes -> sent as is; None -> empty body
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # block until the server stops (for read-timeout tests)
    drop: bool = False  # close the connection without answering


def ok(result: Any, **extra: Any) -> Reply:
    return Reply(200, {"requestId": "req-ok", "result": result, **extra})


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Script = list[Reply] | Callable[[Seen], Reply]


class StubServer:
    """Answers each request with the next scripted ``Reply`` (the last one repeats)."""

    def __init__(self, script: Script, tls: tuple[str, str] | None = None) -> None:
        """``tls``: (certificate, key) files to answer HTTPS with."""
        self._script = script
        self._tls = tls
        self._index = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.seen: list[Seen] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                seen = Seen(
                    self.command,
                    url.path,
                    dict(parse_qsl(url.query, keep_blank_values=True)),
                    {k: v for k, v in self.headers.items()},
                    raw,
                )
                reply = stub._next(seen)
                if reply.hang:
                    stub._stopping.wait(10)
                    return
                if reply.drop:
                    self.close_connection = True
                    return
                if isinstance(reply.body, dict | list):
                    payload = json.dumps(reply.body).encode()
                elif isinstance(reply.body, str):
                    payload = reply.body.encode()
                elif isinstance(reply.body, bytes):
                    payload = reply.body
                else:
                    payload = b""
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def _next(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            if callable(self._script):
                return self._script(seen)
            reply = self._script[min(self._index, len(self._script) - 1)]
            self._index += 1
            return reply

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()


def refused_url() -> str:
    """A URL on which nothing listens (bound, then released), so connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
