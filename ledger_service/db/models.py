"""Metadata DB schema (SQLAlchemy 2). Truth lives on chain and in the blob store; this DB
holds what must stay off both (commitment salts, the delivery log) and indexes
of chain events for fast listing. Migrations in ``ledger_service/migrations``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RecordRow(Base):
    """One record (all its versions share the id)."""

    __tablename__ = "records"

    record_id: Mapped[str] = mapped_column(String(66), primary_key=True)
    patient: Mapped[str] = mapped_column(String(42), index=True)
    author: Mapped[str] = mapped_column(String(42), index=True)
    category: Mapped[str] = mapped_column(String(64))
    salt: Mapped[str] = mapped_column(String(66))  # anchorRecord's salt (public: it is in the calldata)
    current_version: Mapped[int] = mapped_column(Integer)  # anchored versions; 0 while the first is pending
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | anchored
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    erasure_tx: Mapped[str | None] = mapped_column(String(66), nullable=True)
    # The patient's (or a live delegate's) signed RecordErase, kept from the crypto-shred until its event lands.
    erase_request: Mapped[str | None] = mapped_column(Text, nullable=True)


class RecordVersionRow(Base):
    __tablename__ = "record_versions"
    __table_args__ = (UniqueConstraint("record_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(String(66), ForeignKey("records.record_id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    cid: Mapped[str] = mapped_column(String(100))
    media_type: Mapped[str] = mapped_column(String(255))
    plaintext_size: Mapped[int] = mapped_column(BigInteger)
    ciphertext_size: Mapped[int] = mapped_column(BigInteger)
    commitment: Mapped[str] = mapped_column(String(66))
    version_hash: Mapped[str] = mapped_column(String(66))
    previous_hash: Mapped[str] = mapped_column(String(66))
    author: Mapped[str] = mapped_column(String(42))
    # A version is written as pending (keys stored) before its anchor transaction is sent,
    # so a crash leaves either a finished version or a pending one that recovery resolves.
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | anchored
    # The upload request's scoped Idempotency-Key, so recovery can answer a retry of a request
    # whose process died with the version it adopted (or free the key if it discarded it).
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The signed anchor's deadline (chain time): until it passes, a pending version's anchor may still land.
    anchor_deadline: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CommitmentSaltRow(Base):
    """The salt of a version's plaintext commitment: the one secret of a version the node's DB keeps.

    The version's data key is with the key custodians (docs/architecture.md, "Key custody"); nothing in
    this DB can decrypt. Erasure deletes these rows with the custodians' per-record keys.
    """

    __tablename__ = "commitment_salts"
    __table_args__ = (UniqueConstraint("record_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(String(66), ForeignKey("records.record_id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    commitment_salt: Mapped[bytes] = mapped_column(LargeBinary)


class DeliveryRow(Base):
    """The operator's delivery log: one row per release of record bytes.

    A row is written (status ``logged``) only after the disclosure is durable: per-read mode, after
    its on-chain event (``tx_hash``/``log_index``); batched mode, in the same transaction as its
    disclosure-log entry (``leaf_index``; ``block_number`` is then the block whose state authorized
    the release, and there is no transaction). The auditor matches these rows against the
    disclosure events and log entries in both directions.
    """

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_patient_block", "patient", "block_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(String(66), index=True)
    version: Mapped[int] = mapped_column(Integer)
    patient: Mapped[str] = mapped_column(String(42))
    accessor: Mapped[str] = mapped_column(String(42), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    consent_id: Mapped[str | None] = mapped_column(String(66), nullable=True)
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="logged")  # pending (tx traced) | logged
    tx_hash: Mapped[str | None] = mapped_column(String(66), unique=True, nullable=True)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    log_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    leaf_index: Mapped[int | None] = mapped_column(BigInteger, nullable=True, unique=True, index=True)
    # The accessor's signed access request (docs/architecture.md, "Signed acts"): its EIP-712 digest, and the
    # message with its signature as JSON, kept so that a retry re-sends the very same request.
    request_digest: Mapped[str | None] = mapped_column(String(66), nullable=True, unique=True)
    signed_request: Mapped[str | None] = mapped_column(Text, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Keyed reads only (docs/security.md, "Idempotent reads"): when a request took the right to send
    # the bytes, and when the last byte went out. A delivery is sent in full at most once.
    release_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DisclosureLogEntryRow(Base):
    """One entry of the batched disclosure log (RFC 9162 leaf ``leaf_index``); append-only.

    ``entry`` is the canonical leaf data (:class:`ledger_service.transparency.entries.DisclosureEntry`);
    ``patient`` and ``record_id`` repeat two of its fields so a patient's entries can be listed.
    """

    __tablename__ = "disclosure_log_entries"

    leaf_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary)
    patient: Mapped[str] = mapped_column(String(42), index=True)
    record_id: Mapped[str] = mapped_column(String(66))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DisclosureLogNodeRow(Base):
    """The hash of a perfect subtree of the disclosure log: ``2**level`` leaves from ``position * 2**level``."""

    __tablename__ = "disclosure_log_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class DisclosureBatchRow(Base):
    """A root of the disclosure log anchored on chain (``anchorDisclosureBatch``): leaves ``[from, to)``."""

    __tablename__ = "disclosure_batches"

    to_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # the tree size
    from_index: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[str] = mapped_column(String(66))
    tx_hash: Mapped[str] = mapped_column(String(66), unique=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdempotencyRow(Base):
    """A request made safe to retry: same key + same request = the same result once."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # scoped: "<principal>:<client key>"
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # pending | done
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON of the outcome (never record bytes)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IndexerCursorRow(Base):
    __tablename__ = "indexer_cursor"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(66))


class IndexedBlockRow(Base):
    """Hashes of recently indexed blocks, to notice a reorg and rewind to the fork point."""

    __tablename__ = "indexed_blocks"

    block_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    block_hash: Mapped[str] = mapped_column(String(66))


class ChainEventRow(Base):
    """Every ledger event the indexer has seen, decoded to JSON, for listings."""

    __tablename__ = "chain_events"
    __table_args__ = (
        UniqueConstraint("tx_hash", "log_index"),
        Index("ix_chain_events_name_patient", "name", "patient"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    patient: Mapped[str | None] = mapped_column(String(42), nullable=True)
    record_id: Mapped[str | None] = mapped_column(String(66), nullable=True, index=True)
    block_number: Mapped[int] = mapped_column(BigInteger, index=True)
    block_hash: Mapped[str] = mapped_column(String(66))
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)
    args: Mapped[str] = mapped_column(Text)  # JSON


class RelayedMessageRow(Base):
    """A signed message the relay submitted, keyed by ``keccak(EIP-712 digest || signature)`` (hub/relay.py,
    ``relayed_key``), so an identical resubmission returns the first result instead of failing on its nonce,
    and another signer's signature of the same fields is judged afresh. ``patient`` holds the message's party."""

    __tablename__ = "relayed_messages"

    digest: Mapped[str] = mapped_column(String(66), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # hub/relay.py KINDS: grant | revoke | anchor | access | ...
    patient: Mapped[str] = mapped_column(String(42), index=True)
    consent_id: Mapped[str | None] = mapped_column(String(66), nullable=True)
    tx_hash: Mapped[str] = mapped_column(String(66))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuthNonceRow(Base):
    """A Sign-In with Ethereum nonce a login used: kept until it expires, shared by all API replicas.

    Issued nonces are signed, not stored (ledger_service/hub/auth.py); ``used`` is always true.
    """

    __tablename__ = "auth_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    used: Mapped[bool] = mapped_column(Boolean, default=False)


class AccountNonceRow(Base):
    """The next nonce of an account this installation signs for, shared by all its processes."""

    __tablename__ = "account_nonces"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    next_nonce: Mapped[int] = mapped_column(BigInteger)


class EmergencyReviewRow(Base):
    """A patient's (or guardian's) mark that an emergency access to their records was seen and reviewed.

    ``disclosure_id`` names the emergency disclosure as the accounting lists it (hub/emergency_reviews.py);
    the mark is the hub's, not the chain's: the disclosure itself stays on the ledger as it was.
    """

    __tablename__ = "emergency_reviews"

    patient: Mapped[str] = mapped_column(String(42), primary_key=True)
    disclosure_id: Mapped[str] = mapped_column(String(96), primary_key=True)
    reviewed_by: Mapped[str] = mapped_column(String(42))
    reviewed_at: Mapped[int] = mapped_column(BigInteger)


class RecordLabelRow(Base):
    """A record's label (title, original file name) sealed to one party: the author's node or the patient
    (docs/architecture.md, "Record titles"). Only sealed bytes: the hub cannot read a title."""

    __tablename__ = "record_labels"

    record_id: Mapped[str] = mapped_column(String(66), ForeignKey("records.record_id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)  # the version the label was given with
    recipient: Mapped[str] = mapped_column(String(42), primary_key=True)  # the account whose key opens it
    recipient_key: Mapped[bytes] = mapped_column(LargeBinary)  # that account's X25519 key it was sealed to
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
