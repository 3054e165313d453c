"""The seam between a party's signed act and the chain: whoever relays it (docs/architecture.md, "Signed acts").

The node signs its provider's anchors, amendments and access requests and hands them to a
:class:`Relayer`: in the embedded default the hub's relay itself, wired in bootstrap.py; a node in its own
process reaches the hub's ``POST /v1/relay`` over HTTP. The node never imports the hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ledger_service.domain.consent import SignedMessage


@dataclass(frozen=True)
class RelayOutcome:
    """What relaying one signed message did on chain. An identical message relayed again answers with the
    first relay's outcome (``replayed``) and sends nothing."""

    tx_hash: str
    block_number: int
    replayed: bool = False
    record_id: str | None = None  # RecordAnchor, RecordAmend
    version: int | None = None  # RecordAnchor, RecordAmend, and the version an access request logged
    consent_id: str | None = None  # ConsentGrant, ConsentRevoke, AccessRequest (zero: the patient's own PATRQT request)
    log_index: int | None = None  # the log index of the act's event in its transaction


@dataclass(frozen=True)
class RecordFacts:
    """What a node states beside a ``RecordAnchor`` or ``RecordAmend`` and the chain does not carry: the
    version's media type and sizes (the hub's catalog shows them to the patient)."""

    media_type: str
    plaintext_size: int
    ciphertext_size: int


class Relayer(Protocol):
    """Relays one signed message of any party; refuses (a LedgerError) what the ledger would revert.

    ``reason`` goes beside an ``EmergencyAccessRequest``: its keccak256 must be the message's ``reasonHash``;
    ``record`` beside an anchor or an amendment.
    """

    def relay(
        self,
        message: SignedMessage,
        signature: bytes,
        *,
        reason: str | None = None,
        record: RecordFacts | None = None,
    ) -> RelayOutcome: ...
