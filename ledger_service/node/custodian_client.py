"""A key custodian over HTTP, as a provider's node reaches it (docs/architecture.md, "Key custody").

The node trusts the custodian's URL (TLS in production) for its public key, as it trusts the hub's for relaying;
it trusts nothing else it says: a released share opens only if it was sealed to the accessor's key for that slot.
A problem answer becomes the LedgerError of its kind; an unreachable custodian is a :class:`KeyCustodyError`,
which counts as one custodian missing (a read still succeeds with any ``threshold`` others).
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from ledger_service.errors import KeyCustodyError, RecordErased, ValidationError
from ledger_service.node.custody import CustodianInfo

__all__ = ["HttpCustodian"]


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


class HttpCustodian:
    def __init__(self, url: str, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self.name = url.rstrip("/")
        self._http = httpx.Client(base_url=self.name, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise KeyCustodyError(f"custodian {self.name} is unreachable ({type(exc).__name__})") from None
        return self._answer(response)

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
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
        try:
            body = self._answer(self._http.get("/v1/custodian"))
        except httpx.HTTPError as exc:
            raise KeyCustodyError(f"custodian {self.name} is unreachable ({type(exc).__name__})") from None
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
