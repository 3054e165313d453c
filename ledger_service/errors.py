"""One exception root for the whole service, with one family per concern.

Adapters translate library errors at their boundary (``raise BlobNotFound(...) from exc``)
so callers only ever see these types; the API maps each family to one problem+json
``type``. Messages name what was expected and what was found, and never carry secrets
(keys, plaintext) — they end up in logs and HTTP responses.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the service raises on purpose."""

    #: Stable machine-readable code, used as the last segment of the problem ``type``.
    code: str = "ledger-error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, object] = details

    def __str__(self) -> str:
        return self.message


# ----------------------------------------------------------------- configuration / input


class ConfigurationError(LedgerError):
    """Settings or data-dir state that makes the service unable to start."""

    code = "configuration-error"


class ValidationError(LedgerError):
    """Input that is malformed or out of range (caller's fault, nothing was changed)."""

    code = "validation-error"


class NotFoundError(LedgerError):
    """A referenced entity does not exist."""

    code = "not-found"


# ----------------------------------------------------------------- chain


class ChainError(LedgerError):
    """The chain could not be reached or a transaction did not land as expected."""

    code = "chain-error"


class ChainUnavailable(ChainError):
    """The JSON-RPC endpoint is down or timing out."""

    code = "chain-unavailable"


class TransactionTimeout(ChainError):
    """A sent transaction had no receipt within the configured timeout."""

    code = "transaction-timeout"


class TransactionReverted(ChainError):
    """A transaction or call reverted; ``error_name``/``args`` hold the decoded custom error."""

    code = "transaction-reverted"

    def __init__(
        self, message: str, *, error_name: str | None = None, args: tuple[object, ...] = (), **details: object
    ) -> None:
        super().__init__(message, error_name=error_name, **details)
        self.error_name = error_name
        self.error_args = args


# ----------------------------------------------------------------- blobs


class BlobError(LedgerError):
    """Content-addressed store failures."""

    code = "blob-error"


class BlobNotFound(BlobError):
    code = "blob-not-found"


class BlobIntegrityError(BlobError):
    """A block's bytes do not hash to its CID (names the block)."""

    code = "blob-integrity"


class BlobStoreUnavailable(BlobError):
    code = "blob-store-unavailable"


class InvalidCid(BlobError, ValidationError):
    code = "invalid-cid"


# ----------------------------------------------------------------- crypto / keys


class CryptoError(LedgerError):
    code = "crypto-error"


class DecryptionError(CryptoError):
    """Every decryption failure, whatever the cause (wrong key, AAD, tampered bytes)."""

    code = "decryption-failed"


class KeyCustodyError(CryptoError):
    code = "key-custody-error"


class CustodyUnavailable(KeyCustodyError):
    """Fewer key custodians answered than a read or an upload needs: nothing was decrypted or stored."""

    code = "custody-unavailable"


class ShareNotHeld(KeyCustodyError):
    """A custodian holds no share of that record version (none was deposited, or not by its author)."""

    code = "share-not-held"


class KeyDestroyed(CryptoError):
    """The record's data keys were destroyed (crypto-shredding after erasure)."""

    code = "key-destroyed"


class KeyShareError(CryptoError):
    """Shamir key shares that cannot be combined (too few, duplicate or zero x, mixed lengths),
    or split parameters out of range. Messages name counts and lengths, never share bytes."""

    code = "key-share-error"


# ----------------------------------------------------------------- consent / records


class ConsentError(LedgerError):
    code = "consent-error"


class ConsentDenied(ConsentError):
    """No active consent covers the requested access."""

    code = "consent-denied"


class SignatureError(ConsentError, ValidationError):
    """A typed-data signature is invalid, expired, or uses a stale nonce."""

    code = "invalid-signature"


class RecordError(LedgerError):
    code = "record-error"


class RecordNotFound(RecordError, NotFoundError):
    code = "record-not-found"


class RecordErased(RecordError):
    code = "record-erased"


class NotRecordAuthor(RecordError):
    code = "not-record-author"


class StaleVersion(RecordError):
    code = "stale-version"


class InvalidRecordContent(RecordError, ValidationError):
    code = "invalid-record-content"


class RecordTooLarge(InvalidRecordContent):
    """Content over the limit of its kind (FHIR JSON is parsed whole: the FHIR limit), refused before
    it is held whole."""

    code = "payload-too-large"


class ParseWorkerFailed(LedgerError):
    """The worker process parsing an upload died (ledger_service/workers.py); nothing was stored."""

    code = "parse-worker-failed"


class InvalidMediaType(RecordError, ValidationError):
    """A declared media type that is not ``type/subtype`` with well-formed parameters (RFC 6838)."""

    code = "invalid-media-type"


class PermissionDenied(LedgerError):
    """The caller's role does not allow the operation."""

    code = "permission-denied"


class ReleaseRefused(PermissionDenied):
    """A custodian's chain does not show the disclosure a release needs; the message says what it shows."""

    code = "release-refused"


class IdempotencyConflict(LedgerError):
    """An idempotency key was reused with a different request."""

    code = "idempotency-conflict"


class RateLimited(LedgerError):
    """Too many requests on a limited route (sign-in, relays); ``retry_after`` seconds until one is free."""

    code = "rate-limited"


class RelayBusy(LedgerError):
    """Every relay slot holds a transaction still waiting for its receipt; ``retry_after`` as above."""

    code = "relay-busy"


class RelaySuspended(LedgerError):
    """A contract account whose relayed transaction reverted on chain after its ``eth_call`` check passed: its
    messages are not relayed until ``retry_after`` seconds have passed (docs/security.md, "Passkey sign-in and
    relay griefing")."""

    code = "relay-suspended"


# ----------------------------------------------------------------- passkey accounts


class InvalidPasskey(ValidationError):
    """A passkey public key that is not a point of the P-256 curve (the zero key included)."""

    code = "invalid-passkey"


class AccountNotFound(NotFoundError):
    """No passkey account of this deployment's factory is deployed at the address."""

    code = "account-not-found"


class PasskeyRefused(LedgerError):
    """An account's passkey change the account refuses for its passkeys' state (the key is already one of its
    passkeys, is not one, is the last one, or the account is full); ``reason`` names which."""

    code = "passkey-refused"


# ----------------------------------------------------------------- audit


class AuditError(LedgerError):
    code = "audit-error"


# ----------------------------------------------------------------- a provider's patient directory


class DirectoryConflict(LedgerError):
    """A provider's patient directory already gives this MRN to another account (``field`` names it)."""

    code = "directory-conflict"
