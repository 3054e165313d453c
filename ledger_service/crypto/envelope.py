"""Streaming envelope encryption of record blobs (segmented AES-256-GCM).

Records can be 1 GB imaging files, so plaintext is encrypted as a stream of fixed-size
segments (the construction of Tink's streaming AEAD and age's STREAM) and never sits whole
in memory. Wire format::

    header  = MAGIC (6) || FORMAT_VERSION (1) || segment_size u32be (4) || nonce_prefix (7)
    segment = AES-256-GCM(data_key, nonce, plaintext[i], aad) = ciphertext || tag (16)
    nonce   = nonce_prefix (7) || segment index u32be (4) || last-segment flag (1)
    aad     = binding.aad() || header

Every segment authenticates its position (index), whether it is the last one (flag), the
whole header and the record it belongs to (binding), so truncation, appended data,
reordering, splicing segments between streams and moving a blob to another record all fail
authentication. Every failure surfaces as the single :class:`DecryptionError`.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger_service.errors import CryptoError, DecryptionError

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "STREAM_HEADER_SIZE",
    "DataKey",
    "RecordBinding",
    "ciphertext_size",
    "decrypt_bytes",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_stream",
]

DATA_KEY_SIZE: Final = 32
RECORD_ID_SIZE: Final = 32
TAG_SIZE: Final = 16

MAGIC: Final = b"CLSTRM"
FORMAT_VERSION: Final = 1
NONCE_PREFIX_SIZE: Final = 7
_HEADER: Final = struct.Struct(f">{len(MAGIC)}sBI{NONCE_PREFIX_SIZE}s")
STREAM_HEADER_SIZE: Final = _HEADER.size

DEFAULT_SEGMENT_SIZE: Final = 64 * 1024
MIN_SEGMENT_SIZE: Final = 16
#: Bounds the memory a decryptor commits before the (attacker-controlled) header is authenticated.
MAX_SEGMENT_SIZE: Final = 16 * 1024 * 1024
#: The segment index is a u32 in the nonce; past this a nonce would repeat, so we refuse.
MAX_SEGMENTS: Final = 2**32

_AAD_DOMAIN: Final = b"consent-ledger/v1/record-binding\x00"
_UINT64_LIMIT: Final = 2**64

#: Chunks may be any contiguous byte buffer (bytes, bytearray, memoryview); nothing is copied whole.
BytesLike = bytes | bytearray | memoryview


# --------------------------------------------------------------------------- binding


@dataclass(frozen=True)
class RecordBinding:
    """What a ciphertext belongs to; authenticated as AAD so blobs cannot be moved between records.

    ``patient`` is a 0x-prefixed 20-byte address; it is normalized to lowercase so that a
    checksummed and a lowercase spelling of the same address bind identically.
    """

    record_id: bytes
    version: int
    patient: str

    def __post_init__(self) -> None:
        record_id = self.record_id
        if isinstance(record_id, (bytearray, memoryview)):
            record_id = bytes(record_id)
            object.__setattr__(self, "record_id", record_id)
        if not isinstance(record_id, bytes) or len(record_id) != RECORD_ID_SIZE:
            raise CryptoError(f"record_id must be {RECORD_ID_SIZE} bytes", field="record_id")
        if isinstance(self.version, bool) or not isinstance(self.version, int):
            raise CryptoError("version must be an int", field="version")
        if not 0 <= self.version < _UINT64_LIMIT:
            raise CryptoError("version must fit in an unsigned 64-bit integer", field="version")
        object.__setattr__(self, "patient", _normalize_address(self.patient))

    def aad(self) -> bytes:
        """Canonical encoding: domain tag || record_id (32) || version u64be (8) || patient (20).

        All fields are fixed-width after a constant tag, so two different bindings can never
        encode to the same bytes.
        """
        return _AAD_DOMAIN + self.record_id + self.version.to_bytes(8, "big") + bytes.fromhex(self.patient[2:])


def _normalize_address(patient: object) -> str:
    if not isinstance(patient, str):
        raise CryptoError("patient must be a 0x-prefixed hex address string", field="patient")
    if len(patient) != 42 or patient[:2] not in ("0x", "0X"):
        raise CryptoError("patient must be a 0x-prefixed 20-byte hex address", field="patient")
    body = patient[2:]
    try:
        bytes.fromhex(body)
    except ValueError:
        raise CryptoError("patient must be a 0x-prefixed 20-byte hex address", field="patient") from None
    return "0x" + body.lower()


# --------------------------------------------------------------------------- data key


class DataKey:
    """A 256-bit AES-GCM data key for exactly one record version's stream.

    Single use for encryption is enforced: nonces are derived from a segment counter, which
    is only unique per key, so a key that has encrypted one stream refuses to encrypt another
    (decryption is unlimited). The bytes never appear in ``repr``/``str``.
    """

    __slots__ = ("_consumed", "_key", "_lock")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise CryptoError("data key must be bytes")
        key = bytes(key)
        if len(key) != DATA_KEY_SIZE:
            raise CryptoError(f"data key must be {DATA_KEY_SIZE} bytes", length=len(key))
        self._key = key
        self._consumed = False
        self._lock = threading.Lock()

    @classmethod
    def generate(cls) -> DataKey:
        """A fresh random key from the OS CSPRNG."""
        return cls(AESGCM.generate_key(bit_length=256))

    def to_bytes(self) -> bytes:
        """The raw key, for key-custody adapters (wrapping) only."""
        return self._key

    @property
    def used_for_encryption(self) -> bool:
        return self._consumed

    def _consume_for_encryption(self) -> None:
        with self._lock:
            if self._consumed:
                raise CryptoError("data key was already used to encrypt a stream; generate a fresh key per stream")
            self._consumed = True

    def __repr__(self) -> str:
        return "DataKey(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would copy key bytes into caches/queues silently; make it explicit via to_bytes().
        raise TypeError("DataKey cannot be pickled")


# --------------------------------------------------------------------------- format helpers


def _segment_nonce(prefix: bytes, index: int, last: bool) -> bytes:
    """96-bit GCM nonce for segment ``index``.

    Uniqueness holds by construction: the data key is fresh and single-use (one stream per
    key) and within a stream the counter is strictly increasing and never wraps (capped at
    MAX_SEGMENTS), so no (key, nonce) pair is ever used twice. The random prefix is defence
    in depth should a key ever be reused by a bug outside this module.
    """
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _check_segment_size(segment_size: int) -> None:
    if isinstance(segment_size, bool) or not isinstance(segment_size, int):
        raise CryptoError("segment_size must be an int")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise CryptoError(
            f"segment_size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE}", segment_size=segment_size
        )


def _check_args(data_key: DataKey, binding: RecordBinding) -> None:
    if not isinstance(data_key, DataKey):
        raise CryptoError("data_key must be a DataKey")
    if not isinstance(binding, RecordBinding):
        raise CryptoError("binding must be a RecordBinding (associated data is mandatory)")


def ciphertext_size(plaintext_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Exact ciphertext length for a plaintext length (e.g. for Content-Length or quotas)."""
    _check_segment_size(segment_size)
    if plaintext_size < 0:
        raise CryptoError("plaintext_size must be non-negative")
    segments = max(1, -(-plaintext_size // segment_size))
    return STREAM_HEADER_SIZE + plaintext_size + segments * TAG_SIZE


# --------------------------------------------------------------------------- encryption


def encrypt_stream(
    data_key: DataKey,
    binding: RecordBinding,
    chunks: Iterable[BytesLike],
    *,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> Iterator[bytes]:
    """Encrypt plaintext ``chunks`` (any sizes) and yield ciphertext pieces, header first.

    Memory is bounded by one segment plus the caller's current chunk. Arguments are checked
    and the data key is marked used immediately, not at first iteration.
    """
    _check_args(data_key, binding)
    _check_segment_size(segment_size)
    data_key._consume_for_encryption()
    return _encrypt_segments(data_key, binding, chunks, segment_size)


def _encrypt_segments(
    data_key: DataKey, binding: RecordBinding, chunks: Iterable[BytesLike], segment_size: int
) -> Iterator[bytes]:
    prefix = os.urandom(NONCE_PREFIX_SIZE)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, segment_size, prefix)
    aad = binding.aad() + header
    aead = AESGCM(data_key.to_bytes())
    yield header

    index = 0
    pending = bytearray()
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        pos = 0
        while pos < len(view):
            if len(pending) == segment_size:
                # More plaintext follows, so the buffered full segment is not the last one.
                if index >= MAX_SEGMENTS - 1:
                    raise CryptoError("stream too long for this segment size")
                yield aead.encrypt(_segment_nonce(prefix, index, last=False), pending, aad)
                index += 1
                pending = bytearray()
            take = min(segment_size - len(pending), len(view) - pos)
            pending += view[pos : pos + take]
            pos += take
    # Always emit a final segment (possibly empty) so truncation at a segment boundary is detectable.
    yield aead.encrypt(_segment_nonce(prefix, index, last=True), pending, aad)


def encrypt_bytes(
    data_key: DataKey, binding: RecordBinding, plaintext: bytes, *, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> bytes:
    """One-shot :func:`encrypt_stream` for small payloads."""
    return b"".join(encrypt_stream(data_key, binding, [plaintext], segment_size=segment_size))


# --------------------------------------------------------------------------- decryption


def decrypt_stream(
    data_key: DataKey, binding: RecordBinding, ciphertext_chunks: Iterable[BytesLike]
) -> Iterator[bytes]:
    """Yield plaintext segment by segment, each only after its tag has been verified.

    The stream as a whole is only authentic once iteration finishes without error: a
    truncated or tampered stream raises :class:`DecryptionError` *after* earlier segments
    were yielded. Consumers must treat everything received before such an error as untrusted
    and discard it (stream to a temp file / buffer and commit only on clean completion), or
    use :func:`decrypt_bytes`.
    """
    _check_args(data_key, binding)
    return _decrypt_segments(data_key, binding, ciphertext_chunks)


def _decrypt_segments(
    data_key: DataKey, binding: RecordBinding, ciphertext_chunks: Iterable[BytesLike]
) -> Iterator[bytes]:
    aead = AESGCM(data_key.to_bytes())
    pending = bytearray()
    header: bytes | None = None
    prefix = b""
    aad = b""
    seg_ct_size = 0
    index = 0

    def open_segment(segment: bytearray, last: bool) -> bytes:
        try:
            return aead.decrypt(_segment_nonce(prefix, index, last), segment, aad)
        except InvalidTag:
            raise DecryptionError("record ciphertext failed authentication", segment=index) from None

    for chunk in ciphertext_chunks:
        view = memoryview(chunk).cast("B")
        pos = 0
        while pos < len(view):
            if header is None:
                take = min(STREAM_HEADER_SIZE - len(pending), len(view) - pos)
                pending += view[pos : pos + take]
                pos += take
                if len(pending) == STREAM_HEADER_SIZE:
                    header = bytes(pending)
                    prefix, seg_ct_size = _parse_header(header)
                    aad = binding.aad() + header
                    pending = bytearray()
                continue
            if len(pending) == seg_ct_size:
                # Ciphertext continues past a full segment, so that segment is not the last.
                if index >= MAX_SEGMENTS - 1:
                    raise DecryptionError("record ciphertext failed authentication", segment=index)
                yield open_segment(pending, last=False)
                index += 1
                pending = bytearray()
            take = min(seg_ct_size - len(pending), len(view) - pos)
            pending += view[pos : pos + take]
            pos += take

    if header is None:
        raise DecryptionError("record ciphertext failed authentication: truncated header")
    if len(pending) < TAG_SIZE:
        raise DecryptionError("record ciphertext failed authentication: truncated", segment=index)
    yield open_segment(pending, last=True)


def _parse_header(header: bytes) -> tuple[bytes, int]:
    magic, version, segment_size, prefix = _HEADER.unpack(header)
    if magic != MAGIC or version != FORMAT_VERSION or not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        # Same error as a bad tag: the header is authenticated data, and callers get one failure type.
        raise DecryptionError("record ciphertext failed authentication: bad header")
    return prefix, segment_size + TAG_SIZE


def decrypt_bytes(data_key: DataKey, binding: RecordBinding, ciphertext: bytes) -> bytes:
    """Decrypt a whole ciphertext; returns plaintext only if every segment authenticated."""
    return b"".join(decrypt_stream(data_key, binding, [ciphertext]))
