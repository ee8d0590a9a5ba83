"""Keep every reply whole: ``turns.heard_ms`` records how far an interrupted reply was heard.

Before this revision an interrupted turn's ``assistant_text`` and reply audio were cut to what was
heard (and, through a bug, so were turns the client reported playback for while the reply still
arrived). From now on both stay whole and ``heard_text``/``heard_ms`` say what was heard. Old
interrupted rows get ``heard_ms`` from their (cut) reply audio length, which is what was heard.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (nullable, no default) works in place on SQLite and Postgres alike.
    op.add_column("turns", sa.Column("heard_ms", sa.Float(), nullable=True))
    op.execute(
        "UPDATE turns SET heard_ms = assistant_audio_s * 1000 "
        "WHERE interrupted AND assistant_audio_s IS NOT NULL"
    )


def downgrade() -> None:
    # Not batch mode: SQLite's table copy would drop the FTS triggers on ``turns``. Native
    # DROP COLUMN needs SQLite 3.35+.
    op.execute("ALTER TABLE turns DROP COLUMN heard_ms")
