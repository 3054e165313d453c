"""A key custodian over HTTP, as a provider's node reaches it (docs/architecture.md, "Key custody").

The node trusts the custodian's URL (TLS in production) for its public key, as it trusts the hub's for relaying;
it trusts nothing else it says: a released share opens only if it was sealed to the accessor's key for that slot.
A problem answer becomes the LedgerError of its kind; an unreachable custodian is a :class:`KeyCustodyError`,
which counts as one custodian missing (a read still succeeds with any ``threshold`` others).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

from ledger_service.errors import KeyCustodyError, RecordErased, ValidationError
from ledger_service.node.custody import CustodianInfo

__all__ = ["HttpCustodian"]


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


class _Answer:
    def __init__(self, status: int, reason: str, body: bytes) -> None:
        self.status_code, self.reason_phrase, self.body = status, reason, body

    def json(self) -> Any:
        return json.loads(self.body)


class HttpCustodian:
    """A keep-alive connection per thread (a read asks its custodians from a pool of threads): each request is a
    few hundred bytes, so the client's own cost per request is what counts (docs/operations.md, "Key custodians")."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.name = url.rstrip("/")
        parts = urlsplit(self.name)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError(f"a custodian URL is http(s)://host[:port], got {url!r}")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._local = threading.local()

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            connection = kind(self._host, self._port, timeout=self._timeout)
            self._local.connection = connection
        return connection

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> _Answer:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):  # a kept-alive connection the custodian closed meanwhile: reconnect once
            connection = self._connection()
            try:
                connection.request(method, self._prefix + path, data, headers)
                response = connection.getresponse()
                return _Answer(response.status, response.reason, response.read())
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt:
                    raise KeyCustodyError(f"custodian {self.name} is unreachable ({type(exc).__name__})") from None
        raise AssertionError("unreachable")

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._answer(self._request("POST", path, body))

    def _answer(self, response: _Answer) -> dict[str, Any]:
        if response.status_code < 300:
            try:
                body = response.json()
            except ValueError:
                raise KeyCustodyError(f"custodian {self.name} answered with something that is not JSON") from None
            if not isinstance(body, dict):
                raise KeyCustodyError(f"custodian {self.name} answered with something that is not an object")
            return body
        detail = ""
        with contextlib.suppress(ValueError, AttributeError):
            detail = str(response.json().get("detail", ""))[:500]
        said = f"custodian {self.name} answered {response.status_code}: {detail or response.reason_phrase}"
        if response.status_code == 410:
            raise RecordErased(said)
        if response.status_code in (400, 422):
            raise ValidationError(said)
        raise KeyCustodyError(said)

    def info(self) -> CustodianInfo:
        body = self._answer(self._request("GET", "/v1/custodian"))
        try:
            key = bytes.fromhex(str(body["publicKey"]).removeprefix("0x"))
            info = CustodianInfo(int(body["index"]), key, int(body["threshold"]), int(body["total"]))
        except (KeyError, TypeError, ValueError):
            raise KeyCustodyError(f"custodian {self.name} described itself in an unknown form") from None
        if len(key) != 32:
            raise KeyCustodyError(f"custodian {self.name} published a key that is not 32 bytes")
        return info

    def deposit(
        self,
        *,
        patient: str,
        author: str,
        record_id: bytes,
        version: int,
        recipient: bytes,
        sealed: bytes,
        signature: bytes,
    ) -> None:
        self._post(
            "/v1/custodian/shares",
            {
                "patient": patient,
                "author": author,
                "recordId": _hex(record_id),
                "version": version,
                "recipient": _hex(recipient),
                "sealedShare": _hex(sealed),
                "signature": _hex(signature),
            },
        )

    def release(
        self,
        *,
        record_id: bytes,
        version: int,
        accessor: str,
        disclosure_tx: bytes | None = None,
        receipt: dict[str, Any] | None = None,
    ) -> bytes:
        body: dict[str, Any] = {"recordId": _hex(record_id), "version": version, "accessor": accessor}
        if disclosure_tx is not None:
            body["disclosureTx"] = _hex(disclosure_tx)
        if receipt is not None:
            body["receipt"] = receipt
        answer = self._post("/v1/custodian/release", body)
        try:
            return bytes.fromhex(str(answer["sealedShare"]).removeprefix("0x"))
        except (KeyError, ValueError):
            raise KeyCustodyError(f"custodian {self.name} answered a release without a sealed share") from None
