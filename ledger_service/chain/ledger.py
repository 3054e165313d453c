"""Typed access to the deployed ConsentLedger contract: views by eth_call, writes by the sender."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from eth_utils import keccak, to_checksum_address

from ledger_service.chain.abi import ContractCodec, DecodedEvent
from ledger_service.chain.build import load_artifact
from ledger_service.chain.client import Receipt, RpcClient, RpcError, TransactionSender, reverted_from
from ledger_service.domain.consent import ConsentGrant, ConsentRevoke, ConsentState, DelegateGrant

CONTRACT_NAME: Final = "ConsentLedger"

DEFAULT_ADMIN_ROLE: Final = b"\x00" * 32
PROVIDER_ROLE: Final = keccak(b"PROVIDER_ROLE")
AUDITOR_ROLE: Final = keccak(b"AUDITOR_ROLE")
CUSTODIAN_ROLE: Final = keccak(b"CUSTODIAN_ROLE")
EMERGENCY_ROLE: Final = keccak(b"EMERGENCY_ROLE")
ROLES: Final = {
    "admin": DEFAULT_ADMIN_ROLE,
    "provider": PROVIDER_ROLE,
    "auditor": AUDITOR_ROLE,
    "custodian": CUSTODIAN_ROLE,
    "emergency": EMERGENCY_ROLE,
}


def ledger_codec() -> ContractCodec:
    return ContractCodec(load_artifact(CONTRACT_NAME)["abi"])


@dataclass(frozen=True)
class OnChainRecord:
    author: str
    version: int
    category_index: int
    erased: bool
    head: bytes

    @property
    def exists(self) -> bool:
        return self.version > 0


class ConsentLedgerContract:
    """One deployed ledger. Views never need a key; writes go through ``sender``."""

    def __init__(
        self, rpc: RpcClient, address: str, codec: ContractCodec, sender: TransactionSender | None = None
    ) -> None:
        self.rpc = rpc
        self.address = to_checksum_address(address)
        self.codec = codec
        self.sender = sender

    # ------------------------------------------------------------- plumbing

    def view(self, name: str, *args: Any, block: int | str = "latest") -> tuple[Any, ...]:
        data = self.codec.encode_call(name, *args)
        try:
            raw = self.rpc.call(self.address, data, block=block)
        except RpcError as exc:
            raise reverted_from(exc, self.codec, name) from exc
        return self.codec.decode_result(name, raw)

    def _transact(self, name: str, *args: Any, gas: int | None = None) -> Receipt:
        if self.sender is None:
            raise RuntimeError("this ledger handle has no transaction sender")
        data = self.codec.encode_call(name, *args)
        return self.sender.transact(self.address, data, action=name, gas=gas)

    def events(self, receipt: Receipt) -> list[DecodedEvent]:
        decoded = []
        for log in receipt.logs:
            if to_checksum_address(log["address"]) != self.address:
                continue
            event = self.codec.decode_log(log)
            if event is not None:
                decoded.append(event)
        return decoded

    def event(self, receipt: Receipt, name: str) -> DecodedEvent:
        for event in self.events(receipt):
            if event.name == name:
                return event
        raise LookupError(f"{name} not emitted in 0x{receipt.tx_hash.hex()}")

    # ------------------------------------------------------------- views

    def nonce(self, patient: str, *, block: int | str = "latest") -> int:
        return int(self.view("nonces", to_checksum_address(patient), block=block)[0])

    def is_authorized(
        self, patient: str, grantee: str, record_id: bytes, purpose: bytes, *, block: int | str = "latest"
    ) -> bool:
        return bool(
            self.view(
                "isAuthorized",
                to_checksum_address(patient),
                to_checksum_address(grantee),
                record_id,
                purpose,
                block=block,
            )[0]
        )

    def authorizing_consent(
        self, patient: str, grantee: str, record_id: bytes, purpose: bytes, *, block: int | str = "latest"
    ) -> bytes | None:
        (cid,) = self.view(
            "authorizingConsent",
            to_checksum_address(patient),
            to_checksum_address(grantee),
            record_id,
            purpose,
            block=block,
        )
        return None if cid == b"\x00" * 32 else bytes(cid)

    def consent(self, consent_id: bytes) -> tuple[str, int, int, bool]:
        ((patient, valid_from, valid_until, revoked),) = self.view("consent", consent_id)
        return patient, int(valid_from), int(valid_until), bool(revoked)

    def record(self, patient: str, record_id: bytes, *, block: int | str = "latest") -> OnChainRecord:
        (author, version, category_index, erased), head = self.view(
            "record", to_checksum_address(patient), record_id, block=block
        )
        return OnChainRecord(to_checksum_address(author), int(version), int(category_index), bool(erased), bytes(head))

    def has_role(self, role: bytes, account: str, *, block: int | str = "latest") -> bool:
        return bool(self.view("hasRole", role, to_checksum_address(account), block=block)[0])

    def is_active_provider(self, account: str, *, block: int | str = "latest") -> bool:
        return bool(self.view("isActiveProvider", to_checksum_address(account), block=block)[0])

    def provider_name(self, account: str) -> str:
        return str(self.view("providerName", to_checksum_address(account))[0])

    def delegation(self, patient: str, delegate: str) -> tuple[int, bool]:
        valid_until, live = self.view("delegation", to_checksum_address(patient), to_checksum_address(delegate))
        return int(valid_until), bool(live)

    def category_count(self) -> int:
        return int(self.view("categoryCount")[0])

    def categories(self) -> list[bytes]:
        count = int(self.view("categoryCount")[0])
        return [bytes(self.view("categoryId", i)[0]) for i in range(1, count + 1)]

    def domain_separator(self) -> bytes:
        return bytes(self.view("DOMAIN_SEPARATOR")[0])

    def roles_of(self, account: str) -> list[str]:
        """Role names held by ``account`` now, read in one batched round trip."""
        calls = [
            (
                "eth_call",
                [
                    {
                        "to": self.address,
                        "data": "0x" + self.codec.encode_call("hasRole", role, to_checksum_address(account)).hex(),
                    },
                    "latest",
                ],
            )
            for role in ROLES.values()
        ]
        calls.append(
            (
                "eth_call",
                [
                    {
                        "to": self.address,
                        "data": "0x" + self.codec.encode_call("isSuspended", to_checksum_address(account)).hex(),
                    },
                    "latest",
                ],
            )
        )
        results = self.rpc.batch(calls)
        held = [name for name, raw in zip(ROLES, results[:-1], strict=True) if int(raw, 16) == 1]
        if int(results[-1], 16) == 1:
            held.append("suspended")
        return held

    # ------------------------------------------------------------- consent writes

    def grant_by_sig(self, grant: ConsentGrant, signature: bytes) -> Receipt:
        return self._transact(
            "grantConsentBySig",
            (
                to_checksum_address(grant.patient),
                to_checksum_address(grant.grantee),
                grant.scope,
                grant.purpose,
                grant.valid_from,
                grant.valid_until,
                grant.nonce,
                grant.deadline,
            ),
            signature,
        )

    def revoke_by_sig(self, revoke: ConsentRevoke, signature: bytes) -> Receipt:
        return self._transact(
            "revokeConsentBySig",
            (to_checksum_address(revoke.patient), revoke.consent_id, revoke.nonce, revoke.deadline),
            signature,
        )

    def delegate_by_sig(self, grant: DelegateGrant, signature: bytes) -> Receipt:
        return self._transact(
            "grantDelegateBySig",
            (
                to_checksum_address(grant.patient),
                to_checksum_address(grant.delegate),
                grant.valid_until,
                grant.nonce,
                grant.deadline,
            ),
            signature,
        )

    def grant_direct(self, state: ConsentState) -> Receipt:
        return self._transact(
            "grantConsent",
            to_checksum_address(state.patient),
            to_checksum_address(state.grantee),
            state.scope,
            state.purpose,
            state.valid_from,
            state.valid_until,
        )

    def revoke_direct(self, consent_id: bytes) -> Receipt:
        return self._transact("revokeConsent", consent_id)

    # ------------------------------------------------------------- records

    def anchor_record(self, patient: str, category: bytes, salt: bytes, cid: bytes, commitment: bytes) -> Receipt:
        return self._transact("anchorRecord", to_checksum_address(patient), category, salt, cid, commitment)

    def amend_record(
        self, patient: str, record_id: bytes, cid: bytes, commitment: bytes, previous_hash: bytes
    ) -> Receipt:
        return self._transact("amendRecord", to_checksum_address(patient), record_id, cid, commitment, previous_hash)

    def erase_record(self, patient: str, record_id: bytes) -> Receipt:
        return self._transact("eraseRecord", to_checksum_address(patient), record_id)

    # ------------------------------------------------------------- disclosures

    def log_access(self, patient: str, record_id: bytes, accessor: str, purpose: bytes) -> Receipt:
        return self._transact(
            "logAccess", to_checksum_address(patient), record_id, to_checksum_address(accessor), purpose
        )

    def log_emergency_access(self, patient: str, record_id: bytes, accessor: str, reason_hash: bytes) -> Receipt:
        return self._transact(
            "logEmergencyAccess", to_checksum_address(patient), record_id, to_checksum_address(accessor), reason_hash
        )

    def anchor_disclosure_batch(self, root: bytes, from_index: int, to_index: int) -> Receipt:
        return self._transact("anchorDisclosureBatch", root, from_index, to_index)

    # ------------------------------------------------------------- administration

    def onboard_provider(self, provider: str, name: str) -> Receipt:
        return self._transact("onboardProvider", to_checksum_address(provider), name)

    def grant_role(self, role: bytes, account: str) -> Receipt:
        return self._transact("grantRole", role, to_checksum_address(account))

    def revoke_role(self, role: bytes, account: str) -> Receipt:
        return self._transact("revokeRole", role, to_checksum_address(account))

    def suspend_provider(self, provider: str) -> Receipt:
        return self._transact("suspendProvider", to_checksum_address(provider))

    def reinstate_provider(self, provider: str) -> Receipt:
        return self._transact("reinstateProvider", to_checksum_address(provider))

    def register_category(self, code: str) -> Receipt:
        return self._transact("registerCategory", code)
