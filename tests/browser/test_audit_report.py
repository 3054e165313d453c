"""The auditor's report: the card lists break-glass accesses and erased records, and the full HTML
report opens (fetched with the auditor's token, shown from a blob: URL under the portal's CSP).

Against the real service (``consent-ledger up``), in Debian chromium.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.portal import Portal
from tests.browser.test_portal import upload_observation

pytestmark = pytest.mark.browser

PATIENT9 = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"  # anvil's dev account #9
REASON = "Found unconscious, history of diabetes"
SHOT = "/tmp/consent-ledger-audit-report.png"

# Every CSP violation the report's tab reports (injected before any of its content runs).
CSP_VIOLATION_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


def _break_glass(clinic: Portal, record_id: str) -> None:
    clinic.go(f"#/provider/patients?patient={PATIENT9}", "Find a patient")
    page = clinic.page
    page.get_by_label("Record id").fill(record_id)
    page.get_by_role("button", name="Emergency access…").click()
    dialog = page.locator("dialog[open]")
    dialog.get_by_label("Reason for emergency access").fill(REASON)
    dialog.get_by_label(re.compile("I confirm this is an emergency")).check()
    dialog.get_by_role("button", name="Break the glass and read").click()
    page.locator(".fhir-view").wait_for(timeout=120_000)


def test_auditor_sees_break_glass_and_erasures_and_opens_the_full_report(
    browser: object, portal: tuple[str, str]
) -> None:
    kind, base = portal
    clinic = Portal(browser, kind, base)
    patient = Portal(browser, kind, base)
    auditor = Portal(browser, kind, base)
    try:
        # a break-glass read of one record, and the patient erases another
        clinic.sign_in_demo(1)
        read_id = upload_observation(clinic, shot=False, patient=PATIENT9)
        erased_id = upload_observation(clinic, shot=False, patient=PATIENT9)
        _break_glass(clinic, read_id)
        patient.sign_in_demo(9)
        patient.go("#/patient/records", "My records")
        patient.page.get_by_role("button", name=re.compile(f"Erase record {erased_id[:6]}", re.I)).click()
        patient.page.locator("dialog[open]").get_by_role("button", name="Erase permanently").click()
        patient.wait_status("was erased")

        # the auditor verifies the patient: the card lists the break-glass access and the erased record
        auditor.sign_in_demo(3)
        page = auditor.page
        page.get_by_role("heading", name="Verify the ledger", level=1).wait_for()
        page.get_by_label("One patient").check()
        page.get_by_label("Patient address").fill(PATIENT9)
        page.get_by_role("button", name="Verify", exact=True).click()
        page.locator("#report h2, #alert:not([hidden])").first.wait_for(timeout=300_000)
        assert page.locator("#report h2").count(), auditor.alert().inner_text()
        glass = page.locator("#report ol.glass-list > li")
        assert glass.count() == 1
        entry = glass.first.inner_text()
        assert "Demo Clinic" in entry and REASON in entry, entry
        assert re.search(r"When\s+\S+", entry), entry  # the time of the access
        assert page.locator("#report h3", has_text="Break-glass accesses (1)").count() == 1
        erased = page.locator("#report ul.erased-list > li")
        assert erased.count() == 1
        erased_text = erased.first.inner_text()
        assert erased_id[:6] in erased_text and "Erased" in erased_text, erased_text
        auditor.shot("43-auditor-break-glass-erased")

        # the full HTML report opens in a new tab, fetched with the token, styled and complete
        auditor.context.add_init_script(CSP_VIOLATION_RECORDER)
        with auditor.context.expect_page() as opened:
            page.get_by_role("button", name="Open the full HTML report").click()
        report = opened.value
        heading = report.get_by_role("heading", name="Consent Ledger — independent verification report")
        heading.wait_for(timeout=60_000)
        assert report.url.startswith("blob:"), report.url
        assert "token" not in report.url.lower()
        table = report.locator("h2:has-text('Break-glass accesses') + table")
        assert REASON in table.inner_text()
        assert PATIENT9 in report.locator("main").inner_text()
        # its own stylesheet applies (allowed by hash), and nothing was blocked
        assert report.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 249)"
        assert report.evaluate("window.__cspViolations || []") == []
        report.screenshot(path=SHOT, full_page=True)
        assert auditor.errors == [] and clinic.errors == [] and patient.errors == []
    finally:
        for p in (clinic, patient, auditor):
            p.close()
