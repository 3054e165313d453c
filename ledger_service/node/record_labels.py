"""A provider's node seals, opens and reseals record labels (docs/architecture.md, "Record titles").

A label (title and original file name, :class:`~ledger_service.domain.record_labels.RecordLabel`) is health
information: it is HPKE-sealed (crypto/sealing.py) to the author's own X25519 encryption key (the node's
key file) and to the patient's encryption key on chain when the patient has registered one; the DB keeps
the sealed bytes only (``record_labels``). The node opens its own providers' copies; the patient's copy is
opened in the patient's browser. A patient who registers a key after the upload, or a new one, gets a
copy resealed by the author's node when the record list is asked for; a provider reading with consent gets
its own copy after the read's disclosure is logged, resealed the same way.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import select

from ledger_service.codec.primitives import checksum_address
from ledger_service.crypto.sealing import label_info, seal_to
from ledger_service.db.database import Database
from ledger_service.db.models import RecordLabelRow, RecordRow
from ledger_service.db.records import put_label
from ledger_service.domain.record_labels import RecordLabel
from ledger_service.errors import LedgerError
from ledger_service.node.custody import EncryptionKeys

log = logging.getLogger(__name__)

__all__ = ["LabelService", "SealedCopy", "SealedLabel"]


@dataclass(frozen=True)
class SealedCopy:
    """A label sealed by ``author``'s node to ``recipient``'s key, as the node hands it to its hub."""

    record_id: str
    version: int
    author: str
    recipient: str
    recipient_key: bytes
    sealed: bytes


@dataclass(frozen=True)
class SealedLabel:
    """One party's sealed copy: the browser opens it with the key ``recipient_key`` is the public half of."""

    record_id: str
    version: int
    recipient_key: bytes
    sealed: bytes


class LabelService:
    def __init__(
        self,
        *,
        db: Database,
        encryption: EncryptionKeys | None,
        registered_key: Callable[[str], bytes],
        chain_id: int,
        ledger: str,
        deposit: Callable[[SealedCopy], None] | None = None,
    ) -> None:
        self.db = db
        self._deposit = deposit  # a node of its own hands the patient's copy to its hub (hub_client.py)
        self._encryption = encryption  # None in a hub alone: it holds no key and opens nothing
        self._registered_key = registered_key  # encryptionKeyOf on chain
        self.chain_id = chain_id
        self.ledger = ledger

    def _info(self, record_id: str, version: int) -> Callable[[bytes], bytes]:
        return functools.partial(
            _info_for,
            chain_id=self.chain_id,
            ledger=self.ledger,
            record_id=bytes.fromhex(record_id[2:]),
            version=version,
        )

    def _holds(self, provider: str) -> bool:
        return self._encryption is not None and checksum_address(provider) in self._encryption.files

    def _store(self, record_id: str, version: int, recipient: str, key: bytes, label: RecordLabel) -> bytes:
        sealed = seal_to(label.encode(), key, self._info(record_id, version)(key))
        with self.db.session() as s:
            put_label(s, record_id=record_id, version=version, recipient=recipient, recipient_key=key, sealed=sealed)
        return sealed

    def attach(self, *, record_id: str, version: int, author: str, patient: str | None, label: RecordLabel) -> None:
        """Seal ``label`` of the record version to its author (this node's key) and to the patient's key
        on chain, if any (a patient without one gets a copy once they register it, see :meth:`patient_copies`).
        ``patient`` None: the record's, as the DB has it (an amendment)."""
        if label.empty or self._encryption is None:
            return
        if patient is None:
            with self.db.session() as s:
                record = s.get(RecordRow, record_id)
                if record is None:
                    return
                patient = record.patient
        author, patient = checksum_address(author), checksum_address(patient)
        self._store(record_id, version, author, self._encryption.file_of(author).public_key, label)
        patient_key = self._registered_key(patient)
        if patient_key != bytes(32):
            sealed = self._store(record_id, version, patient, patient_key, label)
            if self._deposit is not None:  # a node of its own: the patient's list is the hub's
                self._deposit(SealedCopy(record_id, version, author, patient, patient_key, sealed))

    def _rows(self, record_ids: Iterable[str], recipient: str | None = None) -> dict[tuple[str, str], RecordLabelRow]:
        """The newest label row of each (record, recipient)."""
        ids = list(record_ids)
        if not ids:
            return {}
        with self.db.session() as s:
            query = select(RecordLabelRow).where(RecordLabelRow.record_id.in_(ids))
            if recipient is not None:
                query = query.where(RecordLabelRow.recipient == checksum_address(recipient))
            rows = list(s.execute(query.order_by(RecordLabelRow.version)).scalars())
            for row in rows:
                s.expunge(row)
        return {(row.record_id, row.recipient): row for row in rows}

    def _open(self, row: RecordLabelRow) -> RecordLabel | None:
        if not self._holds(row.recipient):
            return None
        assert self._encryption is not None
        try:
            raw = self._encryption.file_of(row.recipient).open_sealed(
                row.sealed, self._info(row.record_id, row.version), row.recipient_key
            )
            return RecordLabel.decode(raw)
        except LedgerError as exc:  # a retired key, an altered row: the record is listed without its title
            log.warning("a label of record %s did not open: %s", row.record_id, type(exc).__name__)
            return None

    def labels_for(self, record_ids: Iterable[str], provider: str) -> dict[str, RecordLabel]:
        """The clear labels ``provider`` (one of this node's) holds a copy of, by record id."""
        if not self._holds(provider):
            return {}
        out = {}
        for (record_id, _recipient), row in self._rows(record_ids, provider).items():
            label = self._open(row)
            if label is not None:
                out[record_id] = label
        return out

    def _reseal(self, record_id: str, author: str, recipient: str, key: bytes) -> RecordLabelRow | None:
        """A copy for ``recipient`` (its key ``key``) from the author's, if this node holds the author's key."""
        rows = self._rows([record_id])
        own = rows.get((record_id, checksum_address(author)))
        if own is None:
            return None
        label = self._open(own)
        if label is None:
            return None
        self._store(record_id, own.version, checksum_address(recipient), key, label)
        return self._rows([record_id], recipient).get((record_id, checksum_address(recipient)))

    def label_for_reader(self, *, record_id: str, reader: str) -> RecordLabel | None:
        """The label a provider of this node sees once its read was logged: its own copy, else one the
        author's node (this one, in the embedded deployment) reseals to it now."""
        if not self._holds(reader):
            return None
        reader = checksum_address(reader)
        row = self._rows([record_id], reader).get((record_id, reader))
        with self.db.session() as s:
            record = s.get(RecordRow, record_id)
            author = None if record is None else record.author
        if row is None and author is not None and checksum_address(author) != reader:
            assert self._encryption is not None
            row = self._reseal(record_id, author, reader, self._encryption.file_of(reader).public_key)
        return None if row is None else self._open(row)

    def patient_copies(self, patient: str, records: Iterable[tuple[str, str]]) -> dict[str, SealedLabel]:
        """The patient's sealed copies of the labels of ``records`` ((record id, author) pairs), each sealed
        to the patient's current key on chain: a copy missing or sealed to an older key is resealed here when
        this node holds the author's key. None without a registered key."""
        patient = checksum_address(patient)
        pairs = list(records)
        key = self._registered_key(patient)
        if key == bytes(32) or not pairs:
            return {}
        current = self._rows([r for r, _a in pairs], patient)
        out = {}
        for record_id, author in pairs:
            row = current.get((record_id, patient))
            if (row is None or row.recipient_key != key) and self._holds(author):
                row = self._reseal(record_id, author, patient, key)
            if row is not None and row.recipient_key == key:
                out[record_id] = SealedLabel(record_id, row.version, row.recipient_key, row.sealed)
        return out


def _info_for(recipient: bytes, *, chain_id: int, ledger: str, record_id: bytes, version: int) -> bytes:
    return label_info(chain_id=chain_id, ledger=ledger, record_id=record_id, version=version, recipient=recipient)
