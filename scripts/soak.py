"""Bounded load/soak of a real `consent-ledger up`: mixed operations from concurrent clients.

    python scripts/soak.py [--ops 50000] [--clients 32] [--max-seconds 900] [--data-dir DIR] [--keep]
                           [--database-url postgresql+psycopg://...]

``--database-url`` names a PostgreSQL server (an admin URL, as scripts/test-postgres.sh prints): the soak
creates a fresh database there for its server, instead of the SQLite file in the data dir.

It starts its own `consent-ledger up` on free loopback ports in a temporary data dir, signs in
the demo clinic and auditor and one patient per client with Sign-In with Ethereum, then runs
``--ops`` operations from ``--clients`` threads (each with its own httpx client and its own
patients, so each client knows what every answer must be): uploads (some retried with their
Idempotency-Key), relayed EIP-712 grants and revokes, reads for TREAT (200 with consent, 403
without), listings and the auditor's per-record verification.

At the end it checks, and prints:
  * 0 responses 5xx;
  * 0 lost acknowledgements: every acknowledged upload is in the patient's record list with its
    CID, every acknowledged grant/revoke is listed with the status the client expects;
  * successful reads == disclosure entries on chain (AccessLogged events) == delivery rows;
  * `consent-ledger verify --data-dir D --json` exits 0.

Exit status 0 only when every check holds. Only loopback addresses are used; the run is bounded
by ``--ops`` and ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlparse

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from ledger_service.domain.consent import EIP712_DOMAIN_TYPE, EIP712_TYPES

REPO = Path(__file__).resolve().parents[1]
ZERO32 = "0x" + "00" * 32
# anvil's public development keys (README, the demo roles).
CLINIC_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
LAB_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
AUDITOR_KEY = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def purpose32(code: str) -> str:
    return "0x" + code.encode().ljust(32, b"\x00").hex()


# ----------------------------------------------------------------- a pure-HTTP client


class LedgerClient:
    """The public API over HTTP: SIWE sign-in, EIP-712 consent messages, records."""

    def __init__(self, url: str, *, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout)
        self._chain: dict[str, Any] | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def chain(self) -> dict[str, Any]:
        if self._chain is None:
            response = self.http.get("/v1/chain")
            response.raise_for_status()
            self._chain = response.json()
        return self._chain

    def siwe_message(self, address: str, nonce: str, *, chain_id: int | None = None, minutes: int = 60) -> str:
        now = datetime.now(UTC)
        return "\n".join(
            [
                f"{urlparse(self.url).netloc} wants you to sign in with your Ethereum account:",
                address,
                "",
                "Sign in to Consent Ledger",
                "",
                f"URI: {self.url}",
                "Version: 1",
                f"Chain ID: {self.chain['chainId'] if chain_id is None else chain_id}",
                f"Nonce: {nonce}",
                f"Issued At: {now.strftime('%Y-%m-%dT%H:%M:%SZ')}",
                f"Expiration Time: {(now + timedelta(minutes=minutes)).strftime('%Y-%m-%dT%H:%M:%SZ')}",
            ]
        )

    def login_body(self, account: LocalAccount, **kw: Any) -> dict[str, str]:
        nonce = self.http.get("/v1/auth/nonce").json()["nonce"]
        message = self.siwe_message(account.address, nonce, **kw)
        signature = Account.sign_message(encode_defunct(text=message), account.key).signature
        return {"message": message, "signature": "0x" + bytes(signature).hex()}

    def sign_in(self, account: LocalAccount) -> dict[str, str]:
        response = self.http.post("/v1/auth/login", json=self.login_body(account))
        if response.status_code != 200:
            raise RuntimeError(f"sign-in of {account.address} failed: {response.status_code} {response.text}")
        return {"Authorization": f"Bearer {response.json()['token']}"}

    def typed(self, primary: str, message: dict[str, Any], **domain: Any) -> Any:
        return {
            "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, primary: EIP712_TYPES[primary]},
            "primaryType": primary,
            "domain": {**self.chain["eip712Domain"], **domain},
            "message": message,
        }

    def nonce_of(self, patient: str) -> int:
        response = self.http.get(f"/v1/consents/nonce/{patient}")
        response.raise_for_status()
        return int(response.json()["nonce"])

    def grant_body(
        self,
        patient: LocalAccount,
        grantee: str,
        *,
        scope: str = ZERO32,
        purpose: str = "TREAT",
        nonce: int | None = None,
        deadline: int | None = None,
        valid_until: int = 0,
        **domain: Any,
    ) -> dict[str, Any]:
        grant = {
            "patient": patient.address,
            "grantee": grantee,
            "scope": scope,
            "purpose": purpose32(purpose),
            "validFrom": 0,
            "validUntil": valid_until,
            "nonce": self.nonce_of(patient.address) if nonce is None else nonce,
            "deadline": int(time.time()) + 3600 if deadline is None else deadline,
        }
        signed = Account.sign_typed_data(patient.key, full_message=self.typed("ConsentGrant", grant, **domain))
        return {"grant": grant, "signature": "0x" + bytes(signed.signature).hex()}

    def revoke_body(self, patient: LocalAccount, consent_id: str, **domain: Any) -> dict[str, Any]:
        revoke = {
            "patient": patient.address,
            "consentId": consent_id,
            "nonce": self.nonce_of(patient.address),
            "deadline": int(time.time()) + 3600,
        }
        signed = Account.sign_typed_data(patient.key, full_message=self.typed("ConsentRevoke", revoke, **domain))
        return {"revoke": revoke, "signature": "0x" + bytes(signed.signature).hex()}

    def grant(self, patient: LocalAccount, grantee: str, **kw: Any) -> httpx.Response:
        return self.http.post("/v1/consents", json=self.grant_body(patient, grantee, **kw))

    def revoke(self, patient: LocalAccount, consent_id: str) -> httpx.Response:
        return self.http.post(f"/v1/consents/{consent_id}/revoke", json=self.revoke_body(patient, consent_id))

    def upload(
        self,
        auth: dict[str, str],
        patient: str,
        content: bytes,
        *,
        media_type: str = "application/octet-stream",
        category: str = "laboratory",
        key: str | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"patient": patient, "category": category, "mediaType": media_type}
        body["content"] = (
            json.loads(content) if media_type == "application/fhir+json" else base64.b64encode(content).decode()
        )
        headers = {**auth, **({"Idempotency-Key": key} if key else {})}
        return self.http.post("/v1/records", json=body, headers=headers)

    def read(
        self, auth: dict[str, str], record_id: str, *, purpose: str = "TREAT", key: str | None = None
    ) -> httpx.Response:
        headers = {**auth, **({"Idempotency-Key": key} if key else {})}
        return self.http.get(f"/v1/records/{record_id}", params={"purpose": purpose}, headers=headers)


# ----------------------------------------------------------------- the server under test


def raised_limits(clients: int) -> dict[str, str]:
    """Settings for the soak's server: every client here is 127.0.0.1 and they relay in parallel, so
    the rate limits and relay slots a public server keeps (docs/operations.md, "Rate limits") would
    refuse the very load the soak measures. Raised, not switched off."""
    names = ("AUTH_RATE_LIMIT", "AUTH_RATE_LIMIT_GLOBAL", "RELAY_RATE_LIMIT", "RELAY_RATE_LIMIT_PER_SIGNER")
    limits = {f"CONSENT_LEDGER_{name}": "1000000/minute" for name in (*names, "RELAY_RATE_LIMIT_GLOBAL")}
    return {**limits, "CONSENT_LEDGER_RELAY_CONCURRENCY": str(max(16, 2 * clients))}


class Server:
    """`consent-ledger up` as a child process on free loopback ports, with only the settings given here
    (inherited ``CONSENT_LEDGER_*`` variables are dropped) and its own session (stopped as a group)."""

    def __init__(
        self, data_dir: Path, *, env: dict[str, str] | None = None, log: Path | None = None, umask: int = -1
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.chain_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rpc_url = f"http://127.0.0.1:{self.chain_port}"
        # Its own free port for the metrics listener (the default, port + 1, may be taken).
        # The custodians of `up` on free ports the system picks: port + 10 may be taken here.
        self.env = {
            "CONSENT_LEDGER_METRICS_PORT": str(free_port()),
            "CONSENT_LEDGER_CUSTODIAN_PORTS_FROM": "0",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = log or data_dir / "server.log"
        self.umask = umask  # -1: the caller's

    def start(self, timeout: float = 180.0) -> Self:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "ledger_service.cli", "up", "--data-dir", str(self.data_dir),
            "--port", str(self.port), "--chain-port", str(self.chain_port),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENT_LEDGER_")}
        env.update({"PYTHONUNBUFFERED": "1", **self.env})
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
                umask=self.umask,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"consent-ledger up exited {self.process.returncode}:\n{self.output()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"consent-ledger up did not serve {self.url} within {timeout:.0f}s:\n{self.output()[-3000:]}"
        )

    def stop(self, timeout: float = 60.0) -> None:
        """Ctrl+C: the chain shuts down cleanly and saves its state."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def verify(self) -> tuple[int, dict[str, Any] | None, str]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "ledger_service.cli",
                "verify",
                "--data-dir",
                str(self.data_dir),
                "--json",
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            # the server's own settings (its database, when it is not the data dir's SQLite)
            env={**{k: v for k, v in os.environ.items() if not k.startswith("CONSENT_LEDGER_")}, **self.env},
            timeout=900,
            check=False,
        )
        try:
            report = json.loads(done.stdout)
        except ValueError:
            report = None
        return done.returncode, report, done.stderr


def access_events(rpc_url: str, contract: str, from_block: int = 0) -> list[dict[str, Any]]:
    """AccessLogged and EmergencyAccessLogged logs of the ledger, straight from the node."""
    from ledger_service.chain.ledger import ledger_codec  # the event signatures, from the contract's ABI

    codec = ledger_codec()
    topics = ["0x" + bytes(codec.topic(name)).hex() for name in ("AccessLogged", "EmergencyAccessLogged")]
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "eth_getLogs",
        "params": [{"address": contract, "fromBlock": hex(from_block), "toBlock": "latest", "topics": [topics]}],
    }
    response = httpx.post(rpc_url, json=body, timeout=120)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["result"]
    return result


def delivery_rows(data_dir: Path, database_url: str | None = None) -> int:
    if database_url:
        from sqlalchemy import create_engine, text

        engine = create_engine(database_url)
        try:
            with engine.connect() as connection:
                return int(connection.execute(text("SELECT count(*) FROM deliveries")).scalar_one())
        finally:
            engine.dispose()
    with contextlib.closing(sqlite3.connect(data_dir / "ledger.sqlite3")) as db:
        return int(db.execute("SELECT count(*) FROM deliveries").fetchone()[0])


def fresh_database(admin_url: str) -> str:
    """A new, empty database on the PostgreSQL server of ``admin_url``; its URL."""
    import secrets

    from sqlalchemy import create_engine, text

    name = f"soak_{secrets.token_hex(6)}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


# ----------------------------------------------------------------- the load


@dataclass
class PatientState:
    account: LocalAccount
    auth: dict[str, str]
    consent: str | None = None  # the active TREAT consent of the clinic, if any
    records: dict[str, str] = field(default_factory=dict)  # recordId -> cid (acknowledged)
    consents: dict[str, str] = field(default_factory=dict)  # consentId -> expected status
    # A grant or revoke answered 5xx (or lost in transport) may or may not have landed: until the next
    # acknowledged one, reads of this patient may answer either way (the 5xx is counted regardless).
    uncertain: bool = False


@dataclass
class Tally:
    ops: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    reads: int = 0
    disclosure_txs: set[str] = field(default_factory=set)
    unexpected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


WEIGHTS = {"read": 40, "upload": 25, "grant": 9, "revoke": 6, "list": 12, "verify-record": 4, "retry-upload": 4}


def _content(rng: random.Random) -> tuple[bytes, str]:
    if rng.random() < 0.5:
        resource = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Glucose"},
            "valueQuantity": {"value": rng.randint(60, 200), "unit": "mg/dL"},
        }
        return json.dumps(resource).encode(), "application/fhir+json"
    return rng.randbytes(rng.choice((64, 700, 4096, 20_000))), "application/octet-stream"


class Worker:
    def __init__(
        self,
        index: int,
        url: str,
        quota: int,
        clinic: dict[str, str],
        auditor: dict[str, str],
        tally: Tally,
        clinic_address: str,
        stop_at: float,
    ) -> None:
        self.index = index
        self.client = LedgerClient(url)
        self.quota = quota
        self.clinic = clinic
        self.auditor = auditor
        self.tally = tally
        self.clinic_address = clinic_address
        self.stop_at = stop_at
        self.rng = random.Random(index)
        self.patients: list[PatientState] = []

    def setup(self, patients: int) -> None:
        for n in range(patients):
            account = Account.from_key(keccak(text=f"soak patient {self.index}/{n}"))
            self.patients.append(PatientState(account, self.client.sign_in(account)))

    def _count(self, op: str, response: httpx.Response, expected: tuple[int, ...]) -> bool:
        with self.tally.lock:
            self.tally.ops[op] += 1
            self.tally.statuses[response.status_code] += 1
            if response.status_code >= 500:
                self.tally.server_errors.append(f"{op}: {response.status_code} {response.text[:300]}")
            if response.status_code not in expected:
                self.tally.unexpected += 1
                if len(self.tally.errors) < 50:
                    self.tally.errors.append(
                        f"{op}: got {response.status_code}, expected {expected}: {response.text[:300]}"
                    )
                return False
        return True

    def run(self) -> None:
        ops = list(WEIGHTS)
        weights = list(WEIGHTS.values())
        done = 0
        while done < self.quota and time.monotonic() < self.stop_at:
            op = self.rng.choices(ops, weights)[0]
            patient = self.rng.choice(self.patients)
            began = time.monotonic()
            try:
                getattr(self, "op_" + op.replace("-", "_"))(patient)
            except httpx.HTTPError as exc:
                patient.uncertain = patient.uncertain or op in ("grant", "revoke")
                with self.tally.lock:
                    self.tally.ops[op] += 1
                    self.tally.unexpected += 1
                    self.tally.errors.append(f"{op}: transport error {exc!r}")
            with self.tally.lock:
                self.tally.seconds[op] += time.monotonic() - began
            done += 1
        self.client.close()

    def op_upload(self, patient: PatientState, *, key: str | None = None) -> None:
        content, media_type = _content(self.rng)
        response = self.client.upload(self.clinic, patient.account.address, content, media_type=media_type, key=key)
        if self._count("upload", response, (201,)):
            body = response.json()
            patient.records[body["recordId"]] = body["cid"]
            if key:  # the retry of an acknowledged request: same result, nothing new
                again = self.client.upload(
                    self.clinic, patient.account.address, content, media_type=media_type, key=key
                )
                if self._count("retry-upload", again, (200,)) and again.json() != body:
                    with self.tally.lock:
                        self.tally.unexpected += 1
                        self.tally.errors.append(f"retry-upload answered {again.json()} instead of {body}")

    def op_retry_upload(self, patient: PatientState) -> None:
        self.op_upload(patient, key=f"soak-{self.index}-{self.rng.getrandbits(64):x}")

    def op_grant(self, patient: PatientState) -> None:
        if patient.consent is not None:
            return self.op_read(patient)
        response = self.client.grant(patient.account, self.clinic_address)
        if self._count("grant", response, (201,)):
            patient.consent = response.json()["consentId"]
            patient.consents[patient.consent] = "active"
            patient.uncertain = False
        elif response.status_code >= 500:
            patient.uncertain = True
        return None

    def op_revoke(self, patient: PatientState) -> None:
        if patient.consent is None:
            return self.op_grant(patient)
        response = self.client.revoke(patient.account, patient.consent)
        if self._count("revoke", response, (200,)):
            patient.consents[patient.consent] = "revoked"
            patient.consent = None
            patient.uncertain = False
        elif response.status_code >= 500:
            patient.uncertain = True
        return None

    def op_read(self, patient: PatientState) -> None:
        if not patient.records:
            return self.op_upload(patient)
        record_id = self.rng.choice(list(patient.records))
        response = self.client.read(self.clinic, record_id)
        expected = (200, 403) if patient.uncertain else (200,) if patient.consent is not None else (403,)
        if self._count("read", response, expected) and response.status_code == 200:
            with self.tally.lock:
                self.tally.reads += 1
                self.tally.disclosure_txs.add(response.headers["X-Disclosure-Tx"])
            if response.headers["X-Record-Cid"] != patient.records[record_id]:
                with self.tally.lock:
                    self.tally.unexpected += 1
                    self.tally.errors.append(f"read {record_id}: CID {response.headers['X-Record-Cid']} differs")
        return None

    def op_list(self, patient: PatientState) -> None:
        response = self.client.http.get(f"/v1/patients/{patient.account.address}/records", headers=patient.auth)
        if self._count("list", response, (200,)):
            listed = {r["recordId"] for r in response.json()["records"]}
            missing = set(patient.records) - listed
            if missing:
                with self.tally.lock:
                    self.tally.unexpected += 1
                    self.tally.errors.append(f"acknowledged records missing from the list: {sorted(missing)[:3]}")

    def op_verify_record(self, patient: PatientState) -> None:
        if not patient.records:
            return self.op_upload(patient)
        record_id = self.rng.choice(list(patient.records))
        response = self.client.http.get(f"/v1/audit/records/{record_id}", headers=self.auditor)
        if self._count("verify-record", response, (200,)) and not response.json()["ok"]:
            with self.tally.lock:
                self.tally.unexpected += 1
                self.tally.errors.append(f"record {record_id} failed verification: {response.json()['violations'][:2]}")
        return None


def check_acknowledgements(client: LedgerClient, workers: list[Worker], timeout: float = 120.0) -> list[str]:
    """Every acknowledged write is there: records with their CIDs, consents with their status."""
    lost: list[str] = []
    for worker in workers:
        for patient in worker.patients:
            address = patient.account.address
            records = client.http.get(f"/v1/patients/{address}/records", headers=patient.auth).json()["records"]
            listed = {r["recordId"]: r["cid"] for r in records}
            lost += [f"record {rid}" for rid, cid in patient.records.items() if listed.get(rid) != cid]
            deadline = time.monotonic() + timeout  # consents are listed by the event indexer: let it catch up
            while True:
                consents = client.http.get(f"/v1/patients/{address}/consents", headers=patient.auth).json()["consents"]
                seen = {c["consentId"]: c["status"] for c in consents}
                missing = [f"consent {c} ({s})" for c, s in patient.consents.items() if seen.get(c) != s]
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            lost += missing
    return lost


def run(
    url: str,
    rpc_url: str,
    data_dir: Path,
    *,
    ops: int,
    clients: int,
    patients: int,
    max_seconds: float,
    database_url: str | None = None,
) -> dict[str, Any]:
    setup = LedgerClient(url)
    clinic_account, auditor_account = Account.from_key(CLINIC_KEY), Account.from_key(AUDITOR_KEY)
    clinic, auditor = setup.sign_in(clinic_account), setup.sign_in(auditor_account)
    contract = setup.chain["contracts"]["ConsentLedger"]
    start_block = int(setup.chain["blockNumber"])
    tally = Tally()
    quota = [ops // clients + (1 if i < ops % clients else 0) for i in range(clients)]
    started = time.monotonic()
    workers = [
        Worker(i, url, quota[i], clinic, auditor, tally, clinic_account.address, started + max_seconds)
        for i in range(clients)
    ]
    threads = [threading.Thread(target=w.setup, args=(patients,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = time.monotonic()
    for w in workers:
        w.stop_at = started + max_seconds
    threads = [threading.Thread(target=w.run, name=f"soak-{w.index}") for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    duration = time.monotonic() - started
    lost = check_acknowledgements(setup, workers)
    events = access_events(rpc_url, contract, start_block)
    event_txs = {e["transactionHash"] for e in events}
    total = sum(tally.ops.values())
    figures = {
        "operations": total,
        "requested": ops,
        "clients": clients,
        "durationSeconds": round(duration, 1),
        "opsPerSecond": round(total / duration, 1) if duration else 0.0,
        "byOperation": dict(sorted(tally.ops.items())),
        "meanMillisByChoice": {
            k: round(1000 * v / max(1, tally.ops.get(k, 0)), 1) for k, v in sorted(tally.seconds.items())
        },
        "byStatus": {str(k): v for k, v in sorted(tally.statuses.items())},
        "serverErrors5xx": len(tally.server_errors),
        "unexpectedAnswers": tally.unexpected,
        "lostAcknowledgements": len(lost),
        "acknowledgedRecords": sum(len(p.records) for w in workers for p in w.patients),
        "acknowledgedConsents": sum(len(p.consents) for w in workers for p in w.patients),
        "successfulReads": tally.reads,
        "disclosureEventsOnChain": len(events),
        "deliveryRows": delivery_rows(data_dir, database_url),
        "readsWithoutTheirEvent": len(tally.disclosure_txs - event_txs),
        "samples": (tally.server_errors + tally.errors + lost)[:10],
    }
    setup.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=50_000, help="operations in all (default 50000)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--patients", type=int, default=3, help="patients per client (default 3)")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop issuing operations after this")
    parser.add_argument("--data-dir", type=Path, help="default: a fresh temporary dir")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--database-url", help="a PostgreSQL admin URL: the server gets a fresh database there")
    args = parser.parse_args(argv)
    tmp = None if args.data_dir else tempfile.mkdtemp(prefix="consent-ledger-soak-")
    data_dir = args.data_dir or Path(tmp or ".")
    database_url = fresh_database(args.database_url) if args.database_url else None
    env = raised_limits(args.clients)
    if database_url:
        env["CONSENT_LEDGER_DATABASE_URL"] = database_url
    server = Server(data_dir, env=env)
    print(f"starting consent-ledger up in {data_dir} (API {server.url}, chain {server.rpc_url})", flush=True)
    server.start()
    try:
        figures = run(
            server.url, server.rpc_url, data_dir,
            ops=args.ops, clients=args.clients, patients=args.patients, max_seconds=args.max_seconds,
            database_url=database_url,
        )  # fmt: skip
        started = time.monotonic()
        code, report, stderr = server.verify()
        figures["verifyExit"] = code
        figures["verifySeconds"] = round(time.monotonic() - started, 1)
        figures["verifyViolations"] = len(report["violations"]) if report else None
        if code != 0:
            figures["samples"].append(f"verify: {stderr[-500:]} {json.dumps(report)[:1500] if report else ''}")
    finally:
        server.stop()
        if tmp and not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    ok = (
        figures["serverErrors5xx"] == 0
        and figures["lostAcknowledgements"] == 0
        and figures["unexpectedAnswers"] == 0
        and figures["successfulReads"] == figures["disclosureEventsOnChain"] == figures["deliveryRows"]
        and figures["readsWithoutTheirEvent"] == 0
        and figures["verifyExit"] == 0
    )
    figures["ok"] = ok
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        if key != "samples":
            print(f"{key:<{width}}  {value}")
    for sample in figures["samples"]:
        print(f"  ! {sample}")
    print("SOAK PASSED" if ok else "SOAK FAILED", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
