"""A custodian's long-term X25519 keys (docs/architecture.md, "Key custody").

A provider's node seals each share it deposits to the custodian's current public key; the custodian opens it
once, at deposit, and keeps the share re-wrapped under a per-record key of its own store. So the long-term key
rotates without re-encrypting anything: older keys only open deposits sealed before the rotation, and are
retired once none can still arrive. This is the development implementation (a 0600 key file); a KMS/HSM
adapter offers the same two operations, ``public_key`` and ``open_share``.
"""

from __future__ import annotations

from ledger_service.crypto.key_file import X25519KeyFile

__all__ = ["CustodianKeyFile"]


class CustodianKeyFile(X25519KeyFile):
    file_format = "consent-ledger/custodian-key-file/v1"
