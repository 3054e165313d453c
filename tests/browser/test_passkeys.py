"""Patients with passkeys in the portal: Chromium's virtual authenticator (CDP WebAuthn) plays the device.

Against the real service (``consent-ledger up``), reached at http://localhost:{port}: a passkey's relying party
is a domain name, so the portal at 127.0.0.1 cannot make one (it says so, with a link to localhost). A new
patient creates a passkey account, signs in, grants the Demo Clinic access, the clinic reads, the patient sees
the disclosure, revokes, and the clinic is refused; on chain the consent's patient and signer are the account
contract, and the signature the ledger received is a WebAuthn assertion. Then: signing in again with one
prompt (the browser's hint), on a new browser with none (two prompts: which account, then the sign-in), a
second device added and used, and the patient reading their own record with the key derived from the
passkey's PRF output. Screenshots: docs/screenshots/40-* to 48-*.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_abi import decode
from eth_utils import keccak, to_checksum_address

from tests.browser.conftest import CHAIN_RPC, DOCS_SHOTS, SHOTS
from tests.browser.portal import Portal, api_json
from tests.browser.test_patient_reads import (
    Traffic,
    clinic_uploads,
    doc_shot,
    no_horizontal_scroll,
    storage_dump,
    wait_for_record,
)
from tests.browser.test_portal import upload_observation

pytestmark = pytest.mark.browser

AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "hasPrf": True,
    "automaticPresenceSimulation": True,
}
CONSENT_GRANTED = "0x" + keccak(
    text="ConsentGranted(bytes32,address,address,bytes32,bytes32,uint64,uint64,address)"
).hex().removeprefix("0x")
ACCOUNT_OF = keccak(text="accountOf(bytes32,bytes32)")[:4].hex()
ENCRYPTION_KEY_OF = keccak(text="encryptionKeyOf(address)")[:4].hex()
LAB_RESULT = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3", "display": "Cholesterol"}], "text": "LDL"},
    "valueQuantity": {"value": 101, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
}


def localhost(base: str) -> str:
    return base.replace("://127.0.0.1:", "://localhost:")


class PasskeyBrowser:
    """A portal page at http://localhost with a virtual authenticator (the patient's device) attached over CDP.

    Every assertion and every credential the authenticators make is counted (CDP events), so a test can tell
    how many times the patient was prompted.
    """

    def __init__(self, browser: Any, base: str, *, width: int = 1200, height: int = 900, authenticator: bool = True):
        self.portal = Portal(browser, "real", localhost(base), width=width, height=height)
        self.page = self.portal.page
        self.page.goto("/")  # the virtual authenticators live in this tab's environment, across its navigations
        self.cdp = self.portal.context.new_cdp_session(self.page)
        self.cdp.send("WebAuthn.enable", {"enableUI": False})
        self.asserted: list[dict[str, Any]] = []
        self.created: list[dict[str, Any]] = []
        self.cdp.on("WebAuthn.credentialAsserted", lambda event: self.asserted.append(event))
        self.cdp.on("WebAuthn.credentialAdded", lambda event: self.created.append(event))
        self.device = self.add_authenticator() if authenticator else ""

    def add_authenticator(self, **options: Any) -> str:
        reply = self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {**AUTHENTICATOR, **options}})
        return str(reply["authenticatorId"])

    def credentials(self, authenticator: str | None = None) -> list[dict[str, Any]]:
        reply = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator or self.device})
        return list(reply["credentials"])

    def import_credential(self, credential: dict[str, Any], authenticator: str | None = None) -> None:
        """A passkey of another browser on this one's device (as a synced passkey arrives): its key, not its PRF."""
        target = authenticator or self.device
        self.cdp.send("WebAuthn.addCredential", {"authenticatorId": target, "credential": credential})

    def presence(self, authenticator: str, enabled: bool) -> None:
        """Whether `authenticator` answers prompts by itself (off: as if the user did not touch that device)."""
        self.cdp.send("WebAuthn.setAutomaticPresenceSimulation", {"authenticatorId": authenticator, "enabled": enabled})

    def session(self) -> dict[str, Any]:
        return dict(self.page.evaluate("() => JSON.parse(sessionStorage.getItem('consentLedger.session'))"))

    def hints(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate("() => JSON.parse(localStorage.getItem('consentLedger.passkeys') || '[]')"))

    def signed_in(self) -> str:
        self.page.locator("#session:not([hidden])").wait_for()
        return str(self.session()["address"])

    def close(self) -> None:
        assert self.portal.errors == [], self.portal.errors
        self.portal.close()


@pytest.fixture
def devices(browser: Any, real_portal: str) -> Iterator[list[PasskeyBrowser]]:
    """Passkey browsers a test opens (``devices.append(PasskeyBrowser(...))``), closed at its end."""
    opened: list[PasskeyBrowser] = []
    yield opened
    for device in opened:
        device.close()


def viewport_shot(portal: Portal, name: str) -> None:
    """What the screen shows (a dialog over the page), for the README."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    portal.page.wait_for_timeout(150)
    portal.page.screenshot(path=str(SHOTS / f"{name}.png"))
    shutil.copyfile(SHOTS / f"{name}.png", DOCS_SHOTS / f"{name}.png")


def create_account(device: PasskeyBrowser, *, shots: tuple[str, str] | None = None) -> str:
    """Create a passkey account from the sign-in page; the address the session is for."""
    device.portal.open_signin()
    page = device.page
    if shots:
        page.locator("#passkey-create").wait_for()
        viewport_shot(device.portal, shots[0])
    page.locator("#passkey-create").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Your name on this passkey (optional)").fill("Alex Morgan")
    if shots:
        viewport_shot(device.portal, shots[1])
    dialog.get_by_role("button", name="Create my passkey").click()
    return device.signed_in()


def rpc(base: str, method: str, params: list[Any]) -> Any:
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    body = httpx.post(CHAIN_RPC[base], json=request, timeout=30).json()
    assert "error" not in body, body
    return body["result"]


def word(address: str) -> str:
    return address.lower().removeprefix("0x").rjust(64, "0")


def sign_out(device: PasskeyBrowser) -> None:
    device.page.locator("#sign-out").click()
    device.page.get_by_role("heading", name="Sign in to Consent Ledger").wait_for()


def grant_clinic(device: PasskeyBrowser) -> None:
    device.portal.go("#/patient/consents", "Consents")
    page = device.page
    provider = page.get_by_label("Provider", exact=True)
    provider.select_option(provider.evaluate("s => [...s.options].find(o => o.text.startsWith('Demo Clinic')).value"))
    page.get_by_label("All my records").check()
    page.get_by_label("Purpose of use").select_option("TREAT")
    page.get_by_role("button", name="Review and grant…").click()
    page.locator("dialog[open]").get_by_role("button", name="Sign and grant access").click()
    device.portal.wait_status("Access granted")


def clinic_reads(clinic: Portal, patient: str, record_id: str) -> None:
    clinic.go(f"#/provider/patients?patient={patient}", "Find a patient")
    clinic.page.get_by_label("Record id").fill(record_id)
    clinic.page.get_by_label("Purpose of use").select_option("TREAT")
    clinic.page.get_by_role("button", name="Read record", exact=True).click()


# ---------------------------------------------------------------- the story


def test_passkey_patient_story(browser: Any, real_portal: str, devices: list[PasskeyBrowser]) -> None:
    base = real_portal
    patient = PasskeyBrowser(browser, base)
    devices.append(patient)
    clinic = Portal(browser, "real", base)
    try:
        # a new patient creates an account with a passkey: one passkey made, one assertion (the sign-in)
        account = create_account(patient, shots=("40-passkey-sign-in", "41-passkey-create"))
        assert len(patient.created) == 1 and len(patient.asserted) == 1
        assert patient.session()["signer"]["kind"] == "passkey"
        patient.page.get_by_role("heading", name="My records", level=1).wait_for()
        # the account is a contract the factory made for this passkey's key, with that key as its one passkey
        status, listed = api_json(patient.portal, "GET", f"/v1/accounts/{account}")
        assert status == 200 and listed["deployed"] is True, listed
        (hint,) = patient.hints()
        assert hint["address"] == account and len(hint["credentials"]) == 1
        key = hint["credentials"][0]
        assert [(k["x"].lower(), k["y"].lower()) for k in listed["passkeys"]] == [(key["x"], key["y"])]
        chain = httpx.get(f"{base}/v1/chain").json()
        factory = chain["contracts"]["PatientAccountFactory"]
        call = {"to": factory, "data": "0x" + ACCOUNT_OF + key["x"][2:] + key["y"][2:]}
        assert to_checksum_address("0x" + rpc(base, "eth_call", [call, "latest"])[-40:]) == account
        assert rpc(base, "eth_getCode", [account, "latest"]) not in ("0x", "0x0")
        # nothing secret in this browser's storage: the hint is the address and the credential's public parts
        assert set(hint) <= {"address", "credentials", "prf", "lastUsed"} and set(key) == {"id", "x", "y"}

        # the Demo Clinic uploads a record for the account
        clinic.sign_in_demo(1)
        clinic.page.get_by_role("heading", name="Find a patient", level=1).wait_for()
        record_id = upload_observation(clinic, shot=False, patient=account)

        # the patient grants the Demo Clinic treatment access to all records, confirmed with the passkey
        before = len(patient.asserted)
        grant_clinic(patient)
        assert len(patient.asserted) == before + 1
        consents = patient.page.locator("section", has=patient.page.get_by_role("heading", name="Your consents"))
        consents.get_by_text("Active").first.wait_for()
        assert "0x" not in patient.portal.status_text()  # plain words: no hashes for a passkey patient
        doc_shot(patient.portal, "42-passkey-grant")

        # on chain: the consent's patient is the account contract and so is its signer (ERC-1271), and the
        # signature the ledger was given is a WebAuthn assertion
        status, listed = api_json(patient.portal, "GET", f"/v1/patients/{account}/consents")
        (consent,) = listed["consents"]
        assert (consent["patient"], consent["signer"], consent["status"]) == (account, account, "active")
        receipt = rpc(base, "eth_getTransactionReceipt", [consent["txHash"]])
        (log,) = [entry for entry in receipt["logs"] if entry["topics"][0] == CONSENT_GRANTED]
        assert log["topics"][2] == "0x" + word(account)
        assert log["data"][2:][4 * 64 : 5 * 64] == word(account)  # signer
        tx = rpc(base, "eth_getTransactionByHash", [consent["txHash"]])
        assert b'"type":"webauthn.get"'.hex() in tx["input"]

        # the clinic reads the record for treatment; the patient sees it in the disclosure timeline
        clinic_reads(clinic, account, record_id)
        clinic.page.locator("#read-result .fhir-view").wait_for(timeout=120_000)
        clinic.page.get_by_text("Show raw JSON").click()
        assert '"resourceType": "Observation"' in clinic.page.locator("pre.json").inner_text()
        patient.portal.go("#/patient/disclosures", "Who has seen my records")
        entry = patient.page.locator("ol.timeline > li").first
        entry.wait_for()
        assert "Demo Clinic read " in entry.inner_text() and "for treatment" in entry.inner_text()

        # the patient revokes, with the passkey; the clinic is refused
        patient.portal.go("#/patient/consents", "Consents")
        patient.page.get_by_role("button", name=re.compile("^Revoke .*Demo Clinic")).first.click()
        patient.page.locator("dialog[open]").get_by_role("button", name="Sign and revoke").click()
        patient.portal.wait_status("Consent revoked")
        consents.get_by_text("Revoked").first.wait_for()
        status, listed = api_json(patient.portal, "GET", f"/v1/patients/{account}/consents")
        assert [(c["status"], c["signer"]) for c in listed["consents"]] == [("revoked", account)]
        clinic_reads(clinic, account, record_id)
        refusal = clinic.page.locator("#read-result .inline-error")
        refusal.wait_for(timeout=120_000)
        assert "Access refused" in refusal.inner_text()
        assert clinic.page.locator("pre.json").count() == 0
        assert clinic.errors == []
    finally:
        clinic.close()


# ---------------------------------------------------------------- signing in again


def test_sign_in_again_with_one_prompt_and_on_a_new_browser(
    browser: Any, real_portal: str, devices: list[PasskeyBrowser]
) -> None:
    first = PasskeyBrowser(browser, real_portal)
    devices.append(first)
    account = create_account(first)
    sign_out(first)

    # after a reload, this browser's hint names the account: one prompt signs in
    first.page.reload()
    card = first.page.locator("section.passkeys")
    card.get_by_text("Last used here").wait_for()
    doc_shot(first.portal, "43-passkey-sign-in-again")
    before = len(first.asserted)
    first.page.locator("#passkey-sign-in").click()
    assert first.signed_in() == account
    assert len(first.asserted) == before + 1
    # the session outlives a reload, and its signer is made again from it: a grant is one more prompt
    first.page.reload()
    grant_clinic(first)
    assert len(first.asserted) == before + 2

    # a new browser, no hint, the same passkey on its device (a synced passkey): the passkey first says which
    # account it is (the account's first passkey: its key is recovered from the signature), then signs in
    (passkey,) = first.credentials()
    fresh = PasskeyBrowser(browser, real_portal)
    devices.append(fresh)
    fresh.import_credential(passkey)
    fresh.portal.open_signin()
    assert fresh.hints() == []
    assert fresh.page.locator("#passkey-sign-in").is_visible()
    fresh.page.locator("#passkey-sign-in").click()
    assert fresh.signed_in() == account
    assert len(fresh.asserted) == 2
    assert [h["address"] for h in fresh.hints()] == [account]  # the next sign-in here takes one prompt

    # that imported passkey brings no PRF secret: reading records here is off, and the page says why
    fresh.portal.go("#/patient/records", "My records")
    note = fresh.page.locator("#no-prf-note")
    note.wait_for()
    assert "cannot open records in this browser" in note.inner_text()


# ---------------------------------------------------------------- a second device


def test_add_a_second_device_and_sign_with_it(browser: Any, real_portal: str, devices: list[PasskeyBrowser]) -> None:
    laptop = PasskeyBrowser(browser, real_portal)
    devices.append(laptop)
    account = create_account(laptop)
    laptop.portal.go("#/patient/devices", "Passkeys and recovery")
    page = laptop.page
    page.get_by_role("heading", name="Your passkeys (1)").wait_for()
    assert "Add another device" in page.locator("#recovery").inner_text()
    assert "guardian" in page.locator("#recovery").inner_text()

    # a security key is plugged in: the new passkey is made on it (the laptop's own one is excluded), then the
    # laptop's passkey signs AddPasskey; the test stops the key answering before that second prompt
    key = laptop.add_authenticator(transport="usb")

    def key_steps_back(route: Any, _request: Any) -> None:
        laptop.presence(key, False)
        route.continue_()

    page.get_by_role("button", name="Add another device").click()
    dialog = page.locator("dialog[open]")
    page.route(f"**/v1/accounts/{account}", key_steps_back, times=1)
    dialog.get_by_role("button", name="Add a device").click()
    laptop.portal.wait_status("new device was added")
    page.get_by_role("heading", name="Your passkeys (2)").wait_for()
    (new_passkey,) = laptop.credentials(key)
    status, listed = api_json(laptop.portal, "GET", f"/v1/accounts/{account}")
    assert status == 200 and len(listed["passkeys"]) == 2

    # the security key signs a grant (the laptop's passkey does not answer this time)
    laptop.presence(key, True)
    laptop.presence(laptop.device, False)
    grant_clinic(laptop)
    (after,) = laptop.credentials(key)
    assert after["signCount"] > new_passkey["signCount"]
    status, listed = api_json(laptop.portal, "GET", f"/v1/patients/{account}/consents")
    assert [(c["signer"], c["status"]) for c in listed["consents"]] == [(account, "active")]

    # a new browser with only the security key: its passkey names the account it was added to
    other = PasskeyBrowser(browser, real_portal)
    devices.append(other)
    other.import_credential(after)
    other.portal.open_signin()
    other.page.locator("#passkey-sign-in").click()
    assert other.signed_in() == account
    assert len(other.asserted) == 2
    sign_out(other)

    # the key is lost: the laptop removes it, and it can no longer sign in anywhere
    laptop.presence(key, False)
    laptop.presence(laptop.device, True)
    laptop.portal.go("#/patient/devices", "Passkeys and recovery")
    page.get_by_role("button", name="Remove passkey 2").click()
    page.locator("dialog[open]").get_by_role("button", name="Remove it").click()
    laptop.portal.wait_status("was removed")
    page.get_by_role("heading", name="Your passkeys (1)").wait_for()
    status, listed = api_json(laptop.portal, "GET", f"/v1/accounts/{account}")
    assert [(k["x"].lower(), k["y"].lower()) for k in listed["passkeys"]] == [
        (c["x"], c["y"]) for c in laptop.hints()[0]["credentials"][:1]
    ]
    other.page.reload()
    other.page.locator("#passkey-sign-in").click()  # one prompt: this browser's hint names the account
    other.portal.alert().wait_for()
    assert "HTTP 401" in other.portal.alert().inner_text()
    assert other.page.locator("#session").is_hidden()


# ---------------------------------------------------------------- the patient's other acts

GUARDIAN = "0x8626f6940E2eb28930eFb4CeF49B2d1F2C9C1199"  # anvil #19: an ECDSA key (a passkey cannot be a delegate)


def test_guardian_and_erasure_are_signed_with_the_passkey(
    browser: Any, real_portal: str, devices: list[PasskeyBrowser]
) -> None:
    patient = PasskeyBrowser(browser, real_portal)
    devices.append(patient)
    account = create_account(patient)
    record_id = clinic_uploads(real_portal, account, LAB_RESULT)["recordId"]
    page = patient.page

    # name a guardian and remove them: a DelegateGrant and a DelegateRevoke, each one assertion
    patient.portal.go("#/patient/delegates", "Delegates")
    before = len(patient.asserted)
    page.get_by_label("Delegate's address").fill(GUARDIAN)
    page.get_by_role("button", name="Sign and add delegate").click()
    patient.portal.wait_status("added")
    status, listed = api_json(patient.portal, "GET", f"/v1/patients/{account}/delegates")
    assert status == 200 and [(d["delegate"], d["live"]) for d in listed["delegates"]] == [(GUARDIAN, True)]
    page.get_by_role("button", name=re.compile("^Remove", re.I)).click()
    patient.portal.wait_status("removed")
    status, listed = api_json(patient.portal, "GET", f"/v1/patients/{account}/delegates")
    assert [(d["delegate"], d["live"]) for d in listed["delegates"]] == [(GUARDIAN, False)]
    assert len(patient.asserted) == before + 2

    # erase the record: a RecordErase signed by the passkey
    patient.portal.go("#/patient/records", "My records")
    page.get_by_role("button", name=f"Erase record {record_id[:6]}…{record_id[-4:]}").click()
    page.locator("dialog[open]").get_by_role("button", name="Erase permanently").click()
    patient.portal.wait_status("was erased")
    assert len(patient.asserted) == before + 3
    status, listed = api_json(patient.portal, "GET", f"/v1/patients/{account}/records")
    assert [(r["recordId"], r["erased"]) for r in listed["records"]] == [(record_id, True)]
    assert "0x" not in patient.portal.status_text().replace(record_id[:6], "")  # only the record's short name


# ---------------------------------------------------------------- reading one's own record


def test_patient_reads_own_record_with_the_passkey_key(
    browser: Any, real_portal: str, devices: list[PasskeyBrowser]
) -> None:
    patient = PasskeyBrowser(browser, real_portal)
    devices.append(patient)
    account = create_account(patient)
    created = clinic_uploads(real_portal, account, LAB_RESULT)
    record_id = created["recordId"]
    traffic = Traffic(patient.portal)

    def read() -> Any:
        patient.portal.go("#/patient/records", "My records")
        patient.page.get_by_role("button", name=f"Read record {record_id[:6]}…{record_id[-4:]}", exact=True).click()
        return wait_for_record(patient.portal)

    assert json.loads(read().inner_text()) == LAB_RESULT
    # the reading key's public half was registered, signed by the passkey, and is the account's on chain
    assert traffic.relayed() == ["EncryptionKey", "AccessRequest"]
    chain = httpx.get(f"{real_portal}/v1/chain").json()
    call = {"to": chain["contracts"]["ConsentLedger"], "data": "0x" + ENCRYPTION_KEY_OF + word(account)}
    registered = rpc(real_portal, "eth_call", [call, "latest"])
    assert int(registered, 16) != 0
    status, key = api_json(patient.portal, "GET", f"/v1/encryption-keys/{account}")
    assert status == 200 and key["publicKey"].lower() == registered.lower()

    # signed in again (the same device, the same PRF): the same key, so nothing is registered again
    sign_out(patient)
    patient.page.locator("#passkey-sign-in").click()
    patient.signed_in()
    traffic.sent.clear()
    assert json.loads(read().inner_text()) == LAB_RESULT
    assert traffic.relayed() == ["AccessRequest"]
    assert rpc(real_portal, "eth_call", [call, "latest"]) == registered
    doc_shot(patient.portal, "44-passkey-reads-own-record")

    # the key, recomputed here from one more assertion of the passkey (its PRF output, HKDF, X25519): its public
    # half is the one on chain; neither the PRF output nor the private key is in any request or in storage
    derived = patient.page.evaluate(DERIVE, [chain])
    assert derived["publicKey"].lower() == registered.lower()
    for secret in (derived["prfOutput"], derived["privateKey"]):
        assert traffic.containing(secret[2:]) == [] and secret[2:] not in storage_dump(patient.portal).lower()


DERIVE = """
async ([chain]) => {
  const passkey = await import("/portal/static/js/passkey.js");
  const own = await import("/portal/static/js/own_records.js");
  const hex = (bytes) => "0x" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  const [hint] = passkey.passkeyHints.list();
  const allow = hint.credentials.map((c) => c.id);
  const a = await passkey.assertWith(crypto.getRandomValues(new Uint8Array(32)), { allow });
  const pair = await own.keyPairFromPrf(a.prfOutput, chain);
  return { prfOutput: hex(a.prfOutput), privateKey: hex(pair.privateKey), publicKey: pair.publicKey };
}
"""


# ---------------------------------------------------------------- where passkeys cannot work


def test_the_portal_at_an_ip_address_points_to_localhost(browser: Any, real_portal: str) -> None:
    portal = Portal(browser, "real", real_portal)  # http://127.0.0.1:{port}
    try:
        portal.open_signin()
        note = portal.page.locator("#passkey-note")
        note.wait_for()
        assert "name, not its number" in note.inner_text()
        link = portal.page.locator("#passkey-localhost")
        assert link.get_attribute("href") == localhost(real_portal) + "/#/signin"
        assert portal.page.locator("#passkey-create").count() == 0
        # the key options are still there below
        assert portal.page.locator("#import-form").is_visible()
        assert portal.errors == []
    finally:
        portal.close()


# ---------------------------------------------------------------- the pieces, in the browser


RECOVER = """
async () => {
  const { recoverPublicKeys } = await import("/portal/static/js/p256.js");
  const hex = (bytes) => [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const big = (bytes) => BigInt("0x" + hex(bytes));
  const results = [];
  for (let i = 0; i < 8; i++) {
    const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
    const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    const message = crypto.getRandomValues(new Uint8Array(77));
    const sig = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, pair.privateKey, message));
    const digest = big(await crypto.subtle.digest("SHA-256", message));
    const keys = recoverPublicKeys(digest, big(sig.slice(0, 32)), big(sig.slice(32)))
      .map((k) => [k.x.toString(16).padStart(64, "0"), k.y.toString(16).padStart(64, "0")]);
    results.push({ expected: [hex(raw.slice(1, 33)), hex(raw.slice(33))], keys });
  }
  return results;
}
"""
ENCODE = """
async ([der, json]) => {
  const { accountSignature } = await import("/portal/static/js/passkey.js");
  const bytes = (h) => Uint8Array.from(h.match(/../g).map((b) => parseInt(b, 16)));
  const clientDataJSON = new TextEncoder().encode(json);
  return accountSignature({ authenticatorData: new Uint8Array(37).fill(5), clientDataJSON, signature: bytes(der) });
}
"""
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def der_signature(r: int, s: int) -> bytes:
    def integer(v: int) -> bytes:
        body = v.to_bytes((v.bit_length() + 8) // 8, "big")  # a leading zero when the top bit is set
        return bytes([0x02, len(body)]) + body

    body = integer(r) + integer(s)
    return bytes([0x30, len(body)]) + body


def test_p256_key_recovery_finds_the_signing_key(browser: Any, real_portal: str, devices: list[PasskeyBrowser]) -> None:
    device = PasskeyBrowser(browser, real_portal, authenticator=False)
    devices.append(device)
    for case in device.page.evaluate(RECOVER):
        assert len(case["keys"]) == 2 and case["expected"] in case["keys"], case  # WebCrypto's key is one of two


def test_the_account_signature_has_low_s_and_the_json_indices(
    browser: Any, real_portal: str, devices: list[PasskeyBrowser]
) -> None:
    device = PasskeyBrowser(browser, real_portal, authenticator=False)
    devices.append(device)
    client_data = '{"type":"webauthn.get","challenge":"q83vEjRWeJA","origin":"http://localhost"}'
    for s_given, s_sent in ((P256_N - 5, 5), (5, 5), (P256_N // 2, P256_N // 2), (P256_N // 2 + 1, P256_N // 2)):
        encoded = device.page.evaluate(ENCODE, [der_signature(7, s_given).hex(), client_data])
        r, s, challenge_index, type_index, auth_data, json_sent = decode(
            ["bytes32", "bytes32", "uint256", "uint256", "bytes", "string"], bytes.fromhex(encoded[2:])
        )
        assert int.from_bytes(r, "big") == 7 and int.from_bytes(s, "big") == s_sent
        assert (json_sent, challenge_index, type_index, auth_data) == (client_data, 23, 1, bytes([5]) * 37)


# ---------------------------------------------------------------- phone width


def test_passkey_pages_at_phone_width(browser: Any, real_portal: str, devices: list[PasskeyBrowser]) -> None:
    phone = PasskeyBrowser(browser, real_portal, width=375, height=740)
    devices.append(phone)
    phone.portal.open_signin()
    no_horizontal_scroll(phone.portal, 375)
    account = create_account(phone, shots=("45-mobile-passkey-sign-in", "46-mobile-passkey-create"))
    grant_clinic(phone)
    no_horizontal_scroll(phone.portal, 375)
    doc_shot(phone.portal, "47-mobile-passkey-grant")
    phone.portal.go("#/patient/devices", "Passkeys and recovery")
    phone.page.get_by_role("heading", name="Your passkeys (1)").wait_for()
    no_horizontal_scroll(phone.portal, 375)
    doc_shot(phone.portal, "48-mobile-passkey-recovery")
    assert account in phone.page.locator("#main").inner_html()  # the full address is there, shown short
