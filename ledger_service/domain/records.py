"""Record versions and their per-record hash chain, computed as the contract computes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from ledger_service.domain.codes import ZERO32
from ledger_service.domain.consent import address_bytes

FHIR_MEDIA_TYPE: Final = "application/fhir+json"


def record_id_of(patient: str, author: str, salt: bytes) -> bytes:
    """``keccak256(abi.encode(patient, author, salt))``: the id ``anchorRecord`` assigns."""
    return keccak(
        abi_encode(["address", "address", "bytes32"], [to_checksum_address(patient), to_checksum_address(author), salt])
    )


def version_hash(
    *,
    record_id: bytes,
    version: int,
    patient: str,
    author: str,
    category: bytes,
    cid: bytes,
    commitment: bytes,
    previous_hash: bytes,
) -> bytes:
    """The contract's version hash: ``keccak256(abi.encode(recordId, version, patient, author,
    category, keccak256(cid), commitment, previousHash))``."""
    return keccak(
        abi_encode(
            ["bytes32", "uint32", "address", "address", "bytes32", "bytes32", "bytes32", "bytes32"],
            [
                record_id,
                version,
                to_checksum_address(patient),
                to_checksum_address(author),
                category,
                keccak(cid),
                commitment,
                previous_hash,
            ],
        )
    )


def fast_version_hash(
    *,
    record_id: bytes,
    version: int,
    patient: str,
    author: str,
    category: bytes,
    cid: bytes,
    commitment: bytes,
    previous_hash: bytes,
) -> bytes:
    """:func:`version_hash` over the fixed 256-byte layout, without eth-abi or checksumming.

    Inputs outside the plain shape (a ``bytes32`` of another length, a version outside uint32, an address
    that is not ``0x`` + 40 hex digits) go through :func:`version_hash` itself: same results, same errors.
    """
    p, a = address_bytes(patient), address_bytes(author)
    if (
        p is None
        or a is None
        or type(version) is not int
        or not 0 <= version < 2**32
        or type(cid) is not bytes
        or any(type(w) is not bytes or len(w) != 32 for w in (record_id, category, commitment, previous_hash))
    ):
        return version_hash(
            record_id=record_id,
            version=version,
            patient=patient,
            author=author,
            category=category,
            cid=cid,
            commitment=commitment,
            previous_hash=previous_hash,
        )
    return keccak(
        record_id
        + version.to_bytes(32, "big")
        + _PAD12
        + p
        + _PAD12
        + a
        + category
        + keccak(cid)
        + commitment
        + previous_hash
    )


_PAD12: Final = b"\x00" * 12


@dataclass(frozen=True)
class RecordVersion:
    """One anchored version, as the ``RecordAnchored`` event states it."""

    record_id: bytes
    version: int
    patient: str
    author: str
    category: bytes
    cid: bytes  # binary CIDv1 of the ciphertext
    commitment: bytes
    previous_hash: bytes
    version_hash: bytes
    block_number: int = 0
    tx_hash: bytes = b""

    def recomputed_hash(self) -> bytes:
        return fast_version_hash(
            record_id=self.record_id,
            version=self.version,
            patient=self.patient,
            author=self.author,
            category=self.category,
            cid=self.cid,
            commitment=self.commitment,
            previous_hash=self.previous_hash,
        )


def chain_breaks(versions: list[RecordVersion]) -> list[str]:
    """Every way a record's versions fail to form a hash chain (empty list = intact)."""
    problems: list[str] = []
    expected_previous = ZERO32
    for expected_version, v in enumerate(sorted(versions, key=lambda v: v.version), start=1):
        if v.version != expected_version:
            problems.append(f"version {v.version}: expected version {expected_version}")
        if v.previous_hash != expected_previous:
            problems.append(
                f"version {v.version}: previous hash expected 0x{expected_previous.hex()}, "
                f"got 0x{v.previous_hash.hex()}"
            )
        recomputed = v.recomputed_hash()
        if recomputed != v.version_hash:
            problems.append(
                f"version {v.version}: version hash expected 0x{recomputed.hex()}, got 0x{v.version_hash.hex()}"
            )
        expected_previous = v.version_hash
    return problems
