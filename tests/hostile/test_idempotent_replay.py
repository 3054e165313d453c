"""A provider replays a read's Idempotency-Key to get the bytes again (docs/security.md, "Idempotent reads").

The attack, against a real server in both disclosure modes: read with key K, then repeat K after the
patient revoked, after the consent expired, while suspended and after reinstatement, and after the
emergency role was taken away. A replay may return bytes only if the accessor is allowed now, and
every complete release of bytes must have its own disclosure: on chain (per-read mode) or in the
anchored disclosure log (batched mode), and in the patient's accounting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger_service.bootstrap import admin_ledger
from ledger_service.chain.ledger import ConsentLedgerContract, ledger_codec
from ledger_service.chain.rpc import RpcClient
from ledger_service.domain.codes import ROLES
from ledger_service.settings import Settings
from tests.faults.harness import (
    ADMIN_KEY,
    CLINIC,
    CLINIC_KEY,
    LAB_KEY,
    ApiServer,
    Node,
    access_logs,
    new_patient,
    run_verify,
)

pytestmark = pytest.mark.integration


# One server per mode for the module: a batched server's log is the one the contract's anchored batches
# extend, so a second fresh log on the same deployment could never anchor.
# Each test reads as a provider of its own, whose key the server's node holds (a read is the accessor's
# signed request): made here, before the server starts, and handed out by _new_provider.
_OWN_PROVIDERS: dict[str, list[LocalAccount]] = {}


@pytest.fixture(scope="module", params=["per-read", "batched"])
def server(node: Node, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ApiServer]:
    assert node.deployment is not None
    own: list[LocalAccount] = [Account.create() for _ in range(4)]
    api = ApiServer(
        tmp_path_factory.mktemp("api"),
        node.url,
        node.deployment,
        disclosure_mode=request.param,
        batch_size=1,
        batch_interval=1,
        provider_keys=",".join([CLINIC_KEY, LAB_KEY, *("0x" + bytes(a.key).hex() for a in own)]),
    ).start()
    _OWN_PROVIDERS[api.url] = own
    yield api
    api.stop()


def _admin(node: Node, tmp_path: Path) -> ConsentLedgerContract:
    assert node.deployment is not None
    settings = Settings(data_dir=tmp_path / "admin", rpc_url=node.url, deployer_key=ADMIN_KEY, relayer_key=ADMIN_KEY)
    return admin_ledger(settings, node.deployment, RpcClient(node.url, timeout=30))


def _new_provider(
    node: Node, admin: ConsentLedgerContract, server: ApiServer, *, emergency: bool = False
) -> LocalAccount:
    """A provider of this test's own, so suspending it touches no other test (the server holds its key)."""
    account = _OWN_PROVIDERS[server.url].pop()
    admin.onboard_provider(account.address, f"Replay Clinic {account.address[2:8]}")
    if emergency:
        admin.grant_role(ROLES["emergency"], account.address)
    return account


class Reader:
    """The attacker's client: counts every response that carried the record's bytes."""

    def __init__(self, server: ApiServer, account: LocalAccount, record_id: str, content: bytes) -> None:
        self.server, self.account, self.record_id, self.content = server, account, record_id, content
        self.released = 0

    def _count(self, response: httpx.Response) -> httpx.Response:
        if response.status_code == 200:
            assert response.content == self.content
            self.released += 1
        else:
            assert self.content not in response.content
        return response

    def read(self, key: str) -> httpx.Response:
        headers = {**self.server.token(self.account.address), "Idempotency-Key": key}
        return self._count(
            httpx.get(
                f"{self.server.url}/v1/records/{self.record_id}",
                params={"purpose": "TREAT"},
                headers=headers,
                timeout=60,
            )
        )

    def break_glass(self, key: str) -> httpx.Response:
        headers = {**self.server.token(self.account.address), "Idempotency-Key": key}
        return self._count(
            httpx.post(
                f"{self.server.url}/v1/records/{self.record_id}/emergency-access",
                json={"reason": "unconscious on arrival"},
                headers=headers,
                timeout=60,
            )
        )


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


def _disclosures_of(node: Node, server: ApiServer, patient: str, accessor: str, from_block: int) -> int:
    """The disclosures the auditor can match: events on chain, or anchored entries of the batched log."""
    assert node.deployment is not None
    codec = ledger_codec()
    if server.settings["disclosure_mode"] == "per-read":
        events = [codec.decode_log(lg) for lg in access_logs(node.url, node.deployment.ledger_address, from_block)]
        return sum(
            1 for e in events if e is not None and (e.args["patient"], e.args["accessor"]) == (patient, accessor)
        )
    entries = server.query("SELECT leaf_index FROM disclosure_log_entries WHERE patient = ?", patient)
    needed = max((int(r[0]) + 1 for r in entries), default=0)
    deadline = time.monotonic() + 60
    while True:  # the batcher anchors each entry (batch_size=1) in the background
        logs = node.rpc.get_logs(
            node.deployment.ledger_address,
            from_block,
            node.rpc.block_number(),
            [codec.topic("DisclosureBatchAnchored")],
        )
        events = [codec.decode_log(lg) for lg in logs]
        anchored = max((int(e.args["toIndex"]) for e in events if e is not None), default=0)
        if anchored >= needed:
            return len(entries)
        assert time.monotonic() < deadline, f"the disclosure log was not anchored up to {needed} entries"
        time.sleep(0.2)


def _accounting(server: ApiServer, patient: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/v1/patients/{patient}/disclosures", headers=server.token(patient), timeout=60)
    assert response.status_code == 200, response.text
    return list(response.json()["disclosures"])


def test_a_replayed_key_never_reads_without_consent_now_and_a_disclosure_of_its_own(
    node: Node, server: ApiServer, tmp_path: Path
) -> None:
    admin = _admin(node, tmp_path)
    from_block = node.rpc.block_number() + 1
    provider = _new_provider(node, admin, server, emergency=True)
    patient = new_patient(node.url)
    content = b"blood pressure 120/80 " * 8
    client = server.client()
    uploaded = client.upload(server.token(CLINIC), patient.address, content)
    assert uploaded.status_code == 201, uploaded.text
    reader = Reader(server, provider, uploaded.json()["recordId"], content)

    def grant(valid_until: int = 0) -> str:
        response = client.grant(patient, provider.address, valid_until=valid_until)
        assert response.status_code in (200, 201), response.text
        return str(response.json()["consentId"])

    # Revocation: the replay after the revoke is refused, the one before it is a new release.
    consent_id = grant()
    assert reader.read("K-revoke").status_code == 200
    assert reader.read("K-revoke").status_code == 200  # the bytes went out in full: a new, logged release
    revoked = client.revoke(patient, consent_id)
    assert revoked.status_code == 200, revoked.text
    assert _problem(reader.read("K-revoke"), 403)["type"].endswith("/consent-denied")

    # Expiry: a consent whose window closed does not answer a replay.
    now = int(node.rpc.get_block("latest")["timestamp"], 16)
    grant(valid_until=now + 30)
    assert reader.read("K-expiry").status_code == 200
    node.rpc.request("evm_increaseTime", [120])
    node.mine()
    _problem(reader.read("K-expiry"), 403)

    # Suspension and reinstatement: refused while suspended; after, only a new logged release.
    grant()
    assert reader.read("K-suspend").status_code == 200
    admin.suspend_provider(provider.address)
    _problem(reader.read("K-suspend"), 403)
    admin.reinstate_provider(provider.address)
    assert reader.read("K-suspend").status_code == 200

    # Break-glass: the replay after the emergency role was taken away is refused.
    assert reader.break_glass("K-glass").status_code == 200
    assert reader.break_glass("K-glass").status_code == 200
    admin.revoke_role(ROLES["emergency"], provider.address)
    _problem(reader.break_glass("K-glass"), 403)
    client.close()

    assert reader.released == 7
    on_record = _disclosures_of(node, server, patient.address, provider.address, from_block)
    assert on_record == reader.released, f"{reader.released} releases, {on_record} disclosures"
    assert len(_accounting(server, patient.address)) == reader.released
    run_verify(server.data_dir, from_block)


def test_a_double_click_with_one_key_is_one_disclosure(node: Node, server: ApiServer, tmp_path: Path) -> None:
    """Two identical keyed reads at once: one release, one disclosure; the twin is told to retry."""
    admin = _admin(node, tmp_path)
    from_block = node.rpc.block_number() + 1
    provider = _new_provider(node, admin, server)
    patient = new_patient(node.url)
    content = b"x" * 4096
    client = server.client()
    uploaded = client.upload(server.token(CLINIC), patient.address, content)
    assert uploaded.status_code == 201, uploaded.text
    assert client.grant(patient, provider.address).status_code == 201
    client.close()
    reader = Reader(server, provider, uploaded.json()["recordId"], content)
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(reader.read("K-twin"))) for _ in range(2)]
    per_read = server.settings["disclosure_mode"] == "per-read"
    if per_read:  # the first request's disclosure stays in flight while the second arrives
        node.rpc.request("evm_setAutomine", [False])
    try:
        for thread in threads:
            thread.start()
            time.sleep(0.3 if per_read else 0.0)
        time.sleep(1.0 if per_read else 0.0)
    finally:
        node.rpc.request("evm_setAutomine", [True])
    if per_read:
        node.mine()
    for thread in threads:
        thread.join(60)
    statuses = sorted(a.status_code for a in answers)
    assert statuses in ([200, 200], [200, 409]), [a.text for a in answers]
    assert reader.released == _disclosures_of(node, server, patient.address, provider.address, from_block)
    if statuses == [200, 409]:
        assert _problem(next(a for a in answers if a.status_code == 409), 409)["type"].endswith("idempotency-conflict")
