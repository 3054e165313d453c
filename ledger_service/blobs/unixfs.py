"""UnixFS files as Kubo writes them with ``--cid-version=1 --raw-leaves``: encoding, building, reading.

Only the protobuf subset a file DAG needs is implemented: dag-pb ``PBNode``/``PBLink`` and the
UnixFS ``Data`` message. :class:`DagBuilder` reproduces Kubo's balanced layout (256 KiB chunks,
at most 174 links per node, a lone chunk stored as the root raw block) while holding at most one
chunk plus one pending link list per tree level, so memory does not grow with the file.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ledger_service.blobs.cid import DAG_PB, RAW, Cid, verify_block
from ledger_service.errors import BlobError, InvalidCid

CHUNK_SIZE = 262_144
MAX_LINKS = 174

# UnixFS Data.DataType values.
UNIXFS_RAW = 0
UNIXFS_FILE = 2

# Deeper than any real file DAG (174**8 chunks is far beyond any disk); stops hostile DAGs from recursing.
_MAX_DEPTH = 32

_WIRE_VARINT = 0
_WIRE_FIXED64 = 1
_WIRE_BYTES = 2
_WIRE_FIXED32 = 5


class Block(NamedTuple):
    cid: Cid
    data: bytes


BlockLoader = Callable[[Cid], bytes]
"""Returns a block's raw bytes (unverified) or raises BlobNotFound."""


# ----------------------------------------------------------------- protobuf primitives


class ProtobufError(ValueError):
    """Malformed protobuf bytes."""


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes | memoryview, offset: int) -> tuple[int, int]:
    """Decode a varint at ``offset``; return ``(value, next_offset)``."""
    value = 0
    shift = 0
    while True:
        if offset >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
        if shift >= 64:
            raise ProtobufError("varint longer than 64 bits")


def _bytes_field(number: int, value: bytes) -> bytes:
    return encode_varint(number << 3 | _WIRE_BYTES) + encode_varint(len(value)) + value


def _varint_field(number: int, value: int) -> bytes:
    return encode_varint(number << 3 | _WIRE_VARINT) + encode_varint(value)


def _iter_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field_number, wire_type, value)``; length-delimited values are memoryviews."""
    view = memoryview(data)
    offset = 0
    while offset < len(view):
        key, offset = decode_varint(view, offset)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire_type == _WIRE_VARINT:
            value, offset = decode_varint(view, offset)
            yield number, wire_type, value
        elif wire_type == _WIRE_BYTES:
            length, offset = decode_varint(view, offset)
            if offset + length > len(view):
                raise ProtobufError("truncated length-delimited field")
            yield number, wire_type, view[offset : offset + length]
            offset += length
        elif wire_type in (_WIRE_FIXED64, _WIRE_FIXED32):
            size = 8 if wire_type == _WIRE_FIXED64 else 4
            if offset + size > len(view):
                raise ProtobufError("truncated fixed-size field")
            yield number, wire_type, int.from_bytes(view[offset : offset + size], "little")
            offset += size
        else:
            raise ProtobufError(f"unsupported wire type {wire_type}")


# ----------------------------------------------------------------- dag-pb


@dataclass(frozen=True, slots=True)
class PBLink:
    cid: Cid
    name: str = ""
    tsize: int | None = None


@dataclass(frozen=True, slots=True)
class PBNode:
    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


def encode_pbnode(node: PBNode) -> bytes:
    """Canonical dag-pb: links first (in order), then data; link fields Hash, Name, Tsize."""
    parts: list[bytes] = []
    for link in node.links:
        encoded = _bytes_field(1, link.cid.bytes) + _bytes_field(2, link.name.encode("utf-8"))
        if link.tsize is not None:
            encoded += _varint_field(3, link.tsize)
        parts.append(_bytes_field(2, encoded))
    if node.data is not None:
        parts.append(_bytes_field(1, node.data))
    return b"".join(parts)


def decode_pbnode(data: bytes | memoryview) -> PBNode:
    links: list[PBLink] = []
    node_data: bytes | None = None
    for number, wire_type, value in _iter_fields(data):
        if number == 2 and isinstance(value, memoryview):
            links.append(_decode_pblink(value))
        elif number == 1 and isinstance(value, memoryview) and node_data is None:
            node_data = bytes(value)
        else:
            raise ProtobufError(f"unexpected dag-pb field {number} (wire type {wire_type})")
    return PBNode(tuple(links), node_data)


def _decode_pblink(data: memoryview) -> PBLink:
    cid: Cid | None = None
    name = ""
    tsize: int | None = None
    for number, _wire_type, value in _iter_fields(data):
        if number == 1 and isinstance(value, memoryview):
            cid = Cid.parse(bytes(value))
        elif number == 2 and isinstance(value, memoryview):
            name = str(value, "utf-8")
        elif number == 3 and isinstance(value, int):
            tsize = value
        else:
            raise ProtobufError(f"unexpected dag-pb link field {number}")
    if cid is None:
        raise ProtobufError("dag-pb link without a Hash")
    return PBLink(cid, name, tsize)


# ----------------------------------------------------------------- UnixFS Data


@dataclass(frozen=True, slots=True)
class UnixFSData:
    type: int
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = field(default=())


def encode_unixfs(value: UnixFSData) -> bytes:
    """Fields in number order, blocksizes unpacked (proto2), as go-unixfs and js-ipfs-unixfs write them."""
    out = _varint_field(1, value.type)
    if value.data:
        out += _bytes_field(2, value.data)
    if value.filesize is not None:
        out += _varint_field(3, value.filesize)
    return out + b"".join(_varint_field(4, size) for size in value.blocksizes)


def decode_unixfs(data: bytes | memoryview) -> UnixFSData:
    kind: int | None = None
    payload: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = []
    for number, _wire_type, value in _iter_fields(data):
        if number == 1 and isinstance(value, int):
            kind = value
        elif number == 2 and isinstance(value, memoryview):
            payload = bytes(value)
        elif number == 3 and isinstance(value, int):
            filesize = value
        elif number == 4 and isinstance(value, int):
            blocksizes.append(value)
        elif number == 4 and isinstance(value, memoryview):  # packed encoding is legal protobuf too
            offset = 0
            while offset < len(value):
                size, offset = decode_varint(value, offset)
                blocksizes.append(size)
        # other fields (hashType, fanout, mode, mtime) do not affect file content
    if kind is None:
        raise ProtobufError("UnixFS Data without a Type")
    return UnixFSData(kind, payload, filesize, tuple(blocksizes))


# ----------------------------------------------------------------- building


class _Child(NamedTuple):
    cid: Cid
    tsize: int  # serialized size of the whole subtree (dag-pb link Tsize)
    filesize: int  # file bytes below this child (UnixFS blocksizes entry)


class DagBuilder:
    """Streams file bytes into Kubo's balanced UnixFS DAG, returning blocks as soon as they are final.

    Feed bytes of any piece size with :meth:`write`, then call :meth:`finish`; both return the blocks
    completed by that call, children before parents. Afterwards :attr:`root` and :attr:`size` are set.
    """

    def __init__(self, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS) -> None:
        if chunk_size < 1 or max_links < 2:
            raise ValueError("chunk_size must be >= 1 and max_links >= 2")
        self._chunk_size = chunk_size
        self._max_links = max_links
        self._pending = bytearray()
        # _levels[0] holds leaves, _levels[k] nodes of height k, each waiting for a parent.
        self._levels: list[list[_Child]] = [[]]
        self._leaves = 0
        self._size = 0
        self._root: Cid | None = None

    @property
    def root(self) -> Cid:
        if self._root is None:
            raise RuntimeError("DagBuilder.finish() has not been called")
        return self._root

    @property
    def size(self) -> int:
        """File bytes written so far."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> list[Block]:
        if self._root is not None:
            raise RuntimeError("DagBuilder is finished")
        view = memoryview(data).cast("B")
        self._size += len(view)
        blocks: list[Block] = []
        offset = 0
        if self._pending:
            offset = min(self._chunk_size - len(self._pending), len(view))
            self._pending += view[:offset]
            if len(self._pending) < self._chunk_size:
                return blocks
            self._add_leaf(bytes(self._pending), blocks)
            self._pending.clear()
        if offset == 0 and len(view) == self._chunk_size and isinstance(data, bytes):
            self._add_leaf(data, blocks)  # common case (file reads of exactly one chunk): no copy
            return blocks
        while len(view) - offset >= self._chunk_size:
            self._add_leaf(bytes(view[offset : offset + self._chunk_size]), blocks)
            offset += self._chunk_size
        self._pending += view[offset:]
        return blocks

    def finish(self) -> list[Block]:
        if self._root is not None:
            raise RuntimeError("DagBuilder is finished")
        blocks: list[Block] = []
        if self._pending or self._leaves == 0:
            self._add_leaf(bytes(self._pending), blocks)
            self._pending.clear()
        if self._leaves == 1:  # a lone chunk is the file: no dag-pb wrapper
            self._root = self._levels[0][0].cid
            return blocks
        # Close partial nodes bottom-up; the first level left with a single node and nothing above is the root.
        height = 0
        while True:
            pending = self._levels[height]
            higher = any(self._levels[height + 1 :])
            if height > 0 and len(pending) == 1 and not higher:
                self._root = pending[0].cid
                return blocks
            if pending:
                self._close_level(height, blocks)
            height += 1

    def _add_leaf(self, chunk: bytes, blocks: list[Block]) -> None:
        cid = Cid.for_block(RAW, chunk)
        blocks.append(Block(cid, chunk))
        self._leaves += 1
        self._push(0, _Child(cid, len(chunk), len(chunk)), blocks)

    def _push(self, height: int, child: _Child, blocks: list[Block]) -> None:
        level = self._levels[height]
        level.append(child)
        if len(level) == self._max_links:
            self._close_level(height, blocks)

    def _close_level(self, height: int, blocks: list[Block]) -> None:
        children = self._levels[height]
        self._levels[height] = []
        if len(self._levels) == height + 1:
            self._levels.append([])
        block, parent = _file_node(children)
        blocks.append(block)
        self._push(height + 1, parent, blocks)


def _file_node(children: Sequence[_Child]) -> tuple[Block, _Child]:
    filesize = sum(child.filesize for child in children)
    unixfs = UnixFSData(UNIXFS_FILE, filesize=filesize, blocksizes=tuple(child.filesize for child in children))
    links = tuple(PBLink(child.cid, "", child.tsize) for child in children)
    data = encode_pbnode(PBNode(links, encode_unixfs(unixfs)))
    cid = Cid.for_block(DAG_PB, data)
    tsize = len(data) + sum(child.tsize for child in children)
    return Block(cid, data), _Child(cid, tsize, filesize)


# ----------------------------------------------------------------- reading


def load_verified(load: BlockLoader, cid: Cid, root: Cid | None = None) -> bytes:
    data = load(cid)
    verify_block(cid, data, root=root)
    return data


def decode_file_node(cid: Cid, data: bytes) -> tuple[PBNode, UnixFSData]:
    """Decode a verified dag-pb block as a UnixFS file node; BlobError if it is anything else."""
    try:
        node = decode_pbnode(data)
        unixfs = decode_unixfs(node.data or b"")
    except InvalidCid as exc:
        raise BlobError(f"block {cid} links to an unsupported CID: {exc}", cid=str(cid)) from exc
    except ProtobufError as exc:
        raise BlobError(f"block {cid} is not a valid UnixFS dag-pb node: {exc}", cid=str(cid)) from exc
    if unixfs.type not in (UNIXFS_FILE, UNIXFS_RAW):
        raise BlobError(f"block {cid} is a UnixFS type {unixfs.type} node, not a file", cid=str(cid))
    return node, unixfs


def links_of(cid: Cid, data: bytes) -> tuple[Cid, ...]:
    """Child CIDs of a verified block (none for raw leaves)."""
    if cid.codec == RAW:
        return ()
    node, _unixfs = decode_file_node(cid, data)
    return tuple(link.cid for link in node.links)


def open_file(root: Cid, load: BlockLoader) -> Iterator[bytes]:
    """Verified streaming read of a UnixFS file.

    The root block is fetched and verified before returning, so a missing or corrupted root fails at
    the call; every later block is verified just before its bytes are yielded.
    """
    data = load_verified(load, root)
    if root.codec == RAW:
        return iter((data,) if data else ())
    return _drain(_emit_node(root, data, root, load, 0))


def _drain(emitter: Generator[bytes, None, int]) -> Iterator[bytes]:
    yield from emitter


def _emit_node(cid: Cid, data: bytes, root: Cid, load: BlockLoader, depth: int) -> Generator[bytes, None, int]:
    """Yield the file bytes under one verified block and return how many there were."""
    if cid.codec == RAW:
        if data:
            yield data
        return len(data)
    if depth > _MAX_DEPTH:
        raise BlobError(f"DAG under {root} is deeper than {_MAX_DEPTH} levels", cid=str(cid), root=str(root))
    node, unixfs = decode_file_node(cid, data)
    total = 0
    if unixfs.data:
        yield unixfs.data
        total += len(unixfs.data)
    check_sizes = len(unixfs.blocksizes) == len(node.links)
    for index, link in enumerate(node.links):
        child = load_verified(load, link.cid, root)
        emitted = yield from _emit_node(link.cid, child, root, load, depth + 1)
        if check_sizes and emitted != unixfs.blocksizes[index]:
            raise BlobError(
                f"node {cid} declares {unixfs.blocksizes[index]} bytes under {link.cid}, found {emitted}",
                cid=str(cid),
                root=str(root),
            )
        total += emitted
    if unixfs.filesize is not None and total != unixfs.filesize:
        raise BlobError(f"node {cid} declares filesize {unixfs.filesize}, found {total}", cid=str(cid), root=str(root))
    return total


def walk_dag(root: Cid, load: BlockLoader, *, load_leaves: bool = True) -> Iterator[tuple[Cid, bytes | None]]:
    """Visit every distinct block once in depth-first pre-order (``ipfs dag export`` order).

    Blocks are verified as they are loaded. The root is always loaded; other raw leaves only when
    ``load_leaves`` is true, otherwise they are yielded with ``None`` as data.
    """
    seen: set[Cid] = set()
    stack = [root]
    while stack:
        cid = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        if cid.codec == RAW and not load_leaves and cid != root:
            yield cid, None
            continue
        data = load_verified(load, cid, root)
        yield cid, data
        stack.extend(reversed(links_of(cid, data)))
