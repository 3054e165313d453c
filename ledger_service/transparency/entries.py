"""The disclosure-log entry of batched mode and its canonical leaf encoding.

In batched mode each disclosure is appended to an RFC 9162 Merkle log whose root the custodian anchors with
``anchorDisclosureBatch``. An entry holds the accessor's signed ``AccessRequest`` (or, for a break-glass
access, ``EmergencyAccessRequest``): enough to recompute its EIP-712 digest and check its signature, so the
disclosure is the accessor's own act and not the operator's word (docs/architecture.md, "Signed acts"). The
leaf data is the Solidity ``abi.encode`` of these fields, in this order::

    abi.encode(
        bytes32 typeHash,      // keccak256(DISCLOSURE_ENTRY_TYPE), see below
        uint256 chainId,       // the chain of the ledger: with `ledger`, the request's EIP-712 domain
        address ledger,        // the ConsentLedger contract (the domain's verifyingContract)
        bytes32 recordId,
        uint32  version,       // the record version requested and released
        address patient,
        address accessor,      // the provider the record was released to: the request's signer
        bytes32 purpose,       // bytes32("TREAT"); bytes32("ETREAT") for a break-glass access
        bytes32 consentId,     // the authorizing consent at `blockNumber`; 0 for a break-glass access
        bytes32 reasonHash,    // keccak256(utf-8 reason) for a break-glass access; 0 otherwise
        uint256 nonce,         // the request's nonce (the accessor's)
        uint256 deadline,      // the request's deadline (unix seconds)
        uint64  blockNumber,   // the block whose state authorized the release (the consent check)
        uint64  timestamp,     // that block's timestamp
        bytes   signature      // the accessor's signature over the request's digest (65-byte ECDSA or ERC-1271)
    )

The signed request is ``AccessRequest(patient, accessor, recordId, version, purpose, nonce, deadline)``, or
``EmergencyAccessRequest(patient, accessor, recordId, version, reasonHash, nonce, deadline)`` when ``purpose``
is ETREAT, under the domain ("ConsentLedger", "1", chainId, ledger). The Merkle leaf hash is
``SHA-256(0x00 || leafData)`` (RFC 9162). Decoding is strict: bytes that do not re-encode to themselves
(wrong length, dirty padding, a non-canonical offset, another type hash), an empty or oversized signature,
or a field set that the entry's kind does not use (a reason hash on a consented disclosure, a consent id on
a break-glass one) are refused, so one entry has exactly one leaf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from eth_utils import keccak

from ledger_service.codec import eip712
from ledger_service.codec.primitives import checksum_address
from ledger_service.domain.codes import EMERGENCY_PURPOSE, ZERO32, purpose_from_bytes32
from ledger_service.domain.consent import AccessRequest, Eip712Domain, EmergencyAccessRequest
from ledger_service.errors import AuditError
from ledger_service.transparency.merkle import leaf_hash
from ledger_service.transparency.signatures import MAX_SIGNATURE_BYTES

DISCLOSURE_ENTRY_TYPE: Final = (
    "ConsentLedgerSignedDisclosure(uint256 chainId,address ledger,bytes32 recordId,uint32 version,address patient,"
    "address accessor,bytes32 purpose,bytes32 consentId,bytes32 reasonHash,uint256 nonce,uint256 deadline,"
    "uint64 blockNumber,uint64 timestamp,bytes signature)"
)
DISCLOSURE_ENTRY_TYPEHASH: Final = bytes(keccak(DISCLOSURE_ENTRY_TYPE.encode("ascii")))
ENTRY_TYPES: Final = (
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
    "uint256",
    "uint256",
    "uint64",
    "uint64",
    "bytes",
)
HEAD_SIZE: Final = 32 * len(ENTRY_TYPES)  # the static words and the signature's offset
ENTRY_SIZE: Final = HEAD_SIZE + 32 + 96  # with a 65-byte ECDSA signature (its length word, three words of data)
_EMERGENCY32: Final = EMERGENCY_PURPOSE.encode("ascii").ljust(32, b"\x00")
_PAD12: Final = b"\x00" * 12
_ADDRESS_WORDS: Final = (2, 5, 6)
_UINT_WORDS: Final = ((4, 32), (12, 64), (13, 64))  # (word, bits) of the narrower integers


class EntryFormatError(AuditError):
    code = "disclosure-entry-invalid"


def _uint(value: int, bits: int, name: str) -> bytes:
    if type(value) is not int or not 0 <= value < 1 << bits:
        raise EntryFormatError(f"{name} must be a uint{bits}, got {value!r}")
    return value.to_bytes(32, "big")


def _address(value: str, name: str) -> bytes:
    try:
        return _PAD12 + bytes.fromhex(checksum_address(value)[2:])
    except (ValueError, TypeError) as exc:
        raise EntryFormatError(f"{name} is not an address: {value!r}") from exc


def _b32(value: bytes, name: str) -> bytes:
    if type(value) is not bytes or len(value) != 32:
        raise EntryFormatError(f"{name} must be 32 bytes, got {value!r}")
    return value


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
    nonce: int
    deadline: int
    block_number: int
    timestamp: int
    signature: bytes

    @property
    def emergency(self) -> bool:
        return self.purpose == _EMERGENCY32

    # ------------------------------------------------------------- the signed request

    @classmethod
    def of_request(
        cls,
        request: AccessRequest | EmergencyAccessRequest,
        signature: bytes,
        *,
        domain: Eip712Domain,
        consent_id: bytes,
        block_number: int,
        timestamp: int,
    ) -> DisclosureEntry:
        """The entry of a signed request released at ``block_number`` (``consent_id`` zero for break-glass)."""
        if isinstance(request, EmergencyAccessRequest):
            purpose, consent, reason_hash = _EMERGENCY32, ZERO32, request.reason_hash
        else:
            purpose, consent, reason_hash = request.purpose, consent_id, ZERO32
        return cls(
            chain_id=domain.chain_id,
            ledger=checksum_address(domain.verifying_contract),
            record_id=request.record_id,
            version=request.version,
            patient=checksum_address(request.patient),
            accessor=checksum_address(request.accessor),
            purpose=purpose,
            consent_id=consent,
            reason_hash=reason_hash,
            nonce=request.nonce,
            deadline=request.deadline,
            block_number=block_number,
            timestamp=timestamp,
            signature=bytes(signature),
        )

    def domain(self) -> Eip712Domain:
        return Eip712Domain(self.chain_id, checksum_address(self.ledger))

    def request(self) -> AccessRequest | EmergencyAccessRequest:
        """The message the accessor signed."""
        if self.emergency:
            return EmergencyAccessRequest(
                self.patient, self.accessor, self.record_id, self.version, self.reason_hash, self.nonce, self.deadline
            )
        return AccessRequest(
            self.patient, self.accessor, self.record_id, self.version, self.purpose, self.nonce, self.deadline
        )

    def digest(self) -> bytes:
        """The request's EIP-712 digest (what an ``AccessLogged`` event would carry as ``requestDigest``)."""
        return eip712.digest(self.domain(), self.request())

    # ------------------------------------------------------------- leaf encoding

    def encode(self) -> bytes:
        signature = self.signature
        if type(signature) is not bytes or not 0 < len(signature) <= MAX_SIGNATURE_BYTES:
            raise EntryFormatError(f"a signature is 1 to {MAX_SIGNATURE_BYTES} bytes, got {len(signature)}")
        return b"".join(
            (
                DISCLOSURE_ENTRY_TYPEHASH,
                _uint(self.chain_id, 256, "chainId"),
                _address(self.ledger, "ledger"),
                _b32(self.record_id, "recordId"),
                _uint(self.version, 32, "version"),
                _address(self.patient, "patient"),
                _address(self.accessor, "accessor"),
                _b32(self.purpose, "purpose"),
                _b32(self.consent_id, "consentId"),
                _b32(self.reason_hash, "reasonHash"),
                _uint(self.nonce, 256, "nonce"),
                _uint(self.deadline, 256, "deadline"),
                _uint(self.block_number, 64, "blockNumber"),
                _uint(self.timestamp, 64, "timestamp"),
                HEAD_SIZE.to_bytes(32, "big"),
                len(signature).to_bytes(32, "big"),
                signature,
                b"\x00" * (-len(signature) % 32),
            )
        )

    def leaf_hash(self) -> bytes:
        return leaf_hash(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> DisclosureEntry:
        data = bytes(data)
        if len(data) < HEAD_SIZE + 32 or len(data) % 32:
            raise EntryFormatError(
                f"a disclosure entry is {ENTRY_SIZE} bytes (more with a longer signature), got {len(data)}"
            )
        words = [data[i : i + 32] for i in range(0, HEAD_SIZE, 32)]
        if words[0] != DISCLOSURE_ENTRY_TYPEHASH:
            raise EntryFormatError(
                f"entry type hash expected 0x{DISCLOSURE_ENTRY_TYPEHASH.hex()}, got 0x{words[0].hex()}"
            )
        for index in _ADDRESS_WORDS:
            if words[index][:12] != _PAD12:
                raise EntryFormatError(f"word {index} of the entry is not an address (non-zero padding)")
        for index, bits in _UINT_WORDS:
            if int.from_bytes(words[index], "big") >> bits:
                raise EntryFormatError(f"word {index} of the entry is not a uint{bits}")
        offset = int.from_bytes(words[14], "big")
        if offset != HEAD_SIZE:
            raise EntryFormatError(f"the signature's offset must be {HEAD_SIZE}, got {offset}")
        length = int.from_bytes(data[HEAD_SIZE : HEAD_SIZE + 32], "big")
        if not 0 < length <= MAX_SIGNATURE_BYTES:
            raise EntryFormatError(f"a signature is 1 to {MAX_SIGNATURE_BYTES} bytes, got {length}")
        end = HEAD_SIZE + 32 + length
        if len(data) != end + (-length % 32):
            raise EntryFormatError(
                f"an entry with a {length}-byte signature is {end + (-length % 32)} bytes, got {len(data)}"
            )
        if any(data[end:]):
            raise EntryFormatError("disclosure entry is not canonically encoded (non-zero padding)")
        entry = cls(
            chain_id=int.from_bytes(words[1], "big"),
            ledger=checksum_address(words[2][12:]),
            record_id=words[3],
            version=int.from_bytes(words[4], "big"),
            patient=checksum_address(words[5][12:]),
            accessor=checksum_address(words[6][12:]),
            purpose=words[7],
            consent_id=words[8],
            reason_hash=words[9],
            nonce=int.from_bytes(words[10], "big"),
            deadline=int.from_bytes(words[11], "big"),
            block_number=int.from_bytes(words[12], "big"),
            timestamp=int.from_bytes(words[13], "big"),
            signature=data[HEAD_SIZE + 32 : end],
        )
        entry.check_kind()
        return entry

    def check_kind(self) -> None:
        """A consented entry has no reason hash, a break-glass one no consent id: one entry, one leaf."""
        if self.emergency and self.consent_id != ZERO32:
            raise EntryFormatError("a break-glass disclosure entry names no consent (consentId must be zero)")
        if not self.emergency and self.reason_hash != ZERO32:
            raise EntryFormatError("a consented disclosure entry has no reason (reasonHash must be zero)")

    # ------------------------------------------------------------- JSON (receipts)

    def to_json(self) -> dict[str, Any]:
        return {
            "chainId": self.chain_id,
            "ledger": checksum_address(self.ledger),
            "recordId": "0x" + self.record_id.hex(),
            "version": self.version,
            "patient": checksum_address(self.patient),
            "accessor": checksum_address(self.accessor),
            "purpose": purpose_from_bytes32(self.purpose),
            "consentId": None if self.consent_id == ZERO32 else "0x" + self.consent_id.hex(),
            "reasonHash": None if self.reason_hash == ZERO32 else "0x" + self.reason_hash.hex(),
            "nonce": self.nonce,
            "deadline": self.deadline,
            "blockNumber": self.block_number,
            "timestamp": self.timestamp,
            "signature": "0x" + self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DisclosureEntry:
        try:
            purpose = str(data["purpose"])
            entry = cls(
                chain_id=_int(data["chainId"]),
                ledger=checksum_address(data["ledger"]),
                record_id=_bytes32(data["recordId"]),
                version=_int(data["version"]),
                patient=checksum_address(data["patient"]),
                accessor=checksum_address(data["accessor"]),
                purpose=purpose.encode("ascii").ljust(32, b"\x00"),
                consent_id=_bytes32(data.get("consentId")),
                reason_hash=_bytes32(data.get("reasonHash")),
                nonce=_int(data["nonce"]),
                deadline=_int(data["deadline"]),
                block_number=_int(data["blockNumber"]),
                timestamp=_int(data["timestamp"]),
                signature=_hex_bytes(data["signature"]),
            )
        except (KeyError, TypeError, ValueError, UnicodeEncodeError) as exc:
            raise EntryFormatError(f"malformed disclosure entry: {type(exc).__name__}: {exc}") from exc
        entry.encode()  # every field in its type's range
        entry.check_kind()
        return entry


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _bytes32(value: object) -> bytes:
    if value is None:
        return ZERO32
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise ValueError(f"expected 0x and 64 hex digits, got {value!r}")
    return bytes.fromhex(value[2:])


def _hex_bytes(value: object) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) % 2:
        raise ValueError(f"expected 0x and an even number of hex digits, got {value!r}")
    return bytes.fromhex(value[2:])
