"""A blob store on the local filesystem, interchangeable with a Kubo node (same CIDs, same DAGs).

Layout under ``root``::

    blocks/<shard>/<cid>   one file per block; shard = the two characters before the CID's last one
                           (Kubo flatfs "next-to-last/2": the leading characters are the same for every CID)
    pins/<cid>             one empty file per pinned root
    tmp/                   blocks being written; renamed into place once complete and fsynced

Blocks are written to ``tmp/``, fsynced and atomically renamed, and their directories fsynced before
the pin that references them is written, so a crash never leaves a pin pointing at missing or torn
blocks. ``put``/``pin`` and ``gc`` exclude each other through a reader-writer lock; reads take no lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from ledger_service.blobs.car import write_car
from ledger_service.blobs.cid import Cid
from ledger_service.blobs.store import BlobSource, PutResult, iter_pieces
from ledger_service.blobs.unixfs import Block, DagBuilder, open_file, walk_dag
from ledger_service.errors import BlobError, BlobNotFound, BlobStoreUnavailable, InvalidCid


class _SharedExclusiveLock:
    """Many puts at once, or one gc, with neither side starving the other.

    A waiting gc holds back newly arriving puts; when a gc finishes, the puts that were waiting for
    it are admitted as a batch before the next gc may start.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0
        self._shared_waiting = 0
        self._admitted = 0  # waiting shared holders let in ahead of waiting exclusive ones

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            if self._exclusive or self._exclusive_waiting:
                self._shared_waiting += 1
                self._condition.wait_for(
                    lambda: not self._exclusive and (self._admitted > 0 or not self._exclusive_waiting)
                )
                self._shared_waiting -= 1
                self._admitted = max(0, self._admitted - 1)
            self._shared += 1
        try:
            yield
        finally:
            with self._condition:
                self._shared -= 1
                self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            self._exclusive_waiting += 1
            self._condition.wait_for(lambda: not self._exclusive and not self._shared and not self._admitted)
            self._exclusive_waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                self._admitted = self._shared_waiting
                self._condition.notify_all()


class _BlockWriter:
    """Overlaps block writes (each waits on its own fsync) with hashing the next chunks.

    At most ``max_pending`` blocks are in flight, so memory stays a few chunks whatever the file size.
    """

    def __init__(self, write: Callable[[Path, bytes], None], workers: int = 8, max_pending: int = 16) -> None:
        self._write = write
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blob-write")
        self._pending: deque[Future[None]] = deque()
        self._max_pending = max_pending

    def submit(self, path: Path, data: bytes) -> None:
        while len(self._pending) >= self._max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, path, data))

    def wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def each(self, action: Callable[[Path], None], paths: list[Path]) -> None:
        """``action(path)`` for every path at once in the pool (independent fsyncs), until all are done."""
        futures = [self._pool.submit(action, path) for path in paths]
        try:
            for future in futures:
                future.result()
        finally:
            for future in futures:
                future.cancel()

    def __enter__(self) -> _BlockWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _storage_errors(action: str) -> Iterator[None]:
    """A failing filesystem (full, read-only, permissions, a broken dir) is an unavailable store."""
    try:
        yield
    except BlobError:
        raise
    except OSError as exc:
        raise BlobStoreUnavailable(f"blob store cannot {action}: {type(exc).__name__} ({exc.strerror})") from exc


class EmbeddedBlobStore:
    """Filesystem :class:`~ledger_service.blobs.store.BlobStore`; safe for concurrent use by threads."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._blocks = self.root / "blocks"
        self._pins = self.root / "pins"
        self._tmp = self.root / "tmp"
        for directory in (self._blocks, self._pins, self._tmp):
            directory.mkdir(parents=True, exist_ok=True)
        self._lock = _SharedExclusiveLock()

    # ------------------------------------------------------------- BlobStore

    def put(self, source: BlobSource) -> PutResult:
        with _storage_errors("store a blob"), self._lock.shared(), _BlockWriter(self._write_atomically) as writer:
            builder = DagBuilder()
            dirty: set[Path] = set()
            stored: set[Cid] = set()
            for piece in iter_pieces(source):
                self._store_blocks(builder.write(piece), stored, dirty, writer)
            self._store_blocks(builder.finish(), stored, dirty, writer)
            writer.wait()
            # Every block file is durable; now their directory entries (the shard directories, and
            # blocks/ for new shards), all independent, fsynced at once through the writer's pool.
            # Only when all are done is the pin written.
            writer.each(_fsync_dir, sorted(dirty, key=lambda path: len(path.parts), reverse=True))
            self._write_pin(builder.root)
            return PutResult(builder.root, builder.size, len(stored))

    def open(self, cid: Cid) -> Iterator[bytes]:
        return open_file(Cid.parse(cid), self._load)

    def read(self, cid: Cid) -> bytes:
        return b"".join(self.open(cid))

    def has(self, cid: Cid) -> bool:
        return self.block_path(cid).is_file()

    def pin(self, cid: Cid) -> None:
        cid = Cid.parse(cid)
        with _storage_errors("pin a blob"), self._lock.shared():
            for block_cid, data in walk_dag(cid, self._load, load_leaves=False):
                if data is None and not self.has(block_cid):
                    raise BlobNotFound(f"block {block_cid} of {cid} is not stored", cid=str(block_cid), root=str(cid))
            self._write_pin(cid)

    def unpin(self, cid: Cid) -> None:
        path = self._pins / str(Cid.parse(cid))
        with _storage_errors("unpin a blob"), contextlib.suppress(FileNotFoundError):
            path.unlink()
            _fsync_dir(self._pins)

    def is_pinned(self, cid: Cid) -> bool:
        return (self._pins / str(Cid.parse(cid))).is_file()

    def gc(self) -> int:
        with _storage_errors("collect garbage"), self._lock.exclusive():
            live: set[Cid] = set()
            for pin in self.pins():
                # A missing or corrupted pinned node aborts gc: its children cannot be told from garbage.
                live.update(block_cid for block_cid, _ in walk_dag(pin, self._load, load_leaves=False))
            removed = 0
            dirty: set[Path] = set()
            for block_cid in self.iter_blocks():
                if block_cid not in live:
                    path = self.block_path(block_cid)
                    path.unlink(missing_ok=True)
                    dirty.add(path.parent)
                    removed += 1
            for stale in self._tmp.iterdir():  # no put is running, so these are leftovers of a crash
                stale.unlink(missing_ok=True)
            for directory in dirty:
                _fsync_dir(directory)
            return removed

    def export_car(self, cid: Cid, out: BinaryIO) -> None:
        cid = Cid.parse(cid)
        write_car(out, [cid], self._verified_blocks(cid))

    def blocks_of(self, cid: Cid) -> list[Cid]:
        return [block_cid for block_cid, _ in walk_dag(Cid.parse(cid), self._load, load_leaves=False)]

    # ------------------------------------------------------------- storage details

    def block_path(self, cid: Cid) -> Path:
        """Where the block ``cid`` lives (whether or not it is stored)."""
        name = str(Cid.parse(cid))  # validated: only canonical base32 CIDs ever become path components
        return self._blocks / name[-3:-1] / name

    def iter_blocks(self) -> Iterator[Cid]:
        """CIDs of all stored blocks, in no particular order."""
        for shard in self._blocks.iterdir():
            for entry in shard.iterdir():
                with contextlib.suppress(InvalidCid):
                    yield Cid.parse(entry.name)

    def pins(self) -> list[Cid]:
        result = []
        for entry in self._pins.iterdir():
            with contextlib.suppress(InvalidCid):
                result.append(Cid.parse(entry.name))
        return result

    def _load(self, cid: Cid) -> bytes:
        try:
            return self.block_path(cid).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"block {cid} is not stored", cid=str(cid)) from None
        except OSError as exc:
            raise BlobStoreUnavailable(f"blob store cannot read block {cid}: {exc.strerror}", cid=str(cid)) from exc

    def _verified_blocks(self, cid: Cid) -> Iterator[tuple[Cid, bytes]]:
        for block_cid, data in walk_dag(cid, self._load, load_leaves=True):
            yield block_cid, data or b""

    def _store_blocks(self, blocks: list[Block], stored: set[Cid], dirty: set[Path], writer: _BlockWriter) -> None:
        for block in blocks:
            stored.add(block.cid)
            path = self.block_path(block.cid)
            # An existing block may come from a concurrent put whose directory fsync is still pending,
            # so its directory is synced before our pin either way.
            dirty.add(path.parent)
            if path.is_file():  # content-addressed: an existing block already has these bytes
                continue
            if not path.parent.is_dir():
                path.parent.mkdir(exist_ok=True)
                dirty.add(self._blocks)
            writer.submit(path, block.data)

    def _write_atomically(self, path: Path, data: bytes) -> None:
        temp = self._tmp / f"{path.name}.{uuid.uuid4().hex}"
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)

    def _write_pin(self, cid: Cid) -> None:
        path = self._pins / str(cid)
        if path.is_file():
            return
        path.touch()
        _fsync_dir(self._pins)
