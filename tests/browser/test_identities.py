"""Identities people can use: a patient's ID card (full ID, copy, QR code, share link), a clinic's own patient
directory (find a patient by name or MRN and open their records), and a guardian's list of the patients who
named them (docs/architecture.md, "Patient directory")."""

from __future__ import annotations

import re

from eth_account import Account

from ledger_service.settings import ANVIL_DEV_KEYS
from tests.browser.portal import PATIENT4, Portal, api_json

ADDRESS = {i: Account.from_key(ANVIL_DEV_KEYS[i]).address for i in range(4, 10)}
NAME, BORN, MRN = "Ada Lovelace-Byron", "1984-03-09", "DC-20841"


def _search(clinic: Portal, q: str) -> None:
    page = clinic.page
    page.get_by_label("Name, MRN or patient ID").fill(q)
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#directory-results :is(table, .empty)").wait_for()


def test_a_clinic_finds_a_patient_by_name_and_by_mrn(browser: object, portal: tuple[str, str]) -> None:
    kind, base = portal
    clinic, lab = Portal(browser, kind, base), Portal(browser, kind, base)
    patient = ADDRESS[9]
    try:
        clinic.sign_in_demo(1)
        observation = {"resourceType": "Observation", "status": "final", "code": {"text": "Blood pressure"}}
        status, created = api_json(
            clinic,
            "POST",
            "/v1/records",
            body={
                "patient": patient,
                "category": "laboratory",
                "mediaType": "application/fhir+json",
                "content": observation,
            },
        )
        assert status == 201, created
        record_id = created["recordId"]

        # the patient's share link opens the clinic's page with them filled in: the clinic adds them
        clinic.go(f"#/provider/patients?patient={patient}", "Find a patient")
        page = clinic.page
        assert page.locator("#shown-patient-id").inner_text() == patient
        page.get_by_text("not in your patient directory yet").wait_for()
        page.get_by_label("Name", exact=True).fill(NAME)
        page.get_by_label("Date of birth (optional)").fill(BORN)
        page.get_by_label("MRN (optional)").fill(MRN)
        page.get_by_role("button", name="Add to your directory").click()
        clinic.wait_status("is in your patient directory")
        page.get_by_role("heading", name=f"Records of {NAME}").wait_for()
        card = page.locator("#patient-card").inner_text()
        assert NAME in card and MRN in card and "1984" in card, card

        for query in ("lovelace", MRN.lower()):
            clinic.go("#/provider/patients", "Find a patient")
            _search(clinic, query)
            rows = page.locator("#directory-results tbody tr")
            assert rows.count() == 1, page.locator("#directory-results").inner_text()
            row = rows.first.inner_text()
            assert NAME in row and MRN in row and patient in row, row
            if query == "lovelace":
                clinic.shot("50-provider-find-by-name")
            page.get_by_role("link", name=f"Open records of {NAME}").click()
            page.get_by_role("heading", name=f"Records of {NAME}").wait_for()
            page.locator(f"#prec-h ~ * [title='{record_id}']").wait_for()
        clinic.shot("51-provider-patient-records")

        # the patient's share link (or ID), pasted into the search, opens them; a damaged one is refused
        clinic.go("#/provider/patients", "Find a patient")
        page.get_by_label("Name, MRN or patient ID").fill(f"{base}/#/provider/patients?patient={patient}")
        page.get_by_role("button", name="Search", exact=True).click()
        page.get_by_role("heading", name=f"Records of {NAME}").wait_for()
        assert page.get_by_role("heading", name="Find another patient").is_visible()
        damaged = patient[:-1] + ("0" if patient[-1] != "0" else "1")
        page.get_by_label("Name, MRN or patient ID").fill(damaged)
        page.get_by_role("button", name="Search", exact=True).click()
        page.locator(".field-error", has_text="This patient ID is not valid").wait_for()

        # the lab's directory is its own: it finds nobody by the clinic's entry
        lab.sign_in_demo(2)
        lab.go("#/provider/patients", "Find a patient")
        for query in ("lovelace", MRN):
            _search(lab, query)
            assert lab.page.locator("#directory-results tbody tr").count() == 0
            lab.page.get_by_text("No patient in your directory matches").wait_for()
        # no camera scanning in this browser: the page says to paste the link or ID instead
        assert lab.page.locator("#scan-note").is_visible()
        assert clinic.errors == [] and lab.errors == []
    finally:
        clinic.close()
        lab.close()


def test_a_patient_sees_copies_and_shares_their_patient_id(browser: object, portal: tuple[str, str]) -> None:
    kind, base = portal
    patient = Portal(browser, kind, base)
    phone = Portal(browser, kind, base, width=375, height=740)
    try:
        patient.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        patient.sign_in_demo(4)
        patient.page.get_by_role("link", name="Your patient ID").click()
        page = patient.page
        page.get_by_role("heading", name="Your patient ID", level=1).wait_for()
        assert page.locator("#patient-id").inner_text() == PATIENT4  # the full ID, not a shortened one
        page.get_by_role("button", name="Copy your patient ID").click()
        patient.wait_status("Patient ID copied.")
        assert page.evaluate("navigator.clipboard.readText()") == PATIENT4

        link = page.locator("#share-link").get_attribute("href")
        assert link and link.startswith(base) and link.endswith(f"#/provider/patients?patient={PATIENT4}"), link
        page.get_by_role("button", name="Copy link").click()
        patient.wait_status("Link copied.")
        assert page.evaluate("navigator.clipboard.readText()") == link

        qr = page.get_by_role("img", name="QR code of your patient ID link")
        assert (qr.get_attribute("src") or "").startswith("data:image/gif;base64,")
        size = qr.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
        assert size[0] and size[1] >= 100 and size[1] == size[2], size
        patient.shot("52-patient-id")

        phone.sign_in_demo(4)
        phone.go("#/patient/id", "Your patient ID")
        assert phone.page.locator("#patient-id").inner_text() == PATIENT4
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"page is {width}px wide at a 375px viewport"
        phone.shot("53-patient-id-phone")
        assert patient.errors == [] and phone.errors == []
    finally:
        patient.close()
        phone.close()


def test_a_guardian_sees_the_patients_who_named_them(browser: object, portal: tuple[str, str]) -> None:
    kind, base = portal
    named, guardian = Portal(browser, kind, base), Portal(browser, kind, base)
    try:
        named.sign_in_demo(6)
        named.go("#/patient/delegates", "Delegates")
        named.page.get_by_label("Delegate's address").fill(ADDRESS[7])
        named.page.get_by_role("button", name="Sign and add delegate").click()
        named.wait_status("added")
        # the patient who named nobody's guardian sees no such list
        assert named.page.get_by_role("heading", name="People who named you as their guardian").count() == 0

        guardian.sign_in_demo(7)
        guardian.go("#/patient/delegates", "Delegates")
        page = guardian.page
        section = page.locator("#named-me")
        section.get_by_role("heading", name="People who named you as their guardian").wait_for()
        rows = section.locator("tbody tr")
        assert rows.count() == 1 and ADDRESS[6] in rows.first.inner_text(), section.inner_text()
        guardian.shot("54-guardian-named-me")
        section.get_by_role("link", name=re.compile(f"^Act for this patient {ADDRESS[6]}")).click()
        page.get_by_role("heading", name="My records", level=1).wait_for()
        page.get_by_text("You are acting as a guardian for patient").wait_for()
        assert ADDRESS[6] in page.locator(".warning-box").first.inner_text()
        assert named.errors == [] and guardian.errors == []
    finally:
        named.close()
        guardian.close()
