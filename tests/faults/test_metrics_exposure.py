"""Attacks on the metrics: junk request lines must not grow them, and the public port must not serve them.

Each test starts the real API process (tests/faults/harness.py) and plays the attacker over HTTP:
arbitrary method tokens and paths (uvicorn passes any token through), then a scrape.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
import pytest

from tests.faults.harness import ApiServer, Node

pytestmark = pytest.mark.integration

SERIES = re.compile(r"^([a-z_]+(?:\{[^}]*\})?) \S+$", re.MULTILINE)
METRICS_TOKEN = "scrape-" + "s3cr3t" * 4


def _junk_request(client: httpx.Client, n: int) -> None:
    """One request with a never-seen method token, on a path that matches no route or only a template."""
    method = "JUNK" + secrets.token_hex(6).upper()
    path = (
        f"/no-such-{secrets.token_hex(8)}/{n}",
        f"/v1/records/0x{secrets.token_hex(32)}",  # the route template matches; the method does not
        "/v1/chain",
    )[n % 3]
    response = client.request(method, path)
    assert response.status_code in (404, 405), (method, path, response.status_code, response.text)


def _scrape(server: ApiServer, **headers: str) -> httpx.Response:
    return httpx.get(server.metrics_url, headers=headers, timeout=30)


def _series(text: str) -> set[str]:
    """The metric names with their label sets, without values."""
    return set(SERIES.findall(text))


def test_junk_methods_and_paths_do_not_grow_the_metrics(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as public:
        for n in range(10):
            _junk_request(public, n)
        after_ten = _scrape(server)
        assert after_ten.status_code == 200, after_ten.text
        for n in range(10, 100):
            _junk_request(public, n)
        after_hundred = _scrape(server)
    assert after_hundred.status_code == 200
    # Ninety more distinct tokens and paths add no series: the labels come from a closed set.
    assert _series(after_hundred.text) == _series(after_ten.text)
    assert len(after_hundred.content) - len(after_ten.content) < 200, "only counter values may change"
    assert len(after_hundred.content) < 16 * 1024
    assert "JUNK" not in after_hundred.text and "no-such-" not in after_hundred.text
    assert 'consent_ledger_requests_total{method="other",route="unmatched",status="4xx"} 34' in after_hundred.text
    assert 'consent_ledger_requests_total{method="other",route="/v1/chain",status="4xx"} 33' in after_hundred.text


def test_the_public_port_serves_no_metrics_and_the_listener_is_on_loopback(server: ApiServer) -> None:
    public = httpx.get(server.url + "/metrics", timeout=30)
    assert public.status_code in (401, 404), public.text
    assert "consent_ledger_" not in public.text
    scraped = _scrape(server)
    assert scraped.status_code == 200 and "consent_ledger_chain_block_number " in scraped.text
    assert f"metrics http://127.0.0.1:{server.metrics_port}/metrics" in server.output()


def test_a_metrics_token_is_required_once_set(node: Node, tmp_path: Path) -> None:
    assert node.deployment is not None
    server = ApiServer(tmp_path / "api", node.url, node.deployment, metrics_token=METRICS_TOKEN).start()
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN}):
            refused = _scrape(server, **headers)
            assert refused.status_code == 401, (headers, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert "consent_ledger_" not in refused.text
        scraped = _scrape(server, Authorization=f"Bearer {METRICS_TOKEN}")
        assert scraped.status_code == 200 and "consent_ledger_requests_total" in scraped.text
        assert httpx.get(server.url + "/metrics", timeout=30).status_code in (401, 404)
        assert METRICS_TOKEN not in server.output()
    finally:
        server.stop()
