"""The database handle: one async engine, a single writer on SQLite, Alembic migrations."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from avatar.storage.errors import Conflict, StorageError
from avatar.storage.migrate import current_revision, upgrade_to_head

SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout = 5000",  # first: switching to WAL needs the lock it may wait for
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)
_BEGIN_OPTION = "avatar_sqlite_begin"
_MIGRATION_LOCK = 0x41564154  # "AVAT": serialises migrations of several Postgres clients


class Database:
    """Async engine and sessions for SQLite (default) or Postgres (``postgresql+asyncpg://``).

    Writes go through :meth:`write`, reads through :meth:`read`. On SQLite all writes of this
    process are serialised by an asyncio lock and start with ``BEGIN IMMEDIATE``, so a write
    never fails half-way on a lock upgrade; Postgres relies on its own row locks.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url: URL = make_url(url)
        self.dialect = self.url.get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        options: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            _ensure_sqlite_folder(self.url)
        else:
            options["pool_pre_ping"] = True
        self.engine = create_async_engine(self.url, **options)
        writer_engine = self.engine
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine.sync_engine)
            writer_engine = self.engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
        self._writer_engine = writer_engine
        self._reader = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writer = async_sessionmaker(writer_engine, expire_on_commit=False)
        self._lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    def _write_lock(self) -> AbstractAsyncContextManager[Any]:
        return self._lock if self._lock is not None else nullcontext()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in a write transaction, committed on exit, rolled back on error."""
        async with self._write_lock():
            with translate_errors():
                async with self._writer() as session, session.begin():
                    yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads (one consistent snapshot); nothing is committed."""
        with translate_errors():
            async with self._reader() as session:
                yield session

    async def migrate(self) -> str | None:
        """Upgrade the schema to the newest revision (a no-op when already there)."""
        async with self._write_lock():
            with translate_errors():
                async with self._writer_engine.begin() as connection:
                    if self.dialect == "postgresql":
                        await connection.exec_driver_sql(
                            f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"
                        )
                    await connection.run_sync(upgrade_to_head)
                    return await connection.run_sync(current_revision)

    async def check(self, timeout_s: float = 2.0) -> dict[str, Any]:
        """Health probe: ``{"ok", "dialect", "latency_ms"}`` (and ``"error"`` when not ok)."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s), self.engine.connect() as connection:
                await connection.exec_driver_sql("SELECT 1")
        except (DBAPIError, OSError, TimeoutError) as exc:
            return {"ok": False, "dialect": self.dialect, "error": _describe(exc)}
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        return {"ok": True, "dialect": self.dialect, "latency_ms": latency_ms}

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver errors into :class:`StorageError` / :class:`Conflict` with a readable message."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(
            "the change conflicts with stored data", hint=_describe(exc.orig or exc)
        ) from exc
    except DBAPIError as exc:
        raise StorageError(
            f"database error: {_describe(exc.orig or exc)}",
            hint="check that the database is reachable, writable and its disk not full",
        ) from exc
    except (ConnectionError, socket.gaierror) as exc:
        raise StorageError(
            f"database unreachable: {_describe(exc)}",
            hint="check the database URL (AVATAR_DATABASE_URL) and that the server is running",
        ) from exc


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _ensure_sqlite_folder(url: URL) -> None:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _install_sqlite_hooks(engine: Engine) -> None:
    # pysqlite's legacy transaction control skips BEGIN before SELECT and DDL; take it over so
    # reads see one snapshot and migrations are transactional (SQLAlchemy's documented recipe).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))
