"""``consent-ledger verify`` and ``consent-ledger verify-receipt``.

Hook into the main parser with ``add_audit_commands(subparsers)``. Exit status: 0 when clean, 1 when
any violation is found (or a receipt does not verify), 2 on a usage, configuration or connection error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from eth_utils import is_address, to_checksum_address

from ledger_service.errors import (
    BlobStoreUnavailable,
    ChainError,
    ConfigurationError,
    LedgerError,
)

EXIT_OK = 0
EXIT_VIOLATIONS = 1
EXIT_ERROR = 2


class ProgressBar:
    """A plain-text progress bar on a stream (redrawn in place on a terminal, one line per phase otherwise)."""

    def __init__(self, stream: TextIO = sys.stderr, *, width: int = 30, enabled: bool = True) -> None:
        self.stream = stream
        self.width = width
        self.enabled = enabled
        self.tty = stream.isatty()
        self._phase = ""
        self._last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        finished = total > 0 and done >= total
        if phase != self._phase:
            if self._phase and self.tty:
                self.stream.write("\n")
            self._phase = phase
        elif not finished and now - self._last < 0.1:
            return
        self._last = now
        fraction = done / total if total else 1.0
        filled = int(self.width * fraction)
        line = f"{phase:<20} [{'#' * filled}{'.' * (self.width - filled)}] {fraction:6.1%} {done}/{total}"
        if self.tty:
            self.stream.write("\r" + line)
        elif finished:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self._phase:
            self.stream.write("\n")
            self.stream.flush()


def _address(value: str) -> str:
    if not is_address(value):
        raise argparse.ArgumentTypeError(f"expected a 0x-prefixed Ethereum address, got {value!r}")
    return str(to_checksum_address(value))


def _record_id(value: str) -> bytes:
    raw = value[2:] if value.startswith(("0x", "0X")) else ""
    try:
        parsed = bytes.fromhex(raw)
    except ValueError:
        parsed = b""
    if len(parsed) != 32:
        raise argparse.ArgumentTypeError(f"expected a record id (0x and 64 hex digits), got {value!r}")
    return parsed


def _block(value: str) -> int:
    try:
        number = int(value, 0)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a block number >= 0, got {value!r}")
    return number


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("CONSENT_LEDGER_DATA_DIR", ".consent-ledger"),
        help="deployment, keys, DB and blobs (default ./.consent-ledger)",
    )


def add_audit_commands(subparsers: Any) -> None:
    """Add ``verify`` and ``verify-receipt`` to the ``consent-ledger`` sub-command parsers."""
    verify = subparsers.add_parser(
        "verify",
        help="verify the hash trail and every disclosure, independently of the operator",
        description=(
            "Re-check every record version (blob bytes against the anchored CID, the hash chain, the author's "
            "role) and every disclosure (consent re-derived from the chain's events) and match the operator's "
            "delivery log. By default uses the data dir's deployment, blob store and DB; with --rpc-url and "
            "--contract (and --blob-store) it uses only your own nodes and skips the operator-DB checks."
        ),
    )
    _data_dir_option(verify)
    verify.add_argument("--patient", type=_address, help="only this patient's records and disclosures")
    verify.add_argument("--record", type=_record_id, help="only this record (0x record id)")
    verify.add_argument("--from-block", type=_block, default=0, help="only check events from this block on")
    verify.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    verify.add_argument("--html", type=Path, help="write the report as a self-contained HTML page")
    verify.add_argument("--rpc-url", help="your own JSON-RPC node (auditor mode)")
    verify.add_argument("--contract", type=_address, help="the ConsentLedger address (auditor mode)")
    verify.add_argument("--blob-store", help="a Kubo RPC URL or an embedded blob directory (auditor mode)")
    verify.add_argument(
        "--start-block", type=_block, default=None, help="first block to read events from (default: deployment)"
    )
    verify.add_argument(
        "--disclosure-log",
        type=Path,
        help="the operator's exported disclosure log (JSON); default in data-dir mode: the DB's batched log",
    )
    verify.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    verify.set_defaults(func=cmd_verify)

    receipt = subparsers.add_parser(
        "verify-receipt",
        help="check a disclosure receipt against the chain alone",
        description="Check that a disclosure receipt's entry is in a Merkle root anchored on chain.",
    )
    _data_dir_option(receipt)
    receipt.add_argument("receipt", type=Path, help="RECEIPT.json")
    receipt.add_argument("--rpc-url", help="a JSON-RPC node of the ledger's chain (default: the data dir's)")
    receipt.set_defaults(func=cmd_verify_receipt)


def _fail(command: str, message: str) -> int:
    print(f"consent-ledger {command}: {message}", file=sys.stderr)
    return EXIT_ERROR


def _data_dir_setup(args: argparse.Namespace) -> tuple[Any, Any]:
    from ledger_service.chain.deploy import Deployment
    from ledger_service.settings import Settings

    settings = Settings(data_dir=Path(args.data_dir))
    if not settings.deployment_file.is_file():
        raise ConfigurationError(
            f"no deployment in {settings.data_dir} (expected {settings.deployment_file}); run `consent-ledger up` "
            "there, or give --rpc-url and --contract"
        )
    return settings, Deployment.load(settings.deployment_file)


def _node_providers(settings: Any) -> list[str]:
    """The providers this data dir's node signs for: the operator's DB keeps their deliveries and versions
    (another provider's node keeps its own)."""
    from ledger_service.bootstrap import provider_accounts

    return provider_accounts(settings)


def cmd_verify(args: argparse.Namespace) -> int:
    from ledger_service.audit.fetch import fetch_trail
    from ledger_service.audit.gcpause import paused_gc
    from ledger_service.audit.report_html import render_html
    from ledger_service.audit.sources import disclosure_log_file, log_entries, operator_log, operator_records
    from ledger_service.audit.verifier import OperatorLog, OperatorRecords, Scope, verify
    from ledger_service.blobs import BlobStore
    from ledger_service.bootstrap import auditor_blob_store, auditor_rpc, blob_store, database, node_url
    from ledger_service.db.database import Database

    auditor_mode = any(v is not None for v in (args.rpc_url, args.contract, args.blob_store))
    blobs: BlobStore | None = None
    operator: OperatorRecords | None = None
    notes: list[str] = []
    db: Database | None = None
    log: OperatorLog | None = None
    progress = ProgressBar(enabled=not args.no_progress)
    try:
        if auditor_mode:
            if not args.rpc_url or not args.contract:
                return _fail("verify", "auditor mode needs both --rpc-url and --contract (and usually --blob-store)")
            rpc_url, contract, start = args.rpc_url, args.contract, args.start_block or 0
            if args.blob_store:
                blobs = auditor_blob_store(args.blob_store)
            notes.append("auditor mode: only your chain node and blob store were used; operator DB checks skipped")
        else:
            settings, deployment = _data_dir_setup(args)
            rpc_url = node_url(settings, deployment)
            contract = deployment.ledger_address
            start = deployment.block_number if args.start_block is None else args.start_block
            blobs = blob_store(settings)
            db = database(settings)
            operator = operator_records(db, patient=args.patient, accounts=_node_providers(settings))
            if not args.disclosure_log:
                log = operator_log(db)
                if log is not None:
                    notes.append(f"the operator's disclosure log ({len(log.entries)} entries) was read from its DB")
        rpc = auditor_rpc(rpc_url)
        if args.disclosure_log:
            log = disclosure_log_file(args.disclosure_log)
        # Reading and replaying a long history makes many small acyclic objects: see gcpause.
        with paused_gc():
            # With --patient only that patient's events (and the global ones) are read from the node.
            trail = fetch_trail(
                rpc,
                contract,
                from_block=start,
                entries=log_entries(log, patient=args.patient),
                progress=progress,
                patient=args.patient,
            )
            scope = Scope(patient=args.patient, record_id=args.record, from_block=args.from_block)
            report = verify(trail, blobs, operator=operator, log=log, scope=scope, progress=progress)
    except (ChainError, BlobStoreUnavailable) as exc:
        progress.close()
        return _fail("verify", f"cannot reach a node: {exc}")
    except LedgerError as exc:
        progress.close()
        return _fail("verify", str(exc))
    finally:
        if db is not None:
            db.dispose()
    progress.close()
    report.notes[:0] = notes
    if args.html:
        try:
            args.html.write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            return _fail("verify", f"cannot write {args.html}: {exc.strerror}")
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_summary(report)
    return EXIT_OK if report.ok else EXIT_VIOLATIONS


def _print_summary(report: Any) -> None:
    verdict = "PASSED" if report.ok else f"FAILED: {len(report.violations)} violation(s)"
    print(f"verification of {report.contract} on chain {report.chain_id}, blocks {report.from_block}-{report.to_block}")
    for key, value in report.to_json()["summary"].items():
        print(f"  {key:<20} {value:>10,}")
    for note in report.notes:
        print(f"  note: {note}")
    for v in report.violations:
        where = " ".join(
            part
            for part in (
                f"record={v.record_id}" if v.record_id else "",
                f"block={v.block}" if v.block is not None else "",
                f"tx={v.tx}" if v.tx else "",
                f"entry={v.entry!r}" if v.entry else "",
            )
            if part
        )
        print(f"VIOLATION {v.code}: {v.message}" + (f"  [{where}]" if where else ""))
    for e in report.emergencies:
        status = "authorized" if e.authorized else "NOT AUTHORIZED"
        print(f"EMERGENCY record={e.record_id} accessor={e.accessor} block={e.block} ({status})")
    print(verdict)


def cmd_verify_receipt(args: argparse.Namespace) -> int:
    from ledger_service.audit.fetch import verify_receipt
    from ledger_service.bootstrap import auditor_rpc, node_url
    from ledger_service.transparency.receipts import ReceiptError

    try:
        data = json.loads(args.receipt.read_text(encoding="utf-8"))
    except OSError as exc:
        return _fail("verify-receipt", f"cannot read {args.receipt}: {exc.strerror}")
    except ValueError as exc:
        return _fail("verify-receipt", f"{args.receipt} is not JSON: {exc}")
    try:
        if args.rpc_url:
            rpc_url = args.rpc_url
        else:
            settings, deployment = _data_dir_setup(args)
            rpc_url = node_url(settings, deployment)
        receipt = verify_receipt(data, auditor_rpc(rpc_url))
    except ReceiptError as exc:
        print(f"receipt INVALID: {exc}", file=sys.stderr)
        return EXIT_VIOLATIONS
    except ChainError as exc:
        return _fail("verify-receipt", f"cannot reach the chain: {exc}")
    except LedgerError as exc:
        return _fail("verify-receipt", str(exc))
    entry = receipt.entry
    print(
        f"receipt VALID: leaf {receipt.leaf_index} of {receipt.tree_size} under root 0x{receipt.anchor.root.hex()} "
        f"anchored in block {receipt.anchor.block_number} (tx 0x{receipt.anchor.tx_hash.hex()}); record "
        f"0x{entry.record_id.hex()} v{entry.version} disclosed to {entry.accessor}"
    )
    return EXIT_OK
