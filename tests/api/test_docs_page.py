"""/docs is served like the portal: every script and style from this origin, under the portal's CSP."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from consent_api.app import content_security_policy, custodian_origins
from tests.api.conftest import HOST, Api

pytestmark = pytest.mark.integration


class _Assets(HTMLParser):
    """Every URL the page loads (scripts, styles, icons) and the text of any inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            if values.get("src"):
                self.urls.append(str(values["src"]))
            else:
                self._in_inline_script = True
                self.inline_scripts.append("")
        elif tag == "link" and values.get("href"):
            self.urls.append(str(values["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts[-1] += data


def _directives(csp: str) -> dict[str, list[str]]:
    parts = (d.split() for d in csp.split(";") if d.strip())
    return {p[0]: p[1:] for p in parts}


def test_docs_load_only_this_origins_assets_under_a_csp_without_inline_script(api: Api) -> None:
    response = api.client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")

    page = _Assets()
    page.feed(response.text)
    assert page.inline_scripts == [], "an inline script needs 'unsafe-inline' (or a hash) in script-src"
    assert not re.search(r"https?://", response.text), "the page names another origin"
    assert any(url.endswith("swagger-ui-bundle.js") for url in page.urls), page.urls
    assert any(url.endswith("swagger-ui.css") for url in page.urls), page.urls
    for url in page.urls:
        absolute = urljoin(f"http://{HOST}/docs", url)
        assert urlsplit(absolute).netloc == HOST, url
        asset = api.client.get(absolute)
        assert asset.status_code == 200, url
        assert asset.content, url

    custodians = custodian_origins(api.services)
    assert custodians, "up's embedded key custodians are listed"
    expected = content_security_policy(custodians)
    assert response.headers["content-security-policy"] == expected  # the portal's own
    csp = _directives(response.headers["content-security-policy"])
    assert csp["script-src"] == ["'self'"], csp  # no CDN, no 'unsafe-inline', no 'unsafe-eval'
    # the one other origin a page may reach is a key custodian's, and only to call it (connect-src)
    assert csp["connect-src"] == ["'self'", *custodians], csp
    sources = [source for name, values in csp.items() if name != "connect-src" for source in values]
    assert "'unsafe-inline'" not in sources and not any(s.startswith(("http:", "https:")) for s in sources), csp
    assert response.headers["x-content-type-options"] == "nosniff"
