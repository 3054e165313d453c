"""CAR v1 (content-addressed archive) writing and reading.

Layout: ``varint(len(header)) header`` then per block ``varint(len(cid) + len(data)) cid data``.
The header is the dag-cbor map ``{"roots": [cid, ...], "version": 1}``, hand-encoded here (keys in
dag-cbor canonical order: shorter first), byte-identical to what go-car and @ipld/car write.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

from ledger_service.blobs.cid import CID_BINARY_SIZE, Cid
from ledger_service.blobs.store import iter_pieces
from ledger_service.blobs.unixfs import encode_varint
from ledger_service.errors import BlobError

_CBOR_TAG_CID = 42
_MAX_HEADER = 1 << 20
_MAX_SECTION = 8 << 20  # IPFS blocks are at most a few MiB; bounds memory on hostile input


class CarFormatError(BlobError):
    """The bytes are not a well-formed CAR v1 of supported CIDs."""


def _cbor_head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes((major << 5 | value,))
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes((major << 5 | info,)) + value.to_bytes(size, "big")
    raise ValueError("CBOR length too large")


def _cbor_text(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _cbor_head(3, len(raw)) + raw


def encode_header(roots: Iterable[Cid]) -> bytes:
    root_list = list(roots)
    out = bytearray(_cbor_head(5, 2))
    out += _cbor_text("roots") + _cbor_head(4, len(root_list))
    for root in root_list:
        link = b"\x00" + root.bytes  # multibase identity prefix required by dag-cbor CID links
        out += _cbor_head(6, _CBOR_TAG_CID) + _cbor_head(2, len(link)) + link
    out += _cbor_text("version") + _cbor_head(0, 1)
    return bytes(out)


def write_car(out: BinaryIO, roots: Iterable[Cid], blocks: Iterable[tuple[Cid, bytes]]) -> None:
    header = encode_header(roots)
    out.write(encode_varint(len(header)) + header)
    for cid, data in blocks:
        cid_bytes = cid.bytes
        out.write(encode_varint(len(cid_bytes) + len(data)) + cid_bytes)
        out.write(data)


# ----------------------------------------------------------------- reading


class _Stream:
    """Exact-size reads over a file object or an iterator of byte pieces, without quadratic copying."""

    def __init__(self, source: BinaryIO | Iterable[bytes]) -> None:
        self._pieces = iter_pieces(source, 1 << 16)
        self._buffer = bytearray()
        self._offset = 0

    def _fill(self, size: int) -> bool:
        while len(self._buffer) - self._offset < size:
            piece = next(self._pieces, None)
            if piece is None:
                return False
            if self._offset:
                del self._buffer[: self._offset]
                self._offset = 0
            self._buffer += piece
        return True

    def at_end(self) -> bool:
        return not self._fill(1)

    def read_exact(self, size: int) -> bytes:
        if not self._fill(size):
            raise CarFormatError(f"truncated CAR: wanted {size} more bytes")
        data = bytes(self._buffer[self._offset : self._offset + size])
        self._offset += size
        return data

    def read_varint(self) -> int:
        value = 0
        for shift in range(0, 64, 7):
            byte = self.read_exact(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise CarFormatError("CAR varint longer than 64 bits")


class _Cbor:
    """Decoder for the dag-cbor subset a CAR header uses."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def value(self) -> object:
        major, argument = self._head()
        if major == 0:
            return argument
        if major in (2, 3):
            raw = self._take(argument)
            return raw if major == 2 else raw.decode("utf-8")
        if major == 4:
            return [self.value() for _ in range(argument)]
        if major == 5:
            result: dict[object, object] = {}
            for _ in range(argument):
                key = self.value()
                if not isinstance(key, str):
                    raise CarFormatError("CAR header map keys must be strings")
                result[key] = self.value()
            return result
        if major == 6 and argument == _CBOR_TAG_CID:
            link = self.value()
            if not isinstance(link, bytes) or not link.startswith(b"\x00"):
                raise CarFormatError("malformed CID link in CAR header")
            return Cid.parse(link[1:])
        raise CarFormatError(f"unsupported CBOR item (major type {major}) in CAR header")

    def finished(self) -> bool:
        return self._offset == len(self._data)

    def _take(self, size: int) -> bytes:
        if self._offset + size > len(self._data):
            raise CarFormatError("truncated CAR header")
        chunk = self._data[self._offset : self._offset + size]
        self._offset += size
        return chunk

    def _head(self) -> tuple[int, int]:
        initial = self._take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info
        if info > 27:
            raise CarFormatError("indefinite-length or reserved CBOR items are not dag-cbor")
        return major, int.from_bytes(self._take(1 << (info - 24)), "big")


class CarReader:
    """Streams a CAR v1: :attr:`roots` is read at construction; iterate for ``(cid, data)`` blocks.

    Blocks are returned as stored; callers that need integrity verify them against their CIDs.
    """

    def __init__(self, source: BinaryIO | Iterable[bytes]) -> None:
        self._stream = _Stream(source)
        size = self._stream.read_varint()
        if size > _MAX_HEADER:
            raise CarFormatError(f"CAR header of {size} bytes is implausibly large")
        decoder = _Cbor(self._stream.read_exact(size))
        header = decoder.value()
        if not decoder.finished() or not isinstance(header, dict) or header.get("version") != 1:
            raise CarFormatError("not a CAR v1 header")
        roots = header.get("roots")
        if not isinstance(roots, list) or not all(isinstance(root, Cid) for root in roots):
            raise CarFormatError("CAR header roots must be a list of CIDs")
        self.roots: list[Cid] = list(roots)

    def __iter__(self) -> Iterator[tuple[Cid, bytes]]:
        while not self._stream.at_end():
            size = self._stream.read_varint()
            if size > _MAX_SECTION:
                raise CarFormatError(f"CAR section of {size} bytes is implausibly large")
            section = self._stream.read_exact(size)
            if size < CID_BINARY_SIZE:
                raise CarFormatError("CAR section shorter than a CID")
            yield Cid.parse(section[:CID_BINARY_SIZE]), section[CID_BINARY_SIZE:]


def read_car(source: BinaryIO | Iterable[bytes]) -> tuple[list[Cid], list[tuple[Cid, bytes]]]:
    """Read a whole (small) CAR into memory: ``(roots, blocks)``."""
    reader = CarReader(source)
    return reader.roots, list(reader)
