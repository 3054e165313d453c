"""A custodian's own store: per-record keys, the shares wrapped under them, and the erasures it has applied
(docs/architecture.md, "Key custody").

One SQLite file in the custodian's data dir, nobody else's. Each record has a random 256-bit key of its own;
every share of every version of the record is kept AES-256-GCM-wrapped under it (AAD: the share's slot and
author). Erasure deletes the record's key and its wrapped shares, with ``secure_delete`` on (SQLite zeroes
the freed content) and a rollback journal instead of a write-ahead log (no WAL file keeps old pages after the
commit). ``progress`` records how far the chain's erasures have been applied, so a store restored from an
older backup replays from where that backup stood.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger_service.crypto.key_shares import ShareSlot
from ledger_service.errors import KeyCustodyError

__all__ = ["CustodianStore", "StoredShare"]

_NONCE_SIZE: Final = 12
_AAD_DOMAIN: Final = b"consent-ledger/v2/custodian-share\x00"
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS record_keys (record_id BLOB PRIMARY KEY, key BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS shares (record_id BLOB NOT NULL, version INTEGER NOT NULL, author TEXT NOT NULL, "
    "patient TEXT NOT NULL, wrapped BLOB NOT NULL, PRIMARY KEY (record_id, version, author))",
    "CREATE TABLE IF NOT EXISTS erased (record_id BLOB PRIMARY KEY, block INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS progress (name TEXT PRIMARY KEY, block INTEGER NOT NULL)",
)


@dataclass(frozen=True)
class StoredShare:
    author: str
    patient: str
    share: bytes

    def __repr__(self) -> str:  # the share is a secret
        return f"StoredShare(author={self.author!r}, patient={self.patient!r})"


def _aad(slot: ShareSlot, author: str) -> bytes:
    return _AAD_DOMAIN + slot.info(bytes(32)) + bytes.fromhex(author.removeprefix("0x"))


class CustodianStore:
    """Thread-safe; one connection, serialized by a lock (a custodian's traffic is a few requests a read)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # WAL: one fsync a deposit (a rollback journal costs four); FULL: an acknowledged deposit is durable.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA synchronous=FULL")
        for statement in _SCHEMA:
            self._db.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------- shares

    def put_share(self, slot: ShareSlot, *, author: str, patient: str, share: bytes) -> None:
        """Keep ``share`` for ``slot`` by ``author``, wrapped under the record's key (created on first use);
        replaces ``author``'s earlier share of that version."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._erased(slot.record_id):
                    raise KeyCustodyError("the record is erased; its keys are destroyed")
                row = self._db.execute("SELECT key FROM record_keys WHERE record_id = ?", (slot.record_id,)).fetchone()
                key = bytes(row[0]) if row else AESGCM.generate_key(bit_length=256)
                if not row:
                    self._db.execute("INSERT INTO record_keys (record_id, key) VALUES (?, ?)", (slot.record_id, key))
                nonce = os.urandom(_NONCE_SIZE)
                wrapped = nonce + AESGCM(key).encrypt(nonce, share, _aad(slot, author))
                self._db.execute(
                    "INSERT OR REPLACE INTO shares (record_id, version, author, patient, wrapped) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (slot.record_id, slot.version, author, patient, wrapped),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def share(self, slot: ShareSlot, author: str) -> StoredShare | None:
        """``author``'s share of ``slot``, unwrapped; None if this store has none (or the record is erased)."""
        with self._lock:
            row = self._db.execute(
                "SELECT s.patient, s.wrapped, k.key FROM shares s JOIN record_keys k ON k.record_id = s.record_id "
                "WHERE s.record_id = ? AND s.version = ? AND s.author = ?",
                (slot.record_id, slot.version, author),
            ).fetchone()
        if row is None:
            return None
        patient, wrapped, key = str(row[0]), bytes(row[1]), bytes(row[2])
        try:
            share = AESGCM(key).decrypt(wrapped[:_NONCE_SIZE], wrapped[_NONCE_SIZE:], _aad(slot, author))
        except InvalidTag:
            raise KeyCustodyError("a stored share failed authentication (the store was altered)") from None
        return StoredShare(author, patient, share)

    def patient_of(self, slot: ShareSlot) -> str | None:
        """The patient a deposit of ``slot`` named (any author's), or None if none is here."""
        with self._lock:
            row = self._db.execute(
                "SELECT patient FROM shares WHERE record_id = ? AND version = ? LIMIT 1", (slot.record_id, slot.version)
            ).fetchone()
        return None if row is None else str(row[0])

    # ------------------------------------------------------------- erasure

    def erase(self, record_id: bytes, block: int) -> bool:
        """Destroy the record's key and shares and remember the erasure; True if anything was destroyed."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                gone = self._db.execute("DELETE FROM record_keys WHERE record_id = ?", (record_id,)).rowcount
                gone += self._db.execute("DELETE FROM shares WHERE record_id = ?", (record_id,)).rowcount
                self._db.execute("INSERT OR IGNORE INTO erased (record_id, block) VALUES (?, ?)", (record_id, block))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if gone:
                # The old pages (the key among them) are in the WAL until it is checkpointed: copy back the
                # zeroed pages and truncate the log now.
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return gone > 0

    def is_erased(self, record_id: bytes) -> bool:
        with self._lock:
            return self._erased(record_id)

    def _erased(self, record_id: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM erased WHERE record_id = ?", (record_id,)).fetchone() is not None

    def erasures_applied_to(self) -> int | None:
        """The last block whose erasures are applied here, or None before the first replay."""
        with self._lock:
            row = self._db.execute("SELECT block FROM progress WHERE name = 'erasures'").fetchone()
        return None if row is None else int(row[0])

    def set_erasures_applied_to(self, block: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO progress (name, block) VALUES ('erasures', ?)", (block,))
