"""The codec's one checksum helper gives exactly what eth-utils gives, for every shape of address."""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_service.codec.primitives import checksum_address, hex_to_bytes, parse_log

raw20 = st.binary(min_size=20, max_size=20)


def outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(value)
    except Exception as exc:  # the same error type for the same bad input
        return "error", type(exc)


@st.composite
def address_text(draw: st.DrawFn) -> str:
    raw = draw(raw20)
    body = draw(st.sampled_from([raw.hex(), raw.hex().upper(), to_checksum_address(raw)[2:]]))
    return draw(st.sampled_from(["0x", "0X", ""])) + body


@settings(max_examples=300, deadline=None)
@given(address_text())
def test_checksum_of_hex_text_equals_eth_utils(text: str) -> None:
    assert checksum_address(text) == to_checksum_address(text)


@settings(max_examples=200, deadline=None)
@given(raw20)
def test_checksum_of_raw_bytes_equals_eth_utils(raw: bytes) -> None:
    assert checksum_address(raw) == to_checksum_address(raw)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=44),
        st.binary(max_size=24),
        address_text().map(lambda t: t[:-1]),
        address_text().map(lambda t: t + "0"),
        address_text().map(lambda t: t.replace(t[-1], "g")),
        address_text().map(lambda t: " " + t),
        address_text().map(lambda t: t + "\n"),
        st.builds(bytearray, raw20),
        st.integers(),
        st.none(),
    )
)
def test_odd_values_behave_like_eth_utils(value: Any) -> None:
    assert outcome(checksum_address, value) == outcome(to_checksum_address, value)


def test_a_mis_checksummed_address_is_normalized_not_refused() -> None:
    good = to_checksum_address("0x" + "ab" * 20)
    flipped = good[:2] + good[2:].swapcase()
    assert checksum_address(flipped) == good == to_checksum_address(flipped)


def test_hex_and_logs_parse_as_the_node_writes_them() -> None:
    assert hex_to_bytes(None) == hex_to_bytes("") == hex_to_bytes("0x") == b""
    assert hex_to_bytes("0x01ff") == hex_to_bytes("01ff") == b"\x01\xff"
    raw = {
        "address": "0x" + "11" * 20,
        "topics": ["0x" + "22" * 32],
        "data": "0x",
        "blockNumber": "0x10",
        "blockHash": "0x" + "33" * 32,
        "transactionHash": "0x" + "44" * 32,
        "logIndex": "0x2",
    }
    assert parse_log(raw) == {
        "address": raw["address"],
        "topics": [b"\x22" * 32],
        "data": b"",
        "blockNumber": 16,
        "blockHash": b"\x33" * 32,
        "transactionHash": b"\x44" * 32,
        "logIndex": 2,
        "removed": False,
    }
