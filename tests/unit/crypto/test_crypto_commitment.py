"""Salted plaintext commitment."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_service.crypto import COMMITMENT_DOMAIN, PlaintextCommitment, new_salt, verify_commitment
from ledger_service.errors import CryptoError


def _one_shot(salt: bytes, plaintext: bytes) -> bytes:
    return hashlib.sha256(b"consent-ledger/commitment/v1" + salt + plaintext).digest()


def test_salt_is_32_random_bytes() -> None:
    salts = {new_salt() for _ in range(100)}
    assert len(salts) == 100
    assert all(len(s) == 32 for s in salts)


def test_domain() -> None:
    assert COMMITMENT_DOMAIN == b"consent-ledger/commitment/v1"


@given(plaintext=st.binary(max_size=5000), cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=6))
def test_incremental_matches_formula_for_any_chunking(plaintext: bytes, cuts: list[int]) -> None:
    salt = new_salt()
    bounds = [0, *sorted(c % (len(plaintext) + 1) for c in cuts), len(plaintext)]
    hasher = PlaintextCommitment(salt)
    for a, b in itertools.pairwise(bounds):
        hasher.update(plaintext[a:b])
    assert hasher.digest() == _one_shot(salt, plaintext)
    assert len(hasher.digest()) == 32


def test_digest_is_repeatable_and_continues() -> None:
    salt = new_salt()
    hasher = PlaintextCommitment(salt)
    hasher.update(b"ab")
    assert hasher.digest() == hasher.digest() == _one_shot(salt, b"ab")
    hasher.update(b"c")
    assert hasher.digest() == _one_shot(salt, b"abc")


def test_salt_hides_plaintext() -> None:
    assert _one_shot(new_salt(), b"positive") != _one_shot(new_salt(), b"positive")


def test_verify() -> None:
    salt = new_salt()
    expected = _one_shot(salt, b"hello world")
    assert verify_commitment(salt, [b"hello ", b"world"], expected)
    assert not verify_commitment(salt, [b"hello  world"], expected)
    assert not verify_commitment(new_salt(), [b"hello world"], expected)
    assert not verify_commitment(salt, [b"hello world"], expected[:-1])
    assert not verify_commitment(salt, [b"hello world"], b"")


@pytest.mark.parametrize("salt", [b"", b"s" * 31, b"s" * 33])
def test_salt_length_checked(salt: bytes) -> None:
    with pytest.raises(CryptoError):
        PlaintextCommitment(salt)


def test_repr_leaks_nothing() -> None:
    salt = new_salt()
    hasher = PlaintextCommitment(salt)
    hasher.update(b"secret")
    assert salt.hex() not in repr(hasher)
    assert "secret" not in repr(hasher)
