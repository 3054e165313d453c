"""Record encryption.

Each record version's blob is stream-encrypted under a fresh single-use data key (:mod:`.envelope`) and a
salted commitment to the plaintext is anchored on chain (:mod:`.commitment`). The data key is split among the
key custodians (:mod:`.shamir`, sealed with :mod:`.key_shares`; docs/architecture.md, "Key custody"); erasure
destroys the custodians' per-record keys and the salt (crypto-shredding).
"""

from ledger_service.crypto.commitment import (
    COMMITMENT_DOMAIN,
    SALT_SIZE,
    PlaintextCommitment,
    new_salt,
    verify_commitment,
)
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
    "PlaintextCommitment",
    "RecordBinding",
    "ciphertext_size",
    "decrypt_bytes",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_stream",
    "new_salt",
    "verify_commitment",
]
