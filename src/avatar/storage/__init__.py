"""Storage: the database (SQLite or Postgres), its repositories, and the audio file store."""

from avatar.storage.audio_store import CATEGORIES, AudioStore, Category
from avatar.storage.common import Page, embedding_from_bytes, embedding_to_bytes
from avatar.storage.conversations import Conversations
from avatar.storage.db import Database
from avatar.storage.errors import Conflict, InvalidInput, NotFound, StorageError, UnsafePath
from avatar.storage.inputs import NewTurn, NewVoiceProfile
from avatar.storage.search import SearchHit
from avatar.storage.stats import ConversationStats, MetricSummary
from avatar.storage.tables import ConversationRow, TurnRow, VoiceProfileRow
from avatar.storage.voice_profiles import VoiceProfiles

__all__ = [
    "CATEGORIES",
    "AudioStore",
    "Category",
    "Conflict",
    "ConversationRow",
    "ConversationStats",
    "Conversations",
    "Database",
    "InvalidInput",
    "MetricSummary",
    "NewTurn",
    "NewVoiceProfile",
    "NotFound",
    "Page",
    "SearchHit",
    "StorageError",
    "TurnRow",
    "UnsafePath",
    "VoiceProfileRow",
    "VoiceProfiles",
    "embedding_from_bytes",
    "embedding_to_bytes",
]
