"""The verifier is pure: it loads no adapter, leaves the garbage collector alone and reads no clock of its own."""

from __future__ import annotations

import gc
import subprocess
import sys

from ledger_service.audit.verifier import verify

from .builder import TrailBuilder, address

IMPORT_CHECK = (
    "import ledger_service.audit.verifier, sys; "
    "print(sorted(m for m in sys.modules if m.split('.')[0] in {'solcx','httpx','sqlalchemy','web3'} "
    "or m in {'http.client','ledger_service.chain.client'}))"
)
ADAPTERS_CHECK = (
    "import ledger_service.audit.verifier, sys; "
    "print(sorted(m for m in sys.modules if m.startswith(('ledger_service.chain', 'ledger_service.db', "
    "'ledger_service.hub', 'ledger_service.node', 'ledger_service.custodian', 'ledger_service.bootstrap', "
    "'ledger_service.blobs.kubo', "
    "'ledger_service.blobs.embedded', 'ledger_service.audit.fetch', 'ledger_service.audit.sources', "
    "'ledger_service.audit.gcpause'))))"
)


def _imported_by_the_verifier(check: str) -> str:
    # A fresh interpreter: this test process has long imported everything.
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True, timeout=60)
    return result.stdout.strip()


def test_importing_the_verifier_loads_no_io_library() -> None:
    assert _imported_by_the_verifier(IMPORT_CHECK) == "[]"


def test_importing_the_verifier_loads_no_adapter_of_the_ledger() -> None:
    assert _imported_by_the_verifier(ADAPTERS_CHECK) == "[]"


def _small_trail() -> TrailBuilder:
    b = TrailBuilder()
    clinic, lab, alice = b.provider(address()), b.provider(address()), address()
    record = b.anchor(alice, clinic, b"alice v1")
    b.access(record.record_id, alice, lab, b.grant(alice, lab))
    return b


def test_verify_leaves_the_garbage_collector_as_it_found_it() -> None:
    seen: list[bool] = []
    assert gc.isenabled()
    verify(_small_trail().trail(), None, progress=lambda *_: seen.append(gc.isenabled()))
    assert seen and all(seen) and gc.isenabled()
    gc.disable()
    try:
        seen.clear()
        verify(_small_trail().trail(), None, progress=lambda *_: seen.append(gc.isenabled()))
        assert seen and not any(seen) and not gc.isenabled()
    finally:
        gc.enable()


def test_the_report_takes_its_times_from_the_injected_clocks() -> None:
    ticks = iter([100.0, 102.5])
    report = verify(_small_trail().trail(), None, clock=lambda: next(ticks), now=lambda: 86_400 * 365)
    assert report.started_at == "1971-01-01T00:00:00Z"
    assert report.duration == 2.5
    assert report.ok
