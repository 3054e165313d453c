"""The record lifecycle end to end on a real anvil: several patients, providers, purposes."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import select

from ledger_service.blobs import Cid
from ledger_service.bootstrap import Services, admin_ledger, bootstrap
from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.db.models import CommitmentSaltRow, DeliveryRow
from ledger_service.domain.codes import ZERO32, category_id, purpose_to_bytes32
from ledger_service.domain.consent import ConsentGrant, ConsentRevoke, Eip712Domain, RecordErase, typed_data
from ledger_service.errors import (
    BlobIntegrityError,
    ChainUnavailable,
    ConsentDenied,
    IdempotencyConflict,
    InvalidRecordContent,
    NotRecordAuthor,
    PermissionDenied,
    RecordErased,
    SignatureError,
)
from ledger_service.node.reads import RecordContent
from ledger_service.runtime import Runtime
from ledger_service.settings import Settings
from tests.conftest import Chain, free_port

pytestmark = pytest.mark.e2e

OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}]},
    "valueQuantity": {"value": 95, "unit": "mg/dL"},
}


def _fhir(resource: dict[str, object]) -> list[bytes]:
    return [json.dumps(resource).encode()]


class Patient:
    """A patient who signs consent messages; the service's custodian relays them."""

    def __init__(self, account: object, chain: Chain, ledger: ConsentLedgerContract) -> None:
        self.account = account
        self.address: str = account.address  # type: ignore[attr-defined]
        self.chain = chain
        self.ledger = ledger
        self.domain = Eip712Domain(chain.deployment.chain_id, chain.deployment.ledger_address)

    def erase_request(self, record_id: str, *, signer: object | None = None) -> tuple[RecordErase, bytes]:
        """The patient's (or ``signer``'s) signed RecordErase of a record."""
        who = signer or self.account
        nonce = self.ledger.fresh_nonce(who.address)  # type: ignore[attr-defined]
        request = RecordErase(self.address, bytes.fromhex(record_id[2:]), nonce, self.chain.now() + 600)
        full = typed_data(self.domain, request)
        return request, bytes(Account.sign_typed_data(who.key, full_message=full).signature)  # type: ignore[attr-defined]

    def _sign(self, message: ConsentGrant | ConsentRevoke) -> bytes:
        return bytes(Account.sign_typed_data(self.account.key, full_message=typed_data(self.domain, message)).signature)  # type: ignore[attr-defined]

    def grant(self, grantee: str, *, scope: bytes = ZERO32, purpose: str = "TREAT", valid_until: int = 0) -> bytes:
        grant = ConsentGrant(
            self.address,
            grantee,
            scope,
            purpose_to_bytes32(purpose),
            0,
            valid_until,
            self.ledger.fresh_nonce(self.address),
            self.chain.now() + 600,
        )
        self.ledger.send_signed(grant, self._sign(grant))
        return grant.consent_id

    def revoke(self, consent: bytes) -> None:
        revoke = ConsentRevoke(self.address, consent, self.ledger.fresh_nonce(self.address), self.chain.now() + 600)
        self.ledger.send_signed(revoke, self._sign(revoke))


def _patient(chain: Chain, services: Services) -> Patient:
    """A fresh patient account (funded: it may also act directly) for test isolation."""
    account = Account.create()
    services.rpc.request("anvil_setBalance", [account.address, hex(10**18)])
    return Patient(account, chain, services.ledger)


def _disclosures(services: Services, tx_hash: str) -> list[str]:
    receipt = services.rpc.receipt(bytes.fromhex(tx_hash[2:]))
    assert receipt is not None
    return [e.name for e in services.ledger.events(receipt) if e.name in ("AccessLogged", "EmergencyAccessLogged")]


def _access_events(services: Services, from_block: int) -> int:
    codec = services.ledger.codec
    topics = [[codec.topic("AccessLogged"), codec.topic("EmergencyAccessLogged")]]
    if from_block > services.rpc.block_number():
        return 0
    return len(services.rpc.get_logs(services.ledger.address, from_block, services.rpc.block_number(), topics))


def test_consented_read_returns_the_record_and_leaves_exactly_one_disclosure(chain: Chain, services: Services) -> None:
    alice = _patient(chain, services)
    alice.grant(chain.clinic.address)
    created = services.uploads.create(
        provider=chain.clinic.address,
        patient=alice.address,
        category="laboratory",
        media_type="application/fhir+json",
        content=_fhir(OBSERVATION),
    )
    assert created.version == 1 and created.cid.startswith("bafk")

    before = services.rpc.block_number()
    content = services.reads.read(accessor=chain.clinic.address, record_id=created.record_id, purpose="TREAT")
    assert json.loads(content.read_all()) == OBSERVATION
    assert content.media_type == "application/fhir+json"
    assert _disclosures(services, content.disclosure_tx) == ["AccessLogged"]
    assert _access_events(services, before + 1) == 1

    with services.db.session() as s:
        deliveries = s.execute(select(DeliveryRow).where(DeliveryRow.record_id == created.record_id)).scalars().all()
    assert [(d.accessor, d.purpose, d.tx_hash) for d in deliveries] == [
        (chain.clinic.address, "TREAT", content.disclosure_tx)
    ]


@pytest.mark.parametrize("case", ["no-consent", "wrong-purpose", "revoked", "expired", "other-category"])
def test_refused_reads_release_nothing_and_log_nothing(chain: Chain, services: Services, case: str) -> None:
    bob = _patient(chain, services)
    created = services.uploads.create(
        provider=chain.clinic.address,
        patient=bob.address,
        category="imaging",
        media_type="application/octet-stream",
        content=[b"\x89PNG" + secrets.token_bytes(5000)],
    )
    purpose = "TREAT"
    if case == "wrong-purpose":
        bob.grant(chain.lab.address, purpose="HPAYMT")
    elif case == "revoked":
        bob.revoke(bob.grant(chain.lab.address))
    elif case == "expired":
        bob.grant(chain.lab.address, valid_until=chain.now() + 2)
        time.sleep(2.5)
        services.rpc.request("evm_mine", [])
    elif case == "other-category":
        bob.grant(chain.lab.address, scope=category_id("laboratory"))
    before = services.rpc.block_number()
    with pytest.raises(ConsentDenied) as refused:
        services.reads.read(accessor=chain.lab.address, record_id=created.record_id, purpose=purpose)
    expected = {"revoked": "consent revoked", "expired": "consent expired"}.get(case, "no consent")
    assert expected in str(refused.value)
    assert _access_events(services, before + 1) == 0
    with services.db.session() as s:
        assert s.execute(select(DeliveryRow).where(DeliveryRow.record_id == created.record_id)).first() is None


def test_suspended_provider_is_refused(chain: Chain, tmp_path: Path) -> None:
    provider = Account.create()
    instance = bootstrap(chain.settings_for(tmp_path / "svc", provider_keys=provider.key.hex()), chain.deployment)
    try:
        instance.rpc.request("anvil_setBalance", [provider.address, hex(10**18)])
        admin = admin_ledger(chain.runtime.settings, chain.deployment, instance.rpc)
        admin.onboard_provider(provider.address, "Suspended Clinic")
        carol = _patient(chain, instance)
        carol.grant(provider.address)
        created = instance.uploads.create(
            provider=provider.address,
            patient=carol.address,
            category="medication",
            media_type="text/plain",
            content=[b"amoxicillin 500 mg"],
        )
        assert instance.reads.read(accessor=provider.address, record_id=created.record_id, purpose="TREAT").read_all()
        admin.suspend_provider(provider.address)
        with pytest.raises(ConsentDenied, match="not an active provider"):
            instance.reads.read(accessor=provider.address, record_id=created.record_id, purpose="TREAT")
        with pytest.raises(PermissionDenied):
            instance.uploads.create(
                provider=provider.address,
                patient=carol.address,
                category="medication",
                media_type="text/plain",
                content=[b"x"],
            )
    finally:
        instance.close()


def test_amend_chains_versions_and_only_the_author_may_amend(chain: Chain, services: Services) -> None:
    dave = _patient(chain, services)
    dave.grant(chain.lab.address)
    first = services.uploads.create(
        provider=chain.clinic.address,
        patient=dave.address,
        category="clinical-note",
        media_type="text/plain",
        content=[b"v1: headache"],
    )
    second = services.uploads.amend(
        provider=chain.clinic.address, record_id=first.record_id, media_type="text/plain", content=[b"v2: migraine"]
    )
    assert second.version == 2
    versions = services.records.versions(first.record_id)
    assert [v.previous_hash for v in versions] == ["0x" + "00" * 32, first.version_hash]
    onchain = services.ledger.record(dave.address, bytes.fromhex(first.record_id[2:]))
    assert (onchain.version, "0x" + onchain.head.hex()) == (2, second.version_hash)
    with pytest.raises(NotRecordAuthor):
        services.uploads.amend(
            provider=chain.lab.address, record_id=first.record_id, media_type="text/plain", content=[b"x"]
        )
    assert services.reads.read(accessor=chain.lab.address, record_id=first.record_id, purpose="TREAT").read_all() == (
        b"v2: migraine"
    )


def test_a_retried_keyed_read_discloses_once_per_release_of_its_bytes(chain: Chain, services: Services) -> None:
    erin = _patient(chain, services)
    erin.grant(chain.clinic.address)
    created = services.uploads.create(
        provider=chain.clinic.address,
        patient=erin.address,
        category="laboratory",
        media_type="text/plain",
        content=[b"HbA1c 5.4%"],
    )
    before = services.rpc.block_number()

    def read(key: str) -> RecordContent:
        return services.reads.read(
            accessor=chain.clinic.address, record_id=created.record_id, purpose="TREAT", idempotency_key=key
        )

    # A retry whose first attempt never got its bytes out is answered by that attempt's disclosure.
    cut = read("req-1")
    cut.chunks.close()  # the client went away before reading anything
    retried = read("req-1")
    # ... while it is being sent, an identical request is told to wait, not given a second copy.
    with pytest.raises(IdempotencyConflict, match="being answered"):
        read("req-1")
    assert retried.read_all() == b"HbA1c 5.4%"
    assert retried.disclosure_tx == cut.disclosure_tx
    assert _access_events(services, before + 1) == 1
    # Once the bytes went out in full, the same key again is a new release with a disclosure of its own.
    again = read("req-1")
    assert again.read_all() == b"HbA1c 5.4%"
    assert again.disclosure_tx != retried.disclosure_tx
    assert _access_events(services, before + 1) == 2


def test_emergency_access_is_logged_flagged_and_needs_the_role(chain: Chain, services: Services) -> None:
    frank = _patient(chain, services)
    created = services.uploads.create(
        provider=chain.lab.address,
        patient=frank.address,
        category="laboratory",
        media_type="text/plain",
        content=[b"blood type O-"],
    )
    content = services.reads.emergency_read(
        accessor=chain.clinic.address, record_id=created.record_id, reason="unconscious patient in ER"
    )
    assert content.read_all() == b"blood type O-"
    assert _disclosures(services, content.disclosure_tx) == ["EmergencyAccessLogged"]
    with pytest.raises(PermissionDenied):
        services.reads.emergency_read(accessor=chain.lab.address, record_id=created.record_id, reason="curious")


def test_flipped_byte_in_a_stored_block_fails_the_read_naming_the_block(chain: Chain, services: Services) -> None:
    gina = _patient(chain, services)
    gina.grant(chain.clinic.address)
    created = services.uploads.create(
        provider=chain.clinic.address,
        patient=gina.address,
        category="imaging",
        media_type="application/dicom",
        content=[secrets.token_bytes(700_000)],
    )
    blocks = services.blobs.blocks_of(Cid.parse(created.cid))
    victim = blocks[-1]
    path = next(services.settings.blob_dir.rglob(str(victim)))
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BlobIntegrityError, match=str(victim)):
        services.reads.read(accessor=chain.clinic.address, record_id=created.record_id, purpose="TREAT").read_all()


def test_erasure_destroys_keys_collects_blobs_and_refuses_reads(chain: Chain, services: Services) -> None:
    hana = _patient(chain, services)
    hana.grant(chain.clinic.address)
    created = services.uploads.create(
        provider=chain.clinic.address,
        patient=hana.address,
        category="clinical-note",
        media_type="text/plain",
        content=[b"sensitive note"],
    )
    services.uploads.amend(
        provider=chain.clinic.address,
        record_id=created.record_id,
        media_type="text/plain",
        content=[b"amended sensitive note"],
    )
    cids = [Cid.parse(v.cid) for v in services.records.versions(created.record_id)]
    # The clinic cannot erase: its signature is not the patient's (and nothing is destroyed by the attempt).
    request, by_clinic = hana.erase_request(created.record_id, signer=chain.clinic)
    with pytest.raises(SignatureError):
        services.erasure.erase(record_id=created.record_id, request=request, signature=by_clinic)
    with services.db.session() as s:
        assert (
            s.execute(select(CommitmentSaltRow).where(CommitmentSaltRow.record_id == created.record_id)).first()
            is not None
        )
    request, signature = hana.erase_request(created.record_id)
    result = services.erasure.erase(record_id=created.record_id, request=request, signature=signature)
    assert result.versions == 2
    receipt = services.rpc.receipt(bytes.fromhex(result.tx_hash[2:]))
    assert receipt is not None
    assert [e.name for e in services.ledger.events(receipt)] == ["RecordErased"]
    with services.db.session() as s:
        assert (
            s.execute(select(CommitmentSaltRow).where(CommitmentSaltRow.record_id == created.record_id)).first() is None
        )
    for cid in cids:
        assert not services.blobs.has(cid)
    with pytest.raises(RecordErased):
        services.reads.read(accessor=chain.clinic.address, record_id=created.record_id, purpose="TREAT")
    assert services.ledger.record(hana.address, bytes.fromhex(created.record_id[2:])).erased


def test_invalid_fhir_is_refused_before_anything_is_stored(chain: Chain, services: Services) -> None:
    ivan = _patient(chain, services)
    with pytest.raises(InvalidRecordContent):
        services.uploads.create(
            provider=chain.clinic.address,
            patient=ivan.address,
            category="laboratory",
            media_type="application/fhir+json",
            content=[b'{"resourceType": "Observation", "status": "bogus"}'],
        )
    assert services.records.records_of(ivan.address) == []


def test_reads_fail_closed_when_the_chain_is_down(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "own", chain_port=free_port(), receipt_timeout=5, rpc_timeout=2)
    with Runtime(settings) as runtime:
        instance = bootstrap(settings, runtime.deployment)
        try:
            clinic = runtime.deployment.demo["providers"][0]["address"]
            patient_account = Account.from_key("0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a")
            ledger = instance.ledger
            domain = Eip712Domain(runtime.deployment.chain_id, runtime.deployment.ledger_address)
            now = int(instance.rpc.get_block("latest")["timestamp"], 16)
            grant = ConsentGrant(
                patient_account.address,
                clinic,
                ZERO32,
                purpose_to_bytes32("TREAT"),
                0,
                0,
                ledger.fresh_nonce(patient_account.address),
                now + 600,
            )
            ledger.send_signed(
                grant,
                bytes(Account.sign_typed_data(patient_account.key, full_message=typed_data(domain, grant)).signature),
            )
            created = instance.uploads.create(
                provider=clinic,
                patient=patient_account.address,
                category="laboratory",
                media_type="text/plain",
                content=[b"K+ 4.1 mmol/L"],
            )
            assert runtime.anvil is not None
            runtime.anvil.kill()
            with pytest.raises(ChainUnavailable):
                instance.reads.read(accessor=clinic, record_id=created.record_id, purpose="TREAT")
            # Nothing was released or logged; the clinic's signed request is kept (pending), so that a retry
            # re-sends that very request rather than a second one.
            with instance.db.session() as s:
                rows = list(s.execute(select(DeliveryRow)).scalars())
                assert [(r.status, r.block_number) for r in rows] == [("pending", None)]
                assert rows[0].signed_request is not None and rows[0].released_at is None
        finally:
            instance.close()


def test_two_services_on_one_chain_keep_their_nonces_straight(chain: Chain, services: Services, tmp_path: Path) -> None:
    """Concurrent senders: many anchors from threads, all land, none collide on a nonce."""
    from concurrent.futures import ThreadPoolExecutor

    judy = _patient(chain, services)

    def upload(i: int) -> int:
        return services.uploads.create(
            provider=chain.clinic.address if i % 2 else chain.lab.address,
            patient=judy.address,
            category="laboratory",
            media_type="text/plain",
            content=[f"result {i}".encode()],
        ).version

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(upload, range(24))) == [1] * 24
    assert len(services.records.records_of(judy.address)) == 24


def test_recovery_leaves_a_live_reads_pending_disclosure_alone_and_finishes_a_stale_one(
    chain: Chain, services: Services
) -> None:
    """Periodic recovery re-sends pending signed requests; it must not race a read that is still relaying its
    own (it would log it first and the read would drop the row), so it touches only rows older than a bound."""
    from ledger_service.db.models import RecordRow
    from ledger_service.records.disclosure import DisclosureRequest, KeyedRequest

    pia = _patient(chain, services)
    pia.grant(chain.clinic.address)
    created = services.uploads.create(
        provider=chain.clinic.address,
        patient=pia.address,
        category="laboratory",
        media_type="text/plain",
        content=[b"Na+ 140 mmol/L"],
    )
    with services.db.session() as s:
        record = s.get(RecordRow, created.record_id)
        assert record is not None
    sign = services.reads._access_request(record, chain.clinic.address, purpose_to_bytes32("TREAT"))
    request = DisclosureRequest(
        purpose="TREAT",
        reason=None,
        sign=sign,
        precheck=None,
        refused_by="AccessNotAuthorized",
        refusal=lambda: ConsentDenied("refused"),
        still_allowed=lambda: None,
    )
    strategy = services.per_read_disclosures
    delivery_id, _traced = strategy._trace(
        record, chain.clinic.address, request, KeyedRequest(None, "h", lambda: None), sign(False)
    )
    before = _access_events(services, services.rpc.block_number() + 1)
    assert strategy.finish_traced_disclosures(stale_after=3600) == (0, 0)  # young: a live read's, left alone
    with services.db.session() as s:
        row = s.get(DeliveryRow, delivery_id)
        assert row is not None and row.status == "pending"
    start = services.rpc.block_number() + 1
    finished, dropped = strategy.finish_traced_disclosures(stale_after=0)
    assert (finished, dropped) == (1, 0) and before == 0
    assert _access_events(services, start) == 1  # the same signed request, logged once
    with services.db.session() as s:
        row = s.get(DeliveryRow, delivery_id)
        assert row is not None and row.status == "logged" and row.tx_hash is not None


def test_an_access_request_that_landed_untraced_is_answered_with_its_own_disclosure(
    chain: Chain, services: Services
) -> None:
    """A relay that died after sending but before tracing: the same signed request relayed again is answered
    with the disclosure it logged (found by its requestDigest), not refused as a used nonce, and not logged twice."""
    from ledger_service.db.models import RecordRow

    quinn = _patient(chain, services)
    quinn.grant(chain.clinic.address)
    created = services.uploads.create(
        provider=chain.clinic.address,
        patient=quinn.address,
        category="laboratory",
        media_type="text/plain",
        content=[b"Hb 13.5 g/dL"],
    )
    with services.db.session() as s:
        record = s.get(RecordRow, created.record_id)
        assert record is not None
    signed = services.reads._access_request(record, chain.clinic.address, purpose_to_bytes32("TREAT"))(False)
    start = services.rpc.block_number() + 1
    receipt = services.ledger.send_signed(signed.message, signed.signature)  # sent, never traced by the relay
    outcome = services.hub_relay.relay(signed.message, signed.signature)
    assert outcome.replayed and outcome.tx_hash == receipt.tx_hex and outcome.version == 1
    assert _access_events(services, start) == 1
