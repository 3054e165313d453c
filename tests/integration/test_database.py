"""Migrations and the metadata DB on each backend: SQLite always, PostgreSQL 15 in `make test`."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from ledger_service.db.database import MIGRATIONS_DIR, Database
from ledger_service.db.idempotency import IdempotencyStore
from ledger_service.db.models import Base
from ledger_service.errors import IdempotencyConflict
from tests.conftest import fresh_database_url

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    else:
        pg = fresh_database_url()
        if pg is None:
            pytest.skip("PostgreSQL runs in `make test` (CONSENT_LEDGER_TEST_POSTGRES_URL unset here)")
        url = pg
    db = Database(url)
    db.migrate()
    return db


def _alembic(db: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    return config


def test_migrations_produce_exactly_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_migrations_go_down_and_up_again(database: Database) -> None:
    config = _alembic(database)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    database.migrate()
    with database.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_idempotency_claims_are_exclusive(database: Database) -> None:
    store = IdempotencyStore(database)
    key = store.scoped("0xabc", "upload-1")
    assert store.claim(key, "fingerprint") is None
    with pytest.raises(IdempotencyConflict, match="in progress"):
        store.claim(key, "fingerprint")
    store.complete(key, {"recordId": "0x01"})
    assert store.claim(key, "fingerprint") == {"recordId": "0x01"}
    with pytest.raises(IdempotencyConflict, match="different request"):
        store.claim(key, "another request")


def test_an_idempotency_key_past_its_window_is_a_new_request_and_is_purged(database: Database) -> None:
    from datetime import UTC, datetime, timedelta

    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    store = IdempotencyStore(database, ttl=timedelta(hours=24), clock=lambda: now[0])
    key = store.scoped("0xabc", "upload-2")
    assert store.claim(key, "first request") is None
    store.complete(key, {"recordId": "0x01"})
    now[0] += timedelta(hours=23)
    assert store.claim(key, "first request") == {"recordId": "0x01"}  # inside the window: the replay
    assert store.purge_expired() == 0
    now[0] += timedelta(hours=2)
    assert store.claim(key, "another request") is None  # past it: free for a new request, no conflict
    store.complete(key, {"recordId": "0x02"})
    assert store.claim(key, "another request") == {"recordId": "0x02"}
    now[0] += timedelta(hours=25)
    assert store.purge_expired() == 1
    assert store.claim(key, "a third request") is None


def test_two_processes_share_an_accounts_nonces(database: Database) -> None:
    """Two senders with their own in-process state, one DB: every nonce is used exactly once."""
    from concurrent.futures import ThreadPoolExecutor

    from ledger_service.db.nonces import DbNonceLedger

    sent: list[int] = []
    node = {"pending": 0}  # a node that lags: it reports fewer pending txs than were sent

    def send(nonce: int) -> int:
        sent.append(nonce)
        return nonce

    ledgers = [DbNonceLedger(database), DbNonceLedger(Database(database.url))]

    def one(i: int) -> int:
        return ledgers[i % 2].allocate("0x" + "ab" * 20, lambda: node["pending"], send)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, range(60)))
    assert sorted(results) == list(range(60)) == sorted(sent)
    node["pending"] = 100  # the node knows of more (another installation): follow it
    assert ledgers[0].allocate("0x" + "ab" * 20, lambda: node["pending"], send) == 100


def test_a_failed_send_gives_its_nonce_back_and_holds_no_lock(database: Database) -> None:
    from ledger_service.db.nonces import DbNonceLedger

    ledger, other = DbNonceLedger(database), DbNonceLedger(Database(database.url))
    account = "0x" + "ef" * 20

    def refused(nonce: int) -> int:
        raise ConnectionError(f"node down at nonce {nonce}")

    with pytest.raises(ConnectionError):
        ledger.allocate(account, lambda: 3, refused)
    assert ledger.allocate(account, lambda: 3, lambda nonce: nonce) == 3  # 3 was given back

    def slow_send(nonce: int) -> int:
        # While this send is on the wire the DB is free: another process reserves (a write).
        assert other.allocate(account, lambda: 0, lambda n: n) == nonce + 1
        raise ConnectionError("lost")

    with pytest.raises(ConnectionError):
        ledger.allocate(account, lambda: 0, slow_send)
    # A later nonce was taken meanwhile, so 4 is not given back (the node's count closes that gap).
    assert ledger.allocate(account, lambda: 0, lambda nonce: nonce) == 6
    ledger.resync(account, 4)
    assert ledger.allocate(account, lambda: 4, lambda nonce: nonce) == 4


def test_a_dropped_transaction_leaves_no_nonce_gap(database: Database) -> None:
    from ledger_service.db.nonces import DbNonceLedger

    ledger = DbNonceLedger(database)
    account = "0x" + "cd" * 20
    assert ledger.allocate(account, lambda: 7, lambda nonce: nonce) == 7
    # The node dropped nonce 7 (a reorg): without the resync the next send would use 8 and wait forever.
    ledger.resync(account, 7)
    assert ledger.allocate(account, lambda: 7, lambda nonce: nonce) == 7
