"""Worker processes for the CPU-bound parses of large uploads (FHIR JSON, the API's JSON envelope).

Parsing a 30 MB JSON document runs for most of a second inside C code (``json``) and Rust code
(pydantic-core) that hold the GIL throughout: in one of the API's threads it froze the event loop,
and every other request with it, just as surely as parsing on the loop did (measured: a 1.2 s gap
while another thread parsed 35 MB). In a child process the parse costs the API process only the copy
of the bytes in and out. Small documents parse in less time than the hand-off takes and stay in the
calling thread. docs/operations.md, "Request body limits".
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from ledger_service.errors import ParseWorkerFailed

log = logging.getLogger(__name__)

T = TypeVar("T")

# The interpreter's default. The Ethereum libraries raise it to 100,000 when imported (and a spawned
# worker imports the server's main module): deeply nested JSON would then overflow the C stack and
# kill the worker instead of raising RecursionError.
WORKER_RECURSION_LIMIT = 1000


def _start_worker() -> None:
    sys.setrecursionlimit(WORKER_RECURSION_LIMIT)


def _call_in_worker(fn: Callable[[bytes], T], payload: bytes) -> T:
    # A worker runs one parse at a time and a parse builds no reference cycles: the cycle collector
    # would only walk the growing document again and again (about half the parse time, measured).
    gc.disable()
    try:
        return fn(payload)
    finally:
        gc.enable()


class ParseWorkers:
    """A pool of ``workers`` processes, started on first use (spawned: the API process has threads)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[[bytes], T], payload: bytes, *, inline_below: int) -> T:
        """``fn(payload)``, in a worker process unless the payload is shorter than ``inline_below``.

        ``fn`` must be a module-level function (or a ``functools.partial`` of one) and its result
        picklable; it should return little besides bytes, which are all the API process has to copy.
        Blocks the calling thread (never call it on an event loop) until the worker answers.
        """
        if len(payload) < inline_below:
            return fn(payload)
        executor = self._pool()
        try:
            return executor.submit(_call_in_worker, fn, payload).result()
        except BrokenProcessPool as exc:
            # A worker died (killed for its memory, or a crash in C): start afresh on the next call.
            with self._lock:
                if self._executor is executor:
                    self._executor = None
            executor.shutdown(wait=False, cancel_futures=True)
            log.warning("a parse worker died while parsing a %d-byte document", len(payload))
            raise ParseWorkerFailed("the worker process parsing the document died; it was not stored") from exc

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                )
            return self._executor

    def close(self) -> None:
        """Stop the workers (a parse under way finishes first; queued ones are dropped)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
