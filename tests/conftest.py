"""Fixtures shared by every level: a real anvil with the ledger deployed (one per run)."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger_service.bootstrap import Services, bootstrap
from ledger_service.chain.deploy import Deployment
from ledger_service.runtime import Runtime
from ledger_service.settings import ANVIL_DEV_KEYS, Settings


def fresh_database_url() -> str | None:
    """A new empty PostgreSQL database when the suite runs on PostgreSQL, else None (SQLite).

    `make test` runs the DB-backed tests a second time with CONSENT_LEDGER_TEST_POSTGRES_URL set
    to a throwaway PostgreSQL 15 (scripts/test-postgres.sh).
    """
    admin_url = os.environ.get("CONSENT_LEDGER_TEST_POSTGRES_URL")
    if not admin_url:
        return None
    from sqlalchemy import create_engine, text

    name = f"t_{secrets.token_hex(6)}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Chain:
    """The session's dev chain: anvil, the deployment, and the demo accounts."""

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.deployment: Deployment = runtime.deployment
        self.rpc_url = settings.effective_rpc_url
        self.accounts: list[LocalAccount] = [Account.from_key(k) for k in ANVIL_DEV_KEYS]

    @property
    def admin(self) -> LocalAccount:
        return self.accounts[0]

    @property
    def clinic(self) -> LocalAccount:
        return self.accounts[1]

    @property
    def lab(self) -> LocalAccount:
        return self.accounts[2]

    @property
    def auditor(self) -> LocalAccount:
        return self.accounts[3]

    @property
    def patients(self) -> list[LocalAccount]:
        return self.accounts[4:10]

    def now(self) -> int:
        """The chain's clock (tests never assume it equals the wall clock)."""
        from ledger_service.chain.rpc import RpcClient

        return int(RpcClient(self.rpc_url).get_block("latest")["timestamp"], 16)

    def settings_for(self, data_dir: Path, **overrides: object) -> Settings:
        """Settings for a service instance on this chain with its own data dir."""
        values: dict[str, object] = {
            "data_dir": data_dir,
            "chain_port": self.settings.chain_port,
            "confirmations": 0,
            "receipt_timeout": 30.0,
            "database_url": fresh_database_url(),
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    data_dir = tmp_path_factory.mktemp("chain")
    settings = Settings(data_dir=data_dir, chain_port=free_port())
    with Runtime(settings) as runtime:
        yield Chain(runtime, settings)


@pytest.fixture
def services(chain: Chain, tmp_path: Path) -> Iterator[Services]:
    """A whole service instance (own DB, blobs, keys) on the session's chain."""
    instance = bootstrap(chain.settings_for(tmp_path / "svc"), chain.deployment)
    yield instance
    instance.close()
