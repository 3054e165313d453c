"""Deeply nested JSON against a real server process (in-process it would take the test runner down with it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.harness import CLINIC, ApiServer, Node

pytestmark = pytest.mark.integration

DEPTH = 100_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    root: Path = tmp_path_factory.mktemp("deep-json")
    node = Node(root).start()
    assert node.deployment is not None
    api = ApiServer(root / "api", node.url, node.deployment).start()
    yield api
    api.stop()
    node.stop()


@pytest.mark.parametrize("route", ["/v1/consents", "/v1/records"])
def test_deeply_nested_json_is_a_4xx_and_the_server_survives(server: ApiServer, route: str) -> None:
    if server.process is None or server.process.poll() is not None:
        server.start()  # an earlier case may have killed it
    nested = "[" * DEPTH + "]" * DEPTH
    body = '{"grant": ' + nested + "}" if route == "/v1/consents" else '{"patient": ' + nested + "}"
    headers = {**server.token(CLINIC), "Content-Type": "application/json"}
    try:
        response = httpx.post(server.url + route, content=body.encode(), headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        pytest.fail(f"the server died: {exc!r}; exit status {server.process.poll() if server.process else None}")
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200
