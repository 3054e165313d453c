"""Key-encryption-key rotation: re-wrap every stored data key under a new KEK.

Blobs are untouched (the data keys themselves do not change); each wrapped key keeps its
binding to its record, version and patient as associated data.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from ledger_service.crypto import KeyCustody, RecordBinding, WrappedKey, rewrap
from ledger_service.db.database import Database
from ledger_service.db.models import DataKeyRow, RecordRow


@dataclass(frozen=True)
class Rotation:
    new_kek_id: str
    rewrapped: int
    retired: tuple[str, ...]


def rotate_kek(db: Database, custody: KeyCustody, *, retire_old: bool = True, batch: int = 500) -> Rotation:
    """Rotate, re-wrap all keys in batches (each batch one transaction), then retire unused KEKs."""
    new_kek = custody.rotate()
    rewrapped = 0
    last_id = 0
    while True:
        with db.session() as s:
            rows = s.execute(
                select(DataKeyRow, RecordRow.patient)
                .join(RecordRow, RecordRow.record_id == DataKeyRow.record_id)
                .where(DataKeyRow.id > last_id)
                .order_by(DataKeyRow.id)
                .limit(batch)
            ).all()
            if not rows:
                break
            for key_row, patient in rows:
                last_id = key_row.id
                if key_row.kek_id == new_kek:
                    continue
                binding = RecordBinding(bytes.fromhex(key_row.record_id[2:]), key_row.version, patient)
                fresh = rewrap(custody, WrappedKey(key_row.kek_id, key_row.wrapped_key), binding.aad())
                key_row.kek_id, key_row.wrapped_key = fresh.kek_id, fresh.ciphertext
                rewrapped += 1
    retired: list[str] = []
    if retire_old:
        with db.session() as s:
            in_use = set(s.execute(select(DataKeyRow.kek_id).group_by(DataKeyRow.kek_id)).scalars())
            remaining = s.execute(select(func.count()).select_from(DataKeyRow).where(DataKeyRow.kek_id != new_kek))
            assert remaining.scalar_one() == 0, "a data key is still wrapped under an old KEK"
        for kek_id in _kek_ids(custody):
            if kek_id != new_kek and kek_id not in in_use:
                custody.retire(kek_id)
                retired.append(kek_id)
    return Rotation(new_kek, rewrapped, tuple(retired))


def _kek_ids(custody: KeyCustody) -> tuple[str, ...]:
    ids = getattr(custody, "kek_ids", None)
    return tuple(ids()) if callable(ids) else ()
