"""``verify`` on a real anvil: a clean trail passes; every tamper case is named and fails the CLI."""

from __future__ import annotations

import argparse
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak
from sqlalchemy import select

from ledger_service.audit.cli import add_audit_commands
from ledger_service.audit.fetch import PatientLogCache, fetch_trail
from ledger_service.audit.sources import operator_records
from ledger_service.audit.trail import RoleEvent
from ledger_service.audit.verifier import Report, Scope, verify
from ledger_service.blobs import Cid, EmbeddedBlobStore
from ledger_service.bootstrap import Services
from ledger_service.chain.ledger import ConsentLedgerContract, ledger_codec
from ledger_service.chain.rpc import RpcClient
from ledger_service.chain.sender import TransactionSender
from ledger_service.db.models import DeliveryRow
from ledger_service.domain.codes import ZERO32, purpose_to_bytes32
from ledger_service.domain.consent import AccessRequest, ConsentGrant, ConsentState, consent_id, typed_data
from ledger_service.errors import AuditError
from tests.conftest import Chain

pytestmark = pytest.mark.integration


def patient_ledger(rpc: RpcClient, address: str, chain_id: int) -> tuple[ConsentLedgerContract, str]:
    """A funded fresh patient who calls the contract directly."""
    account = Account.create()
    rpc.request("anvil_setBalance", [account.address, hex(10**18)])
    codec = ledger_codec()
    sender = TransactionSender(rpc, account.key.hex(), codec, chain_id=chain_id)
    return ConsentLedgerContract(rpc, address, codec, sender), account.address


def grant(ledger: ConsentLedgerContract, patient: str, grantee: str, *, valid_until: int = 0) -> bytes:
    p = purpose_to_bytes32("TREAT")
    cid = consent_id(patient, grantee, ZERO32, p)
    ledger.grant_direct(ConsentState(cid, patient, grantee, ZERO32, p, 0, valid_until))
    return cid


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="consent-ledger")
    add_audit_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


@dataclass
class Scenario:
    chain: Chain
    services: Services
    patient: str
    records: list[str]
    cids: list[str]
    data_dir: Path

    def report(self, **scope: object) -> Report:
        """The patient's report from the whole trail, checked to equal the one from a trail and an
        operator DB read for this patient alone (what the API and ``verify --patient`` do)."""
        reports = []
        for only in (None, self.patient):
            trail = fetch_trail(
                self.services.rpc,
                self.chain.deployment.ledger_address,
                from_block=self.chain.deployment.block_number,
                patient=only,
            )
            reports.append(
                verify(
                    trail,
                    self.services.blobs,
                    operator=operator_records(self.services.db, patient=only),
                    scope=Scope(patient=self.patient, **scope),  # type: ignore[arg-type]
                )
            )
        whole, scoped = reports
        assert [v.to_json() for v in scoped.violations] == [v.to_json() for v in whole.violations]
        # Every count but the events read (fewer: the other patients' are not fetched) agrees.
        assert {**scoped.counts, "events": 0} == {**whole.counts, "events": 0}
        return whole

    def cli(self, *extra: str) -> int:
        return run_cli(["verify", "--data-dir", str(self.data_dir), "--patient", self.patient, "--no-progress", *extra])


@pytest.fixture
def scenario(chain: Chain, services: Services) -> Scenario:
    """One patient: a small and a multi-block record, consented reads, one break-glass access."""
    ledger, patient = patient_ledger(services.rpc, chain.deployment.ledger_address, chain.deployment.chain_id)
    grant(ledger, patient, chain.lab.address)
    small = services.uploads.create(
        provider=chain.clinic.address,
        patient=patient,
        category="laboratory",
        media_type="text/plain",
        content=[b"K+ 4.1 mmol/L"],
    )
    services.uploads.amend(
        provider=chain.clinic.address, record_id=small.record_id, media_type="text/plain", content=[b"K+ 4.2"]
    )
    big = services.uploads.create(
        provider=chain.clinic.address,
        patient=patient,
        category="imaging",
        media_type="application/dicom",
        content=[secrets.token_bytes(600_000)],
    )
    for record in (small, big):
        services.reads.read(accessor=chain.lab.address, record_id=record.record_id, purpose="TREAT").read_all()
    services.reads.emergency_read(accessor=chain.clinic.address, record_id=small.record_id, reason="coma").read_all()
    # Another patient's history beside it, which a patient-scoped read of the trail leaves out.
    other_ledger, other = patient_ledger(services.rpc, chain.deployment.ledger_address, chain.deployment.chain_id)
    grant(other_ledger, other, chain.lab.address)
    theirs = services.uploads.create(
        provider=chain.clinic.address, patient=other, category="laboratory", media_type="text/plain", content=[b"Na"]
    )
    services.reads.read(accessor=chain.lab.address, record_id=theirs.record_id, purpose="TREAT").read_all()
    data_dir = services.settings.data_dir
    chain.deployment.save(services.settings.deployment_file)
    cids = [v.cid for r in (small, big) for v in services.records.versions(r.record_id)]
    return Scenario(chain, services, patient, [small.record_id, big.record_id], cids, data_dir)


def test_clean_trail_passes_and_cli_exits_zero(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = scenario.report()
    assert report.ok, report.violations
    c = report.counts
    assert (c["records"], c["versions"], c["blobsChecked"], c["disclosures"], c["emergencyAccesses"]) == (2, 3, 3, 3, 1)
    assert c["deliveriesChecked"] == 3 and c["bytesChecked"] > 600_000
    # Who made each of the patient's acts was checked against its transaction: the grant (the patient's own
    # call), two anchors and an amendment (the clinic's signatures), two reads and a break-glass access.
    assert c["actsChecked"] == 7 and any("every act's party" in check for check in report.checks)
    html = tmp_path / "report.html"
    assert scenario.cli("--json", "--html", str(html)) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["summary"]["records"] == 2
    assert "<svg" in html.read_text() and scenario.patient in html.read_text()
    assert scenario.cli("--record", scenario.records[0]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_a_patient_scoped_read_leaves_other_patients_out(scenario: Scenario) -> None:
    ledger = scenario.chain.deployment.ledger_address
    start = scenario.chain.deployment.block_number
    whole = fetch_trail(scenario.services.rpc, ledger, from_block=start)
    mine = fetch_trail(scenario.services.rpc, ledger, from_block=start, patient=scenario.patient)
    patients = {getattr(e, "patient", scenario.patient) for e in mine.events}
    assert patients == {scenario.patient} and len(mine.events) < len(whole.events)
    assert len(mine.of_type(RoleEvent)) == len(whole.of_type(RoleEvent)) > 0  # the global events are all there
    with pytest.raises(AuditError, match="verifies only that patient"):
        verify(mine, scenario.services.blobs, scope=Scope())


class _CountingRpc(RpcClient):
    """The real client, noting the block ranges of the eth_getLogs requests it sends."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.log_ranges: list[tuple[int, int]] = []
        self.shared_from: list[int] = []  # where each read of the global (not per-patient) events began
        self.transactions_read = 0  # transactions traced or looked up, or blocks read whole with theirs

    def batch_responses(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
        for method, params in calls:
            if method in ("trace_transaction", "eth_getTransactionByHash") or (
                method == "eth_getBlockByNumber" and params[1]
            ):
                self.transactions_read += 1
            if method == "eth_getLogs":
                self.log_ranges.append((int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)))
                if len(params[0].get("topics", ())) == 1:
                    self.shared_from.append(int(params[0]["fromBlock"], 16))
        return super().batch_responses(calls)


def test_a_repeated_patient_audit_reads_only_new_blocks_and_survives_a_reorg(scenario: Scenario) -> None:
    rpc = _CountingRpc(scenario.chain.rpc_url)
    ledger, start = scenario.chain.deployment.ledger_address, scenario.chain.deployment.block_number
    cache = PatientLogCache()

    def audited() -> list[object]:
        return fetch_trail(rpc, ledger, from_block=start, patient=scenario.patient, cache=cache).events

    def uncached() -> list[object]:
        return fetch_trail(scenario.services.rpc, ledger, from_block=start, patient=scenario.patient).events

    assert audited() == uncached()
    head = rpc.block_number()
    snapshot = rpc.request("evm_snapshot")
    rpc.log_ranges.clear()
    scenario.services.reads.read(
        accessor=scenario.chain.lab.address, record_id=scenario.records[0], purpose="TREAT"
    ).read_all()
    rpc.transactions_read = 0
    events = audited()
    assert events == uncached() and len(events) == len(uncached())
    assert rpc.log_ranges and min(lo for lo, _hi in rpc.log_ranges) == head + 1  # only the new blocks
    assert rpc.transactions_read == 1  # and only the new read's transaction
    # A reorganization replaces the blocks after the snapshot: the cached range no longer ends at the
    # same block, so the patient's logs are read again from the start.
    rpc.request("evm_revert", [snapshot])
    other_ledger, other = patient_ledger(rpc, ledger, scenario.chain.deployment.chain_id)
    grant(other_ledger, other, scenario.chain.lab.address)  # a different block at the cached height
    rpc.log_ranges.clear()
    assert audited() == uncached() and len(audited()) == len(events) - 1  # the read is gone with its block
    assert min(lo for lo, _hi in rpc.log_ranges) == start
    # Another patient's audit reads their own events from the start, the global ones only where the
    # cache ends: those are kept once for everyone.
    head = rpc.block_number()
    rpc.shared_from.clear()
    fetch_trail(rpc, ledger, from_block=start, patient=scenario.chain.lab.address, cache=cache)
    assert rpc.shared_from == [] or min(rpc.shared_from) > head


def test_the_trail_carries_each_acts_transaction(scenario: Scenario) -> None:
    """The gatherer decodes every party-naming event's transaction: the patient's own grant is a direct call
    from the patient; the clinic's anchors and the lab's reads are its signed messages, relayed by the hub."""
    trail = fetch_trail(
        scenario.services.rpc,
        scenario.chain.deployment.ledger_address,
        from_block=scenario.chain.deployment.block_number,
        patient=scenario.patient,
    )
    assert trail.acts is not None
    (grant_event,) = trail.consents
    grant_act = trail.acts[grant_event.at.tx_hash]
    assert (grant_act.function, grant_act.sender, grant_act.message) == ("grantConsent", scenario.patient, None)
    for read in trail.disclosures:
        act = trail.acts[read.at.tx_hash]
        assert act.function in ("logAccessBySig", "logEmergencyAccessBySig") and act.message is not None
        assert act.message.accessor == read.accessor and act.sender != read.accessor  # relayed, not sent
    assert trail.contract_signatures == {}  # every party here is an ordinary account


# Runtime code of an ERC-1271 wallet that accepts every signature: returns bytes32(0x1626ba7e).
ACCEPTING_WALLET = "0x631626ba7e60e01b60005260206000f3"


def forwarding_wallet(ledger: str) -> str:
    """Runtime code of a smart account that calls the ledger with the calldata it is sent (reverting if
    the ledger does): its owner's transactions reach the ledger from the wallet, as msg.sender."""
    code = (
        "36600060003760006000366000600073"  # calldatacopy(0, 0, size); push retSize, retOffset, size, 0, 0, ledger
        + ledger[2:].lower()
        + "5af1"  # gas, call
        + "15602b57"  # iszero(success) -> jump to the revert
        + "00"  # stop
        + "5b60006000fd"  # jumpdest: revert(0, 0)
    )
    assert bytes.fromhex(code)[0x2B] == 0x5B  # the jump lands on the jumpdest
    return "0x" + code


class _NoTraceRpc(RpcClient):
    """A node without the trace API (geth's answer to trace_transaction)."""

    def batch_responses(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
        if calls and all(method == "trace_transaction" for method, _params in calls):
            return [
                {"id": i, "error": {"code": -32601, "message": "the method trace_transaction does not exist"}}
                for i in range(len(calls))
            ]
        return super().batch_responses(calls)


def test_a_node_without_the_trace_api_gives_the_same_acts_from_its_transactions(scenario: Scenario) -> None:
    ledger, start = scenario.chain.deployment.ledger_address, scenario.chain.deployment.block_number
    traced = fetch_trail(scenario.services.rpc, ledger, from_block=start, patient=scenario.patient)
    plain = fetch_trail(_NoTraceRpc(scenario.chain.rpc_url), ledger, from_block=start, patient=scenario.patient)
    assert traced.acts and plain.acts == traced.acts


def test_an_act_a_smart_account_sends_itself_is_attributed_from_the_trace(scenario: Scenario, chain: Chain) -> None:
    """A patient that is a smart account grants consent by calling the ledger itself (grantConsent, msg.sender
    the account). Its transaction is to the account, not the ledger: the call trace shows who called the ledger;
    a node without traces cannot, and the auditor says so rather than take the event's word."""
    services = scenario.services
    owner = Account.create()
    services.rpc.request("anvil_setBalance", [owner.address, hex(10**18)])
    wallet = Account.create().address
    services.rpc.request("anvil_setCode", [wallet, forwarding_wallet(chain.deployment.ledger_address)])
    codec = ledger_codec()
    call = codec.encode_call("grantConsent", wallet, chain.lab.address, ZERO32, purpose_to_bytes32("TREAT"), 0, 0)
    TransactionSender(services.rpc, owner.key.hex(), codec, chain_id=chain.deployment.chain_id).transact(
        wallet, call, action="grantConsent through the wallet", gas=300_000
    )
    scenario.patient = wallet
    report = scenario.report()
    assert report.ok, report.violations
    assert (report.counts["consentGrants"], report.counts["actsChecked"]) == (1, 1)
    start = chain.deployment.block_number
    untraced = fetch_trail(
        _NoTraceRpc(chain.rpc_url), chain.deployment.ledger_address, from_block=start, patient=wallet
    )
    (v,) = verify(untraced, None, scope=Scope(patient=wallet)).violations
    assert v.code == "act-unattributable" and "not the ledger" in v.message


def test_a_contract_patient_grants_under_erc1271_and_verifies(scenario: Scenario, chain: Chain) -> None:
    """A patient that is a contract signs nothing by ECDSA: the ledger and then the auditor ask its
    isValidSignature, at the block of the act."""
    services = scenario.services
    wallet = Account.create().address
    services.rpc.request("anvil_setCode", [wallet, ACCEPTING_WALLET])
    grant_message = ConsentGrant(
        wallet, chain.lab.address, ZERO32, purpose_to_bytes32("TREAT"), 0, 0, 0, services.chain_time() + 600
    )
    services.ledger.send_signed(grant_message, b"approved by the wallet's owners")
    record = services.uploads.create(
        provider=chain.clinic.address, patient=wallet, category="laboratory", media_type="text/plain", content=[b"x"]
    )
    services.reads.read(accessor=chain.lab.address, record_id=record.record_id, purpose="TREAT").read_all()
    scenario.patient = wallet
    report = scenario.report()
    assert report.ok, report.violations
    assert (report.counts["consentGrants"], report.counts["disclosures"], report.counts["actsChecked"]) == (1, 1, 3)
    trail = fetch_trail(
        services.rpc, chain.deployment.ledger_address, from_block=chain.deployment.block_number, patient=wallet
    )
    assert list(trail.contract_signatures.values()) == [True]


def test_auditor_mode_uses_only_own_nodes(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "verify",
        "--rpc-url",
        scenario.chain.rpc_url,
        "--contract",
        scenario.chain.deployment.ledger_address,
        "--blob-store",
        str(scenario.services.settings.blob_dir),
        "--patient",
        scenario.patient,
        "--json",
        "--no-progress",
    ]
    assert run_cli(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert any("operator DB checks skipped" in n for n in data["notes"])
    assert run_cli(["verify", "--rpc-url", scenario.chain.rpc_url, "--no-progress"]) == 2
    assert run_cli(["verify", "--rpc-url", "http://127.0.0.1:1", "--contract", data["contract"], "--no-progress"]) == 2
    assert "cannot reach" in capsys.readouterr().err


def _block_file(scenario: Scenario, cid: str, which: int) -> Path:
    store = scenario.services.blobs
    assert isinstance(store, EmbeddedBlobStore)
    return store.block_path(store.blocks_of(Cid.parse(cid))[which])


def test_flipped_byte_in_a_blob(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    path = _block_file(scenario, scenario.cids[2], -1)
    data = bytearray(path.read_bytes())
    data[1234] ^= 0x40
    path.write_bytes(bytes(data))
    (v,) = scenario.report().violations
    assert v.code == "blob-corrupt" and v.record_id == scenario.records[1] and path.name in v.message
    assert scenario.cli() == 1
    assert "blob-corrupt" in capsys.readouterr().out


def test_deleted_blob(scenario: Scenario) -> None:
    _block_file(scenario, scenario.cids[0], 0).unlink()
    (v,) = scenario.report().violations
    assert v.code == "blob-missing" and v.record_id == scenario.records[0] and scenario.cids[0] in v.message
    assert scenario.cli() == 1


def test_edited_extra_and_missing_delivery_rows(scenario: Scenario) -> None:
    with scenario.services.db.session() as s:
        rows = list(s.execute(select(DeliveryRow).order_by(DeliveryRow.id)).scalars())
        edited, missing = rows[0], rows[1]
        edited.accessor = scenario.chain.clinic.address
        missing_tx = missing.tx_hash
        s.delete(missing)
        s.add(
            DeliveryRow(
                record_id=edited.record_id,
                version=2,
                patient=scenario.patient,
                accessor=scenario.chain.lab.address,
                purpose="TREAT",
                consent_id=edited.consent_id,
                emergency=False,
                reason=None,
                status="logged",
                tx_hash="0x" + secrets.token_hex(32),
                block_number=edited.block_number,
                log_index=0,
                created_at=edited.created_at,
            )
        )
        edited_id = edited.id
    report = scenario.report()
    by_code = {v.code: v for v in report.violations}
    assert set(by_code) == {"delivery-mismatch", "delivery-without-event", "event-without-delivery"}
    assert (
        by_code["delivery-mismatch"].entry == f"delivery #{edited_id}"
        and "accessor" in by_code["delivery-mismatch"].message
    )
    assert by_code["event-without-delivery"].tx == missing_tx
    assert by_code["delivery-without-event"].record_id == edited.record_id
    assert scenario.cli() == 1


def _consent_slot(rpc: RpcClient, contract: str, consent: bytes) -> int:
    """The storage slot of ``_consents[consent]`` (found by probing the mapping's base slot)."""
    for base in range(64):
        slot = int.from_bytes(keccak(abi_encode(["bytes32", "uint256"], [consent, base])), "big")
        if int(rpc.request("eth_getStorageAt", [contract, hex(slot), "latest"]), 16) != 0:
            return slot
    raise AssertionError("consent storage slot not found")


def test_disclosure_under_an_expired_consent(scenario: Scenario, chain: Chain) -> None:
    """Test-only path: widen the expired consent's stored window for one relayed access request, then restore it."""
    services = scenario.services
    ledger, patient = patient_ledger(services.rpc, chain.deployment.ledger_address, chain.deployment.chain_id)
    record = services.uploads.create(
        provider=chain.clinic.address, patient=patient, category="laboratory", media_type="text/plain", content=[b"x"]
    )
    consent = grant(ledger, patient, chain.lab.address, valid_until=1)  # expired since 1970
    address = chain.deployment.ledger_address
    slot = _consent_slot(services.rpc, address, consent)
    stored = services.rpc.request("eth_getStorageAt", [address, hex(slot), "latest"])
    widened = int(patient, 16)  # validFrom 0, validUntil 0 (no expiry), not revoked
    services.rpc.request("anvil_setStorageAt", [address, hex(slot), "0x" + widened.to_bytes(32, "big").hex()])
    request = AccessRequest(
        patient,
        chain.lab.address,
        bytes.fromhex(record.record_id[2:]),
        1,
        purpose_to_bytes32("TREAT"),
        services.ledger.fresh_nonce(chain.lab.address),
        services.chain_time() + 600,
    )
    signed = Account.sign_typed_data(chain.lab.key, full_message=typed_data(services.domain, request))
    try:
        receipt = services.ledger.send_signed(request, bytes(signed.signature))
    finally:
        services.rpc.request(
            "anvil_setStorageAt", [address, hex(slot), "0x" + int(stored, 16).to_bytes(32, "big").hex()]
        )
    scenario.patient = patient
    report = scenario.report()
    bad = [v for v in report.violations if v.code == "disclosure-not-authorized"]
    assert len(bad) == 1
    assert bad[0].record_id == record.record_id and bad[0].block == receipt.block_number
    assert "consent expired" in bad[0].message
    assert scenario.cli() == 1
