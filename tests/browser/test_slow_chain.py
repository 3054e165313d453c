"""A slow chain and an impatient user: a double click on a write acts once.

Each test delays the page's API requests by 2.5 s (as on a slow chain), double-clicks the action's
button, checks that the button was disabled and relabelled with a progress note beside it while the
request ran, and then counts on the server what happened: one emergency access, one erasure, one new
version, one record. Against the real service (``consent-ledger up``), in Debian chromium.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.portal import Portal, SlowApi, api_json
from tests.browser.test_portal import OBSERVATION, upload_observation

pytestmark = pytest.mark.browser

# anvil's dev accounts #5, #7 and #8 (patients), kept apart from the other browser tests' patients
PATIENT5 = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"
PATIENT7 = "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955"
PATIENT8 = "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f"


def _in_flight(scope: Any, label: str, note: str) -> list[str]:
    """What is wrong with the action's button while its request runs: it should be relabelled `label`,
    disabled, with the progress note beside it (its next sibling). Read during the request, asserted
    after the server's counts, so a portal that sends the action twice fails on the count first."""
    button = scope.get_by_role("button", name=label)
    try:
        button.wait_for(timeout=2_000)
    except PlaywrightTimeout:
        return [f"no button labelled {label!r} while the request ran"]
    problems = []
    if not button.is_disabled():
        problems.append(f"{label!r} is enabled while its request runs")
    beside = button.evaluate("b => (b.nextElementSibling?.matches('.flight') ? b.nextElementSibling.innerText : '')")
    if note not in beside:
        problems.append(f"no progress note {note!r} beside the button (found {beside!r})")
    return problems


def test_double_click_on_break_the_glass_logs_one_emergency_access(browser: object, portal: tuple[str, str]) -> None:
    kind, base = portal
    clinic = Portal(browser, kind, base)
    patient = Portal(browser, kind, base)
    try:
        clinic.sign_in_demo(1)
        record_id = upload_observation(clinic, shot=False, patient=PATIENT5)
        clinic.go(f"#/provider/patients?patient={PATIENT5}", "Find a patient")
        page = clinic.page
        page.get_by_label("Record id").fill(record_id)
        page.get_by_role("button", name="Emergency access…").click()
        dialog = page.locator("dialog[open]")
        dialog.get_by_label("Reason for emergency access").fill("Unconscious on arrival, glucose needed now")
        dialog.get_by_label(re.compile("I confirm this is an emergency")).check()

        with SlowApi(page) as slow:
            dialog.get_by_role("button", name="Break the glass and read").dblclick()
            problems = _in_flight(dialog, "Reading…", "Logging the emergency access")
            page.keyboard.press("Escape")  # the dialog stays until the access it started has been answered
            if not dialog.is_visible():
                problems.append("the dialog closed while its access was in flight")
            clinic.shot("40-break-glass-in-flight")
            try:
                page.locator(".fhir-view").wait_for(timeout=60_000)
            except PlaywrightTimeout:
                problems.append("the record read under emergency access was never shown")
            page.wait_for_timeout(3_000)  # a second access, if one was sent, has been logged by now

        # the patient sees exactly one emergency access of this record
        patient.sign_in_demo(5)
        status, body = api_json(patient, "GET", f"/v1/patients/{PATIENT5}/disclosures")
        assert status == 200, body
        emergencies = [d for d in body["disclosures"] if d["recordId"] == record_id and d["emergency"]]
        assert len(emergencies) == 1, f"{len(emergencies)} emergency accesses logged for one intended access"
        keys = slow.calls("POST", f"/v1/records/{record_id}/emergency-access")
        assert len(keys) == 1, f"the portal sent {len(keys)} break-glass requests"
        assert keys[0] and re.fullmatch(r"[0-9a-f]{32}", keys[0]), keys
        assert problems == []
        assert clinic.errors == [] and patient.errors == []
    finally:
        clinic.close()
        patient.close()


def test_double_click_on_erase_erases_once_and_a_replay_answers_the_same(
    browser: object, portal: tuple[str, str]
) -> None:
    kind, base = portal
    clinic = Portal(browser, kind, base)
    patient = Portal(browser, kind, base)
    try:
        clinic.sign_in_demo(1)
        record_id = upload_observation(clinic, shot=False, patient=PATIENT7)
        patient.sign_in_demo(7)
        patient.go("#/patient/records", "My records")
        page = patient.page
        page.get_by_role("button", name=re.compile(f"Erase record {record_id[:6]}", re.I)).click()
        dialog = page.locator("dialog[open]")

        answers: list[Any] = []  # the portal's own DELETE answers, to compare the replay's with
        page.on("response", lambda r: answers.append(r) if r.request.method == "DELETE" else None)
        with SlowApi(page) as slow:
            dialog.get_by_role("button", name="Erase permanently").dblclick()
            problems = _in_flight(dialog, "Erasing…", "logging the erasure")
            page.keyboard.press("Escape")
            if not dialog.is_visible():
                problems.append("the erase dialog closed while its erasure was in flight")
            patient.shot("41-erase-in-flight")
            patient.wait_status("was erased")
            erased_status = patient.status_text()
            page.locator("text=Erased").first.wait_for()

        keys = slow.calls("DELETE", f"/v1/records/{record_id}")
        assert len(keys) == 1, f"the portal sent {len(keys)} erasures"
        assert not patient.alert().count(), patient.alert().inner_text()
        status, records = api_json(patient, "GET", f"/v1/patients/{PATIENT7}/records")
        assert [r["erased"] for r in records["records"] if r["recordId"] == record_id] == [True]

        # the same erasure sent again (a retry that lost its answer) is answered as the first time: the key
        # is the patient's, so the answer is the first one whatever the retry carries
        erase = {"patient": PATIENT7, "recordId": record_id, "nonce": 0, "deadline": 0}
        status, replay = api_json(
            patient,
            "DELETE",
            f"/v1/records/{record_id}",
            {"Idempotency-Key": keys[0] or ""},
            {"erase": erase, "signature": "0x" + "00" * 65},
        )
        assert status == 200, replay
        assert answers and answers[0].status == 200, answers  # the portal's erasure (the replay is the second)
        first = answers[0].json()
        assert replay["recordId"] == record_id and replay == first, (replay, first)
        assert "was erased" in erased_status and "0x" not in erased_status, erased_status
        assert problems == []
        assert patient.errors == []
    finally:
        clinic.close()
        patient.close()


def test_double_click_on_amend_saves_one_version(browser: object, portal: tuple[str, str]) -> None:
    kind, base = portal
    clinic = Portal(browser, kind, base)
    try:
        clinic.sign_in_demo(1)
        record_id = upload_observation(clinic, shot=False, patient=PATIENT8)
        clinic.go(f"#/provider/patients?patient={PATIENT8}", "Find a patient")
        page = clinic.page
        page.get_by_role("button", name=re.compile(f"Amend record {record_id[:6]}", re.I)).click()
        dialog = page.locator("dialog[open]")
        amended = {**OBSERVATION, "valueQuantity": {**OBSERVATION["valueQuantity"], "value": 101}}  # type: ignore[dict-item]
        dialog.get_by_label("FHIR JSON").fill(json.dumps(amended))

        with SlowApi(page) as slow:
            dialog.get_by_role("button", name="Save new version").dblclick()
            problems = _in_flight(dialog, "Saving…", "anchoring on the ledger")
            dialog.wait_for(state="hidden", timeout=120_000)
            clinic.wait_status("amended: version")
            page.wait_for_timeout(3_000)  # a second amendment, if one was sent, has landed by now

        status, body = api_json(clinic, "GET", f"/v1/patients/{PATIENT8}/records")
        assert status == 200, body
        versions = [r["version"] for r in body["records"] if r["recordId"] == record_id]
        assert versions == [2], f"one amendment made the record version {versions}"
        keys = slow.calls("POST", f"/v1/records/{record_id}/versions")
        assert len(keys) == 1 and keys[0], f"the portal sent {len(keys)} amendments"
        assert problems == []
        assert clinic.errors == []
    finally:
        clinic.close()


def test_double_click_on_upload_creates_one_record_and_clears_the_form(
    browser: object, portal: tuple[str, str]
) -> None:
    kind, base = portal
    clinic = Portal(browser, kind, base)
    try:
        clinic.sign_in_demo(1)
        status, before = api_json(clinic, "GET", f"/v1/patients/{PATIENT8}/records")
        assert status == 200, before
        clinic.go("#/provider/upload", "Upload a record")
        page = clinic.page
        page.get_by_label("Patient address").fill(PATIENT8)
        page.get_by_label("Category").select_option("laboratory")
        page.get_by_label("FHIR JSON").fill(json.dumps(OBSERVATION))

        with SlowApi(page) as slow:
            page.get_by_role("button", name="Upload record").dblclick()
            problems = _in_flight(page, "Uploading…", "anchoring on the ledger")
            clinic.shot("42-upload-in-flight")
            record_id = page.locator("#new-record-id").inner_text(timeout=120_000)
            upload = page.get_by_role("button", name="Upload record")
            if not upload.is_enabled():
                problems.append("the upload button stayed disabled after the upload")
            # the user clicks again, as after any slow answer: an emptied form asks for a patient
            upload.click()
            page.wait_for_timeout(4_000)  # a second upload, if one was sent, has landed by now

        status, after = api_json(clinic, "GET", f"/v1/patients/{PATIENT8}/records")
        new = {r["recordId"] for r in after["records"]} - {r["recordId"] for r in before["records"]}
        assert new == {record_id}, f"{len(new)} records created for one intended upload"
        keys = slow.calls("POST", "/v1/records")
        assert len(keys) == 1 and keys[0], f"the portal sent {len(keys)} uploads"
        assert page.get_by_label("Patient address").input_value() == ""
        assert page.get_by_label("FHIR JSON").input_value() == ""
        assert page.locator(".field-error", has_text="Enter a valid address").is_visible()
        assert problems == []
        assert clinic.errors == []
    finally:
        clinic.close()
