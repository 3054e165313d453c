"""One anvil with the ledger deployed for the fault tests (stopped, restarted and reorganized by them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import ApiServer, Node


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    chain = Node(tmp_path_factory.mktemp("fault-chain")).start()
    yield chain
    chain.stop()


@pytest.fixture
def own_node(tmp_path: Path) -> Iterator[Node]:
    """A chain of the test's own, for a test that moves the chain's clock: the session's chain must keep the
    clients' wall-clock deadlines valid."""
    chain = Node(tmp_path / "own-chain").start()
    yield chain
    chain.stop()


@pytest.fixture
def server(node: Node, tmp_path: Path) -> Iterator[ApiServer]:
    """A fresh API on its own data dir; stopped however the test ends."""
    assert node.deployment is not None
    api = ApiServer(tmp_path / "api", node.url, node.deployment).start()
    yield api
    api.stop()
