"""Secrets out of text users and logs see: ``scheme://user:password@host`` becomes
``scheme://***@host``, wherever the URL sits in a message (engine errors, ``/health``,
WebSocket ``error`` events, log lines, ``avatar config show``)."""

from __future__ import annotations

import re
from typing import Any, Final

# The userinfo part of any URL: after "scheme://", up to the last "@" before the host ends.
_USERINFO: Final = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#]+@")


def strip_credentials(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def strip_all(value: Any) -> Any:
    """The same for every string in nested dicts and lists (settings dumps)."""
    if isinstance(value, str):
        return strip_credentials(value)
    if isinstance(value, dict):
        return {k: strip_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_all(v) for v in value]
    return value
