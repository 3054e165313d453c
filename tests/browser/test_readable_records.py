"""Readable records: a clinic uploads a vital-signs Observation and a PDF in the portal, with the title and
category suggested from the content; its read shows the Observation as a summary (value, unit, date, what it
means) with the raw JSON one click away, and the PDF downloads under its original file name, for the clinic
and for the patient; the patient opens the titles with their own key and their timeline names the record by
its title and the clinic by name (docs/architecture.md, "Record titles").

Against the real service (``consent-ledger up``) in Debian chromium. Screenshots:
docs/screenshots/22-provider-upload-suggested-title.png, 23-provider-reads-observation-summary.png,
24-patient-records-with-titles.png, 25-patient-timeline-in-words.png and 26-mobile-observation-summary.png.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from scripts.soak import LedgerClient
from tests.browser.portal import CLINIC, Portal
from tests.browser.test_patient_reads import doc_shot, no_horizontal_scroll, read_button, sign_in_with_imported_key

pytestmark = pytest.mark.browser

HEART_RATE = {
    "resourceType": "Observation",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                    "display": "Vital Signs",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
    "effectiveDateTime": "2026-11-30T08:15:00Z",
    "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
    "interpretation": [{"coding": [{"code": "N", "display": "Normal"}]}],
    "referenceRange": [{"low": {"value": 60, "unit": "beats/minute"}, "high": {"value": 100, "unit": "beats/minute"}}],
}
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PDF_NAME = "discharge-letter.pdf"


def upload(clinic: Portal, patient: str, *, fhir: dict[str, Any] | None = None, pdf: bool = False) -> tuple[str, str]:
    """Fill the upload form; returns (record id, the title the form suggested)."""
    clinic.go("#/provider/upload", "Upload a record")
    page = clinic.page
    page.get_by_label("Patient address").fill(patient)
    title = page.get_by_label("Title")
    if fhir is not None:
        page.get_by_label("FHIR JSON").fill(json.dumps(fhir, indent=2))
        page.get_by_label("FHIR JSON").blur()
    if pdf:
        page.get_by_label("A file (PDF, image, DICOM, …)").check()
        page.get_by_label("File", exact=True).set_input_files(
            files=[{"name": PDF_NAME, "mimeType": "application/pdf", "buffer": PDF}]
        )
    page.wait_for_function("() => document.querySelector('input[name=title]').value !== ''")
    suggested = title.input_value()
    if fhir is not None:
        clinic.shot("22-provider-upload-suggested-title")
        doc_shot(clinic, "22-provider-upload-suggested-title")
    page.get_by_role("button", name="Upload record").click()
    record_id = page.locator("#new-record-id").inner_text(timeout=120_000)
    return record_id, suggested


def clinic_reads(clinic: Portal, patient: str, record_id: str) -> Any:
    clinic.go(f"#/provider/patients?patient={patient}", "Find a patient")
    page = clinic.page
    page.get_by_label("Record id").fill(record_id)
    page.get_by_label("Purpose of use").select_option("TREAT")
    page.get_by_role("button", name="Read record", exact=True).click()
    result = page.locator("#read-result .fhir-view, #read-result #download-record, #alert:not([hidden])").first
    result.wait_for(timeout=120_000)
    if page.locator("#alert:not([hidden])").count():
        pytest.fail(f"the read failed: {page.locator('#alert').inner_text()}")
    return page.locator("#read-result")


def test_records_are_titled_summarised_named_and_told_in_words(browser: Any, real_portal: str) -> None:
    account: LocalAccount = Account.create()
    patient_address = account.address
    clinic = Portal(browser, "real", real_portal)
    patient = Portal(browser, "real", real_portal)
    try:
        clinic.sign_in_demo(1)
        clinic.page.get_by_role("heading", name="Find a patient", level=1).wait_for()

        # the form suggests the title and the category from the content; a vital sign is filed as one
        clinic.go("#/provider/upload", "Upload a record")
        observation_id, suggested = upload(clinic, patient_address, fhir=HEART_RATE)
        assert suggested == "Heart rate, 30 Nov 2026"
        pdf_id, pdf_title = upload(clinic, patient_address, pdf=True)
        assert pdf_title == "Discharge letter"
        with LedgerClient(real_portal) as api:
            records = api.http.get(
                f"/v1/patients/{patient_address}/records", headers=api.sign_in(Account.from_key(CLINIC_KEY))
            ).json()["records"]
            by_id = {r["recordId"]: r for r in records}
            assert by_id[observation_id]["category"] == "vital-signs"
            assert by_id[observation_id]["title"] == "Heart rate, 30 Nov 2026"
            assert by_id[pdf_id]["title"] == "Discharge letter"
            assert by_id[pdf_id]["fileName"] == PDF_NAME
            granted = api.grant(account, CLINIC)
            assert granted.status_code == 201, granted.text

        # the clinic's read of the Observation is a summary: name, value and unit, range, what it means, date
        box = clinic_reads(clinic, patient_address, observation_id)
        view = box.locator(".fhir-view")
        assert view.get_by_role("heading", name="Heart rate").is_visible()
        summary = view.locator("dl.fhir-summary").inner_text()
        assert re.search(r"Result\s+72 beats/minute", summary), summary
        assert re.search(r"Interpretation\s+Normal", summary), summary
        assert re.search(r"Normal range\s+60 beats/minute to 100 beats/minute", summary), summary
        assert "30 Nov 2026" in summary or "Nov 30, 2026" in summary, summary
        raw = view.locator("pre.json")
        assert raw.is_hidden()
        view.get_by_text("Show raw JSON").click()
        assert raw.is_visible()
        assert json.loads(raw.inner_text()) == HEART_RATE
        assert box.locator("details.ledger-proof").get_attribute("open") is None
        doc_shot(clinic, "23-provider-reads-observation-summary")

        # the clinic's PDF downloads under its original file name
        box = clinic_reads(clinic, patient_address, pdf_id)
        with clinic.page.expect_download() as downloaded:
            box.locator("#download-record").click()
        assert downloaded.value.suggested_filename == PDF_NAME
        assert Path(downloaded.value.path()).read_bytes() == PDF

        # the patient opens the titles with their own key, and downloads the PDF under its file name
        sign_in_with_imported_key(patient, account)
        patient.go("#/patient/records", "My records")
        page = patient.page
        assert "title not shown yet" in page.locator("table").inner_text()
        page.get_by_role("button", name="Show titles").click()
        page.locator(".record-title", has_text="Discharge letter").wait_for(timeout=120_000)
        table = page.locator("table").inner_text()
        assert "Heart rate, 30 Nov 2026" in table and "title not shown yet" not in table, table
        assert page.get_by_role("button", name="Show titles").count() == 0
        doc_shot(patient, "24-patient-records-with-titles")
        with page.expect_download(timeout=120_000) as downloaded:
            read_button(patient, pdf_id, "Download").click()
        assert downloaded.value.suggested_filename == PDF_NAME
        assert Path(downloaded.value.path()).read_bytes() == PDF

        # the patient's own read of the Observation shows the same summary
        read_button(patient, observation_id).click()
        own = page.locator("#record-view .fhir-view")
        own.wait_for(timeout=120_000)
        assert re.search(r"Result\s+72 beats/minute", own.locator("dl.fhir-summary").inner_text())
        assert page.locator("#record-view h2").inner_text() == "Heart rate, 30 Nov 2026"

        # the timeline names the record by its title and the clinic by name, in plain words
        patient.go("#/patient/disclosures", "Who has seen my records")
        entry = page.locator("ol.timeline > li", has_text="Demo Clinic read Heart rate").first
        entry.wait_for()
        sentence = entry.locator(".disclosure-sentence").inner_text()
        assert sentence.startswith("Demo Clinic read Heart rate, 30 Nov 2026 on "), sentence
        assert re.search(r", for treatment, under your consent of \d{1,2} \w{3}( \d{4})?\.$", sentence), sentence
        pdf_entry = page.locator("ol.timeline > li", has_text="Demo Clinic read Discharge letter").first
        assert pdf_entry.is_visible()
        # the proof is there, collapsed
        proof = entry.locator("details.ledger-proof")
        assert proof.get_attribute("open") is None
        assert observation_id in proof.text_content()
        assert "block" not in sentence.lower() and "transaction" not in sentence.lower()
        own_entry = page.locator("ol.timeline > li", has_text="You read Heart rate").first
        assert "your own request" in own_entry.inner_text()
        doc_shot(patient, "25-patient-timeline-in-words")

        # the clinic amends the letter: the title it gave is kept, the new file's name is the new version's
        clinic.go(f"#/provider/patients?patient={patient_address}", "Find a patient")
        clinic.page.get_by_role("button", name=re.compile(f"^Amend record {pdf_id[:6]}")).click()
        dialog = clinic.page.locator("dialog[open]")
        assert dialog.get_by_label("Title").input_value() == "Discharge letter"
        dialog.get_by_label("A file (PDF, image, DICOM, …)").check()
        dialog.get_by_label("File", exact=True).set_input_files(
            files=[{"name": "discharge-letter-v2.pdf", "mimeType": "application/pdf", "buffer": PDF + b"%v2\n"}]
        )
        clinic.page.wait_for_timeout(700)  # a suggestion, were one made, would have arrived
        assert dialog.get_by_label("Title").input_value() == "Discharge letter"
        dialog.get_by_role("button", name="Save new version").click()
        clinic.wait_status("amended: version 2")
        with LedgerClient(real_portal) as api:
            records = api.http.get(
                f"/v1/patients/{patient_address}/records", headers=api.sign_in(Account.from_key(CLINIC_KEY))
            ).json()["records"]
            (amended,) = [r for r in records if r["recordId"] == pdf_id]
            assert (amended["version"], amended["title"], amended["fileName"]) == (
                2,
                "Discharge letter",
                "discharge-letter-v2.pdf",
            )
        for p in (clinic, patient):
            assert p.errors == [], p.errors
    finally:
        clinic.close()
        patient.close()

    # at phone width the clinic's summary fits
    phone = Portal(browser, "real", real_portal, width=375, height=740)
    try:
        phone.sign_in_demo(1)
        phone.page.get_by_role("heading", name="Find a patient", level=1).wait_for()
        box = clinic_reads(phone, patient_address, observation_id)
        assert box.locator(".fhir-view").get_by_role("heading", name="Heart rate").is_visible()
        no_horizontal_scroll(phone, 375)
        doc_shot(phone, "26-mobile-observation-summary")
        assert phone.errors == [], phone.errors
    finally:
        phone.close()


CLINIC_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil #1, Demo Clinic
