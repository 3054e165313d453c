"""The BlobStore contract: every implementation must pass this same suite.

Runs against the EmbeddedBlobStore and against the KuboBlobStore talking to an in-process fake Kubo
(see conftest.py). ``backing`` is the EmbeddedBlobStore physically holding the blocks, used to
corrupt or delete a block behind the store's back.
"""

from __future__ import annotations

import io
import itertools
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger_service.blobs import (
    CHUNK_SIZE,
    DAG_PB,
    RAW,
    BlobStore,
    Cid,
    EmbeddedBlobStore,
    KuboBlobStore,
    compute_cid,
    read_car,
)
from ledger_service.errors import BlobError, BlobIntegrityError, BlobNotFound

UNKNOWN = Cid.for_block(RAW, b"never stored")


@dataclass
class Harness:
    store: BlobStore
    backing: EmbeddedBlobStore

    def flip_byte(self, cid: Cid, offset: int = 0) -> None:
        path = self.backing.block_path(cid)
        data = bytearray(path.read_bytes())
        data[offset] ^= 0x01
        path.write_bytes(bytes(data))


@pytest.fixture(params=["embedded", "kubo"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "embedded":
        store = EmbeddedBlobStore(tmp_path / "store")
        yield Harness(store, store)
    else:
        kubo, backing = request.getfixturevalue("kubo_over_fake")
        assert isinstance(kubo, KuboBlobStore)
        yield Harness(kubo, backing)


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def leaves(store: BlobStore, cid: Cid) -> list[Cid]:
    return [block for block in store.blocks_of(cid) if block.codec == RAW]


# ----------------------------------------------------------------- put / read


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 5])
def test_put_then_read_round_trips(harness: Harness, size: int) -> None:
    data = payload(size, seed=size)
    result = harness.store.put(data)
    assert result == compute_cid(data)
    assert result.size == size
    assert harness.store.read(result.cid) == data
    assert result.cid.codec == (RAW if size <= CHUNK_SIZE else DAG_PB)


def test_put_accepts_file_objects_and_irregular_pieces(harness: Harness, tmp_path: Path) -> None:
    data = payload(2 * CHUNK_SIZE + 1234, seed=1)
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    with path.open("rb") as handle:
        from_file = harness.store.put(handle)
    from_bytesio = harness.store.put(io.BytesIO(data))
    cuts = [0, 1, 1000, CHUNK_SIZE - 3, CHUNK_SIZE + 7, 2 * CHUNK_SIZE, len(data)]
    from_pieces = harness.store.put(data[a:b] for a, b in itertools.pairwise(cuts))
    assert from_file == from_bytesio == from_pieces == compute_cid(data)


def test_open_streams_block_sized_pieces(harness: Harness) -> None:
    data = payload(5 * CHUNK_SIZE + 17, seed=2)
    cid = harness.store.put(data).cid
    pieces = list(harness.store.open(cid))
    assert all(0 < len(piece) <= CHUNK_SIZE for piece in pieces)
    assert len(pieces) == 6
    assert b"".join(pieces) == data


def test_put_is_idempotent(harness: Harness) -> None:
    data = payload(3 * CHUNK_SIZE, seed=3)
    first = harness.store.put(data)
    second = harness.store.put(data)
    assert first == second
    assert first.block_count == 4
    assert harness.store.read(first.cid) == data


def test_has_reports_stored_blocks(harness: Harness) -> None:
    cid = harness.store.put(payload(2 * CHUNK_SIZE, seed=4)).cid
    assert harness.store.has(cid)
    assert all(harness.store.has(block) for block in harness.store.blocks_of(cid))
    assert not harness.store.has(UNKNOWN)


def test_blocks_of_lists_root_first_then_leaves_in_order(harness: Harness) -> None:
    data = payload(3 * CHUNK_SIZE + 1, seed=5)
    cid = harness.store.put(data).cid
    blocks = harness.store.blocks_of(cid)
    assert blocks[0] == cid
    assert blocks[1:] == [Cid.for_block(RAW, data[i : i + CHUNK_SIZE]) for i in range(0, len(data), CHUNK_SIZE)]
    single = harness.store.put(b"tiny").cid
    assert harness.store.blocks_of(single) == [single]


# ----------------------------------------------------------------- errors


def test_reading_an_unknown_cid_raises_not_found(harness: Harness) -> None:
    with pytest.raises(BlobNotFound):
        harness.store.read(UNKNOWN)
    with pytest.raises(BlobNotFound):
        harness.store.open(UNKNOWN)  # fails at the call, before any iteration
    with pytest.raises(BlobNotFound):
        harness.store.blocks_of(UNKNOWN)


def test_reading_with_a_missing_leaf_names_it(harness: Harness) -> None:
    cid = harness.store.put(payload(3 * CHUNK_SIZE, seed=6)).cid
    missing = leaves(harness.store, cid)[1]
    harness.backing.block_path(missing).unlink()
    with pytest.raises(BlobNotFound) as caught:
        harness.store.read(cid)
    assert caught.value.details["cid"] == str(missing)


@pytest.mark.parametrize("which", ["root", "first leaf", "last leaf"])
def test_flipped_byte_fails_the_read_naming_the_block(harness: Harness, which: str) -> None:
    data = payload(3 * CHUNK_SIZE + 99, seed=7)
    cid = harness.store.put(data).cid
    blocks = harness.store.blocks_of(cid)
    target = {"root": blocks[0], "first leaf": blocks[1], "last leaf": blocks[-1]}[which]
    harness.flip_byte(target, offset=5)
    with pytest.raises(BlobIntegrityError) as caught:
        harness.store.read(cid)
    assert str(target) in str(caught.value)
    assert caught.value.details["cid"] == str(target)


def test_flipped_byte_in_a_single_block_blob(harness: Harness) -> None:
    cid = harness.store.put(b"consent receipt").cid
    harness.flip_byte(cid)
    with pytest.raises(BlobIntegrityError, match=str(cid)):
        harness.store.open(cid)


def test_stream_stops_at_the_corrupted_block(harness: Harness) -> None:
    data = payload(4 * CHUNK_SIZE, seed=8)
    cid = harness.store.put(data).cid
    harness.flip_byte(leaves(harness.store, cid)[2])
    stream = harness.store.open(cid)
    assert next(stream) + next(stream) == data[: 2 * CHUNK_SIZE]
    with pytest.raises(BlobIntegrityError):
        next(stream)


# ----------------------------------------------------------------- pins and gc


def test_put_pins_and_unpin_is_idempotent(harness: Harness) -> None:
    cid = harness.store.put(payload(CHUNK_SIZE + 1, seed=9)).cid
    assert harness.store.is_pinned(cid)
    harness.store.unpin(cid)
    assert not harness.store.is_pinned(cid)
    harness.store.unpin(cid)
    harness.store.unpin(UNKNOWN)
    assert not harness.store.is_pinned(UNKNOWN)
    harness.store.pin(cid)
    assert harness.store.is_pinned(cid)


def test_pin_requires_the_whole_dag(harness: Harness) -> None:
    with pytest.raises(BlobNotFound):
        harness.store.pin(UNKNOWN)
    cid = harness.store.put(payload(2 * CHUNK_SIZE + 1, seed=10)).cid
    harness.store.unpin(cid)
    harness.backing.block_path(leaves(harness.store, cid)[0]).unlink()
    with pytest.raises(BlobNotFound):
        harness.store.pin(cid)
    assert not harness.store.is_pinned(cid)


def test_gc_removes_unpinned_keeps_pinned_and_shared_blocks(harness: Harness) -> None:
    shared = payload(2 * CHUNK_SIZE, seed=11)
    kept_data = shared + payload(CHUNK_SIZE + 5, seed=12)
    dropped_data = shared + payload(CHUNK_SIZE + 5, seed=13)
    kept = harness.store.put(kept_data).cid
    dropped = harness.store.put(dropped_data).cid
    lone = harness.store.put(b"unpinned single block").cid
    dropped_blocks = harness.store.blocks_of(dropped)
    exclusive = set(dropped_blocks) - set(harness.store.blocks_of(kept))
    assert len(exclusive) == 3  # root, last two leaves; the first two leaves are shared

    harness.store.unpin(dropped)
    harness.store.unpin(lone)
    assert harness.store.gc() == len(exclusive) + 1

    assert not harness.store.has(lone)
    assert not any(harness.store.has(block) for block in exclusive)
    assert all(harness.store.has(block) for block in dropped_blocks if block not in exclusive)
    assert harness.store.read(kept) == kept_data
    assert harness.store.gc() == 0
    with pytest.raises(BlobNotFound):
        harness.store.read(dropped)


# ----------------------------------------------------------------- CAR export


@pytest.mark.parametrize("size", [0, 10, 3 * CHUNK_SIZE + 10])
def test_export_car_round_trips(harness: Harness, size: int) -> None:
    data = payload(size, seed=14)
    cid = harness.store.put(data).cid
    out = io.BytesIO()
    harness.store.export_car(cid, out)
    roots, blocks = read_car(io.BytesIO(out.getvalue()))
    assert roots == [cid]
    assert [block_cid for block_cid, _ in blocks] == harness.store.blocks_of(cid)
    assert all(block_cid.matches(block) for block_cid, block in blocks)
    assert b"".join(block for block_cid, block in blocks if block_cid.codec == RAW) == data


def test_export_car_refuses_a_corrupted_block(harness: Harness) -> None:
    cid = harness.store.put(payload(2 * CHUNK_SIZE + 1, seed=15)).cid
    bad = leaves(harness.store, cid)[-1]
    harness.flip_byte(bad)
    with pytest.raises(BlobIntegrityError, match=str(bad)):
        harness.store.export_car(cid, io.BytesIO())


def test_export_car_of_unknown_cid(harness: Harness) -> None:
    with pytest.raises(BlobNotFound):
        harness.store.export_car(UNKNOWN, io.BytesIO())


# ----------------------------------------------------------------- concurrency


def test_concurrent_puts_reads_and_gc(harness: Harness) -> None:
    sizes = [0, 1, CHUNK_SIZE, 2 * CHUNK_SIZE + 3, 3 * CHUNK_SIZE]
    jobs = [(seed % 6, sizes[seed % len(sizes)]) for seed in range(40)]  # many jobs share content
    stop = threading.Event()
    errors: list[BaseException] = []

    def collect_garbage() -> None:
        while not stop.is_set():
            try:
                harness.store.gc()
            except BlobError as exc:  # pragma: no cover - reported below
                errors.append(exc)

    def put_and_read(job: tuple[int, int]) -> bool:
        seed, size = job
        data = payload(size, seed=seed)
        cid = harness.store.put(data).cid
        return harness.store.read(cid) == data

    collector = threading.Thread(target=collect_garbage)
    collector.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(put_and_read, jobs))
    finally:
        stop.set()
        collector.join()
    assert errors == []
    assert all(outcomes)
