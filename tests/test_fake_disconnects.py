"""Issue 13 in the fake: a client that goes away is not an error, and export names keep unicode."""

from __future__ import annotations

import socket
import struct
import time
from urllib.parse import unquote, urlsplit

import pytest

from catalog.fake import FakeCatalog, FakeServer
from tests.test_fake_server import AK, SK, Api


def _reset_mid_request(server: FakeServer) -> None:
    """Send half a request, then abort the connection with a TCP RST (SO_LINGER 0)."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v2/model?Action=DescribeModelCompTasks HTTP/1.1\r\n"
            b"Host: x\r\nContent-Length: 1000\r\n\r\n{"
        )
        time.sleep(0.1)  # let the handler start reading the body
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_client_reset_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    with FakeServer(FakeCatalog.generate(seed=1), AK, SK) as server:
        _reset_mid_request(server)
        deadline = time.monotonic() + 5
        while getattr(server, "disconnects", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert Api(server).v2("DescribeModelCompTasks").status_code == 200  # still serving
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err
    assert server.disconnects == 1


def test_other_handler_errors_keep_their_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with FakeServer(FakeCatalog(), AK, SK) as server:
        httpd = server._httpd
        assert httpd is not None
        for gone in (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            try:
                raise gone
            except OSError:
                httpd.handle_error(None, ("127.0.0.1", 1))
        assert capfd.readouterr().err == ""
        try:
            raise ValueError("a bug in the fake")
        except ValueError:
            httpd.handle_error(None, ("127.0.0.1", 1))
        err = capfd.readouterr().err
    assert "Traceback" in err and "a bug in the fake" in err
    assert server.disconnects == 3


def test_export_file_names_keep_the_set_names_unicode() -> None:
    catalog = FakeCatalog.generate(seed=4, model_sets=9, export_share=1.0)
    with FakeServer(catalog, AK, SK) as server:
        api = Api(server)
        checked = []
        for model_id in catalog.keys("model_export"):
            export = api.result("DescribeModelExportTask", {"modelId": model_id})
            if export["state"] != "Done":
                continue
            set_name = catalog.get("model_version", model_id)["modelSetName"]
            assert export["fileName"].startswith(f"{set_name}_model_{export['md5']}")
            path = unquote(urlsplit(export["downloadUrl"]).path)
            assert path.endswith(f"/{export['fileName']}")
            checked.append(set_name)
    assert any(not name.isascii() for name in checked)
