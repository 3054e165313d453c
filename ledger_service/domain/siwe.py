"""Sign-In with Ethereum (EIP-4361) messages: parsing and the checks on their fields.

Pure: the caller supplies the expected origins, chain id and the current time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from eth_utils import is_checksum_address

from ledger_service.errors import LedgerError

NONCE_RE = re.compile(r"^[A-Za-z0-9]{8,}$")

_HEADER = re.compile(
    r"^(?:(?P<scheme>[a-zA-Z][a-zA-Z0-9+\-.]*)://)?(?P<domain>[^\s/]+)"
    r" wants you to sign in with your Ethereum account:$"
)
_FIELDS = ("URI", "Version", "Chain ID", "Nonce", "Issued At", "Expiration Time", "Not Before", "Request ID")


class SiweError(LedgerError):
    """A sign-in message that is malformed or does not fit this server."""

    code = "invalid-sign-in"


@dataclass(frozen=True)
class SiweMessage:
    domain: str
    address: str
    statement: str | None
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime | None
    not_before: datetime | None
    request_id: str | None
    resources: tuple[str, ...]
    scheme: str | None = None


def _timestamp(value: str, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SiweError(f"{field} is not an RFC 3339 date-time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise SiweError(f"{field} must carry a time zone")
    return parsed.astimezone(UTC)


def parse(message: str) -> SiweMessage:
    """Parse an EIP-4361 message; raises SiweError naming the first problem."""
    if len(message) > 8192:
        raise SiweError("sign-in message too long")
    lines = message.split("\n")
    if len(lines) < 7:
        raise SiweError("not an EIP-4361 message")
    header = _HEADER.match(lines[0])
    if header is None:
        raise SiweError("first line must be '<domain> wants you to sign in with your Ethereum account:'")
    address = lines[1]
    if not is_checksum_address(address):
        raise SiweError("address must be an EIP-55 checksummed address")
    if lines[2] != "":
        raise SiweError("expected an empty line after the address")
    index = 3
    statement = None
    if lines[index] != "" and not lines[index].startswith("URI: "):
        statement = lines[index]
        index += 1
    if index < len(lines) and lines[index] == "":
        index += 1
    fields: dict[str, str] = {}
    resources: list[str] = []
    expected_order = list(_FIELDS)
    while index < len(lines):
        line = lines[index]
        index += 1
        if line == "Resources:":
            while index < len(lines) and lines[index].startswith("- "):
                resources.append(lines[index][2:])
                index += 1
            continue
        if line == "" and index == len(lines):
            break
        name, sep, value = line.partition(": ")
        if not sep or name not in expected_order:
            raise SiweError(f"unexpected line in sign-in message: {line[:80]!r}")
        # Fields come in the order EIP-4361 fixes; anything else is a different message.
        expected_order = expected_order[expected_order.index(name) + 1 :]
        fields[name] = value
    for required in ("URI", "Version", "Chain ID", "Nonce", "Issued At"):
        if required not in fields:
            raise SiweError(f"sign-in message lacks {required}")
    if fields["Version"] != "1":
        raise SiweError("Version must be 1")
    if not NONCE_RE.match(fields["Nonce"]):
        raise SiweError("Nonce must be at least 8 alphanumeric characters")
    try:
        chain_id = int(fields["Chain ID"])
    except ValueError as exc:
        raise SiweError("Chain ID must be a number") from exc
    return SiweMessage(
        domain=header.group("domain"),
        address=address,
        statement=statement,
        uri=fields["URI"],
        version=fields["Version"],
        chain_id=chain_id,
        nonce=fields["Nonce"],
        issued_at=_timestamp(fields["Issued At"], "Issued At"),
        expiration_time=_timestamp(fields["Expiration Time"], "Expiration Time")
        if "Expiration Time" in fields
        else None,
        not_before=_timestamp(fields["Not Before"], "Not Before") if "Not Before" in fields else None,
        request_id=fields.get("Request ID"),
        resources=tuple(resources),
        scheme=header.group("scheme"),
    )


def check(
    message: SiweMessage,
    *,
    origins: Sequence[str],
    chain_id: int,
    now: datetime,
    max_skew_seconds: int = 300,
    max_age_seconds: int = 900,
) -> None:
    """Raise SiweError unless the message is for this server, chain and moment.

    ``origins`` are this server's own (``scheme://host[:port]``, from its settings): the message's
    domain (and scheme, if it names one) must be one of them and its URI must be on that origin.
    """
    matching = [
        origin
        for origin in origins
        if origin.split("://", 1)[1] == message.domain
        and (message.scheme is None or message.scheme == origin.split("://", 1)[0])
    ]
    if not matching:
        expected = " or ".join(repr(origin.split("://", 1)[1]) for origin in origins)
        raise SiweError(f"message is for domain {message.domain!r}, expected {expected}")
    if not any(message.uri == origin or message.uri.startswith(origin.rstrip("/") + "/") for origin in matching):
        raise SiweError(f"message URI {message.uri!r} is not on {' or '.join(repr(o) for o in matching)}")
    if message.chain_id != chain_id:
        raise SiweError(f"message is for chain {message.chain_id}, expected {chain_id}")
    skew = max_skew_seconds
    if (message.issued_at - now).total_seconds() > skew:
        raise SiweError("Issued At is in the future")
    if (now - message.issued_at).total_seconds() > max_age_seconds:
        raise SiweError("message was issued too long ago; sign in again")
    if message.expiration_time is not None and message.expiration_time <= now:
        raise SiweError("message has expired")
    if message.not_before is not None and (message.not_before - now).total_seconds() > skew:
        raise SiweError("message is not valid yet (Not Before)")


def render(message: SiweMessage) -> str:
    """The canonical EIP-4361 text of a message (used by tests and the demo client)."""
    lines = [f"{message.domain} wants you to sign in with your Ethereum account:", message.address, ""]
    if message.statement is not None:
        lines += [message.statement, ""]
    else:
        lines += [""]
    lines += [
        f"URI: {message.uri}",
        f"Version: {message.version}",
        f"Chain ID: {message.chain_id}",
        f"Nonce: {message.nonce}",
        f"Issued At: {message.issued_at.strftime('%Y-%m-%dT%H:%M:%SZ')}",
    ]
    if message.expiration_time is not None:
        lines.append(f"Expiration Time: {message.expiration_time.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    if message.not_before is not None:
        lines.append(f"Not Before: {message.not_before.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    if message.request_id is not None:
        lines.append(f"Request ID: {message.request_id}")
    if message.resources:
        lines.append("Resources:")
        lines += [f"- {r}" for r in message.resources]
    return "\n".join(lines)
