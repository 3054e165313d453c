"""One anvil with the ledger deployed for the fault tests (stopped, restarted and reorganized by them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import Node


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    chain = Node(tmp_path_factory.mktemp("fault-chain")).start()
    yield chain
    chain.stop()
