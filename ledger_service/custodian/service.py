"""The key custodian (docs/architecture.md, "Key custody"): keeps share ``index`` of every record version and
releases it only against the chain.

It trusts nothing a hub or a node says beyond what its own chain node shows. A deposit is signed by the
provider that will anchor the version (an active provider on chain); a release names a record version, an
accessor and the evidence that the access was disclosed. In per-read mode that is a disclosure transaction,
which must be final, successful, on the canonical chain and have logged an access (or a break-glass access) by
that accessor to that record version. In batched mode it is a disclosure receipt: the entry (the accessor's
signed request) is proven to be in a log whose root the operator anchored, the anchoring transaction is final
and canonical, and, since the chain judged only the root, the custodian itself checks at the entry's block what
the ledger would have: the version existed, and the entry's consent authorized the access or the accessor could
break the glass. The share goes out sealed to the accessor's encryption key on chain, so whoever carries the
answer cannot open it. Erased records are refused (410) and their keys destroyed, whether the custodian's
erasure follower or the release itself sees the erasure first; on start the custodian applies every erasure on
the chain since its store last looked, so a store restored from a backup heals before it serves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ledger_service.audit.fetch import verify_receipt
from ledger_service.chain.ledger import ConsentLedgerContract
from ledger_service.chain.wire import Receipt
from ledger_service.chain.wire import parse_receipt as parse_tx_receipt
from ledger_service.codec import eip712
from ledger_service.codec.primitives import checksum_address, hex_to_bytes
from ledger_service.crypto.key_shares import ShareSlot, deposit_digest, seal_share
from ledger_service.custodian.long_term_key import CustodianKeyFile
from ledger_service.custodian.store import CustodianStore
from ledger_service.domain.codes import EMERGENCY_ROLE, ZERO32, purpose_from_bytes32
from ledger_service.domain.consent import Eip712Domain
from ledger_service.errors import (
    ChainError,
    DecryptionError,
    KeyCustodyError,
    PermissionDenied,
    RecordErased,
    ReleaseRefused,
    ShareNotHeld,
    SignatureError,
    ValidationError,
)
from ledger_service.transparency.entries import DisclosureEntry
from ledger_service.transparency.receipts import ReceiptError, parse_receipt
from ledger_service.transparency.signatures import ecdsa_signer

__all__ = ["Custodian", "CustodianConfig", "DepositOutcome", "ReleaseRefused", "ShareNotHeld"]

log = logging.getLogger(__name__)

_DISCLOSURES: Final = ("AccessLogged", "EmergencyAccessLogged")
_LOG_RANGE: Final = 5_000


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
        if self.store.is_erased(record_id):
            raise RecordErased(f"record 0x{record_id.hex()} is erased")
        # Both views in one batched round trip, read as the static words they are: a deposit is on every
        # upload's path.
        active_word, record_words = (
            hex_to_bytes(r)
            for r in self.ledger.rpc.batch(
                [
                    self._call("isActiveProvider", author),
                    self._call("record", patient, record_id),
                ]
            )
        )
        if len(active_word) != 32 or len(record_words) != 5 * 32:
            raise ChainError("the ledger answered isActiveProvider or record in an unexpected form")
        if not int.from_bytes(active_word, "big"):
            raise PermissionDenied(f"{author} is not an active provider on the ledger")
        on_chain_author = checksum_address(record_words[12:32])
        on_chain_version = int.from_bytes(record_words[32:64], "big")
        if on_chain_version >= version:
            raise ReleaseRefused(
                f"version {version} of record 0x{record_id.hex()} is already anchored; its shares are fixed"
            )
        if on_chain_version and on_chain_author != author:
            raise PermissionDenied(f"record 0x{record_id.hex()} is {on_chain_author}'s, not {author}'s")
        try:
            share = self.keys.open_share(sealed, slot, recipient)
        except (DecryptionError, KeyCustodyError) as exc:  # the depositor's mistake, not this custodian's
            raise ValidationError(f"the deposit was not accepted: {exc}") from None
        replaced = self.store.share(slot, author) is not None
        self.store.put_share(slot, author=author, patient=patient, share=share)
        return DepositOutcome(self.config.index, replaced)

    # ------------------------------------------------------------- release

    def release(
        self,
        *,
        record_id: bytes,
        version: int,
        accessor: str,
        disclosure_tx: bytes | None = None,
        receipt: Mapping[str, Any] | None = None,
    ) -> bytes:
        """Share ``index`` of the record version, sealed to ``accessor``'s encryption key, against the evidence
        that ``accessor``'s access to that version was disclosed: the final transaction ``disclosure_tx`` that
        logged it (per-read mode), or the ``receipt`` of its entry in the anchored disclosure log (batched mode)."""
        if (disclosure_tx is None) == (receipt is None):
            raise ValidationError("a release takes exactly one of a disclosure transaction and a disclosure receipt")
        slot = self.slot(record_id, version)
        accessor = checksum_address(accessor)
        if self.store.is_erased(record_id):
            raise self._erased(record_id)
        if disclosure_tx is not None:
            # The record's state and the accessor's key come in the same round trip as the receipt, for the
            # patient the deposit named (checked against the disclosure's patient below).
            deposited = self.store.patient_of(slot)
            patient, state = self._logged_access(disclosure_tx, record_id, version, accessor, deposited)
        else:
            assert receipt is not None
            patient, state = self._anchored_access(receipt, record_id, version, accessor), None
        return self._sealed_share(slot, patient, accessor, state)

    def _call(self, name: str, *args: Any) -> tuple[str, list[Any]]:
        """The JSON-RPC ``eth_call`` of the ledger's view ``name(args)`` at the head."""
        return (
            "eth_call",
            [{"to": self.ledger.address, "data": "0x" + self.ledger.encode(name, *args).hex()}, "latest"],
        )

    def _state_calls(self, patient: str, record_id: bytes, accessor: str) -> list[tuple[str, list[Any]]]:
        """The JSON-RPC calls of the record's state and the accessor's key (for :meth:`_state_of`)."""
        return [self._call("record", patient, record_id), self._call("encryptionKeyOf", accessor)]

    def _state_of(self, results: list[Any]) -> tuple[str, bool, bytes]:
        """(the record's author, whether it is erased, the accessor's key) from :meth:`_state_calls`' answers,
        read as the static words they are: ``record`` is (author, version, category, erased) and the head
        hash, ``encryptionKeyOf`` one bytes32."""
        record_words, key_word = hex_to_bytes(results[0]), hex_to_bytes(results[1])
        if len(record_words) != 5 * 32 or len(key_word) != 32:
            raise ChainError("the ledger answered record or encryptionKeyOf in an unexpected form")
        erased = bool(int.from_bytes(record_words[96:128], "big"))
        return checksum_address(record_words[12:32]), erased, key_word

    def _sealed_share(
        self, slot: ShareSlot, patient: str, accessor: str, state: tuple[str, bool, bytes] | None
    ) -> bytes:
        """What every release ends with, whatever its evidence: the record is not erased, its author deposited
        the share, and the accessor has an encryption key on chain to seal it to."""
        record_id = slot.record_id
        if state is None:
            state = self._state_of(self.ledger.rpc.batch(self._state_calls(patient, record_id, accessor)))
        author, erased, recipient = state
        if erased:
            self._erase(record_id, self.ledger.rpc.block_number())
            raise self._erased(record_id)
        stored = self.store.share(slot, author)
        if stored is None:
            raise ShareNotHeld(
                f"this custodian holds no share of version {slot.version} of record 0x{record_id.hex()} "
                f"deposited by its author {author}"
            )
        if recipient == bytes(32):
            raise ReleaseRefused(f"{accessor} has no encryption key on the ledger (a signed EncryptionKey sets it)")
        return seal_share(stored.share, slot, recipient)

    @staticmethod
    def _erased(record_id: bytes) -> RecordErased:
        return RecordErased(f"record 0x{record_id.hex()} is erased; its keys are destroyed")

    def _final_transaction(
        self, tx_hash: bytes, what: str, also: list[tuple[str, list[Any]]] | None = None
    ) -> tuple[Receipt, list[Any]]:
        """The receipt of ``tx_hash``: successful and at least ``confirmations`` deep, with the answers of the
        ``also`` calls sent in the same batched round trip. A node answers receipts of its canonical chain
        only, so a receipt it gives is of a block on that chain; the depth guards against its reorganizing."""
        rpc = self.ledger.rpc
        shown = f"0x{tx_hash.hex()}"
        # Without confirmations to count, the receipt alone says the transaction is in the node's chain.
        depth = self.config.confirmations
        head_call: list[tuple[str, list[Any]]] = [("eth_blockNumber", [])] if depth else []
        raw_receipt, *answers = rpc.batch([("eth_getTransactionReceipt", [shown]), *head_call, *(also or [])])
        raw_head, extra = (answers[0], answers[1:]) if depth else (None, answers)
        if raw_receipt is None:
            raise ReleaseRefused(f"expected a {what}; the chain has no transaction {shown}")
        receipt = parse_tx_receipt(tx_hash, raw_receipt)
        if receipt.status != 1:
            raise ReleaseRefused(f"{what} {shown} reverted; it logged nothing")
        head = int(str(raw_head), 16) if depth else receipt.block_number
        if receipt.block_number > head - depth:
            raise ReleaseRefused(
                f"{what} {shown} is in block {receipt.block_number}, not final yet: it needs "
                f"{self.config.confirmations} confirmations, has {head - receipt.block_number}"
            )
        return receipt, extra

    # ------------------------------------------------------------- per-read evidence

    def _logged_access(
        self, tx_hash: bytes, record_id: bytes, version: int, accessor: str, deposited: str | None
    ) -> tuple[str, tuple[str, bool, bytes] | None]:
        """The patient of the disclosure event of final transaction ``tx_hash`` that logged ``accessor``'s
        access to the version (the ledger checked consent or break-glass as it logged it)."""
        if len(tx_hash) != 32:
            raise ValidationError("disclosureTx must be a 32-byte transaction hash")
        also = self._state_calls(deposited, record_id, accessor) if deposited else None
        receipt, extra = self._final_transaction(tx_hash, "disclosure transaction", also)
        logged = [e for e in self.ledger.events(receipt) if e.name in _DISCLOSURES]
        for event in logged:
            a = event.args
            if (
                bytes(a["recordId"]) == record_id
                and int(a["version"]) == version
                and checksum_address(a["accessor"]) == accessor
            ):
                patient = checksum_address(a["patient"])
                return patient, (self._state_of(extra) if extra and patient == deposited else None)
        got = (
            "; ".join(
                f"{e.name} of record 0x{bytes(e.args['recordId']).hex()} version {e.args['version']} "
                f"by {e.args['accessor']}"
                for e in logged
            )
            or "no disclosure"
        )
        raise ReleaseRefused(
            f"expected transaction 0x{tx_hash.hex()} to log an access by {accessor} to version {version} of record "
            f"0x{record_id.hex()}; it logged {got}"
        )

    # ------------------------------------------------------------- batched evidence

    def _anchored_access(self, receipt_json: Mapping[str, Any], record_id: bytes, version: int, accessor: str) -> str:
        """The patient of the disclosure-log entry the receipt proves, if the entry is ``accessor``'s access to
        the version, its batch's anchor is final, and the ledger allowed that access at the entry's block.

        The chain checked none of the entry itself (only its batch's root was anchored, by the operator), so
        this custodian checks what ``logAccessBySig`` or ``logEmergencyAccessBySig`` would have, at the
        entry's block, through its own chain node (docs/architecture.md, "The path of a read")."""
        try:
            claimed = parse_receipt(receipt_json)
        except ReceiptError as exc:
            raise ValidationError(f"receipt: {exc}", field="receipt") from None
        c = self.config
        if claimed.chain_id != c.chain_id or claimed.contract != checksum_address(c.ledger):
            raise ReleaseRefused(
                f"expected a receipt of ledger {c.ledger} on chain {c.chain_id}; it is of ledger {claimed.contract} "
                f"on chain {claimed.chain_id}"
            )
        entry = claimed.entry
        if (entry.accessor, entry.record_id, entry.version) != (accessor, record_id, version):
            raise ReleaseRefused(
                f"expected a disclosure-log entry of an access by {accessor} to version {version} of record "
                f"0x{record_id.hex()}; the receipt's entry is an access by {entry.accessor} to version "
                f"{entry.version} of record 0x{entry.record_id.hex()}"
            )
        try:
            receipt = verify_receipt(receipt_json, self.ledger.rpc, codec=self.ledger.codec)
        except ReceiptError as exc:
            raise ReleaseRefused(f"the disclosure receipt does not verify against the chain: {exc}") from None
        anchor, _ = self._final_transaction(receipt.anchor.tx_hash, "anchoring transaction")
        if entry.block_number > anchor.block_number:
            raise ReleaseRefused(
                f"the entry says it was authorized at block {entry.block_number}, after its batch was anchored "
                f"at block {anchor.block_number}: an entry is appended before its root is anchored"
            )
        self._allowed_at(entry)
        return entry.patient

    def _allowed_at(self, entry: DisclosureEntry) -> None:
        """The ledger allowed the entry's access at its block: the record version existed, and the entry's
        consent is the one that authorized it (or the accessor could break the glass)."""
        block, accessor = entry.block_number, entry.accessor
        shown = f"version {entry.version} of record 0x{entry.record_id.hex()}"
        then = self.ledger.record(entry.patient, entry.record_id, block=block)
        if not then.exists or not 1 <= entry.version <= then.version:
            # An erased record is refused by the shared tail (erasure is final), with its keys destroyed.
            has = f"versions 1 to {then.version}" if then.exists else f"no record of patient {entry.patient}"
            raise ReleaseRefused(f"the entry names {shown}; at block {block} the ledger has {has}")
        if entry.emergency:
            if entry.reason_hash == ZERO32:
                raise ReleaseRefused("a break-glass entry must commit to its reason (reasonHash is zero)")
            if not (
                self.ledger.has_role(EMERGENCY_ROLE, accessor, block=block)
                and self.ledger.is_active_provider(accessor, block=block)
            ):
                raise ReleaseRefused(
                    f"the entry is a break-glass access by {accessor}, who at block {block} was not an active "
                    "provider holding EMERGENCY_ROLE"
                )
            return
        consent = self.ledger.authorizing_consent(entry.patient, accessor, entry.record_id, entry.purpose, block=block)
        if consent != entry.consent_id:
            raise ReleaseRefused(
                f"expected the entry's consent 0x{entry.consent_id.hex()} to authorize {accessor}'s access to "
                f"{shown} for {purpose_from_bytes32(entry.purpose)!r} at block {block}; the ledger's authorizing "
                "consent there is " + ("none" if consent is None else f"0x{consent.hex()}")
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
                    event = self.ledger.decode_log(raw)
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
