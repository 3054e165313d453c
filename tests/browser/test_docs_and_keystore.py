"""/docs renders from this origin under the portal's CSP; saved keys use scrypt at N = 2**17.

Against the real service (``consent-ledger up``), in Debian chromium. Kept small: scrypt at 2**17 takes
about a second in the browser.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from eth_account import Account

from consent_api.app import content_security_policy
from tests.browser.portal import Portal

pytestmark = pytest.mark.browser

PASSPHRASE = "correct horse battery"
CURRENT_N, LEGACY_N = 2**17, 2**14

# Every violation the page reports, whether or not the console shows it (injected before any page script).
CSP_VIOLATION_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


def _saved_keys(portal: Portal) -> list[dict[str, Any]]:
    return list(portal.page.evaluate("() => JSON.parse(localStorage.getItem('consentLedger.keys') || '[]')"))


def _kdf(entry: dict[str, Any]) -> dict[str, Any]:
    keystore = json.loads(entry["json"])
    crypto = keystore.get("crypto") or keystore["Crypto"]  # ethers writes "Crypto"
    assert crypto["kdf"] == "scrypt"
    return dict(crypto["kdfparams"])


def test_docs_render_from_this_origin_with_no_csp_violation(browser: Any, real_portal: str) -> None:
    docs = Portal(browser, "real", real_portal)
    origin = urlsplit(real_portal).netloc
    requested: list[str] = []
    console: list[str] = []
    try:
        docs.context.add_init_script(CSP_VIOLATION_RECORDER)
        docs.page.on("request", lambda r: requested.append(r.url))
        docs.page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        response = docs.page.goto("/docs")
        assert response is not None and response.status == 200
        # the portal's own policy: this origin, and calls to the key custodians GET /v1/chain lists
        custody = docs.page.request.get("/v1/chain").json()["custody"]
        custodians = sorted({c["url"] for c in custody["custodians"]})
        assert response.headers["content-security-policy"] == content_security_policy(custodians)

        # swagger-ui loaded and read the OpenAPI: the operations list shows the record routes
        docs.page.locator(".opblock-summary-path", has_text="/v1/records/{record_id}").first.wait_for()
        docs.page.locator(".opblock-tag", has_text="records").first.wait_for()
        # an expanded operation renders its parameters and example responses (highlighted JSON) too
        docs.page.locator(".opblock-summary", has_text="/v1/records/{record_id}/emergency-access").click()
        docs.page.locator(".opblock.is-open .responses-wrapper").wait_for()
        docs.shot("30-api-docs")

        foreign = [u for u in requested if urlsplit(u).scheme in ("http", "https") and urlsplit(u).netloc != origin]
        assert foreign == [], foreign
        assert docs.page.evaluate("() => window.__cspViolations") == []
        assert [line for line in console if "Content Security Policy" in line] == []
        assert docs.errors == [], docs.errors
    finally:
        docs.close()


def test_a_new_key_is_saved_with_scrypt_at_2_17(browser: Any, real_portal: str) -> None:
    portal = Portal(browser, "real", real_portal)
    try:
        portal.open_signin()
        form = portal.page.locator("#new-key-form")
        form.get_by_label("Name for this key (optional)").fill("New key")
        form.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
        form.get_by_label("Repeat passphrase").fill(PASSPHRASE)
        form.get_by_role("button", name="Create key and sign in").click()
        portal.page.locator("#session:not([hidden])").wait_for()

        (entry,) = _saved_keys(portal)
        assert _kdf(entry) | {"salt": None} == {"n": CURRENT_N, "r": 8, "p": 1, "dklen": 32, "salt": None}
        # a standard v3 keystore: another implementation opens it with the passphrase
        key = Account.decrypt(entry["json"], PASSPHRASE)
        assert Account.from_key(key).address == entry["address"]

        # unlocking a key already at the current cost leaves it as it is (no second scrypt per sign-in)
        portal.page.locator("#sign-out").click()
        portal.page.get_by_role("button", name=f"Sign in with New key {entry['address']}").click()
        dialog = portal.page.locator("dialog[open]")
        dialog.get_by_label("Passphrase").fill(PASSPHRASE)
        dialog.get_by_role("button", name="Unlock and sign in").click()
        portal.page.locator("#session:not([hidden])").wait_for()
        assert _saved_keys(portal) == [entry]
        assert portal.errors == [], portal.errors
    finally:
        portal.close()


def test_a_key_saved_at_2_14_still_opens_and_is_saved_again_at_2_17(browser: Any, real_portal: str) -> None:
    account = Account.create()
    legacy = Account.encrypt(account.key, PASSPHRASE, kdf="scrypt", iterations=LEGACY_N)
    assert legacy["crypto"]["kdfparams"]["n"] == LEGACY_N
    entry = {"address": account.address, "label": "Old key", "json": json.dumps(legacy), "createdAt": "2024-01-01"}
    portal = Portal(browser, "real", real_portal)
    try:
        portal.open_signin()
        portal.page.evaluate("(e) => localStorage.setItem('consentLedger.keys', JSON.stringify([e]))", entry)
        portal.open_signin()
        portal.page.get_by_role("button", name=f"Sign in with Old key {account.address}").click()
        dialog = portal.page.locator("dialog[open]")
        dialog.get_by_label("Passphrase").fill(PASSPHRASE)
        dialog.get_by_role("button", name="Unlock and sign in").click()
        portal.page.locator("#session:not([hidden])").wait_for()
        assert portal.page.locator("#session-address").get_attribute("title") == account.address

        (saved,) = _saved_keys(portal)
        assert (saved["address"], saved["label"], saved["createdAt"]) == (account.address, "Old key", "2024-01-01")
        assert _kdf(saved)["n"] == CURRENT_N
        assert Account.decrypt(saved["json"], PASSPHRASE) == account.key
        assert portal.errors == [], portal.errors
    finally:
        portal.close()
