"""tests/vectors/key_shares.json: the Python split reproduces the shares, HPKE opens every sealed share
with pyca/cryptography to the stated share, and the shares combine to the stated data key. The same file
drives the browser test (tests/browser/test_key_share_vectors.py), so both sides read one set of bytes."""

from __future__ import annotations

import copy
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger_service.crypto.shamir import combine, split

ROOT = Path(__file__).resolve().parents[3]
VECTORS_PATH = ROOT / "tests" / "vectors" / "key_shares.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
# The format, spelled out here independently of the script that wrote the file.
INFO_DOMAIN = b"consent-ledger/v2/key-share\x00"


def b(value: str) -> bytes:
    assert value.startswith("0x") and value == value.lower(), value
    return bytes.fromhex(value[2:])


def info_of(vector: dict[str, Any], index: int, recipient: bytes) -> bytes:
    return (
        INFO_DOMAIN
        + int(vector["chainId"]).to_bytes(32, "big")
        + b(vector["ledger"])
        + b(vector["recordId"])
        + int(vector["version"]).to_bytes(4, "big")
        + bytes([index])
        + recipient
    )


def private_key(sealed_share: dict[str, Any]) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(b(sealed_share["recipientPrivateKey"]))


def by_name(vector: dict[str, Any]) -> str:
    return str(vector["name"])


def sealed_cases() -> list[Any]:
    return [
        pytest.param(vector, sealed, id=f"{vector['name']}-{sealed['index']}")
        for vector in VECTORS["vectors"]
        for sealed in vector["sealedShares"]
    ]


def test_header_states_the_suite_and_domain() -> None:
    assert VECTORS["suite"] == {"kem": "0x0020", "kdf": "0x0001", "aead": "0x0002"}
    assert b(VECTORS["infoDomain"]) == INFO_DOMAIN
    assert {(v["threshold"], v["total"]) for v in VECTORS["vectors"]} == {(2, 3), (3, 5)}
    assert {s["recipient"] for v in VECTORS["vectors"] for s in v["sealedShares"]} >= {"custodian-1", "accessor"}


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=by_name)
def test_split_with_the_stated_randomness_reproduces_the_shares(vector: dict[str, Any]) -> None:
    randomness = b(vector["polynomialRandomness"])
    data_key = b(vector["dataKey"])
    assert len(data_key) == 32 and len(randomness) == 32 * (vector["threshold"] - 1)
    shares = split(data_key, vector["threshold"], vector["total"], random=lambda n: randomness[:n])
    assert [share.hex() for share in shares] == [b(s).hex() for s in vector["shares"]]
    assert [share[-1] for share in shares] == list(range(1, vector["total"] + 1))


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=by_name)
def test_every_threshold_subset_combines_to_the_data_key(vector: dict[str, Any]) -> None:
    shares = [b(s) for s in vector["shares"]]
    for size in range(vector["threshold"], vector["total"] + 1):
        for subset in itertools.combinations(shares, size):
            assert combine(subset) == b(vector["dataKey"])
    for subset in itertools.combinations(shares, vector["threshold"] - 1):
        if len(subset) >= 2:
            assert combine(subset) != b(vector["dataKey"])


@pytest.mark.parametrize(("vector", "sealed"), sealed_cases())
def test_sealed_share_opens_to_the_stated_share(vector: dict[str, Any], sealed: dict[str, Any]) -> None:
    key = private_key(sealed)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert public == b(sealed["recipientPublicKey"])
    info = info_of(vector, sealed["index"], public)
    assert info == b(sealed["info"]) and len(info) == len(INFO_DOMAIN) + 32 + 20 + 32 + 4 + 1 + 32
    ciphertext = b(sealed["sealed"])
    assert len(ciphertext) == 81
    assert SUITE.decrypt(ciphertext, key, info=info) == b(vector["shares"][sealed["index"] - 1])


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=by_name)
def test_opened_shares_combine_to_the_data_key(vector: dict[str, Any]) -> None:
    opened = [
        SUITE.decrypt(b(s["sealed"]), private_key(s), info=b(s["info"]))
        for s in vector["sealedShares"][: vector["threshold"]]
    ]
    assert combine(opened) == b(vector["dataKey"])


@pytest.mark.parametrize("position", [0, 31, 32, 64, 80])  # enc, enc's end, ciphertext, share's end, tag
def test_tampered_sealed_share_does_not_open(position: int) -> None:
    vector = VECTORS["vectors"][0]
    sealed = vector["sealedShares"][0]
    tampered = bytearray(b(sealed["sealed"]))
    tampered[position] ^= 0x01
    with pytest.raises((InvalidTag, ValueError)):
        SUITE.decrypt(bytes(tampered), private_key(sealed), info=b(sealed["info"]))


@pytest.mark.parametrize("field", ["chainId", "ledger", "recordId", "version", "index", "recipient"])
def test_sealed_share_does_not_open_for_another_slot(field: str) -> None:
    vector = dict(VECTORS["vectors"][1])  # release: every share sealed to one accessor
    sealed = vector["sealedShares"][0]
    index, recipient = sealed["index"], b(sealed["recipientPublicKey"])
    if field == "chainId":
        vector["chainId"] += 1
    elif field == "ledger":
        vector["ledger"] = "0x" + "00" * 20
    elif field == "recordId":
        vector["recordId"] = VECTORS["vectors"][0]["recordId"]
    elif field == "version":
        vector["version"] += 1
    elif field == "index":
        index = 2  # custodian 2's slot, same accessor key
    else:
        recipient = b(VECTORS["vectors"][0]["sealedShares"][0]["recipientPublicKey"])
    info = info_of(vector, index, recipient)
    assert info != b(sealed["info"])
    with pytest.raises(InvalidTag):
        SUITE.decrypt(b(sealed["sealed"]), private_key(sealed), info=info)


def test_sealed_share_does_not_open_with_another_key() -> None:
    deposit = VECTORS["vectors"][0]["sealedShares"]
    with pytest.raises(InvalidTag):
        SUITE.decrypt(b(deposit[0]["sealed"]), private_key(deposit[1]), info=b(deposit[0]["info"]))


def test_the_script_writes_the_same_deterministic_fields(tmp_path: Path) -> None:
    out = tmp_path / "key_shares.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_share_vectors.py"), "--out", str(out)], check=True, cwd=ROOT
    )
    fresh = json.loads(out.read_text())
    for mine, theirs in zip(fresh["vectors"], copy.deepcopy(VECTORS["vectors"]), strict=True):
        for sealed in itertools.chain(mine["sealedShares"], theirs["sealedShares"]):
            sealed.pop("sealed")
        assert mine == theirs
    assert {k: v for k, v in fresh.items() if k != "vectors"} == {k: v for k, v in VECTORS.items() if k != "vectors"}
