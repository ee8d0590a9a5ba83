"""Helpers for the web UI tests: headless Chromium with a fake microphone and page logs.

The browser is the system Chromium (``/usr/bin/chromium``, or ``AVATAR_TEST_CHROMIUM``) driven by
Playwright over CDP; ``playwright install`` is never needed. Each distinct fake-microphone file
needs its own browser launch (the flag is per process).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from avatar.audio.encode import encode_wav
from avatar.audio.pcm import PcmAudio
from conftest import LiveServer

CHROMIUM = Path(os.environ.get("AVATAR_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "web-ui"
BASE_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-device-for-media-stream",
]


def require_chromium() -> None:
    """Skip (or fail, with AVATAR_REQUIRE_BROWSER=1 as in CI) when there is no Chromium."""
    if CHROMIUM.exists():
        return
    message = (
        f"Chromium not found at {CHROMIUM} (apt install chromium, or set AVATAR_TEST_CHROMIUM)"
    )
    if os.environ.get("AVATAR_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def chromium_flags(*, fake_audio: Path | None = None, allow_mic: bool = True) -> list[str]:
    """The flags of a test browser. ``fake_audio`` plays once (``%noloop``) as the microphone;
    without ``allow_mic`` there is no auto-accepted permission prompt (the browser denies)."""
    flags = list(BASE_FLAGS)
    if allow_mic:
        flags.append("--use-fake-ui-for-media-stream")
    if fake_audio is not None:
        flags.append(f"--use-file-for-fake-audio-capture={fake_audio}%noloop")
    return flags


async def launch(playwright: Any, **kwargs: Any) -> Any:
    return await playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=chromium_flags(**kwargs)
    )


def write_wav(path: Path, pcm16k: bytes) -> Path:
    """A 16-bit PCM mono 16 kHz WAV, the form Chromium's fake capture device reads."""
    path.write_bytes(encode_wav(PcmAudio.from_s16le(pcm16k, 16_000)))
    return path


@dataclass
class PageLog:
    """What a page said on its console, threw, or sent over its WebSockets."""

    console: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    ws_sent: list[str | bytes] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("websocket", lambda ws: ws.on("framesent", lambda f: self.ws_sent.append(f)))

    def errors(self) -> list[str]:
        return [text for kind, text in self.console if kind == "error"] + self.page_errors

    def sent_json(self, kind: str) -> list[str]:
        return [f for f in self.ws_sent if isinstance(f, str) and f'"type":"{kind}"' in f]

    def sent_binary(self) -> list[bytes]:
        return [f for f in self.ws_sent if isinstance(f, bytes)]


async def open_page(
    browser: Any,
    server: LiveServer,
    *,
    login: bool = True,
    viewport: tuple[int, int] = (1280, 860),
    **context_args: Any,
) -> tuple[Any, Any, PageLog]:
    """A fresh context (own cookies and storage) and page, signed in by posting the token."""
    context = await browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]}, **context_args
    )
    context.set_default_timeout(30_000)
    page = await context.new_page()
    log = PageLog()
    log.attach(page)
    if login:
        await context.request.post(f"{server.url}/login", form={"token": server.token})
        await page.goto(f"{server.url}/")
        await page.wait_for_selector("body[data-auth=in]")
    else:
        await page.goto(f"{server.url}/")
    return context, page, log


async def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll a test-side condition (e.g. on the WebSocket frames a page sent)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not come true")
        await asyncio.sleep(0.05)


async def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
