"""Idempotency keys: a retried request with the same key does its work once.

A key is claimed (``pending``) before the work and completed (``done``, with the JSON
result) after it. A retry of a done request gets the stored result; a retry with a
different request under the same key is a conflict; a retry while the first attempt is
still running is a conflict too, unless that attempt is stale (its process died), in
which case the retry takes the key over.

Keys expire ``ttl`` after the request that claimed them (docs/security.md, "Idempotent reads"): an expired key
is a new request, and :meth:`IdempotencyStore.purge_expired` deletes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from ledger_service.db.database import Database, DatabaseError
from ledger_service.db.models import IdempotencyRow
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
