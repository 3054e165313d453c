from __future__ import annotations

import io

import pytest

from ledger_service.blobs import DAG_PB, RAW, CarFormatError, CarReader, Cid, read_car, write_car
from ledger_service.blobs.car import encode_header
from ledger_service.errors import InvalidCid

EMPTY = Cid.for_block(RAW, b"")


def test_header_is_the_canonical_dag_cbor_map() -> None:
    expected = (
        b"\xa2"  # map(2)
        + b"\x65roots"
        + b"\x81"  # array(1)
        + b"\xd8\x2a"  # tag(42)
        + b"\x58\x25\x00"  # bytes(37): identity multibase prefix + binary CID
        + EMPTY.bytes
        + b"\x67version\x01"
    )
    assert encode_header([EMPTY]) == expected


def test_empty_file_car_is_96_bytes_like_kubo() -> None:
    out = io.BytesIO()
    write_car(out, [EMPTY], [(EMPTY, b"")])
    car = out.getvalue()
    assert len(car) == 96
    assert car[0] == 58  # header length varint
    assert car[59:] == b"\x24" + EMPTY.bytes


def test_round_trip_several_blocks_and_roots() -> None:
    blocks = [(Cid.for_block(RAW, bytes([n]) * n * 100), bytes([n]) * n * 100) for n in range(1, 6)]
    extra_root = Cid.for_block(DAG_PB, b"other")
    out = io.BytesIO()
    write_car(out, [blocks[0][0], extra_root], blocks)
    assert read_car(io.BytesIO(out.getvalue())) == ([blocks[0][0], extra_root], blocks)


def test_reader_streams_from_tiny_pieces() -> None:
    data = b"x" * 300
    out = io.BytesIO()
    write_car(out, [Cid.for_block(RAW, data)], [(Cid.for_block(RAW, data), data)])
    car = out.getvalue()
    reader = CarReader(car[i : i + 1] for i in range(len(car)))
    assert reader.roots == [Cid.for_block(RAW, data)]
    assert list(reader) == [(Cid.for_block(RAW, data), data)]


def _car(header: bytes, body: bytes = b"") -> io.BytesIO:
    return io.BytesIO(bytes([len(header)]) + header + body)


@pytest.mark.parametrize(
    "car",
    [
        io.BytesIO(b""),
        _car(b"\xa1\x67version\x02"),  # version 2
        _car(b"\xa1\x65roots\x80"),  # no version
        _car(encode_header([EMPTY])[:-1]),  # truncated
        _car(encode_header([EMPTY]) + b"\x00"),  # trailing bytes in the header
        _car(b"\xa2\x65roots\x81\x41\x00\x67version\x01"),  # root is bytes, not a CID link
        _car(b"\xa2\x65roots\x81\xd8\x2a\x41\x01\x67version\x01"),  # CID link without 0x00 prefix
        _car(b"\x9f"),  # indefinite-length array
        _car(encode_header([EMPTY]), b"\x05abcde"),  # section shorter than a CID
        _car(encode_header([EMPTY]), b"\x30" + EMPTY.bytes),  # section longer than the rest
        _car(encode_header([EMPTY]), b"\xff\xff\xff\xff\x0f"),  # implausibly large section
    ],
)
def test_reader_rejects_malformed_cars(car: io.BytesIO) -> None:
    with pytest.raises(CarFormatError):
        read_car(car)


def test_reader_rejects_unsupported_cids_in_sections() -> None:
    cidv1_cbor = bytes([0x01, 0x71, 0x12, 0x20]) + bytes(32)
    with pytest.raises(InvalidCid):
        read_car(_car(encode_header([EMPTY]), bytes([len(cidv1_cbor)]) + cidv1_cbor))
