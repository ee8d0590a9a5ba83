"""Consistent online copies of the database, and putting them back.

SQLite: the sqlite3 backup API copies a snapshot page by page while the server keeps running
(WAL lets writers go on); the copy is switched to a standalone file (``journal_mode=DELETE``)
and checked with ``PRAGMA quick_check``. Postgres: ``pg_dump --format=custom`` of a snapshot
exported from a REPEATABLE READ transaction, so the counts and audio paths read here describe
exactly what was dumped; ``pg_restore`` puts it back. Both need the PostgreSQL client tools of
the server's major version on PATH (``apt install postgresql-client-<N>``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import URL, make_url

from avatar.services.backup_manifest import BackupCorrupt, BackupError, Counts

_COUNTS = ("sessions", "turns", "voice_profiles")
_REFS = (
    "SELECT user_audio FROM turns WHERE user_audio IS NOT NULL",
    "SELECT assistant_audio FROM turns WHERE assistant_audio IS NOT NULL",
    "SELECT audio FROM voice_profiles",
)
_REVISION = "SELECT version_num FROM alembic_version"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one consistent view of the database holds."""

    counts: Counts
    revision: str | None
    audio: frozenset[str]


def sqlite_file(url: str) -> Path:
    database = make_url(url).database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(
            f"cannot back up the SQLite database {database!r}",
            hint="use a file database (the default <data_dir>/avatar.db)",
        )
    return Path(database).expanduser()


# --- SQLite ---------------------------------------------------------------------------------


def sqlite_copy(src: Path, dst: Path) -> Snapshot:
    """Copy a live SQLite database to ``dst`` (a new, standalone file) and read its snapshot."""
    if not src.is_file():
        raise BackupError(
            f"there is no database at {src}", hint="check AVATAR_DATA_DIR / AVATAR_DATABASE_URL"
        )
    source = sqlite3.connect(src, timeout=30)
    target = sqlite3.connect(dst)
    try:
        source.execute("PRAGMA busy_timeout = 30000")
        source.backup(target)  # one step: a single consistent read snapshot
        target.execute("PRAGMA journal_mode = DELETE")
        return sqlite_snapshot(target)
    except sqlite3.Error as exc:
        raise BackupError(
            f"SQLite backup failed: {exc}",
            hint="check free space and that the database is readable",
        ) from exc
    finally:
        target.close()
        source.close()


def sqlite_snapshot(connection: sqlite3.Connection) -> Snapshot:
    (check,) = connection.execute("PRAGMA quick_check").fetchone()
    if check != "ok":
        raise BackupCorrupt(f"the SQLite database fails its integrity check: {check}")
    counts = {t: connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in _COUNTS}
    audio = {row[0] for query in _REFS for row in connection.execute(query)}
    revision = connection.execute(_REVISION).fetchone()
    return Snapshot(Counts(**counts), revision[0] if revision else None, frozenset(audio))


def sqlite_read_snapshot(path: Path) -> Snapshot:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return sqlite_snapshot(connection)
    except sqlite3.Error as exc:
        raise BackupCorrupt(f"the backed-up database is not readable SQLite ({exc})") from exc
    finally:
        connection.close()


# --- Postgres -------------------------------------------------------------------------------


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and the environment that carries the password."""
    parsed: URL = make_url(url).set(drivername="postgresql")
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    return parsed.set(password=None).render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} is not installed",
            code="backup_tool_missing",
            hint="install the PostgreSQL client tools of the server's major "
            "version (e.g. apt install postgresql-client-15)",
        )
    return path


async def _run(*argv: str, env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        lines = stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        raise BackupError(
            f"{Path(argv[0]).name} failed: {lines[0]}",
            hint="check the database URL, credentials and that the client tools "
            "match the server's major version",
        )


async def _connect(dsn: str, env: dict[str, str]) -> Any:
    try:
        return await asyncpg.connect(dsn, password=env.get("PGPASSWORD"), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(
            f"cannot connect to Postgres: {exc}",
            hint="check AVATAR_DATABASE_URL and that the server is running",
        ) from exc


async def pg_dump(url: str, dst: Path) -> Snapshot:
    """Dump a snapshot of the Postgres database to ``dst`` (pg_dump custom format)."""
    tool = _tool("pg_dump")
    dsn, env = _libpq(url)
    connection = await _connect(dsn, env)
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            snapshot_id = await connection.fetchval("SELECT pg_export_snapshot()")
            counts = {t: await connection.fetchval(f"SELECT count(*) FROM {t}") for t in _COUNTS}
            audio = {r[0] for q in _REFS for r in await connection.fetch(q)}
            revision = await connection.fetchval(_REVISION)
            await _run(
                tool,
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--snapshot={snapshot_id}",
                f"--file={dst}",
                f"--dbname={dsn}",
                env=env,
            )
    finally:
        await connection.close()
    return Snapshot(Counts(**counts), revision, frozenset(audio))


async def pg_has_data(url: str) -> bool:
    dsn, env = _libpq(url)
    connection = await _connect(dsn, env)
    try:
        present = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_name = ANY($1::text[])",
            list(_COUNTS),
        )
        for (table,) in present:
            if await connection.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                return True
        return False
    finally:
        await connection.close()


async def pg_restore(url: str, dump: Path) -> None:
    """Replace the database's objects with those of ``dump``, in one transaction."""
    tool = _tool("pg_restore")
    dsn, env = _libpq(url)
    await _run(
        tool,
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        "--exit-on-error",
        f"--dbname={dsn}",
        str(dump),
        env=env,
    )
