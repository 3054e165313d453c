"""A patient reads and downloads their own record in the portal, decrypted in the browser.

Against the real service (``consent-ledger up``: its hub, node and three key custodians on ports of their own),
in Debian chromium. The page derives the patient's X25519 key from a signature of their wallet, publishes its
public key on chain, logs the access (an AccessRequest by the patient, purpose PATRQT), fetches the ciphertext
from the hub, asks the custodians for their shares of the data key, and decrypts with record_decrypt.js. The
checks: the content shown and downloaded is the record, the private key (recomputed here from the wallet's
key) is in no request and no storage, the disclosure is in the patient's timeline, a ciphertext altered on its
way shows nothing, and record_decrypt.js agrees with the service's envelope on tests/vectors/record_ciphertext.json.

Screenshots: docs/screenshots/14-patient-reads-own-record.png, 15-patient-own-read-disclosure.png and
21-mobile-patient-reads-own-record.png.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from ledger_service.crypto.envelope import DataKey, RecordBinding, decrypt_bytes
from tests.browser.conftest import DOCS_SHOTS
from tests.browser.portal import Portal, api_json

pytestmark = pytest.mark.browser

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "record_ciphertext.json").read_text())
MODULE = "/portal/static/js/record_decrypt.js"
CLINIC_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil #1, Demo Clinic
PASSPHRASE = "correct horse battery staple"
OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}],
        "text": "HbA1c",
    },
    "valueQuantity": {"value": 5.4, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
}

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


# ---------------------------------------------------------------- helpers


def derived_key_pair(account: LocalAccount, chain: dict[str, Any]) -> tuple[bytes, bytes]:
    """The patient's X25519 key as the portal derives it (own_records.js), recomputed from the wallet's key:
    HKDF-SHA256 over the EIP-191 signature of the derivation message, salt and info as documented there."""
    ledger = chain["contracts"]["ConsentLedger"]
    message = (
        f"Consent Ledger: derive my record decryption key for ledger {ledger} on chain {chain['chainId']}. "
        "Signing this does not authorize any access."
    )
    signature = bytes(Account.sign_message(encode_defunct(text=message), account.key).signature)
    info = int(chain["chainId"]).to_bytes(32, "big") + bytes.fromhex(ledger[2:])
    private = HKDF(SHA256(), 32, salt=b"consent-ledger/v2/patient-encryption-key", info=info).derive(signature)
    public = X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    return private, public


def clinic_uploads(base: str, patient: str, content: dict[str, Any]) -> dict[str, Any]:
    """Demo Clinic signs in over HTTP (EIP-4361) and uploads a FHIR record for ``patient`` through the node API."""
    clinic = Account.from_key(CLINIC_KEY)
    with httpx.Client(base_url=base, timeout=120) as http:
        chain = http.get("/v1/chain").json()
        nonce = http.get("/v1/auth/nonce").json()["nonce"]
        now = datetime.now(UTC)
        message = "\n".join(
            [
                f"{urlsplit(base).netloc} wants you to sign in with your Ethereum account:",
                clinic.address,
                "",
                "Sign in to Consent Ledger",
                "",
                f"URI: {base}",
                "Version: 1",
                f"Chain ID: {chain['chainId']}",
                f"Nonce: {nonce}",
                f"Issued At: {now.strftime('%Y-%m-%dT%H:%M:%SZ')}",
                f"Expiration Time: {(now + timedelta(minutes=10)).strftime('%Y-%m-%dT%H:%M:%SZ')}",
            ]
        )
        signature = "0x" + bytes(Account.sign_message(encode_defunct(text=message), clinic.key).signature).hex()
        login = http.post("/v1/auth/login", json={"message": message, "signature": signature})
        assert login.status_code == 200, login.text
        body = {"patient": patient, "category": "laboratory", "mediaType": "application/fhir+json", "content": content}
        created = http.post("/v1/records", json=body, headers={"Authorization": f"Bearer {login.json()['token']}"})
        assert created.status_code == 201, created.text
        return dict(created.json())


def sign_in_with_imported_key(portal: Portal, account: LocalAccount) -> None:
    portal.open_signin()
    form = portal.page.locator("#import-form")
    form.get_by_label("Private key").fill("0x" + bytes(account.key).hex())
    form.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    form.get_by_label("Repeat passphrase").fill(PASSPHRASE)
    form.get_by_role("button", name="Import key and sign in").click()
    portal.page.locator("#session:not([hidden])").wait_for()


class Traffic:
    """Every request the page sends (URL and body), to look for what must never leave the browser."""

    def __init__(self, portal: Portal) -> None:
        self.sent: list[tuple[str, str, str]] = []
        portal.page.on("request", self._record)

    def _record(self, request: Any) -> None:
        self.sent.append((request.method, request.url, request.post_data or ""))

    def relayed(self) -> list[str]:
        return [json.loads(body)["primaryType"] for method, url, body in self.sent if url.endswith("/v1/relay")]

    def containing(self, needle: str) -> list[str]:
        needle = needle.lower()
        return [url for _method, url, body in self.sent if needle in url.lower() or needle in body.lower()]


def storage_dump(portal: Portal) -> str:
    return str(portal.page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}])"))


def doc_shot(portal: Portal, name: str) -> Path:
    path = portal.shot(name)
    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, DOCS_SHOTS / path.name)
    return path


def read_button(portal: Portal, record_id: str, action: str = "Read") -> Any:
    return portal.page.get_by_role("button", name=f"{action} record {record_id[:6]}…{record_id[-4:]}", exact=True)


def wait_for_record(portal: Portal) -> Any:
    """The record's content once the read is done; the error next to the action if it failed."""
    portal.page.locator("#record-view .fhir-view, .row-error:not([hidden])").first.wait_for(timeout=120_000)
    error = portal.page.locator(".row-error:not([hidden])")
    if error.count():
        portal.shot("14-patient-read-failed")
        pytest.fail(f"the read failed: {error.first.inner_text()}")
    # the summary first, the raw JSON one click away
    assert portal.page.locator("#record-view dl.fhir-summary").inner_text().startswith("Result\n")
    portal.page.locator("#record-view").get_by_text("Show raw JSON").click()
    return portal.page.locator("#record-view pre.json")


def no_horizontal_scroll(portal: Portal, width: int) -> None:
    scroll = portal.page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"page is {scroll}px wide at a {width}px viewport"


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


# ---------------------------------------------------------------- the patient's own read, end to end


def test_a_patient_reads_and_downloads_their_own_record(browser: Any, real_portal: str) -> None:
    account: LocalAccount = Account.create()
    created = clinic_uploads(real_portal, account.address, OBSERVATION)
    record_id = str(created["recordId"])
    chain = httpx.get(f"{real_portal}/v1/chain").json()
    private, public = derived_key_pair(account, chain)

    patient = Portal(browser, "real", real_portal)
    traffic = Traffic(patient)
    try:
        sign_in_with_imported_key(patient, account)
        patient.go("#/patient/records", "My records")
        page = patient.page
        read_button(patient, record_id).click()
        viewer = page.locator("#record-view")
        content = wait_for_record(patient)
        assert "5.4 %" in viewer.locator("dl.fhir-summary").inner_text()

        # the content shown is the record, pretty-printed
        assert json.loads(content.inner_text()) == OBSERVATION
        assert '\n  "resourceType": "Observation"' in content.inner_text()
        tx = viewer.locator("details.ledger-proof dt:has-text('Transaction') + dd").text_content() or ""
        assert tx.startswith("0x") and len(tx) == 66, tx
        assert not page.locator(".row-error:not([hidden])").count()
        doc_shot(patient, "14-patient-reads-own-record")

        # the key the page published on chain is the one derived from the wallet's signature; its private half
        # is in no request the page sent and in no storage
        status, on_chain = api_json(patient, "GET", f"/v1/encryption-keys/{account.address}")
        assert status == 200 and on_chain["publicKey"] == "0x" + public.hex()
        assert traffic.relayed() == ["EncryptionKey", "AccessRequest"]
        assert traffic.containing(private.hex()) == []
        assert private.hex() not in storage_dump(patient).lower()

        # Download hands over the same bytes as a .json file, without a second access
        with page.expect_download() as downloaded:
            read_button(patient, record_id, "Download").click()
        file = downloaded.value
        assert file.suggested_filename == f"record-{record_id[2:12]}-v1.json"
        assert json.loads(Path(file.path()).read_bytes()) == OBSERVATION
        assert traffic.relayed() == ["EncryptionKey", "AccessRequest"]

        # the disclosure is in the patient's timeline: their own access, purpose PATRQT, no consent
        status, listed = api_json(patient, "GET", f"/v1/patients/{account.address}/disclosures")
        mine = [d for d in listed["disclosures"] if d["recordId"] == record_id]
        assert status == 200 and len(mine) == 1, listed
        assert (mine[0]["accessor"], mine[0]["purpose"], mine[0]["txHash"]) == (account.address, "PATRQT", tx)
        assert not mine[0]["emergency"]
        patient.go("#/patient/disclosures", "Who has seen my records")
        entry = page.locator("ol.timeline > li", has=page.locator(f"dd:text-is('{record_id}')")).first
        entry.wait_for(state="attached")
        text = entry.inner_text()
        own_read = r"You read Laboratory record added \d{1,2} \w{3} \d{4} on \d{1,2} \w{3}, your own request\."
        assert re.match(own_read, text), text
        assert "Patient requested (PATRQT)" in entry.locator("details.ledger-proof").text_content()
        doc_shot(patient, "15-patient-own-read-disclosure")
        assert patient.errors == [], patient.errors
    finally:
        patient.close()

    # another browser, at phone width: the same wallet derives the same key, so nothing is published again
    phone = Portal(browser, "real", real_portal, width=375, height=740)
    phone_traffic = Traffic(phone)
    try:
        sign_in_with_imported_key(phone, account)
        phone.go("#/patient/records", "My records")
        read_button(phone, record_id).click()
        content = wait_for_record(phone)
        assert json.loads(content.inner_text()) == OBSERVATION
        assert phone_traffic.relayed() == ["AccessRequest"]
        no_horizontal_scroll(phone, 375)
        doc_shot(phone, "21-mobile-patient-reads-own-record")
        assert phone.errors == [], phone.errors
    finally:
        phone.close()


def test_a_ciphertext_altered_on_its_way_shows_nothing(browser: Any, real_portal: str) -> None:
    """The hub (or anything between) serves the record's ciphertext with one byte changed: the page shows no
    content, says so next to the action, and offers nothing to download."""
    account: LocalAccount = Account.create()
    record_id = str(clinic_uploads(real_portal, account.address, OBSERVATION)["recordId"])
    patient = Portal(browser, "real", real_portal)
    altered: list[str] = []

    def alter(route: Any) -> None:
        response = route.fetch()
        body = bytearray(response.body())
        body[-20] ^= 0x01
        altered.append(route.request.url)
        route.fulfill(response=response, body=bytes(body))

    try:
        sign_in_with_imported_key(patient, account)
        patient.go("#/patient/records", "My records")
        patient.page.route("**/v1/blobs/**", alter)
        read_button(patient, record_id).click()
        error = patient.page.locator(".row-error:not([hidden])")
        error.wait_for(timeout=120_000)
        assert "Your record did not decrypt" in error.inner_text()
        assert "may have been altered" in error.inner_text()
        assert len(altered) == 1
        assert patient.page.locator("#record-view pre, #record-view a[download]").count() == 0
        assert patient.page.locator("#record-view").is_hidden()
        patient.shot("16-patient-read-altered-ciphertext")
        assert patient.errors == [], patient.errors
    finally:
        patient.close()
