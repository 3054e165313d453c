"""Content-addressed blob storage whose CIDs match ``ipfs add --cid-version=1 --raw-leaves``.

``EmbeddedBlobStore`` keeps blocks on the local filesystem; ``KuboBlobStore`` talks to a Kubo node.
Both satisfy :class:`BlobStore`, build identical DAGs and verify every block they read.
"""

from typing import TYPE_CHECKING, Any

from ledger_service.blobs.car import CarFormatError, CarReader, read_car, write_car
from ledger_service.blobs.cid import DAG_PB, RAW, Cid, verify_block
from ledger_service.blobs.store import BlobSource, BlobStore, PutResult, compute_cid, iter_pieces
from ledger_service.blobs.unixfs import CHUNK_SIZE, MAX_LINKS, Block, DagBuilder

if TYPE_CHECKING:
    from ledger_service.blobs.embedded import EmbeddedBlobStore
    from ledger_service.blobs.kubo import KuboBlobStore

# The two stores are adapters (a filesystem, an HTTP client): loaded when first named, so that pure code
# importing a CID or the DAG format (the auditor's verifier) does not load them.
_ADAPTERS = {"EmbeddedBlobStore": "ledger_service.blobs.embedded", "KuboBlobStore": "ledger_service.blobs.kubo"}


def __getattr__(name: str) -> Any:
    module = _ADAPTERS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "CHUNK_SIZE",
    "DAG_PB",
    "MAX_LINKS",
    "RAW",
    "BlobSource",
    "BlobStore",
    "Block",
    "CarFormatError",
    "CarReader",
    "Cid",
    "DagBuilder",
    "EmbeddedBlobStore",
    "KuboBlobStore",
    "PutResult",
    "compute_cid",
    "iter_pieces",
    "read_car",
    "verify_block",
    "write_car",
]
