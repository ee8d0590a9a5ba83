"""Alembic environment: runs on the connection :mod:`avatar.storage.migrate` hands over.

Used directly by the ``alembic`` command line too (``-x url=...`` or ``sqlalchemy.url``), in which
case it opens its own :class:`Database` (same pragmas and transaction handling).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from avatar.storage.db import Database
from avatar.storage.migrate import include_object
from avatar.storage.tables import Base


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine(url: str) -> None:
    database = Database(url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(run_on)
    finally:
        await database.dispose()


def main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database URL: alembic -x url=sqlite+aiosqlite:///data/avatar.db")
    asyncio.run(run_with_own_engine(url))


main()
