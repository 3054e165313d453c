"""The key custodian: holds the key-encryption keys and rotates them (docs/architecture.md).

The node and the hub see it only through :class:`ledger_service.crypto.KeyCustody`."""

from ledger_service.custodian.key_file import LocalKeyFile

__all__ = ["LocalKeyFile"]
