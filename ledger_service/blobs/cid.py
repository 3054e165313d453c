"""CIDv1 with a sha2-256 multihash, for the two codecs a UnixFS file DAG uses.

Parsing is deliberately strict: CIDs name files on disk and appear in URLs, so only the
canonical base32 string (or its binary form) of a supported CID is accepted.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import re
from dataclasses import dataclass

from ledger_service.errors import BlobIntegrityError, InvalidCid

RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
DIGEST_SIZE = 32
CID_VERSION = 1

_CODEC_NAMES = {RAW: "raw", DAG_PB: "dag-pb"}
# Version, codec, multihash code and digest length are single-byte varints for every supported CID.
CID_BINARY_SIZE = 4 + DIGEST_SIZE
_TEXT_SIZE = 1 + (CID_BINARY_SIZE * 8 + 4) // 5
_BASE32_TEXT = re.compile(r"b[a-z2-7]+")


@dataclass(frozen=True, slots=True)
class Cid:
    """A CIDv1 (``raw`` or ``dag-pb`` codec, sha2-256). Build it with :meth:`parse` or :meth:`for_block`."""

    codec: int
    digest: builtins.bytes

    def __post_init__(self) -> None:
        if self.codec not in _CODEC_NAMES:
            raise InvalidCid(f"unsupported CID codec 0x{self.codec:x}; expected raw (0x55) or dag-pb (0x70)")
        if len(self.digest) != DIGEST_SIZE:
            raise InvalidCid(f"sha2-256 digest must be {DIGEST_SIZE} bytes, got {len(self.digest)}")

    @classmethod
    def parse(cls, value: Cid | str | builtins.bytes | bytearray | memoryview) -> Cid:
        """Parse a base32 ``b...`` string or the binary form; raise :class:`InvalidCid` for anything else."""
        if isinstance(value, Cid):
            return value
        if isinstance(value, str):
            return cls._parse_text(value)
        if isinstance(value, (builtins.bytes, bytearray, memoryview)):
            return cls._parse_binary(builtins.bytes(value))
        raise InvalidCid(f"expected a CID string or bytes, got {type(value).__name__}")

    @classmethod
    def for_block(cls, codec: int, data: builtins.bytes | memoryview) -> Cid:
        """The CID of a block with the given codec and content."""
        return cls(codec, hashlib.sha256(data).digest())

    @classmethod
    def _parse_text(cls, text: str) -> Cid:
        shown = text[:80]
        if len(text) != _TEXT_SIZE or not _BASE32_TEXT.fullmatch(text):
            if text.startswith("Qm"):
                raise InvalidCid(f"CIDv0 is not supported, use CIDv1 base32: {shown!r}", cid=shown)
            raise InvalidCid(f"not a base32 CIDv1 string: {shown!r}", cid=shown)
        body = text[1:].upper()
        body += "=" * (-len(body) % 8)
        cid = cls._parse_binary(base64.b32decode(body))
        if str(cid) != text:  # non-zero padding bits: several strings would name one CID
            raise InvalidCid(f"non-canonical base32 CID: {shown!r}", cid=shown)
        return cid

    @classmethod
    def _parse_binary(cls, data: builtins.bytes) -> Cid:
        if len(data) != CID_BINARY_SIZE:
            raise InvalidCid(f"binary CID must be {CID_BINARY_SIZE} bytes, got {len(data)}")
        version, codec, hash_code, digest_size = data[:4]
        if version != CID_VERSION:
            raise InvalidCid(f"only CIDv1 is supported, got version byte 0x{version:x}")
        if hash_code != SHA2_256 or digest_size != DIGEST_SIZE:
            raise InvalidCid(f"only sha2-256 multihashes are supported, got code 0x{hash_code:x}/{digest_size}")
        return cls(codec, data[4:])

    @property
    def version(self) -> int:
        return CID_VERSION

    @property
    def codec_name(self) -> str:
        return _CODEC_NAMES[self.codec]

    def matches(self, data: builtins.bytes | memoryview) -> bool:
        """Whether ``data`` hashes to this CID."""
        return hashlib.sha256(data).digest() == self.digest

    def __str__(self) -> str:
        return "b" + base64.b32encode(self.bytes).decode("ascii").rstrip("=").lower()

    def __repr__(self) -> str:
        return f"Cid({str(self)!r})"

    @property
    def bytes(self) -> builtins.bytes:
        """Binary CIDv1: version, codec, multihash code, digest length, digest."""
        return builtins.bytes((CID_VERSION, self.codec, SHA2_256, DIGEST_SIZE)) + self.digest


def verify_block(cid: Cid, data: bytes | memoryview, *, root: Cid | None = None) -> None:
    """Raise :class:`BlobIntegrityError` naming ``cid`` unless ``data`` hashes to it."""
    if not cid.matches(data):
        details: dict[str, object] = {"cid": str(cid)}
        if root is not None and root != cid:
            details["root"] = str(root)
        raise BlobIntegrityError(f"block {cid} is corrupted: its content does not hash to its CID", **details)
