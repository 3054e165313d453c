"""Pure parts of receipts and entries, the progress bar, and the CLI's usage errors (no chain)."""

from __future__ import annotations

import argparse
import copy
import io

import pytest
from eth_utils import keccak

from ledger_service.audit.cli import ProgressBar, add_audit_commands
from ledger_service.domain.codes import ZERO32, purpose_to_bytes32
from ledger_service.transparency.entries import ENTRY_SIZE, DisclosureEntry, EntryFormatError
from ledger_service.transparency.merkle import MerkleLog
from ledger_service.transparency.receipts import Anchor, ReceiptError, check_receipt, make_receipt, parse_receipt

from .builder import CONTRACT, address

PATIENT, ACCESSOR = address(), address()


def entry(i: int) -> DisclosureEntry:
    return DisclosureEntry(
        31337,
        CONTRACT,
        keccak(bytes([i])),
        1,
        PATIENT,
        ACCESSOR,
        purpose_to_bytes32("TREAT"),
        keccak(b"c"),
        ZERO32,
        100 + i,
        1_700_000_000 + i,
    )


def test_entry_encoding_is_canonical_and_round_trips() -> None:
    e = entry(1)
    raw = e.encode()
    assert len(raw) == ENTRY_SIZE == 384
    assert DisclosureEntry.decode(raw) == e
    assert DisclosureEntry.from_json(e.to_json()) == e
    with pytest.raises(EntryFormatError, match="384 bytes"):
        DisclosureEntry.decode(raw + b"\x00")
    dirty = bytearray(raw)
    dirty[32 * 4 + 1] = 1  # the uint32 version's padding
    with pytest.raises(EntryFormatError):
        DisclosureEntry.decode(bytes(dirty))
    with pytest.raises(EntryFormatError, match="type hash"):
        DisclosureEntry.decode(b"\x01" + raw[1:])


def _receipt() -> dict[str, object]:
    log = MerkleLog.of([entry(i).encode() for i in range(5)])
    anchor = Anchor(log.root(5), b"\x11" * 32, 42, 0, 5)
    return make_receipt(log, 3, chain_id=31337, contract=CONTRACT, anchor=anchor).to_json()


def test_receipt_proof_checks_offline() -> None:
    good = _receipt()
    check_receipt(parse_receipt(good))
    for path, value in (
        (("leafIndex",), 2),
        (("entry", "timestamp"), 1),
        (("treeSize",), 4),
        (("inclusionProof", 0), "0x" + "ab" * 32),
        (("entry", "chainId"), 1),
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
