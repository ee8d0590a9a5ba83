"""Run Alembic programmatically: no ``alembic.ini``, scripts inside the package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"
# Search structures made by raw SQL in the migrations, invisible to autogenerate and compare:
# the SQLite FTS5 table (and its shadow tables) and the Postgres trigram indexes.
FTS_TABLE_PREFIX = "turns_fts"
TRGM_INDEX_SUFFIX = "_trgm"


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic filter that hides the search structures managed by hand-written SQL."""
    if name is None:
        return True
    if type_ == "table":
        return not name.startswith(FTS_TABLE_PREFIX)
    return not (type_ == "index" and name.endswith(TRGM_INDEX_SUFFIX))


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    return config


def upgrade_to_head(connection: Connection) -> None:
    """Upgrade the database behind ``connection`` (inside its open transaction) to head."""
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
