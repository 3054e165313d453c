"""Serve the API in this process against an external chain (settings from CONSENT_LEDGER_* env).

Fault tests run it as a child process so they can kill -9 it; the chain (an anvil the test
started, with the ledger deployed) lives on.
"""

from __future__ import annotations

import signal
import sys
import threading

from consent_api.server import serve
from ledger_service.runtime import Runtime
from ledger_service.settings import Settings


def main() -> int:
    settings = Settings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    with Runtime(settings) as runtime:
        serve(runtime, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
