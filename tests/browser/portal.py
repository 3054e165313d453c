"""Page helpers shared by the browser tests (Playwright sync API)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.browser.conftest import DOCS_SHOTS, SHOTS

# anvil's well-known dev accounts (README, the demo roles): #1 clinic, #2 lab, #3 auditor, #4-#9 patients
PATIENT4 = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
CLINIC = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

# pages whose screenshots the README shows
DOC_SHOTS = {
    "01-sign-in",
    "02-provider-upload",
    "04-patient-records",
    "05-patient-grant",
    "06-provider-read",
    "07-patient-disclosures",
    "09-provider-refused",
    "10-auditor-report",
    "11-emergency-timeline",
    "20-mobile-consents",
    "50-provider-find-by-name",
    "52-patient-id",
}
# each role's main pages at desktop and phone width (tests/browser/test_accessibility.py takes them)
DOC_SHOTS |= {
    f"{name}-{size}"
    for name in (
        "60-sign-in",
        "61-patient-records",
        "62-patient-id",
        "63-patient-disclosures",
        "64-patient-grant-review",
        "65-provider-patient",
        "66-provider-refused",
        "67-provider-upload",
        "68-auditor",
        "69-ledger",
    )
    for size in ("desktop", "phone")
}


class Portal:
    def __init__(self, browser: Any, kind: str, base: str, *, width: int = 1200, height: int = 900) -> None:
        self.kind = kind
        self.base = base
        self.context = browser.new_context(viewport={"width": width, "height": height}, base_url=base)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.set_default_timeout(60_000)

    def close(self) -> None:
        self.context.close()

    def shot(self, name: str) -> Path:
        """Save a full-page screenshot (and copy README ones to docs/screenshots on the real service)."""
        folder = SHOTS if self.kind == "real" else SHOTS / self.kind
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        self.page.wait_for_timeout(150)
        self.page.screenshot(path=str(path), full_page=True)
        if self.kind == "real" and name in DOC_SHOTS:
            DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SHOTS / path.name)
        return path

    def open_signin(self) -> None:
        self.page.goto("/")
        self.page.get_by_role("heading", name="Sign in to Consent Ledger").wait_for()

    def sign_in_demo(self, index: int) -> None:
        self.open_signin()
        self.page.locator(f"button[data-demo-index='{index}']").click()
        self.page.locator("#session:not([hidden])").wait_for()

    def go(self, hash_route: str, heading: str) -> None:
        self.page.goto(f"/{hash_route}")
        self.page.get_by_role("heading", name=heading, level=1).wait_for()

    def status_text(self) -> str:
        return self.page.locator("#status").inner_text()

    def wait_status(self, contains: str) -> None:
        self.page.locator("#status", has_text=contains).wait_for()

    def alert(self) -> Any:
        return self.page.locator("#alert:not([hidden])")


class SlowApi:
    """The page's API calls as on a slow chain: each /v1/ request waits ``seconds`` before it goes on.

    Every request is logged as (method, path, Idempotency-Key), so a test can count what the portal sent.
    """

    def __init__(self, page: Any, seconds: float = 2.5) -> None:
        self.page = page
        self.delay_ms = seconds * 1000
        self.sent: list[tuple[str, str, str | None]] = []
        page.route("**/v1/**", self._delay)

    def _delay(self, route: Any, request: Any) -> None:
        path = request.url.split("//", 1)[1].split("/", 1)[1]
        self.sent.append((request.method, "/" + path.split("?")[0], request.headers.get("idempotency-key")))
        self.page.wait_for_timeout(self.delay_ms)  # waits without holding up the page's other requests
        route.continue_()

    def calls(self, method: str, path_end: str) -> list[str | None]:
        """The Idempotency-Keys of the logged requests with this method whose path ends with `path_end`."""
        return [key for m, path, key in self.sent if m == method and path.endswith(path_end)]

    def stop(self) -> None:
        """Back to full speed, once the requests already delayed have gone on."""
        self.page.unroute_all(behavior="wait")

    def __enter__(self) -> SlowApi:
        return self

    def __exit__(self, failed: object, *_: object) -> None:
        # after a failure the page may be closing: drop the delayed requests rather than wait for them
        self.page.unroute_all(behavior="ignoreErrors" if failed else "wait")


def api_json(portal: Portal, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None) -> Any:
    """Call the API as the page's signed-in user (its bearer token): (status, JSON body)."""
    return portal.page.evaluate(
        """async ([method, path, extra, body]) => {
          const { token } = JSON.parse(sessionStorage.getItem("consentLedger.session"));
          const headers = { Authorization: `Bearer ${token}`, ...extra };
          const init = { method, headers };
          if (body !== null) { init.body = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
          const res = await fetch(path, init);
          return [res.status, await res.json()];
        }""",
        [method, path, headers or {}, body],
    )
