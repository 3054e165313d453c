"""Purpose-of-use codes, record categories and the bytes32 encodings the contracts use."""

from __future__ import annotations

from typing import Final

from eth_utils import keccak

from ledger_service.errors import ValidationError

# HL7 v3 PurposeOfUse codes the ledger knows. ETREAT is only reachable by break-glass.
PURPOSES: Final = ("TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HRESCH", "PATRQT", "PUBHLTH")
GRANTABLE_PURPOSES: Final = tuple(p for p in PURPOSES if p != "ETREAT")
EMERGENCY_PURPOSE: Final = "ETREAT"
# The patient's own request for their record (right of access): the one purpose a patient reads for, without consent.
PATIENT_REQUEST_PURPOSE: Final = "PATRQT"

PURPOSE_DISPLAY: Final = {
    "TREAT": "Treatment",
    "ETREAT": "Emergency treatment",
    "HPAYMT": "Healthcare payment",
    "HOPERAT": "Healthcare operations",
    "HRESCH": "Healthcare research",
    "PATRQT": "Patient requested",
    "PUBHLTH": "Public health",
}

# Categories registered by the contract's constructor; admins may register more.
DEFAULT_CATEGORIES: Final = ("laboratory", "imaging", "medication", "clinical-note")

ZERO32: Final = b"\x00" * 32

# The contract's AccessControl role ids (``keccak256("PROVIDER_ROLE")``, ...), by the names operators use.
DEFAULT_ADMIN_ROLE: Final = ZERO32
PROVIDER_ROLE: Final = keccak(b"PROVIDER_ROLE")
AUDITOR_ROLE: Final = keccak(b"AUDITOR_ROLE")
CUSTODIAN_ROLE: Final = keccak(b"CUSTODIAN_ROLE")
EMERGENCY_ROLE: Final = keccak(b"EMERGENCY_ROLE")
ROLES: Final = {
    "admin": DEFAULT_ADMIN_ROLE,
    "provider": PROVIDER_ROLE,
    "auditor": AUDITOR_ROLE,
    "custodian": CUSTODIAN_ROLE,
    "emergency": EMERGENCY_ROLE,
}


def purpose_to_bytes32(code: str) -> bytes:
    """``bytes32("TREAT")``: ASCII, left-aligned, zero-padded."""
    if code not in PURPOSES:
        raise ValidationError(f"unknown purpose {code!r}; expected one of {', '.join(PURPOSES)}", field="purpose")
    return code.encode("ascii").ljust(32, b"\x00")


def purpose_from_bytes32(raw: bytes) -> str:
    code = raw.rstrip(b"\x00").decode("ascii", errors="replace")
    return code


def category_id(code: str) -> bytes:
    """``keccak256(bytes(code))``."""
    if not code or len(code) > 64 or not all(c.isalnum() or c in "-_." for c in code):
        raise ValidationError(f"invalid category code {code!r}", field="category")
    return keccak(code.encode("ascii"))


def parse_bytes32(value: str, field: str) -> bytes:
    """A 0x-prefixed 32-byte hex string, as the API and the chain use for ids."""
    if not isinstance(value, str) or not value.startswith(("0x", "0X")) or len(value) != 66:
        raise ValidationError(f"{field} must be 0x followed by 64 hex digits", field=field)
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise ValidationError(f"{field} must be 0x followed by 64 hex digits", field=field) from exc


def hex32(raw: bytes) -> str:
    return "0x" + raw.hex()
