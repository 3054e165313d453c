"""Safe consent choices (issue #16, part 3) and the emergency notice (part 4), in Debian chromium.

A grant is reviewed in plain words before it is signed, with a default end date and an extra warning for a
broad one; its result is shown beside the form, in view on a phone; a refused read names the purposes the
provider's consents cover and its next steps; an emergency access is announced on the patient's first page
until the patient marks it reviewed.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.browser.portal import Portal, api_json
from tests.browser.test_portal import upload_observation

pytestmark = pytest.mark.browser

PATIENT5 = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"  # anvil's dev account #5
PATIENT7 = "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955"  # anvil's dev account #7
DAY = 86400


def choose_provider(page: object, name: str) -> None:
    provider = page.get_by_label("Provider", exact=True)  # type: ignore[attr-defined]
    provider.select_option(provider.evaluate(f"s => [...s.options].find(o => o.text.startsWith({name!r})).value"))


def test_a_broad_grant_shows_the_review_and_its_warning(browser: object, portal: tuple[str, str]) -> None:
    kind, base = portal
    phone = Portal(browser, kind, base, width=390, height=844)
    try:
        phone.sign_in_demo(5)
        phone.go("#/patient/consents", "Consents")
        page = phone.page
        # the default: an end date 90 days away, changeable
        until = page.get_by_label("Valid until")
        assert until.is_enabled() and not page.get_by_label(re.compile("^No end date")).is_checked()
        expected = page.evaluate(
            "(() => { const d = new Date(); d.setDate(d.getDate() + 90); return d.toISOString().slice(0, 10); })()"
        )
        assert until.input_value() == expected

        choose_provider(page, "Demo Lab")
        page.get_by_label("All my records").check()
        page.get_by_label("Purpose of use").select_option("HRESCH")
        page.get_by_label(re.compile("^No end date")).check()
        page.get_by_role("button", name="Review and grant…").click()
        dialog = page.locator("dialog[open]")
        dialog.get_by_role("heading", name="Check before you grant").wait_for()
        assert "Demo Lab may read ALL your records for research, with no end date." in dialog.inner_text()
        warning = dialog.locator("#grant-warning")
        assert warning.is_visible()
        text = warning.inner_text()
        assert "very broad grant" in text and "every record added later" in text and "Research use" in text
        phone.shot("50-grant-review-warning")
        # going back changes nothing: nothing was signed
        dialog.get_by_role("button", name="Go back and change").click()
        assert page.locator("dialog[open]").count() == 0
        _status, listed = api_json(phone, "GET", f"/v1/patients/{PATIENT5}/consents")
        before = {c["consentId"] for c in listed["consents"]}

        # a refused grant is told in the dialog, beside its button, in plain words
        refuse = {"type": "/problems/validation-error", "title": "Invalid request", "status": 400, "detail": "x"}
        page.route(
            "**/v1/consents",
            lambda route: route.fulfill(status=400, content_type="application/problem+json", body=json.dumps(refuse)),
        )
        page.get_by_role("button", name="Review and grant…").click()
        dialog.get_by_role("button", name="Sign and grant access").click()
        failure = dialog.locator(".dialog-error")
        failure.get_by_text("Not granted").wait_for(timeout=120_000)
        assert "Nothing was granted" in failure.inner_text() and "HTTP" not in failure.inner_text()
        page.unroute("**/v1/consents")
        dialog.get_by_role("button", name="Sign and grant access").click()
        message = page.locator("#grant-result .inline-ok")
        message.wait_for(timeout=120_000)
        assert "Access granted" in message.inner_text()
        assert "Demo Lab may read ALL your records for research, with no end date." in message.inner_text()
        assert not re.search(r"0x[0-9a-f]{6}", message.inner_text(), re.I)  # no hashes for the patient
        # next to the form and in view on a phone, with the focus on it
        assert page.evaluate("document.activeElement.closest('#grant-result') !== null")
        box = message.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + min(box["height"], 100) <= 844, box
        phone.shot("51-grant-done-phone")
        _status, listed = api_json(phone, "GET", f"/v1/patients/{PATIENT5}/consents")
        new = [c for c in listed["consents"] if c["consentId"] not in before]
        assert [(c["granteeName"], c["scopeKind"], c["purpose"], c["validUntil"]) for c in new] == [
            ("Demo Lab", "all", "HRESCH", 0)
        ]

        # a narrow grant: no warning, and the default end date is what is signed
        choose_provider(page, "Demo Clinic")
        page.get_by_label("Records of one kind").check()
        page.get_by_label("Kind of record").select_option("laboratory")
        page.get_by_label("Purpose of use").select_option("TREAT")
        page.get_by_role("button", name="Review and grant…").click()
        dialog.get_by_role("heading", name="Check before you grant").wait_for()
        assert dialog.locator("#grant-warning").count() == 0
        assert re.search(r"Demo Clinic may read your laboratory records for treatment, until ", dialog.inner_text())
        dialog.get_by_role("button", name="Sign and grant access").click()
        page.locator("#grant-result .inline-ok", has_text="Demo Clinic").wait_for(timeout=120_000)
        _status, listed = api_json(phone, "GET", f"/v1/patients/{PATIENT5}/consents")
        clinic = [c for c in listed["consents"] if c["granteeName"] == "Demo Clinic" and c["purpose"] == "TREAT"]
        assert clinic and clinic[0]["scopeKind"] == "category"
        assert abs(int(clinic[0]["validUntil"]) - (time.time() + 90 * DAY)) < 2 * DAY

        # after a revocation the focus is on the updated list, which says what changed
        page.get_by_role("button", name=re.compile("^Revoke Demo Lab's access for research")).first.click()
        dialog.get_by_role("button", name="Sign and revoke").click()
        revoked = page.locator("#consent-list .inline-ok", has_text="Consent revoked")
        revoked.wait_for(timeout=120_000)
        assert "Demo Lab can no longer read these records for research." in revoked.inner_text()
        assert page.evaluate("document.activeElement.id") == "consent-list"

        # messages answer their page: none lingers onto the next one
        assert "Consent revoked" in phone.status_text()
        phone.go("#/patient/delegates", "Delegates")
        assert phone.status_text() == "" and phone.alert().count() == 0
        assert phone.errors == []
    finally:
        phone.close()


def grant_through_the_form(patient: Portal, provider: str, purpose: str) -> None:
    patient.go("#/patient/consents", "Consents")
    page = patient.page
    choose_provider(page, provider)
    page.get_by_label("Records of one kind").check()
    page.get_by_label("Kind of record").select_option("laboratory")
    page.get_by_label("Purpose of use").select_option(purpose)
    page.get_by_role("button", name="Review and grant…").click()
    page.locator("dialog[open]").get_by_role("button", name="Sign and grant access").click()
    page.locator("#grant-result .inline-ok").wait_for(timeout=120_000)


def test_a_refusal_names_the_covered_purposes_and_next_steps(browser: object, portal: tuple[str, str]) -> None:
    kind, base = portal
    clinic = Portal(browser, kind, base)
    patient = Portal(browser, kind, base)
    try:
        clinic.sign_in_demo(1)
        record_id = upload_observation(clinic, shot=False, patient=PATIENT7)
        patient.sign_in_demo(7)
        grant_through_the_form(patient, "Demo Clinic", "HOPERAT")

        clinic.go(f"#/provider/patients?patient={PATIENT7}", "Find a patient")
        page = clinic.page
        page.get_by_label("Record id").fill(record_id)
        page.get_by_label("Purpose of use").select_option("TREAT")
        page.get_by_role("button", name="Read record", exact=True).click()
        refusal = page.locator("#read-result .inline-error")
        refusal.wait_for(timeout=120_000)
        text = refusal.inner_text()
        assert "Access refused" in text
        assert refusal.locator(".covered-purposes").inner_text() == "Healthcare operations (HOPERAT)"
        assert "Ask the patient" in text and "emergency access" in text
        assert clinic.alert().count() == 0  # beside the form, not in a banner at the top
        assert page.evaluate("document.activeElement.closest('#read-result') !== null")
        clinic.shot("52-provider-refusal-next-steps")
        # a covered purpose is one click away, and reads
        refusal.get_by_role("button", name="Use Healthcare operations (HOPERAT)").click()
        assert page.get_by_label("Purpose of use").input_value() == "HOPERAT"
        page.get_by_role("button", name="Read record", exact=True).click()
        page.locator("#read-result .fhir-view").wait_for(timeout=120_000)

        # one record, shared from its row: the review names it as the patient knows it, with no warning
        patient.go("#/patient/records", "My records")
        patient.page.get_by_role("link", name=re.compile("^Share")).first.click()
        patient.page.get_by_role("heading", name="Consents", level=1).wait_for()
        assert patient.page.get_by_label("One record").is_checked()
        choose_provider(patient.page, "Demo Lab")
        patient.page.get_by_role("button", name="Review and grant…").click()
        dialog = patient.page.locator("dialog[open]")
        sentence = dialog.locator(".review-sentence").inner_text()
        assert re.match(r"Demo Lab may read one record: .+ for treatment, until ", sentence), sentence
        assert dialog.locator("#grant-warning").count() == 0
        dialog.get_by_role("button", name="Sign and grant access").click()
        patient.page.locator("#grant-result .inline-ok").wait_for(timeout=120_000)
        row = patient.page.locator("#consent-list tr", has_text="Demo Lab").first
        assert "One record: " in row.inner_text()
        assert clinic.errors == [] and patient.errors == []
    finally:
        clinic.close()
        patient.close()


def test_an_emergency_access_is_announced_on_the_landing_page(browser: object, portal: tuple[str, str]) -> None:
    kind, base = portal
    clinic = Portal(browser, kind, base)
    patient = Portal(browser, kind, base)
    try:
        clinic.sign_in_demo(1)
        record_id = upload_observation(clinic, shot=False, patient=PATIENT7)
        clinic.go(f"#/provider/patients?patient={PATIENT7}", "Find a patient")
        page = clinic.page
        page.get_by_label("Record id").fill(record_id)
        page.get_by_role("button", name="Emergency access…").click()
        dialog = page.locator("dialog[open]")
        dialog.get_by_label("Reason for emergency access").fill("Found unconscious after a road accident")
        dialog.get_by_label(re.compile("I confirm this is an emergency")).check()
        dialog.get_by_role("button", name="Break the glass and read").click()
        page.locator(".fhir-view").wait_for(timeout=120_000)

        patient.sign_in_demo(7)
        landing = patient.page
        landing.get_by_role("heading", name="My records", level=1).wait_for()
        notice = landing.locator("#emergency-notice")
        notice.wait_for()
        item = notice.locator("li", has_text="Found unconscious after a road accident")
        assert "Demo Clinic" in item.inner_text() and "without consent" in item.inner_text()
        # above the page's records
        below = "document.querySelector('#emergency-notice').nextElementSibling"
        assert landing.evaluate(f"{below}.querySelector('#rec-h') !== null")
        item.get_by_role("button", name=re.compile("^Contact the clinic")).click()
        help_text = item.locator(".contact-help").inner_text()
        assert "Contact Demo Clinic" in help_text and "why it was an emergency" in help_text
        patient.shot("53-emergency-notice")
        _status, listed = api_json(patient, "GET", f"/v1/patients/{PATIENT7}/disclosures")
        open_before = [d for d in listed["disclosures"] if d["emergency"] and d["reviewedAt"] is None]
        assert open_before

        while notice.locator("li button", has_text="Mark as reviewed").count():
            notice.locator("li button", has_text="Mark as reviewed").first.click()
            landing.wait_for_timeout(300)
        notice.get_by_text("All reviewed").wait_for()
        _status, listed = api_json(patient, "GET", f"/v1/patients/{PATIENT7}/disclosures")
        assert all(d["reviewedAt"] for d in listed["disclosures"] if d["emergency"])

        # the mark is kept by the service: after a reload the notice is gone
        landing.reload()
        landing.get_by_role("heading", name="My records", level=1).wait_for()
        landing.wait_for_load_state("networkidle")
        assert landing.locator("#emergency-notice").count() == 0
        assert clinic.errors == [] and patient.errors == []
    finally:
        clinic.close()
        patient.close()
