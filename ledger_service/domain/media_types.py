"""Record media types: what an upload may declare, and how a read serves the bytes.

A provider's declared type ends up in the ``Content-Type`` of every later read, so it is checked at
upload (RFC 6838 ``type/subtype`` restricted names, RFC 9110 parameters) and a type the product does
not serve as itself is stored as ``application/octet-stream``. Reads map whatever a row holds through
:func:`served_as` again, so a row written before these checks can never put an arbitrary value into a
response header. The policy is described in docs/security.md ("Record media types").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ledger_service.errors import InvalidMediaType

OCTET_STREAM: Final = "application/octet-stream"
MAX_MEDIA_TYPE_LENGTH: Final = 255


@dataclass(frozen=True)
class ServedType:
    """How a read serves one allowlisted type: the file extension of its download, and whether a
    browser may show it inline (only types a browser renders as inert text)."""

    extension: str
    inline: bool = False


# The one allowlist: media types served as themselves. Everything else well-formed is stored and
# served as application/octet-stream. JSON is the only kind shown inline: a browser renders it as text,
# never as a document that runs script; PDF, XML, images and even text/plain are downloads.
SERVED_MEDIA_TYPES: Final[dict[str, ServedType]] = {
    "application/fhir+json": ServedType(".json", inline=True),
    "application/json": ServedType(".json", inline=True),
    "application/fhir+xml": ServedType(".xml"),
    "application/pdf": ServedType(".pdf"),
    "application/dicom": ServedType(".dcm"),
    "image/png": ServedType(".png"),
    "image/jpeg": ServedType(".jpg"),
    "image/tiff": ServedType(".tiff"),
    "text/plain": ServedType(".txt"),
    "text/csv": ServedType(".csv"),
    OCTET_STREAM: ServedType(".bin"),
}

# RFC 6838 4.2: restricted-name = (ALPHA / DIGIT) *126restricted-name-chars
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
# RFC 9110 5.6.2 token, 5.6.4 quoted-string (visible ASCII only: no obs-text, never CR or LF)
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED_STRING = r'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
_ESSENCE = re.compile(rf"(?P<type>{_RESTRICTED_NAME})/(?P<subtype>{_RESTRICTED_NAME})")
# RFC 9110 8.3.1: *( OWS ";" OWS [ parameter ] ), so an empty one (``text/plain;``) is allowed
_PARAMETER = re.compile(rf"[ \t]*;[ \t]*(?:(?P<name>{_TCHARS})=(?P<value>{_TCHARS}|{_QUOTED_STRING}))?")


@dataclass(frozen=True)
class MediaType:
    """A parsed media type: lower-case type and subtype, parameters in order (lower-case names)."""

    type: str
    subtype: str
    parameters: tuple[tuple[str, str], ...] = ()

    @property
    def essence(self) -> str:
        return f"{self.type}/{self.subtype}"

    def __str__(self) -> str:
        return self.essence + "".join(f"; {name}={value}" for name, value in self.parameters)


def parse_media_type(raw: str) -> MediaType:
    """Parse ``type/subtype *(; name=value)``; anything else raises :class:`InvalidMediaType`."""
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_MEDIA_TYPE_LENGTH:
        raise InvalidMediaType(f"mediaType must be 1 to {MAX_MEDIA_TYPE_LENGTH} characters", field="mediaType")
    text = raw.strip(" \t")
    essence = _ESSENCE.match(text)
    if essence is None:
        raise InvalidMediaType(f"mediaType {_shown(raw)} is not type/subtype (RFC 6838)", field="mediaType")
    position, parameters, names = essence.end(), [], set()
    while position < len(text):
        parameter = _PARAMETER.match(text, position)
        if parameter is None:
            raise InvalidMediaType(
                f"mediaType {_shown(raw)} has a malformed parameter at character {position + 1}", field="mediaType"
            )
        position = parameter.end()
        if parameter["name"] is None:
            continue
        name = parameter["name"].lower()
        if name in names:
            raise InvalidMediaType(f"mediaType {_shown(raw)} repeats the parameter {name!r}", field="mediaType")
        names.add(name)
        parameters.append((name, parameter["value"]))
    return MediaType(essence["type"].lower(), essence["subtype"].lower(), tuple(parameters))


def stored_media_type(declared: str) -> str:
    """The type an upload is stored as: its canonical form if allowlisted, else application/octet-stream.

    A malformed declaration raises :class:`InvalidMediaType` (nothing is stored).
    """
    parsed = parse_media_type(declared)
    return str(parsed) if parsed.essence in SERVED_MEDIA_TYPES else OCTET_STREAM


def media_type_essence(media_type: str) -> str:
    """``type/subtype`` of a stored media type (what FHIR validation keys on), "" if malformed."""
    try:
        return parse_media_type(media_type).essence
    except InvalidMediaType:
        return ""


def served_as(stored: str) -> tuple[str, ServedType]:
    """The ``Content-Type`` a read answers with and how it is served; never raises.

    A stored value that is malformed (a row from before upload validation, or edited in the DB) or not
    allowlisted is served as application/octet-stream, so no stored text can reach a header as is.
    """
    try:
        parsed = parse_media_type(stored)
    except InvalidMediaType:
        return OCTET_STREAM, SERVED_MEDIA_TYPES[OCTET_STREAM]
    served = SERVED_MEDIA_TYPES.get(parsed.essence)
    if served is None:
        return OCTET_STREAM, SERVED_MEDIA_TYPES[OCTET_STREAM]
    return str(parsed), served


def served_media_type(stored: str) -> str:
    return served_as(stored)[0]


def _shown(raw: str) -> str:
    """The declared value for an error message: escaped (CR/LF visible) and cut short."""
    return repr(raw[:64] + ("…" if len(raw) > 64 else ""))
