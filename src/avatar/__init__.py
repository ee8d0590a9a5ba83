"""AVATAR: a private, self-hosted, real-time voice assistant server."""

__version__ = "0.1.0"
