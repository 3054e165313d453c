"""The portal's key_shares.js against tests/vectors/key_shares.json, in Debian chromium on the real service.

The page imports /portal/static/js/key_shares.js (the vendored @hpke/core and shamir-secret-sharing, under the
portal's CSP) and opens every sealed share of the vectors with WebCrypto X25519, combines them and must get
the vector's data key; altered sealed bytes or another slot's info must not open. The other direction:
shares split in the browser by shamir-secret-sharing combine in Python (ledger_service.crypto.shamir).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger_service.crypto.shamir import combine, split
from tests.browser.portal import Portal

pytestmark = pytest.mark.browser

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "key_shares.json").read_text())
MODULE = "/portal/static/js/key_shares.js"
SHAMIR = "/portal/static/vendor/shamir-secret-sharing/index.js"

# Opens each sealed share of a vector, returns the opened shares, the info the module builds, and the
# data key from every subset of at least `threshold` opened shares.
OPEN_AND_COMBINE = """
async ([module, v]) => {
  const ks = await import(module);
  const slot = { chainId: v.chainId, ledger: v.ledger, recordId: v.recordId, version: v.version };
  const opened = [], infos = [];
  for (const s of v.sealedShares) {
    const share = await ks.openShare({ ...slot, sealed: s.sealed, index: s.index,
      recipientPrivateKey: s.recipientPrivateKey, recipientPublicKey: s.recipientPublicKey });
    opened.push(ks.toHex(share));
    infos.push(ks.toHex(ks.shareInfo({ ...slot, index: s.index, recipientPublicKey: s.recipientPublicKey })));
  }
  const subsets = [];
  const pick = (start, chosen) => {
    if (chosen.length >= v.threshold) subsets.push([...chosen]);
    for (let i = start; i < opened.length; i++) pick(i + 1, [...chosen, opened[i]]);
  };
  pick(0, []);
  const keys = [];
  for (const subset of subsets) keys.push([subset.length, ks.toHex(await ks.combineShares(subset))]);
  return { opened, infos, keys };
}
"""

# openShare with the given overrides; returns "opened" or the error's name and message.
TRY_OPEN = """
async ([module, args]) => {
  const ks = await import(module);
  try {
    await ks.openShare(args);
    return "opened";
  } catch (err) {
    return `${err.name}: ${err.message}`;
  }
}
"""


@pytest.fixture
def page(browser: Any, real_portal: str) -> Iterator[Any]:
    portal = Portal(browser, "real", real_portal)
    try:
        portal.open_signin()  # a portal page: its origin, its CSP
        yield portal.page
        assert portal.errors == [], portal.errors
    finally:
        portal.close()


def _open_args(vector: dict[str, Any], entry: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    args = {
        "sealed": entry["sealed"],
        "recipientPrivateKey": entry["recipientPrivateKey"],
        "recipientPublicKey": entry["recipientPublicKey"],
        "chainId": vector["chainId"],
        "ledger": vector["ledger"],
        "recordId": vector["recordId"],
        "version": vector["version"],
        "index": entry["index"],
    }
    return {**args, **overrides}


def _flip(hex_value: str, position: int) -> str:
    raw = bytearray(bytes.fromhex(hex_value[2:]))
    raw[position] ^= 0x01
    return "0x" + raw.hex()


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_the_browser_opens_and_combines_every_vector(page: Any, vector: dict[str, Any]) -> None:
    result = page.evaluate(OPEN_AND_COMBINE, [MODULE, vector])
    assert result["opened"] == vector["shares"]
    assert result["infos"] == [s["info"] for s in vector["sealedShares"]]
    expected_subsets = sum(
        len(list(itertools.combinations(range(vector["total"]), k)))
        for k in range(vector["threshold"], vector["total"] + 1)
    )
    assert len(result["keys"]) == expected_subsets
    assert {key for _size, key in result["keys"]} == {vector["dataKey"]}


@pytest.mark.parametrize("position", [0, 31, 32, 64, 80])  # enc, enc's end, ciphertext, share's x, tag
def test_an_altered_sealed_share_does_not_open(page: Any, position: int) -> None:
    vector = VECTORS["vectors"][0]
    sealed = vector["sealedShares"][0]
    assert page.evaluate(TRY_OPEN, [MODULE, _open_args(vector, sealed)]) == "opened"
    outcome = page.evaluate(TRY_OPEN, [MODULE, _open_args(vector, sealed, sealed=_flip(sealed["sealed"], position))])
    assert outcome == "KeyShareError: the sealed share does not open with this key for this record version"


def _other_slots() -> list[Any]:
    release, deposit = VECTORS["vectors"][1], VECTORS["vectors"][0]
    return [
        pytest.param({"chainId": release["chainId"] + 1}, id="chainId"),
        pytest.param({"ledger": "0x" + "00" * 20}, id="ledger"),
        pytest.param({"recordId": deposit["recordId"]}, id="recordId"),
        pytest.param({"version": release["version"] + 1}, id="version"),
        pytest.param({"index": 2}, id="index"),
        pytest.param({"recipientPublicKey": deposit["sealedShares"][0]["recipientPublicKey"]}, id="recipient"),
        pytest.param({"recipientPrivateKey": deposit["sealedShares"][0]["recipientPrivateKey"]}, id="private-key"),
    ]


@pytest.mark.parametrize("overrides", _other_slots())
def test_a_sealed_share_does_not_open_for_another_slot(page: Any, overrides: dict[str, Any]) -> None:
    vector = VECTORS["vectors"][1]  # release: every share sealed to one accessor
    sealed = vector["sealedShares"][0]
    outcome = page.evaluate(TRY_OPEN, [MODULE, _open_args(vector, sealed, **overrides)])
    assert outcome == "KeyShareError: the sealed share does not open with this key for this record version"


def test_combine_in_the_browser_refuses_duplicate_and_zero_x(page: Any) -> None:
    shares = VECTORS["vectors"][0]["shares"]
    outcomes = page.evaluate(
        """async ([module, shares]) => {
          const ks = await import(module);
          const attempt = async (list) => {
            try { await ks.combineShares(list); return "combined"; } catch (err) { return err.message; }
          };
          const zero = shares[1].slice(0, -2) + "00";
          return [await attempt([shares[0], shares[0]]), await attempt([shares[0], zero]),
                  await attempt([shares[0]]), await attempt([shares[0], shares[1]])];
        }""",
        [MODULE, shares],
    )
    assert outcomes == [
        "two key shares have the same x coordinate",
        "a key share has x = 0",
        "need at least 2 key shares to combine, got 1",
        "combined",
    ]


@pytest.mark.parametrize(("threshold", "total"), [(2, 3), (3, 5)])
def test_shares_split_in_the_browser_combine_in_python(page: Any, threshold: int, total: int) -> None:
    data_key = os.urandom(32)
    shares_hex = page.evaluate(
        """async ([shamir, module, key, total, threshold]) => {
          const { split } = await import(shamir);
          const ks = await import(module);
          return (await split(ks.fromHex(key, 32), total, threshold)).map(ks.toHex);
        }""",
        [SHAMIR, MODULE, "0x" + data_key.hex(), total, threshold],
    )
    shares = [bytes.fromhex(s[2:]) for s in shares_hex]
    assert len(shares) == total and {len(s) for s in shares} == {33}
    for size in range(threshold, total + 1):
        for subset in itertools.combinations(shares, size):
            assert combine(subset) == data_key
    if threshold > 2:
        assert all(combine(pair) != data_key for pair in itertools.combinations(shares, 2))


def test_shares_split_in_python_combine_in_the_browser(page: Any) -> None:
    data_key = os.urandom(32)
    shares = ["0x" + s.hex() for s in split(data_key, 2, 3)]
    keys = page.evaluate(
        """async ([module, shares]) => {
          const ks = await import(module);
          const pairs = [[0, 1], [0, 2], [1, 2], [2, 0]];
          return Promise.all(pairs.map(async ([a, b]) => ks.toHex(await ks.combineShares([shares[a], shares[b]]))));
        }""",
        [MODULE, shares],
    )
    assert keys == ["0x" + data_key.hex()] * 4
