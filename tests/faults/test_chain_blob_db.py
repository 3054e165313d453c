"""Faults below the API: anvil stopped and restarted mid-load, chain reorgs, blob store and DB unavailable."""

from __future__ import annotations

import base64
import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.faults.harness import (
    CLINIC,
    REPO,
    ApiServer,
    Ledgerbook,
    Node,
    check_invariants,
    grant,
    new_patient,
)

pytestmark = pytest.mark.integration


def _server(node: Node, tmp_path: Path, **settings: object) -> ApiServer:
    assert node.deployment is not None
    return ApiServer(tmp_path / "api", node.url, node.deployment, **settings).start()


def _upload(server: ApiServer, patient: str, content: bytes, key: str | None = None) -> httpx.Response:
    headers = {**server.token(CLINIC), **({"Idempotency-Key": key} if key else {})}
    body = {
        "patient": patient,
        "category": "laboratory",
        "mediaType": "application/octet-stream",
        "content": base64.b64encode(content).decode(),
    }
    return httpx.post(f"{server.url}/v1/records", json=body, headers=headers, timeout=90)


def _assert_problem(response: httpx.Response, *statuses: int) -> None:
    assert response.status_code in statuses, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers


def test_anvil_stopped_and_restarted_mid_load(node: Node, tmp_path: Path) -> None:
    server = _server(node, tmp_path)
    from_block = node.rpc.block_number() + 1
    book = Ledgerbook()
    statuses: list[int] = []
    try:
        patient = new_patient(node.url)
        grant(server, patient)
        stop = threading.Event()

        def load(worker: int) -> None:
            n = 0
            while not stop.is_set():
                content = os.urandom(2000)
                key = f"w{worker}-{n}"
                for _attempt in range(60):  # a client retrying with its key until acknowledged
                    try:
                        response = _upload(server, patient.address, content, key)
                    except httpx.HTTPError:
                        time.sleep(0.2)
                        continue
                    statuses.append(response.status_code)
                    if response.status_code in (200, 201):
                        book.acknowledge(response, patient.address, content)
                        break
                    time.sleep(0.2)
                n += 1

        workers = [threading.Thread(target=load, args=(i,)) for i in range(3)]
        for w in workers:
            w.start()
        time.sleep(2)
        node.stop()  # SIGINT: anvil saves its state
        time.sleep(2)
        node.anvil.start()
        time.sleep(3)
        stop.set()
        for w in workers:
            w.join(120)
        assert book.records, "no upload was acknowledged"
        assert not [s for s in statuses if s >= 500 and s not in (503, 504)], statuses
        server.restart()  # recovery resolves what the outage left pending
        check_invariants(server, book, from_block=from_block)
    finally:
        server.stop()


def test_dead_kubo_blob_store_refuses_uploads_and_stores_nothing(node: Node, tmp_path: Path) -> None:
    server = _server(node, tmp_path, blob_store_url=f"http://127.0.0.1:{free_port()}")
    try:
        patient = new_patient(node.url)
        response = _upload(server, patient.address, b"x" * 5000, key="k1")
        _assert_problem(response, 503)
        assert response.json()["type"] == "/problems/blob-store-unavailable"
        assert server.query("SELECT count(*) FROM records")[0][0] == 0
        assert server.query("SELECT count(*) FROM commitment_salts")[0][0] == 0
        assert server.query("SELECT count(*) FROM idempotency_keys")[0][0] == 0, "the failed claim must be released"
    finally:
        server.stop()


def test_broken_embedded_blob_dir_is_a_503_and_reads_release_nothing(node: Node, tmp_path: Path) -> None:
    server = _server(node, tmp_path)
    book = Ledgerbook()
    from_block = node.rpc.block_number() + 1
    try:
        patient = new_patient(node.url)
        grant(server, patient)
        content = os.urandom(3000)
        book.acknowledge(_upload(server, patient.address, content), patient.address, content)
        blobs = server.data_dir / "blobs"
        blobs.rename(server.data_dir / "blobs.away")
        blobs.write_bytes(b"not a directory")  # the store's root is unusable
        try:
            record_id = next(iter(book.records))
            read = httpx.get(
                f"{server.url}/v1/records/{record_id}", params={"purpose": "TREAT"}, headers=server.token(CLINIC)
            )
            _assert_problem(read, 502, 503)
            upload = _upload(server, patient.address, os.urandom(3000))
            _assert_problem(upload, 503)
        finally:
            blobs.unlink()
            (server.data_dir / "blobs.away").rename(blobs)
        check_invariants(server, book, from_block=from_block)
    finally:
        server.stop()


@pytest.mark.slow
def test_sqlite_locked_past_the_busy_timeout_then_the_retry_completes(node: Node, tmp_path: Path) -> None:
    server = _server(node, tmp_path)
    book = Ledgerbook()
    from_block = node.rpc.block_number() + 1
    try:
        patient = new_patient(node.url)
        content = os.urandom(4000)
        locker = sqlite3.connect(
            server.data_dir / "ledger.sqlite3", timeout=1, isolation_level=None, check_same_thread=False
        )
        locker.execute("BEGIN EXCLUSIVE")
        try:
            refused = _upload(server, patient.address, content, key="locked-1")
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        _assert_problem(refused, 503)
        assert server.query("SELECT count(*) FROM records")[0][0] == 0
        retry = _upload(server, patient.address, content, key="locked-1")
        book.acknowledge(retry, patient.address, content)
        grant(server, patient)
        check_invariants(server, book, from_block=from_block)
    finally:
        server.stop()


def test_short_db_lock_only_delays_a_write(node: Node, tmp_path: Path) -> None:
    server = _server(node, tmp_path)
    try:
        patient = new_patient(node.url)
        locker = sqlite3.connect(
            server.data_dir / "ledger.sqlite3", timeout=1, isolation_level=None, check_same_thread=False
        )
        locker.execute("BEGIN EXCLUSIVE")
        timer = threading.Timer(1.5, lambda: (locker.execute("ROLLBACK"), locker.close()))
        timer.start()
        response = _upload(server, patient.address, b"y" * 1000, key="short-lock")
        timer.join()
        assert response.status_code == 201, response.text
    finally:
        server.stop()


class Miner:
    """Mines a block every ``interval`` seconds (a chain with block times, for confirmations)."""

    def __init__(self, node: Node, interval: float = 0.3) -> None:
        self.node, self.interval = node, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self.node.mine()

    def __enter__(self) -> Miner:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_reorg_inside_the_confirmation_depth_is_not_acknowledged(own_node: Node, tmp_path: Path) -> None:
    node = own_node  # its clock is moved below
    server = _server(node, tmp_path, confirmations=2)
    book = Ledgerbook()
    from_block = node.rpc.block_number() + 1
    try:
        patient = new_patient(node.url)
        with Miner(node):
            grant(server, patient)
        node.rpc.request("evm_setAutomine", [False])
        results: list[httpx.Response | BaseException] = []
        content = os.urandom(1500)
        try:
            thread = threading.Thread(
                target=lambda: results.append(_upload(server, patient.address, content, key="reorg-1"))
            )
            thread.start()
            deadline = time.monotonic() + 20
            while not node.rpc.request("txpool_content", [])["pending"] and time.monotonic() < deadline:
                time.sleep(0.02)
            node.mine()  # the anchor is in a block: 0 confirmations
            time.sleep(0.5)
            node.rpc.request("anvil_reorg", [1, []])  # ... and that block is replaced before it is final
            node.rpc.request("anvil_dropAllTransactions", [])
            node.mine(3)
            thread.join(60)
        finally:
            node.rpc.request("evm_setAutomine", [True])
        assert results and isinstance(results[0], httpx.Response), results
        _assert_problem(results[0], 504)  # never a 201 for a write that did not stay on chain
        # The pending version keeps its key while its signed anchor could still land; once the chain's clock is
        # past the anchor's deadline, recovery discards it.
        node.rpc.request("evm_increaseTime", [3600])
        node.mine()
        with Miner(node):
            server.restart()
            retry = _upload(server, patient.address, content, key="reorg-1")
            book.acknowledge(retry, patient.address, content)
            check_invariants(server, book, from_block=from_block, verify=False)
    finally:
        server.stop()


def test_reorg_past_the_confirmation_depth_is_detected_by_the_auditor(node: Node, tmp_path: Path) -> None:
    server = _server(node, tmp_path, confirmations=2)
    from_block = node.rpc.block_number() + 1
    try:
        patient = new_patient(node.url)
        with Miner(node):
            grant(server, patient)
            created = _upload(server, patient.address, os.urandom(1500))
            assert created.status_code == 201, created.text
        head = node.rpc.block_number()
        anchored_at = node.rpc.receipt(bytes.fromhex(created.json()["txHash"][2:]))
        assert anchored_at is not None and head - anchored_at.block_number >= 2
        node.rpc.request("anvil_reorg", [head - anchored_at.block_number + 1, []])  # deeper than "final"
        node.rpc.request("anvil_dropAllTransactions", [])
        node.mine(3)
        done = subprocess.run(
            [
                *(sys.executable, "-m", "ledger_service.cli", "verify", "--data-dir", str(server.data_dir)),
                *("--json", "--no-progress", "--from-block", str(from_block)),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
            check=False,
        )
        assert done.returncode == 1, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
        assert created.json()["recordId"] in done.stdout, "the auditor must name the record whose anchor vanished"
        import json

        vanished = [v for v in json.loads(done.stdout)["violations"] if v["code"] == "version-without-event"]
        assert [(v["recordId"], v["tx"]) for v in vanished] == [(created.json()["recordId"], created.json()["txHash"])]
        assert "version 1 of record" in vanished[0]["message"]
    finally:
        server.stop()
