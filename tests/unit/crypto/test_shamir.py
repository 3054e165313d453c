"""Shamir secret sharing over GF(2^8): field arithmetic, round trips, secrecy of one share, errors."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_service.crypto import shamir
from ledger_service.crypto.shamir import _mul_public, _mul_table, combine, split
from ledger_service.errors import CryptoError, KeyShareError

KEY = bytes(range(1, 33))


def _fixed(data: bytes):  # type: ignore[no-untyped-def]
    def random(n: int) -> bytes:
        assert n == len(data)
        return data

    return random


# ----------------------------------------------------------------- the field


def test_field_matches_fips197_examples() -> None:
    # FIPS-197 section 4.2: {57} * {83} = {c1}, {57} * {13} = {fe} under x^8+x^4+x^3+x+1.
    assert _mul_public(0x57, 0x83) == _mul_table(0x57, 0x83) == 0xC1
    assert _mul_public(0x57, 0x13) == _mul_table(0x57, 0x13) == 0xFE


def test_branch_free_multiply_agrees_with_tables_everywhere() -> None:
    for a in range(256):
        for b in range(256):
            assert _mul_public(a, b) == _mul_table(a, b)


@pytest.mark.parametrize("generator", [0x03, 0xE5])
def test_both_generators_span_the_same_field(generator: int) -> None:
    seen, value = set(), 1
    for _ in range(255):
        seen.add(value)
        value = _mul_public(value, generator)
    assert value == 1 and seen == set(range(1, 256))


# ----------------------------------------------------------------- layout and round trips


def test_split_layout_is_y_then_x_equal_to_the_custodian_index() -> None:
    shares = split(KEY, 2, 3)
    assert [len(s) for s in shares] == [33, 33, 33]
    assert [s[-1] for s in shares] == [1, 2, 3]


def test_two_of_three_with_fixed_randomness_is_the_line_through_the_secret() -> None:
    coefficients = bytes(range(100, 132))
    shares = split(KEY, 2, 3, random=_fixed(coefficients))
    for x, share in enumerate(shares, start=1):
        expected = bytes(s ^ _mul_table(c, x) for s, c in zip(KEY, coefficients, strict=True))
        assert share == expected + bytes([x])
    assert shares[0][:32] == bytes(s ^ c for s, c in zip(KEY, coefficients, strict=True))  # x = 1


@settings(max_examples=25, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32))
def test_two_of_three_every_subset_recovers(secret: bytes) -> None:
    shares = split(secret, 2, 3)
    for size in (2, 3):
        for subset in itertools.permutations(shares, size):
            assert combine(subset) == secret


@settings(max_examples=10, deadline=None)
@given(secret=st.binary(min_size=1, max_size=64))
def test_three_of_five_every_subset_of_three_or_more_recovers(secret: bytes) -> None:
    shares = split(secret, 3, 5)
    for size in (3, 4, 5):
        for subset in itertools.combinations(shares, size):
            assert combine(subset) == secret


def test_three_of_five_two_shares_do_not_recover() -> None:
    shares = split(KEY, 3, 5, random=_fixed(bytes(range(1, 65))))
    for pair in itertools.combinations(shares, 2):
        assert combine(pair) != KEY


def test_each_split_uses_fresh_randomness() -> None:
    assert split(KEY, 2, 3) != split(KEY, 2, 3)


def test_split_accepts_the_largest_share_count() -> None:
    shares = split(b"\x42", 2, 255)
    assert [s[-1] for s in shares] == list(range(1, 256))
    assert combine([shares[0], shares[254]]) == b"\x42"


# ----------------------------------------------------------------- secrecy and integrity


def test_one_share_of_two_of_three_is_consistent_with_every_secret_byte() -> None:
    # For each custodian x and each secret byte, the 256 possible coefficients give 256 different
    # share bytes: whatever a single share shows, every secret is equally likely behind it.
    for secret_byte in range(256):
        seen: list[set[int]] = [set(), set(), set()]
        for coefficient in range(256):
            shares = split(bytes([secret_byte]), 2, 3, random=_fixed(bytes([coefficient])))
            for index, share in enumerate(shares):
                seen[index].add(share[0])
        assert all(values == set(range(256)) for values in seen), secret_byte


@pytest.mark.parametrize("position", [0, 17, 31])
def test_tampered_share_gives_a_different_secret(position: int) -> None:
    shares = split(KEY, 2, 3)
    tampered = bytearray(shares[1])
    tampered[position] ^= 0x01
    result = combine([shares[0], bytes(tampered)])
    assert result != KEY
    assert [i for i in range(32) if result[i] != KEY[i]] == [position]


def test_changed_x_gives_a_different_secret() -> None:
    shares = split(KEY, 2, 3)
    moved = shares[1][:32] + b"\x07"
    assert combine([shares[0], moved]) != KEY


# ----------------------------------------------------------------- errors


def test_error_family() -> None:
    assert issubclass(KeyShareError, CryptoError)


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        ([], "at least 2"),
        ([split(KEY, 2, 3)[0]], "at least 2"),
        ([split(KEY, 2, 3)[0], split(KEY, 2, 3)[0]], "same x"),
        ([KEY + b"\x00", split(KEY, 2, 3)[1]], "x = 0"),
        ([split(KEY, 2, 3)[0], split(KEY[:16], 2, 3)[1]], "different lengths"),
        ([b"\x01", b"\x02"], "at least 2 bytes"),
        (["not bytes", "at all"], "must be bytes"),
        ([bytes([1, x]) for x in range(1, 256)] * 2, "at most 255"),
    ],
)
def test_combine_rejects_unusable_shares(shares: list[bytes], message: str) -> None:
    with pytest.raises(KeyShareError, match=message):
        combine(shares)


def test_combine_error_does_not_echo_share_bytes() -> None:
    share = split(KEY, 2, 3)[0]
    with pytest.raises(KeyShareError) as caught:
        combine([share, share])
    assert share.hex() not in str(caught.value) and share[:8].hex() not in repr(caught.value.details)


@pytest.mark.parametrize(
    ("secret", "threshold", "total"),
    [
        (b"", 2, 3),
        (KEY, 1, 3),
        (KEY, 4, 3),
        (KEY, 2, 256),
        (KEY, 0, 0),
    ],
)
def test_split_rejects_bad_parameters(secret: bytes, threshold: int, total: int) -> None:
    with pytest.raises(KeyShareError):
        split(secret, threshold, total)


def test_split_rejects_a_short_randomness_source() -> None:
    with pytest.raises(KeyShareError, match="wrong number of bytes"):
        split(KEY, 2, 3, random=lambda n: os.urandom(n - 1))


def test_max_shares_constant() -> None:
    assert shamir.MAX_SHARES == 255
