"""Content-addressed blob storage whose CIDs match ``ipfs add --cid-version=1 --raw-leaves``.

``EmbeddedBlobStore`` keeps blocks on the local filesystem; ``KuboBlobStore`` talks to a Kubo node.
Both satisfy :class:`BlobStore`, build identical DAGs and verify every block they read.
"""

from ledger_service.blobs.car import CarFormatError, CarReader, read_car, write_car
from ledger_service.blobs.cid import DAG_PB, RAW, Cid, verify_block
from ledger_service.blobs.embedded import EmbeddedBlobStore
from ledger_service.blobs.kubo import KuboBlobStore
from ledger_service.blobs.store import BlobSource, BlobStore, PutResult, compute_cid, iter_pieces
from ledger_service.blobs.unixfs import CHUNK_SIZE, MAX_LINKS, Block, DagBuilder

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
