"""The passkey accounts' pure parts: the P-256 key check, the account's EIP-712 digests and ERC-6492 wrappers."""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from eth_abi.exceptions import ValueOutOfBounds
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from ledger_service.codec import eip712, erc6492
from ledger_service.codec.erc6492 import ERC6492_MAGIC, Erc6492Signature
from ledger_service.domain.consent import typed_data
from ledger_service.domain.passkeys import (
    P256_P,
    AddPasskey,
    Passkey,
    RemovePasskey,
    account_domain,
    is_p256_point,
)
from ledger_service.errors import InvalidPasskey
from tests.security.independent_client import ACCOUNT_DOMAIN_NAME, Eip712

GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5


def test_the_curve_check_takes_points_and_nothing_else() -> None:
    assert is_p256_point(GX, GY)
    for _ in range(20):
        numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
        assert is_p256_point(numbers.x, numbers.y)
        assert not is_p256_point(numbers.x, numbers.y ^ 1)
    assert not is_p256_point(0, 0)
    assert not is_p256_point(GX + P256_P, GY)  # the same point, unreduced: OpenZeppelin refuses it too
    with pytest.raises(InvalidPasskey, match="32 bytes"):
        Passkey.of(b"\x01" * 31, b"\x01" * 32)
    with pytest.raises(InvalidPasskey, match="not a point"):
        Passkey.of(b"\x00" * 32, b"\x00" * 32)


@pytest.mark.parametrize("kind", [AddPasskey, RemovePasskey])
def test_the_account_digest_is_eth_accounts_and_the_independent_clients(kind: type) -> None:
    account = "0x" + secrets.token_hex(20)
    domain = account_domain(31337, account)
    message = kind(secrets.token_bytes(32), secrets.token_bytes(32), secrets.randbits(256), secrets.randbits(64))
    signable = encode_typed_data(full_message=typed_data(domain, message))
    reference = bytes(keccak(b"\x19" + signable.version + signable.header + signable.body))
    assert eip712.digest(domain, message) == reference
    independent = Eip712(31337, account, ACCOUNT_DOMAIN_NAME).digest(kind.__name__, message.message())
    assert independent == reference
    with pytest.raises(ValueOutOfBounds, match="256 bits"):  # eth-abi's own error, as for the ledger's messages
        eip712.digest(domain, kind(message.qx, message.qy, -1, 0))


def test_an_erc6492_wrapper_is_read_only_in_its_one_encoding() -> None:
    signature = Erc6492Signature("0x" + "ab" * 20, b"\x12" * 68, b"\x34" * 480)
    wrapped = erc6492.wrap(signature)
    assert wrapped.endswith(ERC6492_MAGIC) and erc6492.is_erc6492(wrapped)
    unwrapped = erc6492.unwrap(wrapped)
    assert unwrapped is not None and unwrapped.factory_calldata == signature.factory_calldata
    assert unwrapped.signature == signature.signature and unwrapped.factory.lower() == signature.factory
    assert erc6492.unwrap(wrapped[:-32]) is None  # no magic
    assert erc6492.unwrap(wrapped[:-32] + b"\x00" + ERC6492_MAGIC) is None  # a trailing byte
    assert erc6492.unwrap(b"\x00" * 64 + ERC6492_MAGIC) is None  # not abi.encode(address, bytes, bytes)
    assert not erc6492.is_erc6492(ERC6492_MAGIC)  # the magic alone wraps nothing
