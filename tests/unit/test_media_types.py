"""Record media types: RFC 6838 syntax at upload, the allowlist, and a read path that never fails."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_service.domain.media_types import (
    OCTET_STREAM,
    SERVED_MEDIA_TYPES,
    parse_media_type,
    served_as,
    stored_media_type,
)
from ledger_service.errors import InvalidMediaType, ValidationError

# What may stand in a header value: visible ASCII, space and tab (RFC 9110 5.5), never CR, LF or NUL.
HEADER_SAFE = re.compile(r"[\t\x20-\x7e]*")


@pytest.mark.parametrize(
    ("declared", "stored"),
    [
        ("application/fhir+json", "application/fhir+json"),
        ("Application/PDF", "application/pdf"),
        ("text/plain; charset=UTF-8", "text/plain; charset=UTF-8"),
        ('text/plain ;Charset="utf-8"', 'text/plain; charset="utf-8"'),
        ("text/plain;", "text/plain"),
        ("application/fhir+json; fhirVersion=4.0", "application/fhir+json; fhirversion=4.0"),
        ("application/dicom", "application/dicom"),
        # well-formed, not served as itself: a browser would render or run these
        ("text/html", OCTET_STREAM),
        ("image/svg+xml", OCTET_STREAM),
        ("application/javascript", OCTET_STREAM),
        ("application/xhtml+xml; charset=utf-8", OCTET_STREAM),
        ("application/vnd.ms-excel", OCTET_STREAM),
    ],
)
def test_a_well_formed_type_is_stored_canonical_or_as_octet_stream(declared: str, stored: str) -> None:
    assert stored_media_type(declared) == stored


@pytest.mark.parametrize(
    "declared",
    [
        "text/plain\r\nSet-Cookie: x=y",
        "text/plain\nX-Injected: 1",
        "text/plain; charset=utf-8\r\n",
        'text/plain; x="a\rb"',
        "text/plain\x00",
        "",
        "text",
        "text/",
        "/plain",
        "text/plain/extra",
        "-text/plain",
        "text/pl ain",
        "text/plain; charset",
        "text/plain; charset=",
        "text/plain; a=1; A=2",
        'text/plain; x="unterminated',
        "text/plain; x=ü",
        "t" * 128 + "/plain",
        "text/plain; x=" + "a" * 250,
    ],
)
def test_a_malformed_type_is_refused(declared: str) -> None:
    with pytest.raises(InvalidMediaType) as refused:
        stored_media_type(declared)
    assert isinstance(refused.value, ValidationError)  # a 4xx family, never a 5xx
    assert refused.value.details["field"] == "mediaType"
    assert "\r" not in str(refused.value) and "\n" not in str(refused.value)  # shown escaped


def test_every_allowlisted_type_parses_to_itself() -> None:
    for essence in SERVED_MEDIA_TYPES:
        assert str(parse_media_type(essence)) == essence
        assert served_as(essence)[0] == essence


def test_only_json_is_served_inline() -> None:
    inline = {essence for essence, served in SERVED_MEDIA_TYPES.items() if served.inline}
    assert inline == {"application/json", "application/fhir+json"}


@given(st.text(max_size=300))
def test_whatever_a_row_holds_is_served_as_a_header_safe_allowlisted_type(stored: str) -> None:
    media_type, served = served_as(stored)
    assert HEADER_SAFE.fullmatch(media_type), media_type
    assert parse_media_type(media_type).essence in SERVED_MEDIA_TYPES
    assert SERVED_MEDIA_TYPES[parse_media_type(media_type).essence] == served


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=80))
def test_an_accepted_declaration_is_stable_and_header_safe(declared: str) -> None:
    try:
        stored = stored_media_type(declared)
    except InvalidMediaType:
        return
    assert HEADER_SAFE.fullmatch(stored), stored
    assert stored_media_type(stored) == stored
    assert served_as(stored)[0] == stored
