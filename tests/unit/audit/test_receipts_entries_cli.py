"""Pure parts of receipts and entries, the progress bar, and the CLI's usage errors (no chain)."""

from __future__ import annotations

import argparse
import copy
import io

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak

from ledger_service.audit.cli import ProgressBar, add_audit_commands
from ledger_service.codec import eip712
from ledger_service.domain.codes import ZERO32, purpose_to_bytes32
from ledger_service.domain.consent import AccessRequest, EmergencyAccessRequest, typed_data
from ledger_service.transparency.entries import (
    DISCLOSURE_ENTRY_TYPEHASH,
    ENTRY_SIZE,
    ENTRY_TYPES,
    DisclosureEntry,
    EntryFormatError,
)
from ledger_service.transparency.merkle import MerkleLog
from ledger_service.transparency.receipts import Anchor, ReceiptError, check_receipt, make_receipt, parse_receipt

from .builder import CONTRACT, DOMAIN, address, sign

PATIENT, ACCESSOR = address(), address()


def entry(i: int, *, signer: str = ACCESSOR, reason: str | None = None) -> DisclosureEntry:
    """Disclosure ``i`` of the accessor's signed request, released at block 100 + i (chain 1, the test ledger)."""
    request: AccessRequest | EmergencyAccessRequest
    if reason is None:
        request = AccessRequest(PATIENT, ACCESSOR, keccak(bytes([i])), 1, purpose_to_bytes32("TREAT"), i, 1_800_000_000)
    else:
        request = EmergencyAccessRequest(
            PATIENT, ACCESSOR, keccak(bytes([i])), 1, keccak(reason.encode()), i, 1_800_000_000
        )
    return DisclosureEntry.of_request(
        request,
        sign(request, signer),
        domain=DOMAIN,
        consent_id=ZERO32 if reason else keccak(b"c"),
        block_number=100 + i,
        timestamp=1_700_000_000 + i,
    )


def _reference_encoding(e: DisclosureEntry) -> bytes:
    """The leaf as Solidity's abi.encode (eth-abi) writes it: the layout entries.py documents."""
    values = [
        DISCLOSURE_ENTRY_TYPEHASH,
        e.chain_id,
        e.ledger,
        e.record_id,
        e.version,
        e.patient,
        e.accessor,
        e.purpose,
        e.consent_id,
        e.reason_hash,
        e.nonce,
        e.deadline,
        e.block_number,
        e.timestamp,
        e.signature,
    ]
    return bytes(abi_encode(list(ENTRY_TYPES), values))


def test_entry_encoding_is_canonical_and_round_trips() -> None:
    for e in (entry(1), entry(2, reason="coma")):
        raw = e.encode()
        assert raw == _reference_encoding(e) and len(raw) == ENTRY_SIZE == 608
        assert DisclosureEntry.decode(raw) == e
        assert DisclosureEntry.from_json(e.to_json()) == e
        # The entry is the accessor's request: its digest is the one eth-account signs, and it recovers.
        assert e.digest() == eip712.eth_account_digest(DOMAIN, e.request())
        signed = Account.sign_typed_data(Account.create().key, full_message=typed_data(DOMAIN, e.request()))
        assert bytes(signed.message_hash) == e.digest()
        assert eip712.recover(e.digest(), e.signature) == ACCESSOR
    assert isinstance(entry(2, reason="coma").request(), EmergencyAccessRequest)


def test_entry_decoding_is_strict() -> None:
    e = entry(1)
    raw = e.encode()

    def flipped(at: int, value: int = 1) -> bytes:
        out = bytearray(raw)
        out[at] = value
        return bytes(out)

    with pytest.raises(EntryFormatError, match="608 bytes"):
        DisclosureEntry.decode(raw + b"\x00" * 32)  # a whole word more
    with pytest.raises(EntryFormatError):
        DisclosureEntry.decode(raw + b"\x00")
    with pytest.raises(EntryFormatError, match="type hash"):
        DisclosureEntry.decode(b"\x01" + raw[1:])
    for word, what in ((2, "address"), (5, "address"), (6, "address"), (4, "uint32"), (12, "uint64"), (13, "uint64")):
        with pytest.raises(EntryFormatError, match=what):
            DisclosureEntry.decode(flipped(32 * word + 1))  # a high byte of a narrower field
    with pytest.raises(EntryFormatError, match="offset"):
        DisclosureEntry.decode(flipped(32 * 14 + 31, 0xC0))  # the signature elsewhere than right after the head
    with pytest.raises(EntryFormatError, match="padding"):
        DisclosureEntry.decode(flipped(len(raw) - 1))  # a byte in the signature's padding
    with pytest.raises(EntryFormatError, match="1 to 4096"):
        DisclosureEntry.decode(raw[: 32 * 15] + (0).to_bytes(32, "big"))  # an empty signature
    # A longer (ERC-1271) signature is one entry too, at its own length; an oversized one is not.
    long = DisclosureEntry(**{**e.__dict__, "signature": b"\x07" * 200})
    assert DisclosureEntry.decode(long.encode()) == long and long.encode() == _reference_encoding(long)
    with pytest.raises(EntryFormatError, match="1 to 4096"):
        DisclosureEntry(**{**e.__dict__, "signature": b"\x07" * 4097}).encode()
    # Fields the entry's kind does not use must be zero, so one request cannot have two leaves.
    with pytest.raises(EntryFormatError, match="reasonHash must be zero"):
        DisclosureEntry.decode(DisclosureEntry(**{**e.__dict__, "reason_hash": keccak(b"x")}).encode())
    sos = entry(3, reason="coma")
    with pytest.raises(EntryFormatError, match="consentId must be zero"):
        DisclosureEntry.decode(DisclosureEntry(**{**sos.__dict__, "consent_id": keccak(b"c")}).encode())
    with pytest.raises(EntryFormatError, match="malformed"):
        DisclosureEntry.from_json({**e.to_json(), "nonce": "1"})


def _receipt() -> dict[str, object]:
    log = MerkleLog.of([entry(i).encode() for i in range(5)])
    anchor = Anchor(log.root(5), b"\x11" * 32, 42, 0, 5)
    return make_receipt(log, 3, chain_id=1, contract=CONTRACT, anchor=anchor).to_json()


def test_receipt_checks_that_the_accessor_signed_the_request() -> None:
    """A receipt whose proof holds is still refused if its request is not the accessor's own."""
    forged = [entry(i) for i in range(4)] + [entry(4, signer=address())]
    log = MerkleLog.of([e.encode() for e in forged])
    anchor = Anchor(log.root(5), b"\x11" * 32, 42, 0, 5)
    check_receipt(parse_receipt(make_receipt(log, 3, chain_id=1, contract=CONTRACT, anchor=anchor).to_json()))
    bad = parse_receipt(make_receipt(log, 4, chain_id=1, contract=CONTRACT, anchor=anchor).to_json())
    with pytest.raises(ReceiptError, match=f"must be signed by its accessor {ACCESSOR}; it is signed by 0x"):
        check_receipt(bad)
    check_receipt(bad, contract_signature=True)  # an accessor contract that accepts it (ERC-1271)
    with pytest.raises(ReceiptError, match="refuses it"):
        check_receipt(bad, contract_signature=False)


def test_receipt_proof_checks_offline() -> None:
    good = _receipt()
    check_receipt(parse_receipt(good))
    for path, value in (
        (("leafIndex",), 2),
        (("entry", "timestamp"), 1),
        (("treeSize",), 4),
        (("inclusionProof", 0), "0x" + "ab" * 32),
        (("entry", "chainId"), 31337),
        (("entry", "nonce"), 99),
        (("entry", "signature"), "0x" + "11" * 65),
    ):
        bad = copy.deepcopy(good)
        target = bad
        for key in path[:-1]:
            target = target[key]  # type: ignore[index]
        target[path[-1]] = value  # type: ignore[index]
        with pytest.raises(ReceiptError):
            check_receipt(parse_receipt(bad))
    with pytest.raises(ReceiptError, match="format"):
        parse_receipt({**good, "format": "other"})
    with pytest.raises(ReceiptError, match="malformed"):
        parse_receipt({k: v for k, v in good.items() if k != "anchor"})


def test_progress_bar_plain_text() -> None:
    out = io.StringIO()
    bar = ProgressBar(out)
    for i in range(1, 11):
        bar("checking blobs", i, 10)
    bar.close()
    assert out.getvalue().strip().endswith("100.0% 10/10") and "#" * 30 in out.getvalue()


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    parser = argparse.ArgumentParser(prog="consent-ledger")
    add_audit_commands(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit) as bad_address:
        parser.parse_args(["verify", "--patient", "not-an-address"])
    assert bad_address.value.code == 2
    args = parser.parse_args(["verify", "--data-dir", str(tmp_path), "--no-progress"])
    assert args.func(args) == 2
    assert "no deployment" in capsys.readouterr().err
