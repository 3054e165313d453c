"""Real processes for fault injection: an anvil with the ledger deployed, and the API as a child process.

``Node`` owns an anvil whose state persists in ``<dir>/chain`` (stop = SIGINT, state dumped; kill =
SIGKILL) and the deployment (demo roles onboarded). ``ApiServer`` runs ``tests/faults/serve_api.py``
(uvicorn on ``create_app``) in a child process against that chain with its own data dir, so a test
can ``kill -9`` it and start it again on the same data dir. ``Invariants`` checks what must hold
after any fault.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger_service.bootstrap import admin_ledger
from ledger_service.chain.anvil import AnvilProcess
from ledger_service.chain.deploy import Deployment, onboard_demo
from ledger_service.chain.ledger import ledger_codec
from ledger_service.chain.rpc import RpcClient
from ledger_service.hub.auth import AuthService, load_or_create_secret
from ledger_service.runtime import Runtime
from ledger_service.settings import ANVIL_DEV_KEYS, Settings
from scripts.soak import LedgerClient, raised_limits
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY, CLINIC_KEY, LAB_KEY, AUDITOR_KEY = ANVIL_DEV_KEYS[:4]
CLINIC = Account.from_key(CLINIC_KEY).address
LAB = Account.from_key(LAB_KEY).address
AUDITOR = Account.from_key(AUDITOR_KEY).address


class Node:
    """An anvil (state in ``root/chain``) with the ledger deployed and the demo roles onboarded."""

    def __init__(self, root: Path, *, block_time: int | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.block_time = block_time
        self.anvil = AnvilProcess(
            port=self.port,
            state_file=root / "chain" / "anvil-state.json",
            block_time=block_time,
            log_file=root / "chain" / "anvil.log",
            state_interval=1,
        )
        self.deployment: Deployment | None = None

    @property
    def url(self) -> str:
        return self.anvil.url

    @property
    def rpc(self) -> RpcClient:
        return RpcClient(self.url, timeout=30)

    def start(self) -> Node:
        self.anvil.start()
        if self.deployment is None:
            settings = Settings(
                data_dir=self.root / "deploy", rpc_url=self.url, deployer_key=ADMIN_KEY, relayer_key=ADMIN_KEY
            )
            with Runtime(settings) as runtime:
                deployment = runtime.deployment
                demo = onboard_demo(admin_ledger(settings, deployment, self.rpc))
            self.deployment = Deployment(**{**deployment.__dict__, "demo": demo})
        return self

    def stop(self) -> None:
        self.anvil.stop()

    def mine(self, blocks: int = 1) -> None:
        self.rpc.request("anvil_mine", [hex(blocks)])


def adopt_deployment(data_dir: Path, deployment: Deployment) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    deployment.save(data_dir / "deployment.json")


class ApiServer:
    """The API (uvicorn on create_app) in a child process that a test may kill -9 and restart."""

    def __init__(self, data_dir: Path, rpc_url: str, deployment: Deployment, **settings: Any) -> None:
        self.data_dir = data_dir
        self.rpc_url = rpc_url
        self.deployment = deployment
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The metrics listener gets its own free port: port + 1 (the default) may be taken here.
        self.metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "api.log"
        adopt_deployment(data_dir, deployment)
        self.secret = load_or_create_secret(data_dir / "keys" / "api-token.key")

    def env(self) -> dict[str, str]:
        values = {
            "DATA_DIR": str(self.data_dir),
            "RPC_URL": self.rpc_url,
            "DEPLOYER_KEY": ADMIN_KEY,
            "RELAYER_KEY": ADMIN_KEY,
            "PROVIDER_KEYS": f"{CLINIC_KEY},{LAB_KEY}",
            "PORT": str(self.port),
            "PUBLIC_ORIGIN": self.url,  # an external chain: the origin sign-in messages name must be set
            "METRICS_PORT": str(self.metrics_port),
            "CUSTODIAN_PORTS_FROM": "0",  # the embedded custodians on free ports: port + 10 may be taken
            "RECEIPT_TIMEOUT": "30",
            **{k.upper(): str(v) for k, v in self.settings.items()},
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENT_LEDGER_")}
        return {**env, "PYTHONUNBUFFERED": "1", **{f"CONSENT_LEDGER_{k}": v for k, v in values.items()}}

    def start(self, timeout: float = 60.0) -> ApiServer:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.faults.serve_api"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=REPO,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"API exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"API did not answer on {self.url} within {timeout:.0f}s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown, no cleanup."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self) -> ApiServer:
        self.kill()
        return self.start()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def token(self, address: str) -> dict[str, str]:
        auth = AuthService(db=None, secret=self.secret, chain_id=self.deployment.chain_id)  # type: ignore[arg-type]
        token, _ = auth.issue_token(address)
        return {"Authorization": f"Bearer {token}"}

    def client(self) -> LedgerClient:
        return LedgerClient(self.url, timeout=60)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data_dir / "ledger.sqlite3", timeout=30)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.db()) as db:
            return list(db.execute(sql, args).fetchall())


def new_patient(rpc_url: str) -> LocalAccount:
    account: LocalAccount = Account.create()
    RpcClient(rpc_url).request("anvil_setBalance", [account.address, hex(10**18)])
    return account


def grant(server: ApiServer, patient: LocalAccount, grantee: str = CLINIC) -> str:
    client = server.client()
    response = client.grant(patient, grantee, deadline=int(time.time()) + 3600)
    client.close()
    assert response.status_code == 201, response.text
    return str(response.json()["consentId"])


@dataclass
class Ledgerbook:
    """What clients were told: acknowledged uploads and successful reads (with their disclosure tx)."""

    records: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # recordId -> (patient, plaintext)
    reads: list[tuple[str, str]] = field(default_factory=list)  # (recordId, X-Disclosure-Tx)

    def acknowledge(self, response: httpx.Response, patient: str, content: bytes) -> str:
        assert response.status_code in (200, 201), response.text
        record_id = str(response.json()["recordId"])
        self.records[record_id] = (patient, content)
        return record_id

    def read(self, response: httpx.Response, record_id: str) -> bytes:
        assert response.status_code == 200, response.text
        self.reads.append((record_id, response.headers["X-Disclosure-Tx"]))
        return response.content


def access_logs(rpc_url: str, contract: str, from_block: int = 0) -> list[dict[str, Any]]:
    codec = ledger_codec()
    rpc = RpcClient(rpc_url, timeout=30)
    topics = [[codec.topic("AccessLogged"), codec.topic("EmergencyAccessLogged")]]
    head = rpc.block_number()
    return rpc.get_logs(contract, from_block, head, topics) if from_block <= head else []


def disclosure_txs(rpc_url: str, contract: str, from_block: int = 0) -> list[str]:
    """The transaction hashes of the disclosure events (one per logged release)."""
    out = []
    for event in access_logs(rpc_url, contract, from_block):
        tx = event["transactionHash"]
        out.append("0x" + bytes(tx).hex() if isinstance(tx, bytes | bytearray) else str(tx))
    return out


def check_invariants(server: ApiServer, book: Ledgerbook, *, from_block: int, verify: bool = True) -> None:
    """After a fault (and a restart): nothing acknowledged is lost, nothing half-done is visible,
    no key outlives its version, and no bytes were released without their disclosure on chain."""
    # No orphaned key: every data key belongs to an anchored version; nothing is left pending, except a
    # version whose signed anchor could still land (its deadline not yet passed on chain): its key must stay
    # until then, and recovery discards it after (node/uploads.py, recover_pending).
    chain_now = int(RpcClient(server.rpc_url, timeout=30).get_block("latest")["timestamp"], 16)
    in_doubt = {
        str(r[0])
        for r in server.query(
            "SELECT record_id FROM record_versions WHERE state = 'pending' AND anchor_deadline >= ?", chain_now
        )
    }
    orphans = [
        row
        for row in server.query(
            "SELECT k.record_id, k.version, v.state FROM commitment_salts k LEFT JOIN record_versions v "
            "ON v.record_id = k.record_id AND v.version = k.version WHERE v.state IS NULL OR v.state != 'anchored'"
        )
        if row[0] not in in_doubt
    ]
    assert orphans == [], f"data keys without an anchored version: {orphans}"
    pending = [
        r for r in server.query("SELECT record_id, state FROM records WHERE state = 'pending'") if r[0] not in in_doubt
    ]
    assert pending == [], f"records left pending after recovery: {pending}"
    # No partial record visible: every listed record is anchored and readable in full.
    client = server.client()
    clinic = server.token(CLINIC)
    patients = {patient for patient, _ in book.records.values()}
    listed: dict[str, dict[str, Any]] = {}
    for patient in patients:
        response = client.http.get(f"/v1/patients/{patient}/records", headers=server.token(patient))
        assert response.status_code == 200, response.text
        listed.update({r["recordId"]: r for r in response.json()["records"]})
    for record_id, (_patient, content) in book.records.items():
        assert record_id in listed, f"acknowledged record {record_id} is not listed"
        assert listed[record_id]["size"] == len(content)
        body = book.read(client.read(clinic, record_id, key=None), record_id)
        assert body == content, f"record {record_id} does not read back as uploaded"
    for entry in listed.values():
        assert entry["version"] >= 1 and entry["cid"], f"partial record listed: {entry}"
    client.close()
    # Every release has its disclosure on chain; every disclosure on chain has its delivery row.
    event_txs = set(disclosure_txs(server.rpc_url, server.deployment.ledger_address, from_block))
    released = {tx for _rid, tx in book.reads}
    assert released <= event_txs, f"bytes released without their disclosure on chain: {released - event_txs}"
    rows = server.query("SELECT tx_hash FROM deliveries WHERE tx_hash IS NOT NULL")
    assert {r[0] for r in rows} == event_txs, "delivery rows and disclosure events differ"
    if verify:
        run_verify(server.data_dir, from_block)


def run_verify(data_dir: Path, from_block: int = 0) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "ledger_service.cli", "verify", "--data-dir", str(data_dir), "--json", "--no-progress"]
        + (["--from-block", str(from_block)] if from_block else []),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    report: dict[str, Any] = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    assert done.returncode == 0, f"verify exited {done.returncode}: {done.stderr[-2000:]} {report.get('violations')}"
    return report


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)


class Served:
    """`consent-ledger serve ROLE` as a child process with exactly the settings given."""

    def __init__(self, role: str, data_dir: Path, settings: dict[str, str], *extra: str) -> None:
        self.role = role
        self.data_dir = data_dir
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / f"{role}.log"
        values = {
            "PUBLIC_ORIGIN": self.url,
            "METRICS_PORT": str(free_port()),
            "RECEIPT_TIMEOUT": "30",
            **settings,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENT_LEDGER_")}
        self.env = {**env, "PYTHONUNBUFFERED": "1", **{f"CONSENT_LEDGER_{k}": v for k, v in values.items()}}
        self.env.update(raised_limits(4))
        self.argv = [
            sys.executable,
            "-m",
            "ledger_service.cli",
            "serve",
            role,
            "--data-dir",
            str(data_dir),
            "--port",
            str(self.port),
            *extra,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def run_to_exit(self, timeout: float = 60.0) -> tuple[int, str]:
        done = subprocess.run(self.argv, env=self.env, cwd=REPO, capture_output=True, timeout=timeout, check=False)
        return done.returncode, (done.stdout + done.stderr).decode()

    def start(self, timeout: float = 90.0) -> Served:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=REPO, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.role} exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.role} did not answer within {timeout:.0f}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def start_custodians(chain: Node, root: Path, total: int = 3, **settings: str) -> list[Served]:
    """``total`` key custodians (``serve custodian``), each in a data dir of its own under ``root``, each reading
    the chain itself; the caller stops them."""
    assert chain.deployment is not None
    started: list[Served] = []
    try:
        for index in range(1, total + 1):
            data_dir = root / f"custodian-{index}"
            data_dir.mkdir(parents=True, exist_ok=True)
            adopt_deployment(data_dir, chain.deployment)
            started.append(
                Served("custodian", data_dir, {"RPC_URL": chain.url, "CUSTODIAN_INDEX": str(index), **settings}).start()
            )
    except BaseException:
        for served in started:
            served.stop()
        raise
    return started


def custodian_urls(custodians: list[Served]) -> str:
    """The value of a node's ``CONSENT_LEDGER_CUSTODIAN_URLS``."""
    return json.dumps([c.url for c in custodians])
