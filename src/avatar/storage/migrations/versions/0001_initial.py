"""Initial schema: voice profiles, sessions, turns, and full-text search over turns.

Search, per backend (both give literal, case-insensitive substring matches, Chinese included):

- SQLite: an FTS5 table with the ``trigram`` tokenizer over turns (external content, kept in
  sync by triggers). Trigrams index any script, so CJK text without spaces is searchable; terms
  shorter than 3 characters fall back to ``LIKE`` in the search code.
- Postgres: ``pg_trgm`` GIN indexes serve ``ILIKE '%term%'``. A ``tsvector`` with the 'simple'
  config was rejected: it does not split CJK runs into words, so 天气 would not find 今天天气很好.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
STAMP = sa.DateTime(timezone=True)

_SQLITE_FTS = [
    """CREATE VIRTUAL TABLE turns_fts USING fts5(
        user_text, assistant_text, content='turns', content_rowid='id', tokenize='trigram')""",
    """CREATE TRIGGER turns_fts_ai AFTER INSERT ON turns BEGIN
        INSERT INTO turns_fts(rowid, user_text, assistant_text)
        VALUES (new.id, new.user_text, new.assistant_text);
    END""",
    """CREATE TRIGGER turns_fts_ad AFTER DELETE ON turns BEGIN
        INSERT INTO turns_fts(turns_fts, rowid, user_text, assistant_text)
        VALUES ('delete', old.id, old.user_text, old.assistant_text);
    END""",
    """CREATE TRIGGER turns_fts_au AFTER UPDATE OF user_text, assistant_text ON turns BEGIN
        INSERT INTO turns_fts(turns_fts, rowid, user_text, assistant_text)
        VALUES ('delete', old.id, old.user_text, old.assistant_text);
        INSERT INTO turns_fts(rowid, user_text, assistant_text)
        VALUES (new.id, new.user_text, new.assistant_text);
    END""",
]
# pg_trgm is a trusted extension (PG 13+): a database owner may create it without superuser.
_POSTGRES_TRGM = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_turns_user_text_trgm ON turns USING gin (user_text gin_trgm_ops)",
    "CREATE INDEX ix_turns_assistant_text_trgm ON turns USING gin (assistant_text gin_trgm_ops)",
]


def _create_voice_profiles() -> None:
    op.create_table(
        "voice_profiles",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("reference_text", sa.Text(), nullable=False),
        sa.Column("audio", sa.String(255), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("quality", JSON, nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("engine_status", sa.String(32), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("updated_at", STAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_voice_profiles"),
        sa.UniqueConstraint("name", name="uq_voice_profiles_name"),
    )


def _create_sessions() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("updated_at", STAMP, nullable=False),
        sa.Column("title", sa.String(200), nullable=True),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("voice_profile_id", sa.String(32), nullable=True),
        sa.Column("tts_mode", sa.String(8), nullable=False),
        sa.Column("turn_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(
            ["voice_profile_id"],
            ["voice_profiles.id"],
            name="fk_sessions_voice_profile_id_voice_profiles",
            ondelete="SET NULL",
        ),
        sa.CheckConstraint("tts_mode IN ('fast', 'hq')", name="ck_sessions_tts_mode"),
    )
    op.create_index("ix_sessions_created_at", "sessions", ["created_at"])
    op.create_index("ix_sessions_updated_at", "sessions", ["updated_at"])
    op.create_index("ix_sessions_voice_profile_id", "sessions", ["voice_profile_id"])


def _create_turns() -> None:
    op.create_table(
        "turns",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("user_text", sa.Text(), nullable=False),
        sa.Column("assistant_text", sa.Text(), nullable=False),
        sa.Column("heard_text", sa.Text(), nullable=True),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("interrupted", sa.Boolean(), nullable=False),
        sa.Column("user_audio", sa.String(255), nullable=True),
        sa.Column("assistant_audio", sa.String(255), nullable=True),
        sa.Column("tts_mode", sa.String(8), nullable=False),
        sa.Column("user_audio_s", sa.Float(), nullable=True),
        sa.Column("assistant_audio_s", sa.Float(), nullable=True),
        sa.Column("metrics", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_turns"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_turns_session_id_sessions", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("session_id", "index", name="uq_turns_session_id"),
        sa.CheckConstraint("tts_mode IN ('fast', 'hq')", name="ck_turns_tts_mode"),
    )
    op.create_index("ix_turns_created_at", "turns", ["created_at"])


def upgrade() -> None:
    _create_voice_profiles()
    _create_sessions()
    _create_turns()
    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": _SQLITE_FTS, "postgresql": _POSTGRES_TRGM}.get(dialect, []):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS turns_fts")  # its triggers go with the turns table
    op.drop_table("turns")
    op.drop_table("sessions")
    op.drop_table("voice_profiles")
