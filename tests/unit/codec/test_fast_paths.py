"""The verifier's fast paths give exactly what the reference code gives: consent ids, version hashes, log decoding."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_service.chain.ledger import ledger_codec
from ledger_service.codec.abi import ContractCodec
from ledger_service.codec.logs import FastLogDecoder
from ledger_service.codec.primitives import parse_log
from ledger_service.domain.consent import consent_id, fast_consent_id
from ledger_service.domain.records import RecordVersion, chain_breaks, fast_version_hash, version_hash

CODEC = ledger_codec()
FAST = FastLogDecoder(CODEC, parse_log)
raw20 = st.binary(min_size=20, max_size=20)
word = st.binary(min_size=32, max_size=32)


@st.composite
def address_text(draw: st.DrawFn) -> str:
    """An address as callers pass it: lowercase, checksummed or upper-case hex after ``0x``."""
    raw = draw(raw20)
    form = draw(st.sampled_from(["lower", "checksum", "upper"]))
    if form == "checksum":
        return to_checksum_address(raw)
    text = raw.hex()
    return "0x" + (text.upper() if form == "upper" else text)


def outcome(fn: Any, *args: Any, **kw: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args, **kw)
    except Exception as exc:  # the same error type for the same bad input
        return "error", type(exc)


@settings(max_examples=300, deadline=None)
@given(address_text(), address_text(), word, word)
def test_fast_consent_id_equals_the_abi_encoded_one(patient: str, grantee: str, scope: bytes, purpose: bytes) -> None:
    assert fast_consent_id(patient, grantee, scope, purpose) == consent_id(patient, grantee, scope, purpose)


@pytest.mark.parametrize(
    ("patient", "scope"),
    [
        ("ab" * 20, b"\x01" * 32),  # no 0x prefix: the slow path's own handling
        ("0X" + "AB" * 20, b"\x01" * 32),
        ("0x" + "ab" * 19 + " a", b"\x01" * 32),  # whitespace that bytes.fromhex would skip
        ("0x" + "zz" * 20, b"\x01" * 32),
        ("0x" + "ab" * 20, b"\x01" * 31),  # a short bytes32: eth-abi pads it
        ("0x" + "ab" * 20, b"\x01" * 33),
        (b"\xab" * 20, b"\x01" * 32),
        ("0x" + "ab" * 21, b"\x01" * 32),
    ],
)
def test_fast_consent_id_odd_inputs_behave_like_the_reference(patient: Any, scope: Any) -> None:
    grantee, purpose = "0x" + "cd" * 20, b"TREAT".ljust(32, b"\x00")
    assert outcome(fast_consent_id, patient, grantee, scope, purpose) == outcome(
        consent_id, patient, grantee, scope, purpose
    )


versions = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=200, deadline=None)
@given(word, versions, address_text(), address_text(), word, st.binary(max_size=80), word, word)
def test_fast_version_hash_equals_the_abi_encoded_one(
    rid: bytes, version: int, patient: str, author: str, category: bytes, cid: bytes, commitment: bytes, prev: bytes
) -> None:
    kw = dict(
        record_id=rid,
        version=version,
        patient=patient,
        author=author,
        category=category,
        cid=cid,
        commitment=commitment,
        previous_hash=prev,
    )
    assert fast_version_hash(**kw) == version_hash(**kw)  # type: ignore[arg-type]
    v = RecordVersion(rid, version, patient, author, category, cid, commitment, prev, b"\x00" * 32)
    # The record's own check and the hash chain use the fast path: the reference's result.
    assert v.recomputed_hash() == version_hash(**kw)  # type: ignore[arg-type]
    assert f"version hash expected 0x{version_hash(**kw).hex()}" in " ".join(chain_breaks([v]))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [{"version": 2**32}, {"version": -1}, {"version": True}, {"record_id": b"\x01" * 31}, {"patient": "ab" * 20}],
)
def test_fast_version_hash_odd_inputs_behave_like_the_reference(change: dict[str, Any]) -> None:
    kw: dict[str, Any] = dict(
        record_id=b"\x01" * 32,
        version=1,
        patient="0x" + "ab" * 20,
        author="0x" + "cd" * 20,
        category=b"\x02" * 32,
        cid=b"\x01\x55",
        commitment=b"\x03" * 32,
        previous_hash=b"\x00" * 32,
    )
    kw.update(change)
    assert outcome(fast_version_hash, **kw) == outcome(version_hash, **kw)


# ----------------------------------------------------------------- log decoding


def _value(draw: st.DrawFn, abi_type: str) -> Any:
    if abi_type == "address":
        return draw(raw20.map(to_checksum_address))
    if abi_type == "bytes32":
        return draw(word)
    if abi_type == "bool":
        return draw(st.booleans())
    if abi_type == "bytes":
        return draw(st.binary(max_size=100))
    if abi_type == "string":
        return draw(st.text(max_size=40))
    assert abi_type.startswith("uint"), abi_type
    return draw(st.integers(min_value=0, max_value=2 ** int(abi_type[4:] or 256) - 1))


@st.composite
def ledger_log(draw: st.DrawFn, codec: ContractCodec = CODEC) -> dict[str, Any]:
    """A log of any ledger event, encoded as the contract emits it, in the shape ``fetch_logs`` returns."""
    event = draw(st.sampled_from(sorted(codec.events.values(), key=lambda e: e.name)))
    topics = [event.topic0] + [abi_encode([t], [_value(draw, t)]) for _name, t in event.indexed]
    data_types = [t for _name, t in event.data]
    data = abi_encode(data_types, [_value(draw, t) for t in data_types])
    return {
        "address": "0x" + draw(raw20).hex(),
        "topics": topics,
        "data": data,
        "blockNumber": draw(st.integers(min_value=0, max_value=10**9)),
        "blockHash": draw(word),
        "transactionHash": draw(word),
        "logIndex": draw(st.integers(min_value=0, max_value=10_000)),
        "removed": False,
    }


@settings(max_examples=500, deadline=None)
@given(ledger_log())
def test_fast_decoder_equals_decode_log_for_every_ledger_event(log: dict[str, Any]) -> None:
    assert FAST.decode_log(log) == CODEC.decode_log(log)


def test_the_hot_events_take_the_fast_path() -> None:
    fast = FAST
    names = {layout.name for layout in fast.layouts.values()}
    assert {"AccessLogged", "EmergencyAccessLogged", "RecordAnchored", "ConsentGranted", "ConsentRevoked"} <= names
    assert {"RecordErased", "RoleGranted", "DisclosureBatchAnchored", "DelegateGranted"} <= names


def _tampered(log: dict[str, Any], where: str, position: int) -> dict[str, Any]:
    copy = dict(log)
    if where == "topic":
        topics = list(log["topics"])
        index = 1 + position % (len(topics) - 1) if len(topics) > 1 else 0
        topics[index] = b"\xff" + topics[index][1:]
        copy["topics"] = topics
    elif where == "data":
        data = bytearray(log["data"])
        if data:
            data[position % len(data)] ^= 0xFF
        copy["data"] = bytes(data)
    elif where == "extra":
        copy["data"] = log["data"] + b"\x00" * 32
    elif where == "short":
        copy["data"] = log["data"][:-1]
    elif where == "topics":
        copy["topics"] = list(log["topics"])[:-1]
    return copy


@settings(max_examples=400, deadline=None)
@given(ledger_log(), st.sampled_from(["topic", "data", "extra", "short", "topics"]), st.integers(0, 10_000))
def test_fast_decoder_handles_non_canonical_logs_like_decode_log(log: dict[str, Any], where: str, pos: int) -> None:
    """Dirty padding, oversized ints, bad offsets, extra or missing bytes: same value or same error type."""
    bad = _tampered(log, where, pos)
    assert outcome(FAST.decode_log, bad) == outcome(CODEC.decode_log, bad)


def test_unknown_topics_and_empty_logs_give_none() -> None:
    fast = FAST
    log = {"address": "0x" + "00" * 20, "topics": [b"\x01" * 32], "data": b"", "blockNumber": 1}
    assert fast.decode_log(log) is None and fast.decode_log({**log, "topics": []}) is None


def _raw(log: dict[str, Any]) -> dict[str, Any]:
    """The log as ``eth_getLogs`` returns it: hex strings."""
    return {
        "address": log["address"],
        "topics": ["0x" + t.hex() for t in log["topics"]],
        "data": "0x" + log["data"].hex(),
        "blockNumber": hex(log["blockNumber"]),
        "blockHash": "0x" + log["blockHash"].hex(),
        "transactionHash": "0x" + log["transactionHash"].hex(),
        "logIndex": hex(log["logIndex"]),
        "transactionIndex": "0x0",
        "removed": False,
    }


@settings(max_examples=400, deadline=None)
@given(ledger_log())
def test_decode_raw_equals_decode_log_of_the_parsed_log(log: dict[str, Any]) -> None:
    raw = _raw(log)
    assert FAST.decode_raw(raw) == CODEC.decode_log(parse_log(raw)) == CODEC.decode_log(log)


def _odd_raw(raw: dict[str, Any], how: str, position: int) -> dict[str, Any]:
    copy = dict(raw)
    if how == "upper":
        copy["topics"] = ["0x" + t[2:].upper() for t in raw["topics"]]
        copy["data"] = "0x" + raw["data"][2:].upper()
    elif how == "unprefixed":
        copy["data"] = raw["data"][2:]
    elif how == "unprefixed-topic":
        copy["topics"] = [raw["topics"][0][2:], *raw["topics"][1:]]
    elif how == "short-topic":
        topics = list(raw["topics"])
        topics[position % len(topics)] = topics[position % len(topics)][:-2]
        copy["topics"] = topics
    elif how == "dirty":
        data = bytearray(bytes.fromhex(raw["data"][2:]))
        if data:
            data[position % len(data)] ^= 0x80
        copy["data"] = "0x" + data.hex()
    elif how == "no-topics":
        copy["topics"] = []
    elif how == "checksummed-address":
        copy["address"] = to_checksum_address(bytes.fromhex(raw["address"][2:]))
    return copy


@settings(max_examples=400, deadline=None)
@given(
    ledger_log(),
    st.sampled_from(
        ["upper", "unprefixed", "unprefixed-topic", "short-topic", "dirty", "no-topics", "checksummed-address"]
    ),
    st.integers(0, 10_000),
)
def test_decode_raw_handles_odd_raw_logs_like_the_reference(log: dict[str, Any], how: str, pos: int) -> None:
    raw = _odd_raw(_raw(log), how, pos)
    assert outcome(FAST.decode_raw, raw) == outcome(lambda r: CODEC.decode_log(parse_log(r)), raw)
