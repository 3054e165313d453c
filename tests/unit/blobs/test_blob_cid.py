from __future__ import annotations

import base64

import pytest

from ledger_service.blobs import DAG_PB, RAW, Cid
from ledger_service.blobs.cid import verify_block
from ledger_service.errors import BlobIntegrityError, InvalidCid, ValidationError

EMPTY_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
DAG_PB_CID = "bafybeiexg2oqkfnj56l7fcmawswqbijt5shq4b5rg6a546uwpkqqzwjioi"


def b32(data: bytes) -> str:
    return "b" + base64.b32encode(data).decode().rstrip("=").lower()


def test_parse_and_format_round_trip() -> None:
    cid = Cid.parse(EMPTY_RAW)
    assert str(cid) == EMPTY_RAW
    assert (cid.version, cid.codec, cid.codec_name) == (1, RAW, "raw")
    assert cid.digest == bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert cid.bytes == bytes([0x01, 0x55, 0x12, 0x20]) + cid.digest
    assert Cid.parse(cid.bytes) == cid
    assert Cid.parse(bytearray(cid.bytes)) == cid
    assert Cid.parse(cid) is cid
    pb = Cid.parse(DAG_PB_CID)
    assert (pb.codec, pb.codec_name, str(pb)) == (DAG_PB, "dag-pb", DAG_PB_CID)


def test_for_block_and_matches() -> None:
    cid = Cid.for_block(RAW, b"")
    assert str(cid) == EMPTY_RAW
    assert cid.matches(b"")
    assert not cid.matches(b"x")


def test_cids_are_hashable_values() -> None:
    assert Cid.parse(EMPTY_RAW) == Cid.for_block(RAW, b"")
    assert len({Cid.parse(EMPTY_RAW), Cid.for_block(RAW, b""), Cid.for_block(DAG_PB, b"")}) == 2
    assert repr(Cid.parse(EMPTY_RAW)) == f"Cid('{EMPTY_RAW}')"


DIGEST = bytes(range(32))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "b",
        "../x",
        "blocks/../../etc/passwd",
        EMPTY_RAW + "a",
        EMPTY_RAW[:-1],
        EMPTY_RAW.upper(),  # base32upper multibase is not canonical here
        "B" + EMPTY_RAW[1:],
        "z" + EMPTY_RAW[1:],
        EMPTY_RAW[:10] + "1" + EMPTY_RAW[11:],  # '1' is not in the base32 alphabet
        EMPTY_RAW[:10] + "/" + EMPTY_RAW[11:],
        " " + EMPTY_RAW[1:],
        EMPTY_RAW[:-1] + "v",  # same bytes but non-zero padding bits
        "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",  # CIDv0
        b32(bytes([0x01, 0x71, 0x12, 0x20]) + DIGEST),  # dag-cbor codec
        b32(bytes([0x01, 0x55, 0x13, 0x40]) + bytes(64)),  # sha2-512
        b32(bytes([0x01, 0x55, 0x1E, 0x20]) + DIGEST),  # blake3
        b32(bytes([0x01, 0x55, 0x12, 0x1F]) + DIGEST[:31]),  # short digest
        b32(bytes([0x02, 0x55, 0x12, 0x20]) + DIGEST),  # version 2
        b32(bytes([0x12, 0x20]) + DIGEST),  # bare multihash (CIDv0 binary)
    ],
)
def test_rejects_anything_but_canonical_cidv1_sha256(text: str) -> None:
    with pytest.raises(InvalidCid):
        Cid.parse(text)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes([0x12, 0x20]) + DIGEST,
        bytes([0x01, 0x55, 0x12, 0x20]) + DIGEST + b"\x00",
        bytes([0x01, 0x55, 0x12, 0x20]) + DIGEST[:-1],
        bytes([0x01, 0x71, 0x12, 0x20]) + DIGEST,
        EMPTY_RAW.encode(),
    ],
)
def test_rejects_bad_binary_cids(data: bytes) -> None:
    with pytest.raises(InvalidCid):
        Cid.parse(data)


def test_rejects_other_types_and_direct_construction_errors() -> None:
    with pytest.raises(InvalidCid):
        Cid.parse(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidCid):
        Cid(0x71, DIGEST)
    with pytest.raises(InvalidCid):
        Cid(RAW, b"short")


def test_invalid_cid_is_a_validation_error_with_details() -> None:
    with pytest.raises(ValidationError) as caught:
        Cid.parse("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")
    assert "CIDv0" in str(caught.value)
    assert caught.value.details["cid"] == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"


def test_verify_block_names_the_block_and_the_root() -> None:
    leaf = Cid.for_block(RAW, b"leaf")
    root = Cid.for_block(DAG_PB, b"root")
    verify_block(leaf, b"leaf")
    with pytest.raises(BlobIntegrityError) as caught:
        verify_block(leaf, b"leaF", root=root)
    assert str(leaf) in str(caught.value)
    assert caught.value.details == {"cid": str(leaf), "root": str(root)}
