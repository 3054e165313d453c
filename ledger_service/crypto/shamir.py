"""Shamir secret sharing over GF(2^8), bytewise (threshold custody of record data keys).

The field is GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1 (0x11b), the field of the
npm package ``shamir-secret-sharing`` the portal uses, and shares have its layout::

    share = y_0 .. y_{n-1} || x        (n = len(secret), x in 1..255)

so a share split here combines in the browser and the reverse. :func:`split` gives custodian ``i``
(1-based) the share with ``x = i``; :func:`combine` interpolates at ``x = 0`` from any ``threshold``
or more shares.

Side channels: CPython is not constant-time, so this is best effort where it is cheap. The log/exp
tables are only ever indexed by *public* values (share x coordinates, when computing Lagrange
weights); every product that involves a secret byte (polynomial coefficients, y values) goes
through :func:`_mul_public`, a branch-free shift-and-xor loop, so no table index or branch depends
on secret data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Final

from ledger_service.errors import KeyShareError

__all__ = ["MAX_SHARES", "combine", "split"]

#: x runs over the non-zero field elements, so at most 255 shares.
MAX_SHARES: Final = 255

_POLYNOMIAL: Final = 0x11B
_GENERATOR: Final = 0x03  # 3 generates GF(2^8)* under 0x11b (0xe5, the npm package's choice, too)


def _xtime_public(a: int, b: int) -> int:
    """a * b in GF(2^8) by the textbook loop; used only to build the tables at import."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        a <<= 1
        if a & 0x100:
            a ^= _POLYNOMIAL
        b >>= 1
    return product


def _build_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    exp = [0] * 510  # doubled so exp[log a + log b] needs no reduction mod 255
    log = [0] * 256
    value = 1
    for power in range(255):
        exp[power] = value
        log[value] = power
        value = _xtime_public(value, _GENERATOR)
    if value != 1 or len(set(exp[:255])) != 255:  # pragma: no cover - a wrong generator
        raise AssertionError("GF(2^8) generator does not generate the multiplicative group")
    for power in range(255, 510):
        exp[power] = exp[power - 255]
    return tuple(exp), tuple(log)


_EXP, _LOG = _build_tables()


def _mul_table(a: int, b: int) -> int:
    """a * b for public operands (x coordinates and Lagrange weights)."""
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def _inv_table(a: int) -> int:
    """1 / a for a public non-zero operand."""
    return _EXP[255 - _LOG[a]]


def _mul_public(secret: int, public: int) -> int:
    """secret * public in GF(2^8), without a branch or table index on ``secret``.

    Eight rounds whatever the operands: add ``secret`` under a mask made from the public bit,
    then multiply ``secret`` by x with a mask made from its top bit (no ``if``).
    """
    product = 0
    for bit in range(8):
        product ^= secret & -((public >> bit) & 1)
        secret = ((secret << 1) ^ (_POLYNOMIAL & -(secret >> 7))) & 0xFF
    return product


def split(
    secret: bytes,
    threshold: int,
    total: int,
    *,
    random: Callable[[int], bytes] = os.urandom,
) -> list[bytes]:
    """Split ``secret`` into ``total`` shares, any ``threshold`` of which recover it.

    Returns share ``i`` (x = i, i = 1..total) at list index ``i - 1``, each ``len(secret) + 1``
    bytes. ``random(n)`` supplies the polynomial coefficients, called once with
    ``n = len(secret) * (threshold - 1)``: byte ``k`` of the secret uses coefficients
    ``random_bytes[k*(t-1) : (k+1)*(t-1)]`` for x^1 .. x^(t-1). Tests and vectors pass a
    deterministic ``random``; everything else keeps the OS CSPRNG.
    """
    if not isinstance(secret, (bytes, bytearray)) or len(secret) == 0:
        raise KeyShareError("secret to split must be non-empty bytes")
    if not 2 <= threshold <= total <= MAX_SHARES:
        raise KeyShareError(f"need 2 <= threshold <= total <= {MAX_SHARES}, got threshold {threshold}, total {total}")
    degree = threshold - 1
    wanted = len(secret) * degree
    coefficients = random(wanted)
    if not isinstance(coefficients, (bytes, bytearray)) or len(coefficients) != wanted:
        raise KeyShareError(f"randomness source returned the wrong number of bytes (wanted {wanted})")

    shares = [bytearray(len(secret) + 1) for _ in range(total)]
    for k, secret_byte in enumerate(secret):
        poly = coefficients[k * degree : (k + 1) * degree]
        for index, share in enumerate(shares):
            x = index + 1
            # Horner from the highest coefficient down to the secret at x^0.
            y = 0
            for coefficient in reversed(poly):
                y = _mul_public(y, x) ^ coefficient
            share[k] = _mul_public(y, x) ^ secret_byte
    for index, share in enumerate(shares):
        share[-1] = index + 1
    return [bytes(share) for share in shares]


def combine(shares: Sequence[bytes]) -> bytes:
    """Recover the secret from ``threshold`` or more shares (Lagrange interpolation at x = 0).

    Any number of consistent shares >= the threshold gives the secret; fewer gives unrelated
    bytes (that is the scheme: it cannot tell). Shape errors raise :class:`KeyShareError`.
    """
    if len(shares) < 2:
        raise KeyShareError(f"need at least 2 key shares to combine, got {len(shares)}")
    if len(shares) > MAX_SHARES:
        raise KeyShareError(f"at most {MAX_SHARES} key shares can be combined, got {len(shares)}")
    for share in shares:
        if not isinstance(share, (bytes, bytearray)):
            raise KeyShareError("every key share must be bytes")
    length = len(shares[0])
    if length < 2:
        raise KeyShareError(f"a key share has at least 2 bytes (y and x), got {length}")
    if any(len(share) != length for share in shares):
        lengths = sorted({len(share) for share in shares})
        raise KeyShareError(f"key shares have different lengths: {lengths}")
    xs = [share[-1] for share in shares]
    if 0 in xs:
        raise KeyShareError("a key share has x = 0 (that point would be the secret itself)")
    if len(set(xs)) != len(xs):
        raise KeyShareError("two key shares have the same x coordinate")

    # Lagrange weight of share j at 0: prod_{m != j} x_m / (x_m - x_j); subtraction is xor.
    weights = []
    for j, x_j in enumerate(xs):
        weight = 1
        for m, x_m in enumerate(xs):
            if m != j:
                weight = _mul_table(weight, _mul_table(x_m, _inv_table(x_m ^ x_j)))
        weights.append(weight)

    secret = bytearray(length - 1)
    for share, weight in zip(shares, weights, strict=True):
        for k in range(length - 1):
            secret[k] ^= _mul_public(share[k], weight)
    return bytes(secret)
