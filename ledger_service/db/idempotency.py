"""Idempotency keys: a retried request with the same key does its work once.

A key is claimed (``pending``) before the work and completed (``done``, with the JSON
result) after it. A retry of a done request gets the stored result; a retry with a
different request under the same key is a conflict; a retry while the first attempt is
still running is a conflict too, unless that attempt is stale (its process died), in
which case the retry takes the key over.

Keys expire ``ttl`` after the request that claimed them (docs/security.md, "Idempotent reads"): an expired key
is a new request, and :meth:`IdempotencyStore.purge_expired` deletes them.

A read's key is answered by a delivery instead of a stored result: its row names the delivery
(``{"deliveryId": n}``), written in the delivery's own DB transaction (:meth:`IdempotencyStore.remember_delivery`),
and a replay is served under it only while its bytes never went out in full
(:meth:`IdempotencyStore.unsent_delivery`; docs/security.md, "Idempotent reads").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger_service.db.database import Database, DatabaseError
from ledger_service.db.models import DeliveryRow, IdempotencyRow
from ledger_service.errors import IdempotencyConflict, ValidationError

STALE_AFTER = timedelta(minutes=5)
MAX_KEY_LENGTH = 128
DEFAULT_TTL = timedelta(hours=24)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite hands back naive datetimes


class IdempotencyStore:
    def __init__(
        self,
        db: Database,
        *,
        ttl: timedelta = DEFAULT_TTL,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if ttl <= STALE_AFTER:
            raise ValueError(f"an idempotency key must live longer than a stale claim ({STALE_AFTER})")
        self.db = db
        self.ttl = ttl
        self._clock = clock

    def is_live(self, row: IdempotencyRow) -> bool:
        """False once the key is older than the window: it then answers nothing."""
        return self._clock() - _aware(row.created_at) < self.ttl

    def purge_expired(self) -> int:
        """Delete the keys past their window; returns how many."""
        with self.db.session() as s:
            result = s.execute(delete(IdempotencyRow).where(IdempotencyRow.created_at < self._clock() - self.ttl))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    @staticmethod
    def scoped(principal: str, key: str) -> str:
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise ValidationError(
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters", field="Idempotency-Key"
            )
        return f"{principal}:{key}"

    def claim(self, scoped_key: str, fingerprint: str) -> dict[str, Any] | None:
        """The stored result of a finished identical request, or None after claiming the key."""
        now = self._clock()
        with self.db.session() as s:
            row = s.get(IdempotencyRow, scoped_key)
            if row is not None and not self.is_live(row):
                # Past its window the key is free again: this is a new request.
                row.request_hash, row.state, row.result, row.created_at = fingerprint, "pending", None, now
                return None
            if row is not None:
                if row.request_hash != fingerprint:
                    raise IdempotencyConflict("this Idempotency-Key was used for a different request")
                if row.state == "done" and row.result is not None:
                    result: dict[str, Any] = json.loads(row.result)
                    return result
                if now - _aware(row.created_at) < STALE_AFTER:
                    raise IdempotencyConflict("a request with this Idempotency-Key is still in progress; retry later")
                row.created_at = now  # take over a stale claim
                return None
        try:
            with self.db.session() as s:
                s.add(
                    IdempotencyRow(
                        key=scoped_key, request_hash=fingerprint, state="pending", result=None, created_at=now
                    )
                )
        except DatabaseError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise IdempotencyConflict("a request with this Idempotency-Key is still in progress") from exc
            raise
        return None

    def complete(self, scoped_key: str, result: dict[str, Any]) -> None:
        with self.db.session() as s:
            row = s.get(IdempotencyRow, scoped_key)
            if row is not None:
                row.state, row.result = "done", json.dumps(result, sort_keys=True)

    def release(self, scoped_key: str) -> None:
        """Forget a claim whose work failed, so the client may retry it."""
        with self.db.session() as s:
            row = s.get(IdempotencyRow, scoped_key)
            if row is not None and row.state == "pending":
                s.delete(row)

    # ------------------------------------------------------------- keyed reads (answered by a delivery)

    def unsent_delivery(self, accessor: str, key: str | None, request_hash: str) -> DeliveryRow | None:
        """The delivery of an identical earlier read whose bytes were never sent in full, if any (it may
        still be ``pending``, its transaction in flight); None means this request needs its own."""
        if not key:
            return None
        with self.db.session() as s:
            row = s.get(IdempotencyRow, IdempotencyStore.scoped(accessor, key))
            if row is None or not self.is_live(row):
                return None
            if row.request_hash != request_hash:
                raise IdempotencyConflict("this Idempotency-Key was used for a different request")
            if row.result is None:
                return None
            delivery = s.get(DeliveryRow, json.loads(row.result)["deliveryId"])
        if delivery is None or delivery.released_at is not None:
            return None  # its bytes went out in full: serving them again is a new release
        return delivery

    def twin_is_unsent(self, s: Session, accessor: str, key: str) -> bool:
        """In a delivery's transaction: whether an identical request committed a delivery first whose bytes
        were not sent yet (that one answers this request)."""
        done = s.get(IdempotencyRow, IdempotencyStore.scoped(accessor, key))
        if done is None or done.state != "done" or done.result is None or not self.is_live(done):
            return False
        twin = s.get(DeliveryRow, json.loads(done.result)["deliveryId"])
        return twin is not None and twin.released_at is None

    @staticmethod
    def remember_delivery(
        s: Session, accessor: str, key: str | None, request_hash: str, delivery_id: int, *, state: str = "done"
    ) -> None:
        """Record that a keyed request is answered by this delivery (``pending`` while its transaction is
        in flight), in the delivery's transaction."""
        if key:
            s.merge(
                IdempotencyRow(
                    key=IdempotencyStore.scoped(accessor, key),
                    request_hash=request_hash,
                    state=state,
                    result=json.dumps({"deliveryId": delivery_id}),
                    created_at=datetime.now(UTC),
                )
            )

    @staticmethod
    def delivery_done(s: Session | Connection, accessor: str, key: str | None) -> None:
        """The keyed request's delivery is logged: its key answers replays."""
        if key:
            scoped = IdempotencyStore.scoped(accessor, key)
            s.execute(update(IdempotencyRow).where(IdempotencyRow.key == scoped).values(state="done"))

    @staticmethod
    def forget_delivery(s: Session, accessor: str, key: str | None) -> None:
        """The keyed request's delivery is dropped (its transaction failed): free the key for a retry."""
        if key:
            row = s.get(IdempotencyRow, IdempotencyStore.scoped(accessor, key))
            if row is not None:
                s.delete(row)
