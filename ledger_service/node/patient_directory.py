"""A provider's own patient directory: name, date of birth and MRN against the patient's account.

These are health information that identify a person, so they stay in the provider's node, in a SQLite file
of its own under the data dir (mode 0600), apart from the metadata DB a hub may share: never on chain, never
at the hub, never in the blob store (docs/architecture.md, "Patient directory"). Each provider the node signs
for sees only its own entries.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from eth_utils import is_address, to_checksum_address

from ledger_service.errors import DirectoryConflict, NotFoundError, ValidationError

MAX_NAME = 200
MAX_MRN = 64
MAX_QUERY = 200
MAX_RESULTS = 100
# An MRN is an identifier the clinic's own systems issue: letters, digits and a few separators.
_MRN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ./_-]*$")
_ADDRESS_PART = re.compile(r"^0x[0-9a-fA-F]{1,40}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    provider TEXT NOT NULL,
    address TEXT NOT NULL,
    name TEXT NOT NULL,
    name_folded TEXT NOT NULL,
    birth_date TEXT,
    mrn TEXT,
    mrn_folded TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (provider, address)
);
CREATE UNIQUE INDEX IF NOT EXISTS patients_mrn ON patients (provider, mrn_folded) WHERE mrn_folded IS NOT NULL;
"""


@dataclass(frozen=True)
class DirectoryEntry:
    address: str
    name: str
    birth_date: str | None
    mrn: str | None
    updated_at: int


def _fold(text: str) -> str:
    """Case- and width-insensitive form used for matching (NFKC, then casefold)."""
    return unicodedata.normalize("NFKC", text).casefold()


def _clean_name(name: str) -> str:
    name = " ".join(unicodedata.normalize("NFC", name).split())
    if not name:
        raise ValidationError("name is empty: give the patient's name as the clinic knows it", field="name")
    if len(name) > MAX_NAME:
        raise ValidationError(f"name is longer than {MAX_NAME} characters", field="name")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise ValidationError("name holds control characters", field="name")
    return name


def _clean_birth_date(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        born = date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        born = None
    if born is None:
        raise ValidationError("birthDate must be a date written YYYY-MM-DD", field="birthDate")
    if born > date.today() or born.year < 1850:
        raise ValidationError("birthDate must be a past date after 1850", field="birthDate")
    return born.isoformat()


def _clean_mrn(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > MAX_MRN or not _MRN.match(value):
        raise ValidationError(
            f"mrn must be up to {MAX_MRN} letters, digits, spaces or . / _ - (starting with a letter or digit)",
            field="mrn",
        )
    return value


def _address(value: str, field: str = "address") -> str:
    if not is_address(value):
        raise ValidationError(f"{field} is not an account address (0x followed by 40 hex digits)", field=field)
    return to_checksum_address(value)


class PatientDirectory:
    """One SQLite file, one connection guarded by a lock: a directory is small and written by staff by hand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            # created 0600 whatever the umask: the file holds names, birth dates and MRNs
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(path, 0o600)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # no WAL: one file to protect, and no -wal/-shm siblings holding the same data
        self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _entry(row: tuple[str, str, str | None, str | None, int]) -> DirectoryEntry:
        return DirectoryEntry(address=row[0], name=row[1], birth_date=row[2], mrn=row[3], updated_at=row[4])

    def put(self, provider: str, address: str, *, name: str, birth_date: str | None, mrn: str | None) -> DirectoryEntry:
        """Add or replace the provider's entry for ``address``; 409 if the MRN is another account's here."""
        provider, address = _address(provider, "provider"), _address(address)
        name, birth_date, mrn = _clean_name(name), _clean_birth_date(birth_date), _clean_mrn(mrn)
        mrn_folded = _fold(mrn) if mrn else None
        now = int(time.time())
        with self._lock:
            if mrn_folded is not None:
                holder = self._db.execute(
                    "SELECT address FROM patients WHERE provider = ? AND mrn_folded = ? AND address != ?",
                    (provider, mrn_folded, address),
                ).fetchone()
                if holder is not None:
                    # the other account is the provider's own data: naming it helps staff fix the mix-up
                    raise DirectoryConflict(
                        f"this MRN already belongs to another patient in your directory ({holder[0]})",
                        field="mrn",
                    )
            self._db.execute(
                "INSERT INTO patients (provider, address, name, name_folded, birth_date, mrn, mrn_folded, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (provider, address) DO UPDATE SET name = excluded.name,"
                " name_folded = excluded.name_folded, birth_date = excluded.birth_date, mrn = excluded.mrn,"
                " mrn_folded = excluded.mrn_folded, updated_at = excluded.updated_at",
                (provider, address, name, _fold(name), birth_date, mrn, mrn_folded, now),
            )
        return DirectoryEntry(address, name, birth_date, mrn, now)

    def get(self, provider: str, address: str) -> DirectoryEntry | None:
        provider, address = _address(provider, "provider"), _address(address)
        with self._lock:
            row = self._db.execute(
                "SELECT address, name, birth_date, mrn, updated_at FROM patients WHERE provider = ? AND address = ?",
                (provider, address),
            ).fetchone()
        return None if row is None else self._entry(row)

    def delete(self, provider: str, address: str) -> None:
        provider, address = _address(provider, "provider"), _address(address)
        with self._lock:
            gone = self._db.execute(
                "DELETE FROM patients WHERE provider = ? AND address = ?", (provider, address)
            ).rowcount
        if not gone:
            raise NotFoundError("this patient is not in your directory")

    def search(self, provider: str, query: str = "") -> list[DirectoryEntry]:
        """The provider's entries whose name contains ``query`` (case-insensitive), whose MRN is ``query``
        or whose account starts with it; all of them (by name) for an empty query."""
        provider = _address(provider, "provider")
        query = " ".join(query.split())
        if len(query) > MAX_QUERY:
            raise ValidationError(f"q is longer than {MAX_QUERY} characters", field="q")
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in query):  # a lone surrogate cannot be stored or matched
            raise ValidationError("q holds control characters", field="q")
        select = "SELECT address, name, birth_date, mrn, updated_at FROM patients WHERE provider = ?"
        folded = _fold(query)
        params: list[object] = [provider]
        if query:
            clauses = ["instr(name_folded, ?) > 0", "mrn_folded = ?"]
            params += [folded, folded]
            if _ADDRESS_PART.match(query):
                clauses.append("lower(address) LIKE ?")
                params.append(query.lower() + "%")
            select += " AND (" + " OR ".join(clauses) + ")"
        select += " ORDER BY name_folded, address LIMIT ?"
        params.append(MAX_RESULTS)
        with self._lock:
            rows = self._db.execute(select, params).fetchall()
        return [self._entry(r) for r in rows]
