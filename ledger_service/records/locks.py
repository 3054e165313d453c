"""One lock per record, shared by the stories that change a record's versions (an amendment, an erasure)."""

from __future__ import annotations

import threading


class RecordLocks:
    """A lock per record id, created on first use. bootstrap.py hands the same registry to the node's
    uploads and the hub's erasure, so an amendment and an erasure of one record never interleave."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def of(self, record_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(record_id, threading.Lock())
