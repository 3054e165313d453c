"""Deeply nested JSON against a real server process (in-process it would take the test runner down with it)."""

from __future__ import annotations

import httpx
import pytest

from tests.faults.harness import CLINIC, ApiServer

pytestmark = pytest.mark.integration

DEPTH = 100_000
# The consent relay takes at most 16 KiB (max_small_body): as deep as that allows.
SMALL_BODY_DEPTH = 8_000


@pytest.mark.parametrize(
    ("route", "depth"),
    [("/v1/consents", SMALL_BODY_DEPTH), ("/v1/records", DEPTH), ("/v1/records", 2 * DEPTH)],
    ids=["consents", "records", "records-in-a-parse-worker"],  # 400 KB: over JSON_INLINE_BELOW
)
def test_deeply_nested_json_is_a_4xx_and_the_server_survives(server: ApiServer, route: str, depth: int) -> None:
    if server.process is None or server.process.poll() is not None:
        server.start()  # an earlier case may have killed it
    nested = "[" * depth + "]" * depth
    body = '{"grant": ' + nested + "}" if route == "/v1/consents" else '{"patient": ' + nested + "}"
    headers = {**server.token(CLINIC), "Content-Type": "application/json"}
    try:
        response = httpx.post(server.url + route, content=body.encode(), headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        pytest.fail(f"the server died: {exc!r}; exit status {server.process.poll() if server.process else None}")
    assert 400 <= response.status_code < 500 and response.status_code != 413, response.text  # parsed, refused
    assert response.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200
