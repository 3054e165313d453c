"""The blob store interface shared by the embedded store and the Kubo adapter."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from ledger_service.blobs.cid import Cid
from ledger_service.blobs.unixfs import CHUNK_SIZE, DagBuilder

BlobSource = BinaryIO | Iterable[bytes] | bytes
"""File content: a binary file object, an iterable of byte pieces of any size, or plain bytes."""


@dataclass(frozen=True, slots=True)
class PutResult:
    cid: Cid
    size: int
    block_count: int  # distinct blocks in the DAG


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed file storage whose CIDs equal ``ipfs add --cid-version=1 --raw-leaves``.

    Every read re-hashes every block and raises ``BlobIntegrityError`` naming the first bad one.
    """

    def put(self, source: BlobSource) -> PutResult:
        """Store a file (streamed, never held whole in memory) and pin its root."""
        ...

    def open(self, cid: Cid) -> Iterator[bytes]:
        """Stream a file's verified content; the root is checked before this returns."""
        ...

    def read(self, cid: Cid) -> bytes:
        """The whole verified content of a file (use :meth:`open` for large files)."""
        ...

    def has(self, cid: Cid) -> bool:
        """Whether the block ``cid`` is stored (not whether its whole DAG is)."""
        ...

    def pin(self, cid: Cid) -> None:
        """Protect a DAG from :meth:`gc`; raises ``BlobNotFound`` unless all of it is stored."""
        ...

    def unpin(self, cid: Cid) -> None:
        """Remove a pin; unpinning something that is not pinned does nothing."""
        ...

    def is_pinned(self, cid: Cid) -> bool: ...

    def gc(self) -> int:
        """Remove every block not reachable from a pin; return how many were removed."""
        ...

    def export_car(self, cid: Cid, out: BinaryIO) -> None:
        """Write a CAR v1 of the DAG, blocks in ``ipfs dag export`` order."""
        ...

    def blocks_of(self, cid: Cid) -> list[Cid]:
        """Every distinct block CID of the DAG, root first, in ``ipfs dag export`` order."""
        ...


def iter_pieces(source: BlobSource, piece_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Normalize a :data:`BlobSource` to an iterator of non-empty byte pieces."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if source:
            yield bytes(source)
        return
    read = getattr(source, "read", None)
    if read is not None:
        while piece := read(piece_size):
            yield piece
        return
    for piece in source:
        if piece:
            yield piece


def compute_cid(source: BlobSource) -> PutResult:
    """The CID Kubo would give ``source``, computed without storing anything."""
    builder = DagBuilder()
    seen: set[Cid] = set()
    for piece in iter_pieces(source):
        seen.update(block.cid for block in builder.write(piece))
    seen.update(block.cid for block in builder.finish())
    return PutResult(builder.root, builder.size, len(seen))
