"""Known-answer tests: our CIDs and CARs equal those of an independent IPFS implementation.

Vectors were computed outside this repository with the JavaScript reference importer on Node 20.20.2:
ipfs-unixfs-importer 17.1.1 (with ipfs-unixfs 13.1.1, @ipld/dag-pb 4.2.0, blockstore-core 7.0.1), called as
``importer([{content}], new MemoryBlockstore(), {cidVersion: 1, rawLeaves: true, reduceSingleLeafToSelf: true,
chunker: fixedSize({chunkSize: 262144}), layout: balanced({maxChildrenPerNode: 174}), fieldOrder: 'links-first'})``
-- the settings of Kubo's ``ipfs add --cid-version=1 --raw-leaves``: UnixFS File nodes with filesize and
blocksizes, links named "" whose Tsize is the cumulative subtree size, a lone chunk stored as one raw block.
The empty file gives bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku, Kubo's known answer.
``blocks`` counts distinct blocks. CAR digests: @ipld/car 5.4.7 ``CarWriter.create([root])`` fed every
distinct block in depth-first pre-order, which is the order of Kubo's ``ipfs dag export``.
Content generators (conftest.py) were reimplemented byte-for-byte in the JS script.
"""

from __future__ import annotations

import hashlib
import io
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger_service.blobs import CHUNK_SIZE, MAX_LINKS, Cid, DagBuilder, EmbeddedBlobStore, compute_cid, write_car
from ledger_service.blobs.unixfs import walk_dag

Generators = dict[str, Callable[[int], Iterator[bytes]]]  # the ``content`` fixture, see conftest.py

FULL_LEVEL = MAX_LINKS * CHUNK_SIZE  # 45,613,056: the largest file one dag-pb node can describe

# (generator, size, cid, distinct blocks)
CID_VECTORS = [
    ("mod251", 0, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", 1),
    ("mod251", 1, "bafkreidogqfzz75tpkmjzjke425xqcrmpcib2p5tg44hnbirumdbpl5adu", 1),
    ("mod251", 262_143, "bafkreiagptg6ztonoojy4wflk3wwusl5xt4vcy6uult4wa7oemsjtxhjsu", 1),
    ("mod251", 262_144, "bafkreibruh455iawsviqslif5c7uurdcfdemh22mtnytyzvnzn75kpejxy", 1),
    ("mod251", 262_145, "bafybeiexg2oqkfnj56l7fcmawswqbijt5shq4b5rg6a546uwpkqqzwjioi", 3),
    ("mod251", 1_048_583, "bafybeifofps7oqlveyur54t4opj4y6jhjlyc5du6zqjlf6lhakt2w2c25u", 6),
    ("sha256ctr", 1_048_583, "bafybeibwoe7374mreiw2yktktegf5d4uiluoy3a2fpu2qwrwxpfo46iuyq", 6),
    ("mod251", FULL_LEVEL, "bafybeihpe5snhzneq7xs53nivmsopto5lrogo3wjynauqylqeym5a3irbm", 175),
    ("mod251", FULL_LEVEL + 1, "bafybeib4y7ghw2rq7bracc4xwtxrbzo7cfvagdpte2tmrkgwl6dyard3cm", 178),
    ("sha256ctr", 50_331_651, "bafybeiddm7xb5v4wzrdwmuotycracy6hdzsfwpitwi2mk3ngyufvvhhnmy", 196),
    # 321 chunks but the pattern repeats every 251 chunks, so leaves are shared within the DAG
    ("mod251", 83_898_425, "bafybeigqxppha7xfmkhnszt5x4uw7awstuusjklmlkdh36zbixhfrue7y4", 255),
]

# (generator, size, sha256 of the CAR, CAR length)
CAR_VECTORS = [
    ("mod251", 0, "50e7408f2eeee58f0a305319619dcc4c89baa7b8425550b9e1b4fdecc020699e", 96),
    ("mod251", 1, "adf374e46bd6c4325fcd673f3df6c13ddef50e006e36d4f25466eef1a1eff9b3", 97),
    ("mod251", 262_145, "40e73e8e51f245fe55a7f1866dcde1f31665b4b1fbfc1d9faeda881bdb5eddc8", 262_422),
    ("mod251", 1_048_583, "6e0890cd16fe2f4c6d1814f00a7a8add0a8002d174cd05326ba097c7b218b96d", 1_049_127),
    ("sha256ctr", 1_048_583, "37cf459f73860684a078dccc29c33796a73c10983e88639ce0ba45ca92040f95", 1_049_127),
]
BIG_CAR_VECTOR = (
    "mod251",
    FULL_LEVEL + 1,
    "8b1c2c026a8902a891ce466c8280c948868320c8ab2e9d5ef04ee57750fc5942",
    45_628_921,
)


@pytest.mark.parametrize(("generator", "size", "expected", "blocks"), CID_VECTORS)
def test_cid_matches_reference_importer(
    content: Generators, generator: str, size: int, expected: str, blocks: int
) -> None:
    result = compute_cid(content[generator](size))
    assert str(result.cid) == expected
    assert result.size == size
    assert result.block_count == blocks


def test_single_chunk_files_are_raw_blocks_and_larger_ones_dag_pb() -> None:
    assert compute_cid(b"x" * CHUNK_SIZE).cid.codec_name == "raw"
    assert compute_cid(b"x" * (CHUNK_SIZE + 1)).cid.codec_name == "dag-pb"


@pytest.mark.parametrize("piece_size", [7, 4096, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE])
def test_cid_does_not_depend_on_how_the_input_is_split(content: Generators, piece_size: int) -> None:
    data = b"".join(content["mod251"](1_048_583))
    pieces = (data[i : i + piece_size] for i in range(0, len(data), piece_size))
    assert str(compute_cid(pieces).cid) == "bafybeifofps7oqlveyur54t4opj4y6jhjlyc5du6zqjlf6lhakt2w2c25u"
    assert compute_cid(io.BytesIO(data)) == compute_cid(data)


def _car_of(pieces: Iterator[bytes]) -> bytes:
    blocks: dict[Cid, bytes] = {}
    builder = DagBuilder()
    for piece in pieces:
        blocks.update(builder.write(piece))
    blocks.update(builder.finish())
    out = io.BytesIO()
    order = [cid for cid, _ in walk_dag(builder.root, blocks.__getitem__, load_leaves=False)]
    write_car(out, [builder.root], ((cid, blocks[cid]) for cid in order))
    return out.getvalue()


@pytest.mark.parametrize(("generator", "size", "digest", "length"), CAR_VECTORS)
def test_car_is_byte_identical_to_reference(
    content: Generators, generator: str, size: int, digest: str, length: int
) -> None:
    car = _car_of(content[generator](size))
    assert len(car) == length
    assert hashlib.sha256(car).hexdigest() == digest


def test_multi_level_car_export_from_the_store_is_byte_identical(content: Generators, tmp_path: Path) -> None:
    generator, size, digest, length = BIG_CAR_VECTOR
    store = EmbeddedBlobStore(tmp_path)
    cid = store.put(content[generator](size)).cid

    class HashingSink(io.RawIOBase):
        """Hashes the export instead of keeping 45 MB around."""

        def __init__(self) -> None:
            self.hash = hashlib.sha256()
            self.length = 0

        def writable(self) -> bool:
            return True

        def write(self, data: bytes) -> int:  # type: ignore[override]
            self.hash.update(data)
            self.length += len(data)
            return len(data)

    sink = HashingSink()
    store.export_car(cid, sink)  # type: ignore[arg-type]
    assert (sink.length, sink.hash.hexdigest()) == (length, digest)
    assert store.blocks_of(cid)[0] == cid
    assert len(store.blocks_of(cid)) == 178


def test_streaming_cid_uses_bounded_memory(content: Generators) -> None:
    """An 80 MB file is hashed with a few chunks of memory, not the file size."""
    size = 83_898_425
    tracemalloc.start()
    try:
        started = time.perf_counter()
        result = compute_cid(content["mod251"](size))
        elapsed = time.perf_counter() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(result.cid) == "bafybeigqxppha7xfmkhnszt5x4uw7awstuusjklmlkdh36zbixhfrue7y4"
    assert peak < 6 * CHUNK_SIZE + (1 << 20), f"peak {peak} bytes for a {size} byte file"
    assert elapsed < 30


def test_root_block_of_a_full_level_is_a_single_node_with_174_links(content: Generators) -> None:
    builder = DagBuilder()
    blocks = []
    for piece in content["mod251"](FULL_LEVEL):
        blocks.extend(builder.write(piece))
    blocks.extend(builder.finish())
    root = Cid.parse("bafybeihpe5snhzneq7xs53nivmsopto5lrogo3wjynauqylqeym5a3irbm")
    assert builder.root == root
    assert blocks[-1].cid == root  # parents are emitted after their children
    assert sum(1 for block in blocks if block.cid.codec_name == "dag-pb") == 1
