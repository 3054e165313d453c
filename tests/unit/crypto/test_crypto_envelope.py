"""Streaming envelope encryption: round trips, every tamper → DecryptionError, nonces, memory."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import struct
import tracemalloc
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger_service.crypto import (
    DEFAULT_SEGMENT_SIZE,
    MAX_SEGMENT_SIZE,
    STREAM_HEADER_SIZE,
    DataKey,
    RecordBinding,
    ciphertext_size,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
)
from ledger_service.crypto.envelope import TAG_SIZE, _segment_nonce
from ledger_service.errors import CryptoError, DecryptionError

SEG = 1024  # small segments keep tamper tests fast; the default size is covered separately
CT_SEG = SEG + TAG_SIZE


def _plaintext(n: int) -> bytes:
    return bytes(i * 7 % 251 for i in range(n))


def _encrypt(binding: RecordBinding, plaintext: bytes, segment_size: int = SEG) -> tuple[DataKey, bytes]:
    key = DataKey.generate()
    return key, encrypt_bytes(key, binding, plaintext, segment_size=segment_size)


def _segments(ct: bytes, ct_seg: int = CT_SEG) -> tuple[bytes, list[bytes]]:
    body = ct[STREAM_HEADER_SIZE:]
    return ct[:STREAM_HEADER_SIZE], [body[i : i + ct_seg] for i in range(0, len(body), ct_seg)]


def _chunked(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "size", [0, 1, DEFAULT_SEGMENT_SIZE - 1, DEFAULT_SEGMENT_SIZE, DEFAULT_SEGMENT_SIZE + 1, 3 * 1024 * 1024 + 17]
)
def test_round_trip_default_segment_size(binding: RecordBinding, size: int) -> None:
    plaintext = _plaintext(size) if size < 100_000 else bytes(size)
    key = DataKey.generate()
    ct = encrypt_bytes(key, binding, plaintext)
    assert len(ct) == ciphertext_size(size)
    assert decrypt_bytes(key, binding, ct) == plaintext


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG, 5 * SEG + 3])
@pytest.mark.parametrize(("in_chunk", "ct_chunk"), [(1, 1), (7, 13), (SEG, CT_SEG), (10_000, 10_000)])
def test_round_trip_any_chunking(binding: RecordBinding, size: int, in_chunk: int, ct_chunk: int) -> None:
    plaintext = _plaintext(size)
    key = DataKey.generate()
    ct = b"".join(encrypt_stream(key, binding, _chunked(plaintext, in_chunk), segment_size=SEG))
    assert len(ct) == ciphertext_size(size, SEG)
    out = list(decrypt_stream(key, binding, _chunked(ct, ct_chunk)))
    assert b"".join(out) == plaintext
    assert all(len(piece) == SEG for piece in out[:-1])  # plaintext is released a whole segment at a time


def test_accepts_bytearray_and_memoryview_chunks(binding: RecordBinding) -> None:
    key = DataKey.generate()
    ct = b"".join(encrypt_stream(key, binding, [bytearray(b"ab"), memoryview(b"cd"), b""], segment_size=SEG))
    assert decrypt_bytes(key, binding, ct) == b"abcd"


def test_header_is_yielded_first(binding: RecordBinding) -> None:
    pieces = list(encrypt_stream(DataKey.generate(), binding, [b"x" * (2 * SEG + 1)], segment_size=SEG))
    assert len(pieces[0]) == STREAM_HEADER_SIZE
    assert [len(p) for p in pieces[1:]] == [CT_SEG, CT_SEG, 1 + TAG_SIZE]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plaintext=st.binary(max_size=6000),
    segment_size=st.integers(min_value=16, max_value=2048),
    in_chunk=st.integers(min_value=1, max_value=3000),
    ct_chunk=st.integers(min_value=1, max_value=3000),
)
def test_round_trip_property(
    binding: RecordBinding, plaintext: bytes, segment_size: int, in_chunk: int, ct_chunk: int
) -> None:
    key = DataKey.generate()
    ct = b"".join(encrypt_stream(key, binding, _chunked(plaintext, in_chunk), segment_size=segment_size))
    assert len(ct) == ciphertext_size(len(plaintext), segment_size)
    assert b"".join(decrypt_stream(key, binding, _chunked(ct, ct_chunk))) == plaintext


# --------------------------------------------------------------------------- tampering


@pytest.fixture
def sealed(binding: RecordBinding) -> tuple[DataKey, bytes]:
    return _encrypt(binding, _plaintext(3 * SEG + 100))


def _fails(key: DataKey, binding: RecordBinding, ct: bytes) -> None:
    with pytest.raises(DecryptionError):
        decrypt_bytes(key, binding, ct)


def _flip(ct: bytes, index: int) -> bytes:
    out = bytearray(ct)
    out[index] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize("index", range(STREAM_HEADER_SIZE))
def test_flipped_header_byte(binding: RecordBinding, sealed: tuple[DataKey, bytes], index: int) -> None:
    key, ct = sealed
    _fails(key, binding, _flip(ct, index))


@pytest.mark.parametrize(
    "index",
    [
        STREAM_HEADER_SIZE,  # first ciphertext byte of segment 0
        STREAM_HEADER_SIZE + SEG - 1,  # last ciphertext byte of segment 0
        STREAM_HEADER_SIZE + SEG,  # first tag byte of segment 0
        STREAM_HEADER_SIZE + CT_SEG - 1,  # last tag byte of segment 0
        STREAM_HEADER_SIZE + CT_SEG + 500,  # middle of segment 1
        -1,  # last tag byte of the final segment
        -TAG_SIZE - 1,  # last ciphertext byte of the final segment
    ],
)
def test_flipped_segment_or_tag_byte(binding: RecordBinding, sealed: tuple[DataKey, bytes], index: int) -> None:
    key, ct = sealed
    _fails(key, binding, _flip(ct, index % len(ct)))


def test_drop_last_segment(binding: RecordBinding, sealed: tuple[DataKey, bytes]) -> None:
    key, ct = sealed
    header, segs = _segments(ct)
    _fails(key, binding, header + b"".join(segs[:-1]))


def test_drop_last_segment_when_it_is_full(binding: RecordBinding) -> None:
    key, ct = _encrypt(binding, _plaintext(3 * SEG))  # every segment full: boundary cut looks well-formed
    header, segs = _segments(ct)
    assert [len(s) for s in segs] == [CT_SEG] * 3
    _fails(key, binding, header + b"".join(segs[:-1]))


@pytest.mark.parametrize("cut", [1, TAG_SIZE, TAG_SIZE + 1, 100])
def test_drop_trailing_bytes(binding: RecordBinding, sealed: tuple[DataKey, bytes], cut: int) -> None:
    key, ct = sealed
    _fails(key, binding, ct[:-cut])


@pytest.mark.parametrize(
    "length", [0, 1, STREAM_HEADER_SIZE - 1, STREAM_HEADER_SIZE, STREAM_HEADER_SIZE + TAG_SIZE - 1]
)
def test_truncated_to_header_or_less(binding: RecordBinding, sealed: tuple[DataKey, bytes], length: int) -> None:
    key, ct = sealed
    _fails(key, binding, ct[:length])


def test_empty_plaintext_stream_truncated(binding: RecordBinding) -> None:
    key, ct = _encrypt(binding, b"")
    assert len(ct) == STREAM_HEADER_SIZE + TAG_SIZE
    _fails(key, binding, ct[:STREAM_HEADER_SIZE])


@pytest.mark.parametrize("extra", [b"\x00", b"x" * TAG_SIZE, b"y" * (CT_SEG + 5)])
def test_appended_data(binding: RecordBinding, sealed: tuple[DataKey, bytes], extra: bytes) -> None:
    key, ct = sealed
    _fails(key, binding, ct + extra)


def test_appended_copy_of_final_segment(binding: RecordBinding) -> None:
    key, ct = _encrypt(binding, _plaintext(2 * SEG))
    _, segs = _segments(ct)
    _fails(key, binding, ct + segs[-1])


def test_reordered_segments(binding: RecordBinding, sealed: tuple[DataKey, bytes]) -> None:
    key, ct = sealed
    header, segs = _segments(ct)
    segs[0], segs[1] = segs[1], segs[0]
    _fails(key, binding, header + b"".join(segs))


def test_segment_from_another_stream(binding: RecordBinding) -> None:
    plaintext = _plaintext(3 * SEG)
    key, ct = _encrypt(binding, plaintext)
    _, other_ct = _encrypt(binding, plaintext)
    header, segs = _segments(ct)
    _, other = _segments(other_ct)
    segs[1] = other[1]
    _fails(key, binding, header + b"".join(segs))


def test_header_from_another_stream(binding: RecordBinding) -> None:
    plaintext = _plaintext(2 * SEG)
    key, ct = _encrypt(binding, plaintext)
    _, other_ct = _encrypt(binding, plaintext)
    _fails(key, binding, other_ct[:STREAM_HEADER_SIZE] + ct[STREAM_HEADER_SIZE:])


@pytest.mark.parametrize(
    "change",
    [
        {"record_id": bytes(31) + b"\x01"},
        {"version": 4},
        {"patient": "0x0000000000000000000000000000000000000001"},
    ],
    ids=["record_id", "version", "patient"],
)
def test_wrong_binding(binding: RecordBinding, sealed: tuple[DataKey, bytes], change: dict[str, object]) -> None:
    key, ct = sealed
    _fails(key, dataclasses.replace(binding, **change), ct)  # type: ignore[arg-type]


def test_wrong_key(binding: RecordBinding, sealed: tuple[DataKey, bytes]) -> None:
    _, ct = sealed
    _fails(DataKey.generate(), binding, ct)


def test_segment_size_in_header_beyond_limit_is_rejected_before_buffering(binding: RecordBinding) -> None:
    key, ct = _encrypt(binding, b"abc")
    forged = ct[:7] + struct.pack(">I", MAX_SEGMENT_SIZE + 1) + ct[11:]
    _fails(key, binding, forged)


def test_stream_yields_authenticated_segments_then_fails_on_truncation(
    binding: RecordBinding, sealed: tuple[DataKey, bytes]
) -> None:
    """Documented contract: earlier segments may be yielded before the failure; callers discard them."""
    key, ct = sealed
    header, segs = _segments(ct)
    stream = decrypt_stream(key, binding, [header, *segs[:-1]])
    received = [next(stream) for _ in range(len(segs) - 2)]
    with pytest.raises(DecryptionError):
        next(stream)
    assert b"".join(received) == _plaintext(3 * SEG + 100)[: len(received) * SEG]


def test_decryption_error_message_has_no_plaintext_or_key(binding: RecordBinding) -> None:
    secret = b"SECRET-DIAGNOSIS" * 100
    key, ct = _encrypt(binding, secret)
    with pytest.raises(DecryptionError) as info:
        decrypt_bytes(key, binding, ct[:-1])
    text = str(info.value) + repr(info.value.details)
    assert "SECRET" not in text
    assert key.to_bytes().hex() not in text
    assert info.value.__cause__ is None


# --------------------------------------------------------------------------- keys and nonces


def test_data_keys_unique_per_call() -> None:
    keys = {DataKey.generate().to_bytes() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(len(k) == 32 for k in keys)


@pytest.mark.parametrize("raw", [b"", b"k" * 16, b"k" * 31, b"k" * 33])
def test_data_key_length_checked_at_construction(raw: bytes) -> None:
    with pytest.raises(CryptoError):
        DataKey(raw)


def test_data_key_repr_str_pickle_leak_nothing() -> None:
    key = DataKey.generate()
    assert repr(key) == "DataKey(<redacted>)"
    assert str(key) == "DataKey(<redacted>)"
    assert f"{key}" == "DataKey(<redacted>)"
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_data_key_encrypts_only_one_stream(binding: RecordBinding) -> None:
    key = DataKey.generate()
    ct = encrypt_bytes(key, binding, b"first")
    assert key.used_for_encryption
    with pytest.raises(CryptoError):
        encrypt_stream(key, binding, [b"second"])  # refused eagerly, before any iteration
    assert decrypt_bytes(key, binding, ct) == b"first"  # decryption stays unlimited


def test_nonces_distinct_for_every_segment(binding: RecordBinding) -> None:
    """The nonce model: prefix || u32 index || last flag; all distinct and actually used as modelled."""
    key, ct = _encrypt(binding, _plaintext(50 * SEG + 1))
    header, segs = _segments(ct)
    prefix = header[-7:]
    nonces = [_segment_nonce(prefix, i, last=(i == len(segs) - 1)) for i in range(len(segs))]
    assert len(segs) == 51
    assert len(set(nonces)) == len(nonces)
    assert all(len(n) == 12 for n in nonces)
    aead = AESGCM(key.to_bytes())
    aad = binding.aad() + header
    for nonce, seg in zip(nonces, segs, strict=True):
        aead.decrypt(nonce, seg, aad)  # raises InvalidTag if the model were wrong
    # A non-final and a final segment at the same index never share a nonce.
    assert _segment_nonce(prefix, 5, last=False) != _segment_nonce(prefix, 5, last=True)


def test_nonce_prefixes_differ_between_streams(binding: RecordBinding) -> None:
    prefixes = {_encrypt(binding, b"")[1][STREAM_HEADER_SIZE - 7 : STREAM_HEADER_SIZE] for _ in range(200)}
    assert len(prefixes) == 200


# --------------------------------------------------------------------------- binding


def test_binding_normalizes_patient_and_aad_is_canonical(binding: RecordBinding) -> None:
    lower = RecordBinding(binding.record_id, binding.version, binding.patient.lower())
    assert binding.patient == binding.patient.lower()
    assert binding == lower
    assert binding.aad() == lower.aad()
    assert binding.aad().startswith(b"consent-ledger/v1")
    assert len(binding.aad()) == len(RecordBinding(bytes(32), 2**64 - 1, "0x" + "ff" * 20).aad())


def test_aad_distinguishes_every_field(binding: RecordBinding) -> None:
    variants = [
        binding,
        dataclasses.replace(binding, record_id=bytes(32)),
        dataclasses.replace(binding, version=binding.version + 1),
        dataclasses.replace(binding, patient="0x" + "00" * 20),
    ]
    assert len({b.aad() for b in variants}) == len(variants)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"record_id": bytes(31)},
        {"record_id": "00" * 32},
        {"version": -1},
        {"version": 2**64},
        {"version": True},
        {"patient": "52908400098527886E0F7030069857D2E4169EE7"},
        {"patient": "0x1234"},
        {"patient": "0x" + "zz" * 20},
        {"patient": 5},
    ],
)
def test_binding_checked_at_construction(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"record_id": bytes(32), "version": 1, "patient": "0x" + "11" * 20, **kwargs}
    with pytest.raises(CryptoError):
        RecordBinding(**fields)  # type: ignore[arg-type]


def test_aad_is_mandatory() -> None:
    with pytest.raises(CryptoError):
        encrypt_stream(DataKey.generate(), None, [b"x"])  # type: ignore[arg-type]
    with pytest.raises(CryptoError):
        decrypt_stream(DataKey.generate(), b"aad", [b"x"])  # type: ignore[arg-type]


@pytest.mark.parametrize("segment_size", [0, 15, MAX_SEGMENT_SIZE + 1])
def test_segment_size_bounds(binding: RecordBinding, segment_size: int) -> None:
    with pytest.raises(CryptoError):
        encrypt_stream(DataKey.generate(), binding, [], segment_size=segment_size)


# --------------------------------------------------------------------------- memory


def _zeros_stream(total: int, chunk: int) -> Iterator[bytes]:
    for _ in range(total // chunk):
        yield bytes(chunk)


def test_encrypting_64mb_stream_has_bounded_memory(binding: RecordBinding) -> None:
    total = 64 * 1024 * 1024
    digest = hashlib.sha256()
    length = 0
    tracemalloc.start()
    try:
        for piece in encrypt_stream(DataKey.generate(), binding, _zeros_stream(total, 256 * 1024)):
            digest.update(piece)
            length += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert length == ciphertext_size(total)
    assert peak < 4 * 1024 * 1024, peak


def test_decrypting_64mb_stream_has_bounded_memory(binding: RecordBinding) -> None:
    total = 64 * 1024 * 1024
    key = DataKey.generate()
    out = hashlib.sha256()
    tracemalloc.start()
    try:
        pipeline = decrypt_stream(key, binding, encrypt_stream(key, binding, _zeros_stream(total, 1024 * 1024)))
        for piece in pipeline:
            out.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.digest() == hashlib.sha256(bytes(total)).digest()
    assert peak < 4 * 1024 * 1024, peak
