"""Passkey accounts (docs/architecture.md, "Passkey accounts"): a passkey's P-256 public key, and the EIP-712
messages by which one of an account's passkeys adds or removes another. Pure.

An account (``contracts/src/PatientAccount.sol``) signs its own messages in a domain of its own: name
``Consent Ledger Patient Account``, version ``1``, the chain id and the account itself as verifying contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final

from ledger_service.domain.consent import Eip712Domain, TypedMessage
from ledger_service.errors import InvalidPasskey

# The NIST P-256 curve y^2 = x^3 - 3x + b over the prime field of P256_P (SEC 2, section 2.4.2).
P256_P: Final = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
P256_B: Final = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
P256_N: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

ACCOUNT_DOMAIN_NAME: Final = "Consent Ledger Patient Account"
ACCOUNT_DOMAIN_VERSION: Final = "1"

PASSKEY_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    name: [
        {"name": "qx", "type": "bytes32"},
        {"name": "qy", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
    for name in ("AddPasskey", "RemovePasskey")
}


def is_p256_point(x: int, y: int) -> bool:
    """Whether ``(x, y)`` is an affine point of P-256 (coordinates reduced; the zero key is not a point), the
    test OpenZeppelin's ``P256.isValidPublicKey`` makes."""
    if not (0 <= x < P256_P and 0 <= y < P256_P) or (x == 0 and y == 0):
        return False
    return (y * y - (x * x * x - 3 * x + P256_B)) % P256_P == 0


@dataclass(frozen=True)
class Passkey:
    """A passkey's public key: the two 32-byte coordinates of a point of P-256."""

    x: bytes
    y: bytes

    @classmethod
    def of(cls, x: bytes, y: bytes) -> Passkey:
        """The key ``(x, y)``; InvalidPasskey unless both are 32 bytes and the point is on the curve."""
        if len(x) != 32 or len(y) != 32:
            raise InvalidPasskey("a passkey's x and y are 32 bytes each", field="publicKey")
        if not is_p256_point(int.from_bytes(x, "big"), int.from_bytes(y, "big")):
            raise InvalidPasskey("the public key is not a point of the P-256 curve", field="publicKey")
        return cls(x, y)

    def as_dict(self) -> dict[str, str]:
        return {"x": "0x" + self.x.hex(), "y": "0x" + self.y.hex()}


@dataclass(frozen=True)
class AddPasskey(TypedMessage):
    """``AddPasskey(bytes32 qx,bytes32 qy,uint256 nonce,uint256 deadline)``: make ``(qx, qy)`` a passkey too."""

    TYPES: ClassVar[Mapping[str, list[dict[str, str]]]] = PASSKEY_TYPES

    qx: bytes
    qy: bytes
    nonce: int
    deadline: int


@dataclass(frozen=True)
class RemovePasskey(TypedMessage):
    """``RemovePasskey(bytes32 qx,bytes32 qy,uint256 nonce,uint256 deadline)``: stop ``(qx, qy)`` signing."""

    TYPES: ClassVar[Mapping[str, list[dict[str, str]]]] = PASSKEY_TYPES

    qx: bytes
    qy: bytes
    nonce: int
    deadline: int


PasskeyMessage = AddPasskey | RemovePasskey


def account_domain(chain_id: int, account: str) -> Eip712Domain:
    """The EIP-712 domain of one account's own messages."""
    return Eip712Domain(
        chain_id=chain_id, verifying_contract=account, name=ACCOUNT_DOMAIN_NAME, version=ACCOUNT_DOMAIN_VERSION
    )
