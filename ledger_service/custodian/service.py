"""The key custodian (docs/architecture.md, "Key custody"): keeps share ``index`` of every record version and
releases it only against the chain.

It trusts nothing a hub or a node says beyond what its own chain node shows. A deposit is signed by the
provider that will anchor the version (an active provider on chain); a release names a record version, an
accessor and the evidence, a disclosure transaction, which must be final, successful, on the canonical chain
and have logged an access (or a break-glass access) by that accessor to that record version. The share goes
out sealed to the accessor's encryption key on chain, so whoever carries the answer cannot open it. Erased
records are refused (410) and their keys destroyed, whether the custodian's erasure follower or the release
itself sees the erasure first; on start the custodian applies every erasure on the chain since its store
last looked, so a store restored from a backup heals before it serves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.codec import eip712
from ledger_service.codec.primitives import checksum_address
from ledger_service.crypto.key_shares import ShareSlot, deposit_digest, seal_share
from ledger_service.custodian.long_term_key import CustodianKeyFile
from ledger_service.custodian.store import CustodianStore
from ledger_service.domain.consent import Eip712Domain
from ledger_service.errors import (
    ChainError,
    DecryptionError,
    KeyCustodyError,
    PermissionDenied,
    RecordErased,
    SignatureError,
    ValidationError,
)
from ledger_service.transparency.signatures import ecdsa_signer

__all__ = ["Custodian", "CustodianConfig", "DepositOutcome", "ReleaseRefused", "ShareNotHeld"]

log = logging.getLogger(__name__)

_DISCLOSURES: Final = ("AccessLogged", "EmergencyAccessLogged")
_LOG_RANGE: Final = 5_000


class ReleaseRefused(PermissionDenied):
    """The chain does not show the disclosure a release needs; the message says what it shows instead."""

    code = "release-refused"


class ShareNotHeld(KeyCustodyError):
    """This custodian holds no share of that record version (none was deposited, or not by its author)."""

    code = "share-not-held"


@dataclass(frozen=True)
class CustodianConfig:
    index: int
    threshold: int
    total: int
    chain_id: int
    ledger: str
    from_block: int
    confirmations: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.threshold <= self.total <= 255 or not 1 <= self.index <= self.total:
            raise KeyCustodyError(
                f"custodian {self.index} of a {self.threshold}-of-{self.total} custody is not a valid configuration"
            )


@dataclass(frozen=True)
class DepositOutcome:
    index: int
    replaced: bool


class Custodian:
    def __init__(
        self,
        config: CustodianConfig,
        keys: CustodianKeyFile,
        store: CustodianStore,
        ledger: ConsentLedgerContract,
    ) -> None:
        self.config = config
        self.keys = keys
        self.store = store
        self.ledger = ledger
        self._separator = eip712.domain_separator(Eip712Domain(config.chain_id, config.ledger))
        self._erasure_lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        c = self.config
        return {
            "index": c.index,
            "publicKey": "0x" + self.keys.public_key.hex(),
            "threshold": c.threshold,
            "total": c.total,
        }

    def slot(self, record_id: bytes, version: int) -> ShareSlot:
        if len(record_id) != 32:
            raise ValidationError("recordId must be 32 bytes")
        if not 0 < version < 2**32:
            raise ValidationError("version must be between 1 and 2^32 - 1")
        return ShareSlot(self.config.chain_id, self.config.ledger, record_id, version, self.config.index)

    # ------------------------------------------------------------- deposit

    def deposit(
        self,
        *,
        patient: str,
        author: str,
        record_id: bytes,
        version: int,
        recipient: bytes,
        sealed: bytes,
        signature: bytes,
    ) -> DepositOutcome:
        """Keep the share ``author`` sealed to this custodian's key ``recipient`` for a version it is about to
        anchor. Refused once that version is on chain: what was released against stays what is kept."""
        slot = self.slot(record_id, version)
        patient, author = checksum_address(patient), checksum_address(author)
        assert self._separator is not None
        digest = deposit_digest(self._separator, slot, patient=patient, author=author, sealed=sealed)
        signer = ecdsa_signer(digest, signature)
        if signer != author:
            raise SignatureError(
                f"expected a ShareDeposit signature by the author {author}; got "
                + (f"one by {signer}" if signer else "no valid ECDSA signature")
            )
        if not self.ledger.is_active_provider(author):
            raise PermissionDenied(f"{author} is not an active provider on the ledger")
        if self.store.is_erased(record_id):
            raise RecordErased(f"record 0x{record_id.hex()} is erased")
        on_chain = self.ledger.record(patient, record_id)
        if on_chain.version >= version:
            raise ReleaseRefused(
                f"version {version} of record 0x{record_id.hex()} is already anchored; its shares are fixed"
            )
        if on_chain.version and on_chain.author != author:
            raise PermissionDenied(f"record 0x{record_id.hex()} is {on_chain.author}'s, not {author}'s")
        try:
            share = self.keys.open_share(sealed, slot, recipient)
        except (DecryptionError, KeyCustodyError) as exc:  # the depositor's mistake, not this custodian's
            raise ValidationError(f"the deposit was not accepted: {exc}") from None
        replaced = self.store.share(slot, author) is not None
        self.store.put_share(slot, author=author, patient=patient, share=share)
        return DepositOutcome(self.config.index, replaced)

    # ------------------------------------------------------------- release

    def release(self, *, record_id: bytes, version: int, accessor: str, disclosure_tx: bytes) -> bytes:
        """Share ``index`` of the record version, sealed to ``accessor``'s encryption key, if the final
        transaction ``disclosure_tx`` logged ``accessor``'s access to that version."""
        slot = self.slot(record_id, version)
        accessor = checksum_address(accessor)
        if self.store.is_erased(record_id):
            raise RecordErased(f"record 0x{record_id.hex()} is erased; its keys are destroyed")
        event = self._final_disclosure(disclosure_tx, record_id, version, accessor)
        patient = checksum_address(event["patient"])
        on_chain = self.ledger.record(patient, record_id)
        if on_chain.erased:
            self._erase(record_id, self.ledger.rpc.block_number())
            raise RecordErased(f"record 0x{record_id.hex()} is erased; its keys are destroyed")
        stored = self.store.share(slot, on_chain.author)
        if stored is None:
            raise ShareNotHeld(
                f"this custodian holds no share of version {version} of record 0x{record_id.hex()} "
                f"deposited by its author {on_chain.author}"
            )
        recipient = self.ledger.encryption_key_of(accessor)
        if recipient == bytes(32):
            raise ReleaseRefused(f"{accessor} has no encryption key on the ledger (a signed EncryptionKey sets it)")
        return seal_share(stored.share, slot, recipient)

    def _final_disclosure(self, tx_hash: bytes, record_id: bytes, version: int, accessor: str) -> dict[str, Any]:
        if len(tx_hash) != 32:
            raise ValidationError("disclosureTx must be a 32-byte transaction hash")
        rpc = self.ledger.rpc
        shown = f"0x{tx_hash.hex()}"
        receipt = rpc.receipt(tx_hash)
        if receipt is None:
            raise ReleaseRefused(f"expected a disclosure transaction; the chain has no transaction {shown}")
        if receipt.status != 1:
            raise ReleaseRefused(f"transaction {shown} reverted; it logged nothing")
        head = rpc.block_number()
        if receipt.block_number > head - self.config.confirmations:
            raise ReleaseRefused(
                f"transaction {shown} is in block {receipt.block_number}, not final yet: it needs "
                f"{self.config.confirmations} confirmations, has {head - receipt.block_number}"
            )
        canonical = rpc.get_block(receipt.block_number)
        if bytes.fromhex(str(canonical["hash"])[2:]) != receipt.block_hash:
            raise ReleaseRefused(f"transaction {shown} is not on the canonical chain")
        logged = [e for e in self.ledger.events(receipt) if e.name in _DISCLOSURES]
        for event in logged:
            a = event.args
            if (
                bytes(a["recordId"]) == record_id
                and int(a["version"]) == version
                and checksum_address(a["accessor"]) == accessor
            ):
                return a
        got = (
            "; ".join(
                f"{e.name} of record 0x{bytes(e.args['recordId']).hex()} version {e.args['version']} "
                f"by {e.args['accessor']}"
                for e in logged
            )
            or "no disclosure"
        )
        raise ReleaseRefused(
            f"expected transaction {shown} to log an access by {accessor} to version {version} of record "
            f"0x{record_id.hex()}; it logged {got}"
        )

    # ------------------------------------------------------------- erasures

    def apply_erasures(self) -> int:
        """Destroy the keys of every record erased in the final blocks not yet applied; the count destroyed."""
        with self._erasure_lock:
            rpc = self.ledger.rpc
            final = rpc.block_number() - self.config.confirmations
            done = self.store.erasures_applied_to()
            start = self.config.from_block if done is None else done + 1
            destroyed = 0
            topic = self.ledger.codec.topic("RecordErased")
            while start <= final:
                end = min(start + _LOG_RANGE - 1, final)
                for raw in rpc.get_logs(self.ledger.address, start, end, topics=[topic]):
                    event = self.ledger.codec.decode_log(raw)
                    if event is not None:
                        destroyed += self._erase(bytes(event.args["recordId"]), event.block_number)
                self.store.set_erasures_applied_to(end)
                start = end + 1
            return destroyed

    def _erase(self, record_id: bytes, block: int) -> int:
        if self.store.erase(record_id, block):
            log.info("custodian %d destroyed the keys of erased record 0x%s", self.config.index, record_id.hex())
            return 1
        return 0

    def follow_erasures(
        self, stop: threading.Event, *, interval: float = 2.0, on_error: Callable[[Exception], None] | None = None
    ) -> None:
        """Apply erasures every ``interval`` seconds until ``stop``."""
        while not stop.wait(interval):
            try:
                self.apply_erasures()
            except ChainError as exc:  # the chain is down: releases fail closed meanwhile (503)
                if on_error is not None:
                    on_error(exc)
