"""The portal in Debian chromium: the whole patient story, a phone-width check and keyboard-only use.

Each test runs against the real service (``consent-ledger up`` with its own anvil). Screenshots go
to test-artifacts/screenshots/; the key ones are copied to docs/screenshots/ for the README.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.browser.portal import PATIENT4, Portal, api_json

pytestmark = pytest.mark.browser

OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}],
        "text": "Blood glucose",
    },
    "valueQuantity": {"value": 95, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
}


def upload_observation(clinic: Portal, shot: bool = True, patient: str = PATIENT4) -> str:
    clinic.go("#/provider/upload", "Upload a record")
    page = clinic.page
    page.get_by_label("Patient address").fill(patient)
    page.get_by_label("Category").select_option("laboratory")
    page.get_by_label("FHIR JSON").fill(json.dumps(OBSERVATION, indent=2))
    if shot:
        clinic.shot("02-provider-upload")
    page.get_by_role("button", name="Upload record").click()
    record_id = page.locator("#new-record-id").inner_text(timeout=120_000)
    assert re.fullmatch(r"0x[0-9a-f]{64}", record_id, re.I)
    if shot:
        clinic.shot("03-provider-uploaded")
    return record_id


def clinic_read(clinic: Portal, record_id: str) -> None:
    clinic.go(f"#/provider/patients?patient={PATIENT4}", "Find a patient")
    page = clinic.page
    page.get_by_label("Record id").fill(record_id)
    page.get_by_label("Purpose of use").select_option("TREAT")
    page.get_by_role("button", name="Read record", exact=True).click()


def test_patient_story(browser: object, portal: tuple[str, str]) -> None:
    kind, base = portal
    clinic = Portal(browser, kind, base)
    patient = Portal(browser, kind, base)
    auditor = Portal(browser, kind, base)
    try:
        # the clinic signs in with the demo account and uploads a FHIR Observation for patient #4
        clinic.open_signin()
        assert clinic.page.get_by_role("heading", name="Demo accounts (dev chain only)").is_visible()
        clinic.shot("01-sign-in")
        clinic.sign_in_demo(1)
        clinic.page.get_by_role("heading", name="Find a patient", level=1).wait_for()
        clinic.shot("01b-provider-home")
        record_id = upload_observation(clinic)

        # patient #4 signs in, sees the record and grants Demo Clinic TREAT on all records
        patient.sign_in_demo(4)
        patient.page.get_by_role("heading", name="My records", level=1).wait_for()
        patient.page.get_by_text(record_id[:10]).first.wait_for()
        patient.shot("04-patient-records")
        patient.go("#/patient/consents", "Consents")
        page = patient.page
        provider = page.get_by_label("Provider", exact=True)
        clinic_value = provider.evaluate("s => [...s.options].find(o => o.text.startsWith('Demo Clinic')).value")
        provider.select_option(clinic_value)
        page.get_by_label("All my records").check()
        page.get_by_label("Purpose of use").select_option("TREAT")
        page.get_by_role("button", name="Review and grant…").click()
        page.locator("dialog[open]").get_by_role("button", name="Sign and grant access").click()
        patient.wait_status("Access granted")
        consents = page.locator("section", has=page.get_by_role("heading", name="Your consents"))
        consents.get_by_text("Active").first.wait_for()
        patient.shot("05-patient-grant")

        # the clinic reads the record for treatment
        clinic_read(clinic, record_id)
        clinic.page.locator("#read-result .fhir-view").wait_for(timeout=120_000)
        assert "95 mg/dL" in clinic.page.locator("#read-result dl.fhir-summary").inner_text()
        clinic.page.get_by_text("Show raw JSON").click()
        content = clinic.page.locator("pre.json")
        assert '"resourceType": "Observation"' in content.inner_text()
        clinic.page.get_by_text("Ledger details").click()
        tx = clinic.page.locator("dt:has-text('Disclosure logged in') + dd").inner_text()
        assert re.fullmatch(r"0x[0-9a-f]{64}", tx, re.I), tx
        clinic.shot("06-provider-read")

        # the patient sees the disclosure in the timeline
        patient.go("#/patient/disclosures", "Who has seen my records")
        entry = patient.page.locator("ol.timeline > li").first
        entry.wait_for()
        assert "Demo Clinic read Laboratory record added" in entry.inner_text()  # titles not opened here
        assert "for treatment" in entry.inner_text()
        patient.shot("07-patient-disclosures")

        # the patient revokes
        patient.go("#/patient/consents", "Consents")
        page.get_by_role("button", name=re.compile("^Revoke .*Demo Clinic")).first.click()
        dialog = page.locator("dialog[open]")
        dialog.get_by_role("heading", name="Revoke this consent?").wait_for()
        patient.shot("08a-patient-revoke-dialog")
        dialog.get_by_role("button", name="Sign and revoke").click()
        patient.wait_status("Consent revoked")
        consents.get_by_text("Revoked").first.wait_for()
        patient.shot("08-patient-revoked")

        # the clinic's read is refused: the refusal and its next steps are shown beside the read form
        clinic_read(clinic, record_id)
        refusal = clinic.page.locator("#read-result .inline-error")
        refusal.wait_for(timeout=120_000)
        text = refusal.inner_text()
        assert "Access refused" in text and "revoked" in text
        assert "Ask the patient" in text
        assert clinic.page.locator("pre.json").count() == 0
        clinic.shot("09-provider-refused")

        # the auditor verifies the patient
        auditor.sign_in_demo(3)
        auditor.page.get_by_role("heading", name="Verify the ledger", level=1).wait_for()
        auditor.page.get_by_label("One patient").check()
        auditor.page.get_by_label("Patient address").fill(PATIENT4)
        auditor.page.get_by_role("button", name="Verify", exact=True).click()
        report = auditor.page.locator("#report h2")
        auditor.page.locator("#report h2, #alert:not([hidden])").first.wait_for(timeout=300_000)
        if not report.count():
            auditor.shot("10-auditor-error")
            pytest.fail(f"the audit failed: {auditor.alert().inner_text()}")
        assert "Report" in report.inner_text()
        auditor.page.locator(".verdict").wait_for()
        auditor.shot("10-auditor-report")
        for p in (clinic, patient, auditor):
            assert p.errors == [], p.errors
    finally:
        for p in (clinic, patient, auditor):
            p.close()


def test_emergency_access_is_flagged(browser: object, portal: tuple[str, str]) -> None:
    kind, base = portal
    clinic = Portal(browser, kind, base)
    patient = Portal(browser, kind, base)
    try:
        clinic.sign_in_demo(1)
        record_id = upload_observation(clinic, shot=False)
        clinic.go(f"#/provider/patients?patient={PATIENT4}", "Find a patient")
        page = clinic.page
        page.get_by_label("Record id").fill(record_id)
        page.get_by_role("button", name="Emergency access…").click()
        dialog = page.locator("dialog[open]")
        dialog.get_by_label("Reason for emergency access").fill("Unconscious patient in the emergency department")
        # the deliberate confirmation is required
        dialog.get_by_role("button", name="Break the glass and read").click()
        assert dialog.is_visible()
        dialog.get_by_label(re.compile("I confirm this is an emergency")).check()
        clinic.shot("11a-break-glass-dialog")
        dialog.get_by_role("button", name="Break the glass and read").click()
        page.locator("#read-result .fhir-view").wait_for(timeout=120_000)
        clinic.shot("11b-break-glass-read")

        patient.sign_in_demo(4)
        patient.go("#/patient/disclosures", "Who has seen my records")
        flagged = patient.page.locator("ol.timeline > li.emergency").first
        flagged.wait_for()
        text = flagged.inner_text()
        assert "Emergency access" in text.title() or "EMERGENCY ACCESS" in text.upper()
        assert "Unconscious patient" in text
        patient.shot("11-emergency-timeline")
    finally:
        clinic.close()
        patient.close()


PATIENT6 = "0x976EA74026E726554dB657fA54763abd0C3a0aa9"


def test_patient_erases_a_record(browser: object, portal: tuple[str, str]) -> None:
    kind, base = portal
    clinic = Portal(browser, kind, base)
    patient = Portal(browser, kind, base)
    try:
        clinic.sign_in_demo(1)
        record_id = upload_observation(clinic, shot=False, patient=PATIENT6)
        patient.sign_in_demo(6)
        patient.go("#/patient/records", "My records")
        page = patient.page
        page.get_by_role("button", name=re.compile(f"Erase record {record_id[:6]}", re.I)).click()
        dialog = page.locator("dialog[open]")
        assert "permanently" in dialog.inner_text()
        patient.shot("12-erase-confirm")
        dialog.get_by_role("button", name="Erase permanently").click()
        patient.wait_status("was erased")
        page.locator("text=Erased").first.wait_for()
        patient.shot("13-record-erased")
        # the clinic's read of the erased record is refused with the record-erased problem
        clinic.go(f"#/provider/patients?patient={PATIENT6}", "Find a patient")
        clinic.page.get_by_label("Record id").fill(record_id)
        clinic.page.get_by_label("Purpose of use").select_option("TREAT")
        clinic.page.get_by_role("button", name="Read record", exact=True).click()
        refusal = clinic.page.locator("#read-result .inline-error")
        refusal.wait_for()
        assert "erased" in refusal.inner_text().lower()
    finally:
        clinic.close()
        patient.close()


PATIENT8 = "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f"
GUARDIAN = "0x8626f6940E2eb28930eFb4CeF49B2d1F2C9C1199"


def test_patient_names_and_removes_a_guardian(browser: object, portal: tuple[str, str]) -> None:
    """Both are the patient's own signatures, made in the browser; the removal is a signed DelegateRevoke."""
    kind, base = portal
    patient = Portal(browser, kind, base)
    try:
        patient.sign_in_demo(8)
        patient.go("#/patient/delegates", "Delegates")
        page = patient.page
        page.get_by_label("Delegate's address").fill(GUARDIAN)
        page.get_by_role("button", name="Sign and add delegate").click()
        patient.wait_status("added")
        status, listed = api_json(patient, "GET", f"/v1/patients/{PATIENT8}/delegates")
        assert status == 200 and [(d["delegate"], d["live"]) for d in listed["delegates"]] == [(GUARDIAN, True)]
        page.get_by_role("button", name=re.compile("^Remove", re.I)).click()
        patient.wait_status("removed")
        status, listed = api_json(patient, "GET", f"/v1/patients/{PATIENT8}/delegates")
        assert status == 200 and [(d["delegate"], d["live"]) for d in listed["delegates"]] == [(GUARDIAN, False)]
        assert not patient.alert().count()
        assert patient.errors == []
    finally:
        patient.close()


def test_phone_width(browser: object, portal: tuple[str, str]) -> None:
    kind, base = portal
    phone = Portal(browser, kind, base, width=375, height=740)
    try:
        phone.open_signin()

        def no_horizontal_scroll() -> None:
            width = phone.page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, f"page is {width}px wide at a 375px viewport"

        no_horizontal_scroll()
        phone.shot("20-mobile-sign-in")
        phone.sign_in_demo(4)
        for route, heading, name in (
            ("#/patient/records", "My records", "20-mobile-records"),
            ("#/patient/consents", "Consents", "20-mobile-consents"),
            ("#/patient/disclosures", "Who has seen my records", "20-mobile-disclosures"),
            ("#/patient/delegates", "Delegates", "20-mobile-delegates"),
        ):
            phone.go(route, heading)
            phone.page.wait_for_load_state("networkidle")
            no_horizontal_scroll()
            phone.shot(name)
        assert phone.errors == []
    finally:
        phone.close()


CONTROLS = "main button, main input, main select, main textarea, main a[href]"
JS_FOCUS_NAME = "(() => { const el = document.activeElement; return el.name || el.id || el.textContent.trim() })()"
JS_TABBABLE_COUNT = f"""[...document.querySelectorAll('{CONTROLS}')]
    .filter(el => !el.disabled && el.offsetParent !== null).length"""
JS_FOCUS_INDEX = f"[...document.querySelectorAll('{CONTROLS}')].indexOf(document.activeElement)"
JS_GRANT_CONTROLS = """[...document.querySelectorAll('#grant-form select, #grant-form input, #grant-form button')]
    .filter(el => !el.disabled && !(el.type === 'radio' && !el.checked))
    .map(el => el.name || el.id || el.textContent.trim())"""


def _tab_until(page: Any, predicate: str, limit: int = 80) -> list[str]:
    """Press Tab until document.activeElement matches `predicate` (a JS expression over `el`)."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        seen.append(page.evaluate(JS_FOCUS_NAME))
        if page.evaluate(f"(() => {{ const el = document.activeElement; return Boolean({predicate}); }})()"):
            return seen
    raise AssertionError(f"never reached {predicate}; focus went through {seen}")


def test_keyboard_only(browser: object, portal: tuple[str, str]) -> None:
    kind, base = portal
    kb = Portal(browser, kind, base)
    page = kb.page
    try:
        kb.open_signin()
        # the skip link comes first and is visible when focused
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip-link"
        # every sign-in control is reachable with Tab
        count = page.evaluate(JS_TABBABLE_COUNT)
        reached = set()
        for _ in range(count + 5):
            page.keyboard.press("Tab")
            reached.add(page.evaluate(JS_FOCUS_INDEX))
        assert set(range(count)) <= reached, f"not reached by Tab: {set(range(count)) - reached}"
        # a visible focus indicator
        assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"

        # sign in as patient #4 with the keyboard: focus the demo button and press Enter
        kb.open_signin()
        _tab_until(page, "el.dataset && el.dataset.demoIndex === '4'")
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="My records", level=1).wait_for()

        # the grant form: Tab reaches every control, the keyboard fills it, Enter submits
        kb.go("#/patient/consents", "Consents")
        page.locator("#grant-form button[type=submit]").wait_for()
        form_controls = page.evaluate(JS_GRANT_CONTROLS)
        order: list[str] = []
        page.locator("h1").focus()
        for _ in range(60):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.closest('#grant-form') !== null"):
                name = page.evaluate(JS_FOCUS_NAME)
                if not order or order[-1] != name:  # a date input takes several Tab stops: count it once
                    order.append(name)
            elif order:
                break
        assert order == form_controls, f"Tab order {order} != controls {form_controls}"

        page.locator("h1").focus()
        _tab_until(page, "el.name === 'grantee'")
        page.keyboard.press("ArrowDown")  # first provider
        assert page.evaluate("document.activeElement.value") != ""
        page.keyboard.press("Tab")  # scope radios: "All my records" is checked
        assert page.evaluate("document.activeElement.value") == "all"
        page.keyboard.press("Tab")  # purpose (TREAT preselected)
        assert page.evaluate("document.activeElement.name") == "purpose"
        page.keyboard.press("Tab")  # valid-from date
        page.keyboard.press("Enter")  # Enter submits the form: the review dialog opens on its safe button
        page.locator("dialog[open]").get_by_role("heading", name="Check before you grant").wait_for()
        assert page.evaluate("document.activeElement.textContent") == "Go back and change"
        page.keyboard.press("Shift+Tab")  # the confirm button comes first
        assert page.evaluate("document.activeElement.textContent") == "Sign and grant access"
        page.keyboard.press("Enter")
        kb.wait_status("Access granted")
        kb.shot("30-keyboard-granted")
        assert kb.errors == []
    finally:
        kb.close()
