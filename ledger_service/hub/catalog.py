"""The hub's catalog of anchored record versions it relayed for a node of its own (docs/architecture.md).

In the embedded default the node writes a version's rows itself (one DB) before its anchor is relayed. A node
in its own trust domain keeps its keys and rows in its own DB; the hub then learns a version from the anchor
it relays (what the chain will show: patient, author, category, CID, commitment, hash chain) plus the facts the
node states beside it (media type and sizes, which the chain does not carry), so that patients see
their records and an erasure knows which blobs to unpin. Nothing here is a key.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select

from ledger_service.blobs import Cid
from ledger_service.db.database import Database
from ledger_service.db.models import RecordRow, RecordVersionRow
from ledger_service.domain.codes import hex32
from ledger_service.domain.consent import RecordAmend, RecordAnchor
from ledger_service.domain.media_types import stored_media_type
from ledger_service.domain.records import fast_version_hash, record_id_of
from ledger_service.records.relaying import RecordFacts, RelayOutcome


class RecordCatalog:
    def __init__(self, *, db: Database, categories: Callable[[], dict[str, bytes]]) -> None:
        self.db = db
        self._categories = categories

    def record(self, message: RecordAnchor | RecordAmend, outcome: RelayOutcome, facts: RecordFacts | None) -> None:
        """Catalog an anchored version unless its rows exist already (the embedded node wrote them)."""
        if outcome.record_id is None or outcome.version is None:
            return
        cid = Cid.parse(message.cid)
        media_type = stored_media_type(facts.media_type) if facts else "application/octet-stream"
        now = datetime.now(UTC)
        with self.db.session() as s:
            exists = s.execute(
                select(RecordVersionRow.id).where(
                    RecordVersionRow.record_id == outcome.record_id, RecordVersionRow.version == outcome.version
                )
            ).first()
            if exists is not None:
                return
            if isinstance(message, RecordAnchor):
                codes = {category: code for code, category in self._categories().items()}
                category_code = codes.get(message.category, hex32(message.category))
                category = message.category
                s.add(
                    RecordRow(
                        record_id=outcome.record_id,
                        patient=message.patient,
                        author=message.author,
                        category=category_code,
                        salt=hex32(message.salt),
                        current_version=1,
                        state="anchored",
                        created_at=now,
                    )
                )
                s.flush()
                previous = b"\x00" * 32
                rid = record_id_of(message.patient, message.author, message.salt)
            else:
                row = s.get(RecordRow, outcome.record_id)
                if row is None:
                    return  # an amendment of a record this hub never cataloged: nothing to attach it to
                category = self._categories().get(row.category, b"\x00" * 32)
                row.current_version = max(row.current_version, outcome.version)
                previous = message.previous_hash
                rid = message.record_id
            version_hash = fast_version_hash(
                record_id=rid,
                version=outcome.version,
                patient=message.patient,
                author=message.author,
                category=category,
                cid=message.cid,
                commitment=message.commitment,
                previous_hash=previous,
            )
            s.add(
                RecordVersionRow(
                    record_id=outcome.record_id,
                    version=outcome.version,
                    cid=str(cid),
                    media_type=media_type,
                    plaintext_size=facts.plaintext_size if facts else 0,
                    ciphertext_size=facts.ciphertext_size if facts else 0,
                    commitment=hex32(message.commitment),
                    version_hash=hex32(version_hash),
                    previous_hash=hex32(previous),
                    author=message.author,
                    state="anchored",
                    tx_hash=outcome.tx_hash,
                    block_number=outcome.block_number,
                    created_at=now,
                )
            )
