"""Text helpers that know about languages and scripts (Chinese Traditional/Simplified)."""
