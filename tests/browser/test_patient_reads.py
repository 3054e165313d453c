"""The portal's record_decrypt.js against tests/vectors/record_ciphertext.json, in Debian chromium.

The vectors are the service's own envelope (ledger_service.crypto.encrypt_bytes); the page must decrypt each to
its plaintext, and refuse every tampered copy, another record version's binding and another key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger_service.crypto.envelope import DataKey, RecordBinding, decrypt_bytes
from tests.browser.portal import Portal

pytestmark = pytest.mark.browser

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "record_ciphertext.json").read_text())
MODULE = "/portal/static/js/record_decrypt.js"

DECRYPT = """
async ([module, key, binding, ciphertext]) => {
  const m = await import(module);
  try {
    const plain = await m.decryptRecord(key, binding, ciphertext);
    return { plaintext: "0x" + Array.from(plain, (b) => b.toString(16).padStart(2, "0")).join("") };
  } catch (err) {
    return { error: `${err.name}: ${err.message}` };
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


# ---------------------------------------------------------------- record_decrypt.js against the vectors


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_the_browser_decrypts_every_vector_as_the_service_does(page: Any, vector: dict[str, Any]) -> None:
    binding = vector["binding"]
    ciphertext = bytes.fromhex(vector["ciphertext"][2:])
    python = decrypt_bytes(
        DataKey(bytes.fromhex(vector["dataKey"][2:])),
        RecordBinding(bytes.fromhex(binding["recordId"][2:]), binding["version"], binding["patient"]),
        ciphertext,
    )
    assert "0x" + python.hex() == vector["plaintext"]
    as_given = {**binding, "patient": vector["patientAsGiven"]}  # any case of the address binds the same
    for shown in (binding, as_given):
        result = page.evaluate(DECRYPT, [MODULE, vector["dataKey"], shown, vector["ciphertext"]])
        assert result == {"plaintext": vector["plaintext"]}


@pytest.mark.parametrize("tampered", VECTORS["tampered"], ids=lambda t: t["name"])
def test_a_tampered_ciphertext_does_not_decrypt(page: Any, tampered: dict[str, Any]) -> None:
    (base,) = [v for v in VECTORS["vectors"] if v["name"] == VECTORS["tamperedOf"]]
    result = page.evaluate(DECRYPT, [MODULE, base["dataKey"], base["binding"], tampered["ciphertext"]])
    assert result.keys() == {"error"}, result
    assert result["error"].startswith("RecordDecryptError: record ciphertext failed authentication"), result


def _other_bindings() -> list[Any]:
    v = VECTORS["vectors"][1]
    b = v["binding"]
    other_id = "0x" + ("00" if b["recordId"][2:4] != "00" else "01") + b["recordId"][4:]
    flipped_key = "0x" + format(int(v["dataKey"][2:4], 16) ^ 1, "02x") + v["dataKey"][4:]
    return [
        pytest.param({**b, "version": b["version"] + 1}, v["dataKey"], id="another-version"),
        pytest.param({**b, "recordId": other_id}, v["dataKey"], id="another-record"),
        pytest.param({**b, "patient": "0x" + "11" * 20}, v["dataKey"], id="another-patient"),
        pytest.param(b, flipped_key, id="another-key"),
    ]


@pytest.mark.parametrize(("binding", "key"), _other_bindings())
def test_a_ciphertext_does_not_decrypt_for_another_record_version_or_key(
    page: Any, binding: dict[str, Any], key: str
) -> None:
    ciphertext = VECTORS["vectors"][1]["ciphertext"]
    result = page.evaluate(DECRYPT, [MODULE, key, binding, ciphertext])
    assert result == {"error": "RecordDecryptError: record ciphertext failed authentication: segment 0"}
