"""Record encryption and key custody.

Each record version's blob is stream-encrypted under a fresh single-use data key
(:mod:`.envelope`), the data key is wrapped under a key-encryption key held by a
:class:`KeyCustody` (:mod:`.custody`, implemented in ``ledger_service.custodian``), and a salted
commitment to the plaintext is anchored on chain (:mod:`.commitment`). Erasure destroys the wrapped key
and salt (crypto-shredding).
"""

from ledger_service.crypto.commitment import (
    COMMITMENT_DOMAIN,
    SALT_SIZE,
    PlaintextCommitment,
    new_salt,
    verify_commitment,
)
from ledger_service.crypto.custody import KeyCustody, WrappedKey, rewrap
from ledger_service.crypto.envelope import (
    DEFAULT_SEGMENT_SIZE,
    MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
    STREAM_HEADER_SIZE,
    DataKey,
    RecordBinding,
    ciphertext_size,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
)

__all__ = [
    "COMMITMENT_DOMAIN",
    "DEFAULT_SEGMENT_SIZE",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "SALT_SIZE",
    "STREAM_HEADER_SIZE",
    "DataKey",
    "KeyCustody",
    "PlaintextCommitment",
    "RecordBinding",
    "WrappedKey",
    "ciphertext_size",
    "decrypt_bytes",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_stream",
    "new_salt",
    "rewrap",
    "verify_commitment",
]
