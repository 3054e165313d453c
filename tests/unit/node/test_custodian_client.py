"""The node's HTTP client of a key custodian: what each answer becomes, against a local HTTP server that plays
the custodian's answers (the real custodian is exercised in tests/security/test_custodian.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ledger_service.errors import KeyCustodyError, RecordErased, ValidationError
from ledger_service.node.custodian_client import HttpCustodian

ANSWERS: dict[str, tuple[int, Any]] = {}
SEEN: list[tuple[str, str, Any]] = []


class _Custodian(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        SEEN.append((self.command, self.path, body))
        status, answer = ANSWERS[self.path]
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer  # noqa: N815 - the names http.server calls

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def custodian() -> Iterator[HttpCustodian]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Custodian)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ANSWERS.clear()
    SEEN.clear()
    client = HttpCustodian(f"http://127.0.0.1:{server.server_address[1]}", timeout=5)
    yield client
    client.close()
    server.shutdown()
    server.server_close()


def _release(client: HttpCustodian) -> bytes:
    return client.release(record_id=b"\x01" * 32, version=2, accessor="0x" + "ab" * 20, disclosure_tx=b"\x02" * 32)


def test_a_release_sends_the_evidence_and_returns_the_sealed_share(custodian: HttpCustodian) -> None:
    ANSWERS["/v1/custodian/release"] = (200, {"index": 2, "sealedShare": "0x" + "cd" * 81})
    assert _release(custodian) == b"\xcd" * 81
    method, path, body = SEEN[-1]
    assert (method, path) == ("POST", "/v1/custodian/release")
    assert body == {
        "recordId": "0x" + "01" * 32,
        "version": 2,
        "accessor": "0x" + "ab" * 20,
        "disclosureTx": "0x" + "02" * 32,
    }
    _release(custodian)  # the kept-alive connection serves the next request
    assert len(SEEN) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (410, RecordErased),
        (400, ValidationError),
        (403, KeyCustodyError),
        (404, KeyCustodyError),
        (503, KeyCustodyError),
    ],
)
def test_each_refusal_becomes_its_error_with_the_custodians_words(
    custodian: HttpCustodian, status: int, error: type[Exception]
) -> None:
    ANSWERS["/v1/custodian/release"] = (status, {"type": "/problems/x", "detail": "expected a final disclosure"})
    with pytest.raises(error, match="expected a final disclosure") as raised:
        _release(custodian)
    assert custodian.name in str(raised.value)


def test_answers_that_are_not_a_custodians_are_refused(custodian: HttpCustodian) -> None:
    ANSWERS["/v1/custodian/release"] = (200, b"<html>proxy error</html>")
    with pytest.raises(KeyCustodyError, match="not JSON"):
        _release(custodian)
    ANSWERS["/v1/custodian/release"] = (200, {"index": 1})
    with pytest.raises(KeyCustodyError, match="without a sealed share"):
        _release(custodian)
    ANSWERS["/v1/custodian"] = (200, {"index": 1, "publicKey": "0x1234", "threshold": 2, "total": 3})
    with pytest.raises(KeyCustodyError, match="not 32 bytes"):
        custodian.info()


def test_info_reads_the_custodians_self_description(custodian: HttpCustodian) -> None:
    ANSWERS["/v1/custodian"] = (200, {"index": 3, "publicKey": "0x" + "11" * 32, "threshold": 2, "total": 3})
    info = custodian.info()
    assert (info.index, info.public_key, info.threshold, info.total) == (3, b"\x11" * 32, 2, 3)


def test_an_unreachable_custodian_is_a_custody_error() -> None:
    client = HttpCustodian("http://127.0.0.1:9", timeout=2)  # the discard port: nothing listens
    with pytest.raises(KeyCustodyError, match="unreachable"):
        _release(client)


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValidationError):
        HttpCustodian("file:///etc/passwd")
