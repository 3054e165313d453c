"""EmbeddedBlobStore specifics beyond the shared contract: on-disk layout, durability, safety."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ledger_service.blobs import CHUNK_SIZE, BlobStore, EmbeddedBlobStore
from ledger_service.errors import BlobIntegrityError, InvalidCid

DATA = random.Random(1).randbytes(2 * CHUNK_SIZE + 10)


def test_satisfies_the_protocol(tmp_path: Path) -> None:
    assert isinstance(EmbeddedBlobStore(tmp_path), BlobStore)


def test_layout_shards_blocks_by_the_next_to_last_two_characters(tmp_path: Path) -> None:
    store = EmbeddedBlobStore(tmp_path)
    cid = store.put(DATA).cid
    for block in store.blocks_of(cid):
        name = str(block)
        assert store.block_path(block) == tmp_path / "blocks" / name[-3:-1] / name
        assert store.block_path(block).is_file()
    assert (tmp_path / "pins" / str(cid)).is_file()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_state_survives_reopening(tmp_path: Path) -> None:
    cid = EmbeddedBlobStore(tmp_path).put(DATA).cid
    reopened = EmbeddedBlobStore(tmp_path)
    assert reopened.is_pinned(cid)
    assert reopened.read(cid) == DATA
    assert reopened.pins() == [cid]
    assert set(reopened.iter_blocks()) == set(reopened.blocks_of(cid))


@pytest.mark.parametrize("text", ["../../etc/passwd", "bafy/../../x", "", "Qm" + "a" * 44])
def test_paths_are_only_built_from_validated_cids(tmp_path: Path, text: str) -> None:
    store = EmbeddedBlobStore(tmp_path)
    with pytest.raises(InvalidCid):
        store.block_path(text)  # type: ignore[arg-type]
    with pytest.raises(InvalidCid):
        store.read(text)  # type: ignore[arg-type]
    with pytest.raises(InvalidCid):
        store.unpin(text)  # type: ignore[arg-type]


def test_foreign_files_are_ignored_and_stale_temp_files_collected(tmp_path: Path) -> None:
    store = EmbeddedBlobStore(tmp_path)
    cid = store.put(DATA).cid
    (tmp_path / "pins" / "README").write_text("not a pin")
    shard = store.block_path(cid).parent
    (shard / "notes.txt").write_text("not a block")
    (tmp_path / "tmp" / "half-written").write_bytes(b"partial")
    assert store.pins() == [cid]
    assert cid in set(store.iter_blocks())
    assert store.gc() == 0
    assert list((tmp_path / "tmp").iterdir()) == []
    assert (shard / "notes.txt").exists()


def test_gc_refuses_to_guess_when_a_pinned_node_is_corrupted(tmp_path: Path) -> None:
    store = EmbeddedBlobStore(tmp_path)
    cid = store.put(DATA).cid
    path = store.block_path(cid)
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(BlobIntegrityError, match=str(cid)):
        store.gc()
    assert len(list(store.iter_blocks())) == 4  # nothing was deleted


def test_put_does_not_rewrite_existing_blocks(tmp_path: Path) -> None:
    store = EmbeddedBlobStore(tmp_path)
    cid = store.put(DATA).cid
    before = {block: store.block_path(block).stat().st_mtime_ns for block in store.blocks_of(cid)}
    store.put(DATA)
    assert {block: store.block_path(block).stat().st_mtime_ns for block in before} == before
