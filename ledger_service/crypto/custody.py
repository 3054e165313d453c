"""Key custody: wrapping data keys under key-encryption keys (KEKs).

Blobs are encrypted under per-record-version data keys; only the small wrapped data keys
depend on the KEK, so rotating the KEK means re-wrapping those (:func:`rewrap`) and never
touching blobs. :class:`KeyCustody` is the seam the node and the hub use and a custodian
implements (``ledger_service.custodian``: a 0600 key file today, a KMS/HSM adapter later).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ledger_service.crypto.envelope import DataKey

__all__ = ["KeyCustody", "WrappedKey", "rewrap"]


@dataclass(frozen=True)
class WrappedKey:
    """A data key encrypted under the KEK ``kek_id``; ``ciphertext`` carries its own nonce."""

    kek_id: str
    ciphertext: bytes


@runtime_checkable
class KeyCustody(Protocol):
    """Holds KEKs and wraps/unwraps data keys; KEK bytes never leave the implementation.

    ``context`` (typically ``RecordBinding.aad()``) is authenticated with the wrap, so a
    wrapped key copied to another record fails to unwrap.
    """

    @property
    def current_kek_id(self) -> str:
        """The KEK new wraps use."""
        ...

    def wrap(self, data_key: DataKey, context: bytes) -> WrappedKey:
        """Encrypt ``data_key`` under the current KEK, bound to ``context``."""
        ...

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> DataKey:
        """Recover a data key; DecryptionError if tampered/wrong context, KeyCustodyError if the KEK is gone."""
        ...

    def rotate(self) -> str:
        """Create a new current KEK and return its id; older KEKs still unwrap until retired."""
        ...

    def retire(self, kek_id: str) -> None:
        """Destroy a non-current KEK. The caller must first rewrap everything wrapped under it."""
        ...


def rewrap(custody: KeyCustody, wrapped: WrappedKey, context: bytes) -> WrappedKey:
    """Move a wrapped key to the current KEK; the data key (and so the blob) is unchanged.

    Already-current keys are returned as-is, so an interrupted rotation job can simply rerun.
    """
    if wrapped.kek_id == custody.current_kek_id:
        return wrapped
    return custody.wrap(custody.unwrap(wrapped, context), context)
