from __future__ import annotations

import pytest

from ledger_service.blobs import CHUNK_SIZE, DAG_PB, RAW, Cid, DagBuilder
from ledger_service.blobs.unixfs import (
    UNIXFS_FILE,
    PBLink,
    PBNode,
    ProtobufError,
    UnixFSData,
    decode_pbnode,
    decode_unixfs,
    decode_varint,
    encode_pbnode,
    encode_unixfs,
    encode_varint,
    open_file,
    walk_dag,
)
from ledger_service.errors import BlobError, BlobIntegrityError, BlobNotFound

LEAF = Cid.for_block(RAW, b"leaf")


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 262_144, 2**32, 2**63])
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded + b"\xff", 0) == (value, len(encoded))


def test_varint_known_encodings_and_errors() -> None:
    assert encode_varint(300) == b"\xac\x02"
    with pytest.raises(ProtobufError):
        decode_varint(b"\x80", 0)
    with pytest.raises(ProtobufError):
        decode_varint(b"\xff" * 10 + b"\x01", 0)
    with pytest.raises(ValueError, match="unsigned"):
        encode_varint(-1)


def test_pbnode_encoding_is_canonical_links_first() -> None:
    node = PBNode((PBLink(LEAF, "", 4),), b"\x08\x02")
    encoded = encode_pbnode(node)
    # Links (field 2) before Data (field 1); link fields Hash, Name (even when empty), Tsize.
    link = b"\x0a\x24" + LEAF.bytes + b"\x12\x00" + b"\x18\x04"
    assert encoded == b"\x12" + bytes([len(link)]) + link + b"\x0a\x02\x08\x02"
    assert decode_pbnode(encoded) == node


def test_pbnode_round_trips() -> None:
    nodes = [
        PBNode(),
        PBNode(data=b""),
        PBNode((PBLink(LEAF, "name", None), PBLink(LEAF, "ü", 2**40)), b"data"),
    ]
    for node in nodes:
        assert decode_pbnode(encode_pbnode(node)) == node


@pytest.mark.parametrize(
    "data",
    [
        b"\x1a\x00",  # unknown field 3
        b"\x0a\x05ab",  # truncated bytes
        b"\x12\x02\x12\x00",  # link without Hash
        b"\x12\x04\x0a\x02\x01\x55",  # link with a truncated CID
        b"\x08\x01",  # Data as varint
        b"\x0f",  # wire type 7
        b"\x00\x00",  # field number 0
    ],
)
def test_pbnode_rejects_malformed_input(data: bytes) -> None:
    with pytest.raises((ProtobufError, BlobError)):
        decode_pbnode(data)


def test_unixfs_file_encoding_matches_go_and_js() -> None:
    value = UnixFSData(UNIXFS_FILE, filesize=262_145, blocksizes=(262_144, 1))
    assert encode_unixfs(value) == b"\x08\x02\x18\x81\x80\x10\x20\x80\x80\x10\x20\x01"
    assert decode_unixfs(encode_unixfs(value)) == value


def test_unixfs_decoding_accepts_packed_blocksizes_and_skips_metadata() -> None:
    packed = b"\x08\x02\x22\x02\x05\x06"
    assert decode_unixfs(packed).blocksizes == (5, 6)
    with_mode_and_mtime = b"\x08\x02\x12\x02hi\x38\xa4\x03\x42\x02\x08\x01"
    assert decode_unixfs(with_mode_and_mtime) == UnixFSData(UNIXFS_FILE, b"hi")
    with pytest.raises(ProtobufError):
        decode_unixfs(b"\x18\x05")  # no Type


def test_dag_builder_lifecycle_errors() -> None:
    builder = DagBuilder()
    with pytest.raises(RuntimeError):
        _ = builder.root
    builder.write(b"abc")
    builder.finish()
    assert builder.size == 3
    with pytest.raises(RuntimeError):
        builder.write(b"more")
    with pytest.raises(RuntimeError):
        builder.finish()
    with pytest.raises(ValueError, match="max_links"):
        DagBuilder(max_links=1)


def test_small_parameters_build_a_three_level_balanced_tree() -> None:
    """With 2-byte chunks and 3 links per node, 10 chunks need a root over a full and a partial subtree."""
    builder = DagBuilder(chunk_size=2, max_links=3)
    blocks: dict[Cid, bytes] = {}
    for byte in range(20):
        blocks.update(builder.write(bytes([byte])))
    blocks.update(builder.finish())
    root = decode_pbnode(blocks[builder.root])
    assert decode_unixfs(root.data or b"").blocksizes == (18, 2)
    full, partial = (decode_pbnode(blocks[link.cid]) for link in root.links)
    assert len(full.links) == 3
    assert len(partial.links) == 1
    assert len(decode_pbnode(blocks[partial.links[0].cid]).links) == 1
    assert b"".join(open_file(builder.root, blocks.__getitem__)) == bytes(range(20))


# ----------------------------------------------------------------- reading crafted DAGs


def store(*blocks: tuple[Cid, bytes]) -> dict[Cid, bytes]:
    return dict(blocks)


def file_node(
    links: list[tuple[Cid, int]], data: bytes | None = None, filesize: int | None = None
) -> tuple[Cid, bytes]:
    sizes = tuple(size for _, size in links)
    total = filesize if filesize is not None else sum(sizes) + len(data or b"")
    unixfs = encode_unixfs(UnixFSData(UNIXFS_FILE, data, total, sizes))
    encoded = encode_pbnode(PBNode(tuple(PBLink(cid, "", size) for cid, size in links), unixfs))
    return Cid.for_block(DAG_PB, encoded), encoded


def raw(data: bytes) -> tuple[Cid, bytes]:
    return Cid.for_block(RAW, data), data


def read(root: Cid, blocks: dict[Cid, bytes]) -> bytes:
    def load(cid: Cid) -> bytes:
        if cid not in blocks:
            raise BlobNotFound(f"block {cid} is not stored", cid=str(cid))
        return blocks[cid]

    return b"".join(open_file(root, load))


def test_reads_nodes_with_inline_data_as_kubo_writes_without_raw_leaves() -> None:
    a, b = raw(b"hello "), raw(b"world")
    root = file_node([(a[0], 6), (b[0], 5)], data=b">> ")
    assert read(root[0], store(a, b, root)) == b">> hello world"


def test_size_mismatch_in_a_hash_valid_node_is_rejected() -> None:
    a = raw(b"hello")
    lying = file_node([(a[0], 6)])
    with pytest.raises(BlobError, match="declares 6 bytes"):
        read(lying[0], store(a, lying))
    wrong_total = file_node([(a[0], 5)], filesize=9)
    with pytest.raises(BlobError, match="filesize 9"):
        read(wrong_total[0], store(a, wrong_total))


def test_non_file_nodes_are_rejected() -> None:
    directory = encode_pbnode(PBNode((), encode_unixfs(UnixFSData(1))))
    cid = Cid.for_block(DAG_PB, directory)
    with pytest.raises(BlobError, match="not a file"):
        read(cid, {cid: directory})


def test_links_to_cidv0_are_reported_as_unsupported() -> None:
    cidv0_link = b"\x0a\x22\x12\x20" + bytes(32)
    node = b"\x12" + bytes([len(cidv0_link)]) + cidv0_link + b"\x0a\x02\x08\x02"
    cid = Cid.for_block(DAG_PB, node)
    with pytest.raises(BlobError, match="unsupported CID"):
        read(cid, {cid: node})


def test_garbage_that_hashes_correctly_is_a_blob_error_not_a_crash() -> None:
    cid = Cid.for_block(DAG_PB, b"\xff\xff")
    with pytest.raises(BlobError, match="not a valid UnixFS"):
        read(cid, {cid: b"\xff\xff"})


def test_corrupted_intermediate_node_is_named() -> None:
    builder = DagBuilder(chunk_size=1, max_links=2)
    blocks = dict(builder.write(b"abcde")) | dict(builder.finish())
    middle = decode_pbnode(blocks[builder.root]).links[0].cid
    blocks[middle] = blocks[middle][:-1] + b"\x00"
    with pytest.raises(BlobIntegrityError) as caught:
        read(builder.root, blocks)
    assert caught.value.details == {"cid": str(middle), "root": str(builder.root)}


def test_walk_dag_visits_shared_blocks_once_in_pre_order() -> None:
    a, b = raw(b"aa"), raw(b"bb")
    inner = file_node([(a[0], 2), (b[0], 2)])
    root = file_node([(inner[0], 4), (a[0], 2), (inner[0], 4)])
    blocks = store(a, b, inner, root)
    order = [cid for cid, _ in walk_dag(root[0], blocks.__getitem__)]
    assert order == [root[0], inner[0], a[0], b[0]]
    assert read(root[0], blocks) == b"aabbaaaabb"
    lazy = list(walk_dag(root[0], blocks.__getitem__, load_leaves=False))
    assert [data for cid, data in lazy if cid.codec == RAW] == [None, None]


def test_empty_raw_root_yields_nothing() -> None:
    empty = raw(b"")
    assert list(open_file(empty[0], store(empty).__getitem__)) == []


def test_chunk_size_constant_is_kubos_default() -> None:
    assert CHUNK_SIZE == 256 * 1024
