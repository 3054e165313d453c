"""Hostile-input tests: the API tests' in-process app and role helpers, and a real server for the attacks
that need one (uvicorn in a child process on a chain of the module's own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.conftest import Api, api, assert_problem
from tests.faults.harness import ApiServer, Node

__all__ = ["Api", "api", "assert_problem"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    chain = Node(tmp_path_factory.mktemp("hostile-chain")).start()
    yield chain
    chain.stop()


@pytest.fixture(scope="module")
def server(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    assert node.deployment is not None
    api = ApiServer(tmp_path_factory.mktemp("hostile-api"), node.url, node.deployment).start()
    yield api
    api.stop()
