"""Engine, sessions and migrations for SQLite (dev) and PostgreSQL (prod)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ledger_service.errors import LedgerError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseError(LedgerError):
    code = "database-error"


class DatabaseUnavailable(DatabaseError):
    code = "database-unavailable"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; a busy writer makes others wait, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_relaxed(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_engine(url: str, *, relaxed: bool = False) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
    event.listen(engine, "connect", _sqlite_pragmas)
    if relaxed:
        event.listen(engine, "connect", _sqlite_relaxed)
    return engine


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self._relaxed: Engine | None = None
        self._upserts: dict[tuple[type[Any], str], postgresql.Insert | sqlite.Insert] = {}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = _sqlite_engine(url)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def relaxed_engine(self) -> Engine:
        """The same DB for state the chain can rebuild (reserved nonces, a logged delivery's transaction, an
        access request's relay trace): on SQLite its commits survive a process crash but skip the fsync that
        makes them survive a power loss (WAL, synchronous=NORMAL; a later full commit syncs them too, and
        a lost one is only the last few). PostgreSQL: the main engine."""
        if not self.url.startswith("sqlite"):
            return self.engine
        if self._relaxed is None:
            self._relaxed = _sqlite_engine(self.url, relaxed=True)
        return self._relaxed

    def dialect_insert(self, model: type[Any]) -> postgresql.Insert | sqlite.Insert:
        """An INSERT in this DB's dialect, for its ``ON CONFLICT`` clauses (both dialects have them)."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    def upsert(self, model: type[Any], key: str) -> postgresql.Insert | sqlite.Insert:
        """``INSERT … ON CONFLICT (key) DO UPDATE`` of every other column of ``model``, built once per model: one
        constant statement executed with a row of values, so a hot path neither builds nor keys a statement per
        call (both dialects have the clause)."""
        statement = self._upserts.get((model, key))
        if statement is None:
            insert = self.dialect_insert(model)
            columns = [c.name for c in model.__table__.columns if c.name != key]
            statement = insert.on_conflict_do_update(
                index_elements=[key], set_={name: insert.excluded[name] for name in columns}
            )
            self._upserts[(model, key)] = statement
        return statement

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        try:
            with self.engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except OperationalError as exc:
            raise DatabaseUnavailable(f"database unavailable during migration: {type(exc.orig).__name__}") from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            raise DatabaseUnavailable(f"database unavailable: {type(exc.orig).__name__}") from exc
        except SQLAlchemyError as exc:
            session.rollback()
            raise DatabaseError(f"database error: {type(exc).__name__}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._relaxed is not None:
            self._relaxed.dispose()
