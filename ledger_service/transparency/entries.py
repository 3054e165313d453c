"""The disclosure-log entry of batched mode and its canonical leaf encoding.

In batched mode each disclosure is appended to an RFC 9162 Merkle log whose root the custodian
anchors with ``anchorDisclosureBatch``. The leaf data of one entry is the Solidity
``abi.encode`` of these twelve static fields (12 x 32 = 384 bytes), in this order::

    abi.encode(
        bytes32 typeHash,      // keccak256(DISCLOSURE_ENTRY_TYPE), see below
        uint256 chainId,       // the chain of the ledger
        address ledger,        // the ConsentLedger contract
        bytes32 recordId,
        uint32  version,       // the record version released
        address patient,
        address accessor,      // the provider the record was released to
        bytes32 purpose,       // bytes32("TREAT"); bytes32("ETREAT") for a break-glass access
        bytes32 consentId,     // the authorizing consent; 0 for a break-glass access
        bytes32 reasonHash,    // keccak256(utf-8 reason) for a break-glass access; 0 otherwise
        uint64  blockNumber,   // the block whose state authorized the release (the consent check)
        uint64  timestamp      // unix seconds of the release
    )

and the Merkle leaf hash is ``SHA-256(0x00 || leafData)`` (RFC 9162). Decoding is strict: bytes that
do not re-encode to themselves (wrong length, dirty padding, another type hash) are refused, so one
entry has exactly one leaf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from ledger_service.domain.codes import EMERGENCY_PURPOSE, ZERO32, purpose_from_bytes32
from ledger_service.errors import AuditError
from ledger_service.transparency.merkle import leaf_hash

DISCLOSURE_ENTRY_TYPE: Final = (
    "ConsentLedgerDisclosure(uint256 chainId,address ledger,bytes32 recordId,uint32 version,address patient,"
    "address accessor,bytes32 purpose,bytes32 consentId,bytes32 reasonHash,uint64 blockNumber,uint64 timestamp)"
)
DISCLOSURE_ENTRY_TYPEHASH: Final = keccak(DISCLOSURE_ENTRY_TYPE.encode("ascii"))
_TYPES: Final = [
    "bytes32",
    "uint256",
    "address",
    "bytes32",
    "uint32",
    "address",
    "address",
    "bytes32",
    "bytes32",
    "bytes32",
    "uint64",
    "uint64",
]
ENTRY_SIZE: Final = 32 * len(_TYPES)


class EntryFormatError(AuditError):
    code = "disclosure-entry-invalid"


@dataclass(frozen=True)
class DisclosureEntry:
    chain_id: int
    ledger: str
    record_id: bytes
    version: int
    patient: str
    accessor: str
    purpose: bytes
    consent_id: bytes
    reason_hash: bytes
    block_number: int
    timestamp: int

    @property
    def emergency(self) -> bool:
        return purpose_from_bytes32(self.purpose) == EMERGENCY_PURPOSE

    def encode(self) -> bytes:
        return abi_encode(
            _TYPES,
            [
                DISCLOSURE_ENTRY_TYPEHASH,
                self.chain_id,
                to_checksum_address(self.ledger),
                self.record_id,
                self.version,
                to_checksum_address(self.patient),
                to_checksum_address(self.accessor),
                self.purpose,
                self.consent_id,
                self.reason_hash,
                self.block_number,
                self.timestamp,
            ],
        )

    def leaf_hash(self) -> bytes:
        return leaf_hash(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> DisclosureEntry:
        if len(data) != ENTRY_SIZE:
            raise EntryFormatError(f"a disclosure entry is {ENTRY_SIZE} bytes, got {len(data)}")
        try:
            values = abi_decode(_TYPES, data)
        except Exception as exc:  # eth_abi's decoding errors have no common public base
            raise EntryFormatError(f"not an ABI-encoded disclosure entry: {exc}") from exc
        if bytes(values[0]) != DISCLOSURE_ENTRY_TYPEHASH:
            raise EntryFormatError(
                f"entry type hash expected 0x{DISCLOSURE_ENTRY_TYPEHASH.hex()}, got 0x{bytes(values[0]).hex()}"
            )
        entry = cls(
            chain_id=int(values[1]),
            ledger=to_checksum_address(values[2]),
            record_id=bytes(values[3]),
            version=int(values[4]),
            patient=to_checksum_address(values[5]),
            accessor=to_checksum_address(values[6]),
            purpose=bytes(values[7]),
            consent_id=bytes(values[8]),
            reason_hash=bytes(values[9]),
            block_number=int(values[10]),
            timestamp=int(values[11]),
        )
        if entry.encode() != data:
            raise EntryFormatError("disclosure entry is not canonically encoded (non-zero padding)")
        return entry

    def to_json(self) -> dict[str, Any]:
        return {
            "chainId": self.chain_id,
            "ledger": to_checksum_address(self.ledger),
            "recordId": "0x" + self.record_id.hex(),
            "version": self.version,
            "patient": to_checksum_address(self.patient),
            "accessor": to_checksum_address(self.accessor),
            "purpose": purpose_from_bytes32(self.purpose),
            "consentId": None if self.consent_id == ZERO32 else "0x" + self.consent_id.hex(),
            "reasonHash": None if self.reason_hash == ZERO32 else "0x" + self.reason_hash.hex(),
            "blockNumber": self.block_number,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DisclosureEntry:
        try:
            purpose = str(data["purpose"])
            return cls(
                chain_id=int(data["chainId"]),
                ledger=to_checksum_address(data["ledger"]),
                record_id=_bytes32(data["recordId"]),
                version=int(data["version"]),
                patient=to_checksum_address(data["patient"]),
                accessor=to_checksum_address(data["accessor"]),
                purpose=purpose.encode("ascii").ljust(32, b"\x00"),
                consent_id=_bytes32(data.get("consentId")),
                reason_hash=_bytes32(data.get("reasonHash")),
                block_number=int(data["blockNumber"]),
                timestamp=int(data["timestamp"]),
            )
        except (KeyError, TypeError, ValueError, UnicodeEncodeError) as exc:
            raise EntryFormatError(f"malformed disclosure entry: {type(exc).__name__}: {exc}") from exc


def _bytes32(value: object) -> bytes:
    if value is None:
        return ZERO32
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise ValueError(f"expected 0x and 64 hex digits, got {value!r}")
    return bytes.fromhex(value[2:])
