"""kill -9 the API process during an upload and during a read, then restart it on the same data dir."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ledger_service.chain.ledger import ledger_codec
from tests.faults.harness import (
    CLINIC,
    ApiServer,
    Ledgerbook,
    Node,
    check_invariants,
    disclosure_txs,
    grant,
    new_patient,
)

pytestmark = pytest.mark.integration

BOUNDARY = "faultboundary7d1c"
MiB = 1024 * 1024


def _multipart(patient: str, content: bytes, *, chunk: int = MiB, on_chunk: object = None) -> Iterator[bytes]:
    yield (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="patient"\r\n\r\n{patient}\r\n'
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="category"\r\n\r\nimaging\r\n'
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="mediaType"\r\n\r\napplication/octet-stream\r\n'
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="scan.bin"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for n, start in enumerate(range(0, len(content), chunk)):
        if callable(on_chunk):
            on_chunk(n)
        yield content[start : start + chunk]
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def _upload(server: ApiServer, patient: str, content: bytes, key: str, **kw: object) -> httpx.Response:
    headers = {
        **server.token(CLINIC),
        "Idempotency-Key": key,
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    with httpx.Client(base_url=server.url, timeout=60) as client:
        return client.post("/v1/records", content=_multipart(patient, content, **kw), headers=headers)  # type: ignore[arg-type]


@pytest.fixture
def from_block(node: Node, server: ApiServer) -> int:
    """The first block after the API started: where the invariants' scan of the chain begins."""
    return node.rpc.block_number() + 1


@pytest.fixture
def book() -> Ledgerbook:
    return Ledgerbook()


@contextmanager
def _automine_off(node: Node) -> Iterator[None]:
    """Transactions wait in the mempool until mined by hand; automine is back on however the block ends."""
    node.rpc.request("evm_setAutomine", [False])
    try:
        yield
    finally:
        node.rpc.request("evm_setAutomine", [True])


def _granted_record(node: Node, server: ApiServer, book: Ledgerbook, content: bytes, key: str) -> str:
    """A new patient grants the clinic, which uploads one record of theirs; returns its id."""
    patient = new_patient(node.url)
    grant(server, patient)
    book.acknowledge(_upload(server, patient.address, content, key), patient.address, content)
    return next(iter(book.records))


_PENDING_DELIVERY = "SELECT count(*) FROM deliveries WHERE status = 'pending'"


def _kill_once_traced(node: Node, server: ApiServer, traced: str | None = _PENDING_DELIVERY) -> None:
    """Kill the API once its transaction is in the mempool and ``traced`` (a count query) finds the
    row that traces it, or 10 s have passed."""
    deadline = time.monotonic() + 10
    while not node.rpc.request("txpool_content", [])["pending"] and time.monotonic() < deadline:
        time.sleep(0.01)
    # Kill once the service has traced the transaction (a disclosure's pending delivery row): the
    # millisecond between the node accepting it and that commit is the one window a crash
    # can still turn into a second disclosure on retry (see the operations notes).
    while traced is not None and time.monotonic() < deadline:
        with sqlite3.connect(server.data_dir / "ledger.sqlite3", timeout=5) as db:
            if db.execute(traced).fetchone()[0]:
                break
        time.sleep(0.01)
    server.kill()


def test_kill_during_a_streamed_upload_then_retry_with_its_key_completes_once(
    node: Node, server: ApiServer, from_block: int, book: Ledgerbook
) -> None:
    patient = new_patient(node.url)
    grant(server, patient)
    content = os.urandom(24 * MiB)
    failures: list[BaseException] = []

    def kill_midway(n: int) -> None:
        if n == 6:
            server.kill()

    try:
        _upload(server, patient.address, content, "scan-1", on_chunk=kill_midway)
    except httpx.HTTPError as exc:
        failures.append(exc)
    assert failures, "the upload should have been cut by the kill"
    server.start()
    assert server.query("SELECT count(*) FROM records")[0][0] == 0, "a cut upload left a record row"
    first = _upload(server, patient.address, content, "scan-1")
    assert first.status_code == 201, first.text
    again = _upload(server, patient.address, content, "scan-1")
    assert again.status_code == 200 and again.json() == first.json(), again.text
    book.acknowledge(first, patient.address, content)
    assert server.query("SELECT count(*) FROM records")[0][0] == 1
    check_invariants(server, book, from_block=from_block)


def _wait_for(server: ApiServer, sql: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if server.query(sql):
                return
        except Exception:  # noqa: S110 - the DB may be mid-migration or locked for an instant
            pass
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {sql}")


def _in_background(call: object) -> tuple[threading.Thread, list[object]]:
    results: list[object] = []

    def target() -> None:
        try:
            results.append(call())  # type: ignore[operator]
        except BaseException as exc:
            results.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, results


def test_kill_while_the_anchor_is_in_flight_then_retry_returns_the_adopted_record(
    node: Node, server: ApiServer, from_block: int, book: Ledgerbook
) -> None:
    patient = new_patient(node.url)
    grant(server, patient)
    content = os.urandom(300_000)
    with _automine_off(node):  # the anchor transaction waits in the mempool
        thread, _ = _in_background(lambda: _upload(server, patient.address, content, "lab-7"))
        _wait_for(server, "SELECT 1 FROM record_versions WHERE state = 'pending'")
        _kill_once_traced(node, server, traced=None)  # the pending version row was written before the send
        thread.join(10)
    node.mine()  # the anchor lands although its sender died
    server.start()
    assert "recovered: 1 versions anchored" in server.output(), server.output()[-2000:]
    retry = _upload(server, patient.address, content, "lab-7")
    assert retry.status_code in (200, 201), retry.text
    records = server.query("SELECT record_id FROM records")
    assert [r[0] for r in records] == [retry.json()["recordId"]], "the retry must return the adopted record"
    book.acknowledge(retry, patient.address, content)
    check_invariants(server, book, from_block=from_block)


def test_kill_while_sealing_discards_the_partial_version(own_node: Node, tmp_path: Path, book: Ledgerbook) -> None:
    """Killed after the body is in but before the anchor is sent: recovery leaves no row, no key, no pin."""
    node = own_node  # its clock is moved below
    assert node.deployment is not None
    server = ApiServer(tmp_path / "own-api", node.url, node.deployment).start()
    try:
        _kill_while_sealing(node, server, node.rpc.block_number() + 1, book)
    finally:
        server.stop()


def _kill_while_sealing(node: Node, server: ApiServer, from_block: int, book: Ledgerbook) -> None:
    patient = new_patient(node.url)
    content = os.urandom(300_000)
    with _automine_off(node):
        thread, _ = _in_background(lambda: _upload(server, patient.address, content, "ct-1"))
        _wait_for(server, "SELECT 1 FROM record_versions WHERE state = 'pending'")
        server.kill()
        thread.join(10)
        node.rpc.request("anvil_dropAllTransactions", [])  # the anchor never lands
    # While its signed anchor's deadline has not passed the version is kept (the anchor could still land) ...
    server.start()
    assert "discarded" not in server.output(), server.output()[-2000:]
    assert server.query("SELECT count(*) FROM record_versions WHERE state = 'pending'")[0][0] == 1
    server.kill()
    # ... and once the chain's clock is past it, recovery discards it: no row, no key, no pin.
    node.rpc.request("evm_increaseTime", [3600])
    node.mine()
    server.start()
    assert "recovered: 0 versions anchored, 1 discarded" in server.output(), server.output()[-2000:]
    assert server.query("SELECT count(*) FROM records")[0][0] == 0
    assert server.query("SELECT count(*) FROM commitment_salts")[0][0] == 0
    pins = list((server.data_dir / "blobs" / "pins").glob("*"))
    assert pins == [], f"a discarded version left its blob pinned: {pins}"
    check_invariants(server, book, from_block=from_block)


def test_kill_during_a_streamed_read_then_retry_replays_the_same_disclosure(
    node: Node, server: ApiServer, from_block: int, book: Ledgerbook
) -> None:
    content = os.urandom(16 * MiB)
    record_id = _granted_record(node, server, book, content, "big-1")
    headers = {**server.token(CLINIC), "Idempotency-Key": "read-1"}
    with (
        httpx.Client(base_url=server.url, timeout=60) as client,
        client.stream("GET", f"/v1/records/{record_id}", params={"purpose": "TREAT"}, headers=headers) as r,
    ):
        assert r.status_code == 200
        first_tx = r.headers["X-Disclosure-Tx"]
        stream = r.iter_raw(64 * 1024)
        assert next(stream)
        server.kill()
        with pytest.raises(httpx.HTTPError):
            for _ in stream:
                pass
    # The bytes that went out were logged first.
    assert first_tx in disclosure_txs(node.url, server.deployment.ledger_address, from_block)
    server.start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        retry = client.get(f"/v1/records/{record_id}", params={"purpose": "TREAT"}, headers=headers)
    assert retry.status_code == 200 and retry.content == content
    assert retry.headers["X-Disclosure-Tx"] == first_tx, "the retried read must replay its first disclosure"
    book.read(retry, record_id)
    assert len(disclosure_txs(node.url, server.deployment.ledger_address, from_block)) == 1
    check_invariants(server, book, from_block=from_block)


def test_kill_while_the_disclosure_is_in_flight_releases_nothing_and_the_retry_reads_once(
    node: Node, server: ApiServer, from_block: int, book: Ledgerbook
) -> None:
    content = json.dumps({"n": 1}).encode()
    record_id = _granted_record(node, server, book, content, "small-1")
    headers = {**server.token(CLINIC), "Idempotency-Key": "read-2"}
    with _automine_off(node):
        thread, results = _in_background(
            lambda: httpx.get(
                f"{server.url}/v1/records/{record_id}", params={"purpose": "TREAT"}, headers=headers, timeout=60
            )
        )
        _kill_once_traced(node, server)
        thread.join(10)
    node.mine()
    assert results and isinstance(results[0], httpx.HTTPError), "nothing may be released by a killed read"
    server.start()
    retry = httpx.get(f"{server.url}/v1/records/{record_id}", params={"purpose": "TREAT"}, headers=headers, timeout=60)
    assert retry.status_code == 200 and retry.content == content
    book.read(retry, record_id)
    logged = disclosure_txs(node.url, server.deployment.ledger_address, from_block)
    assert logged == [retry.headers["X-Disclosure-Tx"]], f"one request, one key: {len(logged)} disclosures logged"
    check_invariants(server, book, from_block=from_block)


def test_kill_while_a_relayed_grant_waits_for_its_receipt_then_the_same_message_is_acknowledged(
    node: Node, server: ApiServer
) -> None:
    """The relay traces the transaction before its receipt: the patient's retry of the identical signed
    message is answered with that transaction, not refused for its (by then used) nonce."""
    patient = new_patient(node.url)
    client = server.client()
    body = client.grant_body(patient, CLINIC, deadline=int(time.time()) + 3600)
    with _automine_off(node):
        thread, _ = _in_background(lambda: client.http.post("/v1/consents", json=body))
        _wait_for(server, "SELECT 1 FROM relayed_messages")
        _kill_once_traced(node, server, traced=None)
        thread.join(10)
    node.mine()  # the grant lands although the relay died waiting for it
    client.close()
    server.start()
    retry = server.client()
    again = retry.http.post("/v1/consents", json=body)
    assert again.status_code == 200, again.text  # the first relay's result, replayed
    (tx_hash,) = server.query("SELECT tx_hash FROM relayed_messages")[0]
    assert again.json()["txHash"] == tx_hash
    assert node.deployment is not None
    granted = node.rpc.get_logs(
        node.deployment.ledger_address,
        0,
        node.rpc.block_number(),
        [ledger_codec().topic("ConsentGranted"), None, bytes(12) + bytes.fromhex(patient.address[2:])],
    )
    assert ["0x" + g["transactionHash"].hex() for g in granted] == [tx_hash], "one grant, the traced one"
    retry.close()
