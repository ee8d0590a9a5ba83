"""The web UI in headless Chromium against the real server and models.

Speech goes in through Chromium's fake microphone (a WAV made with the real TTS), through the
page's AudioWorklet and /ws/chat; what the page shows and plays is read back from the DOM.
Screenshots are kept under test-artifacts/web-ui/.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright, expect

from avatar.api.ratelimit import RateLimits
from avatar.engines.hub import EngineHub
from avatar.engines.tts.piper import PiperTts
from avatar.models.store import ModelStore
from avatar.testing.fakes import ScriptedChat, ScriptedStt, ToneTts
from conftest import LiveServer, free_port, live_app, say_en, scripted_settings
from web_fixtures import (
    launch,
    open_page,
    require_chromium,
    screenshot,
    wait_until,
    write_wav,
)
from wsclient import silence, to_pcm16k

LONG_WAIT = 180_000  # ms: a real STT + LLM + TTS turn on a small shared CPU
STORY = " ".join(["Once upon a time there was a small robot who lived by the sea."] * 12)


@pytest.fixture(autouse=True)
def fresh_limits(live_server: LiveServer) -> None:
    """Each test starts with fresh rate-limit counters (the UI makes real API calls)."""
    live_server.state.limits = RateLimits(None)


@pytest.fixture(scope="module")
async def playwright() -> AsyncIterator[Any]:
    require_chromium()
    async with async_playwright() as p:
        yield p


@pytest.fixture(scope="module")
async def browser(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """A browser whose microphone hears silence."""
    quiet = write_wav(tmp_path_factory.mktemp("wav") / "silence.wav", silence(3.0))
    b = await launch(playwright, fake_audio=quiet)
    yield b
    await b.close()


@pytest.fixture(scope="module")
def question_wav(speaker: PiperTts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    audio = say_en(speaker, "What is the capital of France?")
    pcm = silence(1.0) + to_pcm16k(audio) + silence(2.0)
    return write_wav(tmp_path_factory.mktemp("wav") / "question.wav", pcm)


@pytest.fixture(scope="module")
def voice_wav(speaker: PiperTts, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    text = "The quick brown fox jumps over the lazy dog. I am recording my voice for the assistant."
    audio = say_en(speaker, text)
    assert audio.duration_s >= 4.0
    pcm = silence(0.3) + to_pcm16k(audio) + silence(0.3)
    return write_wav(tmp_path_factory.mktemp("wav") / "voice.wav", pcm), text


async def dataset(page: Any, selector: str) -> dict[str, str]:
    return await page.eval_on_selector(selector, "n => ({...n.dataset})")


# --- serving ------------------------------------------------------------------------------


class _Markup(HTMLParser):
    """Collects what the CSP would block: inline scripts, style elements and attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style" or "style" in names or any(n.startswith("on") for n in names):
            self.blocked.append(tag)
        if tag == "script":
            self.scripts.append(dict(attrs).get("src") or "")


async def test_ui_is_served_beside_an_unchanged_api(api: Any) -> None:
    index = await api.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in index.headers["content-security-policy"]
    markup = _Markup()
    markup.feed(index.text)
    assert markup.blocked == [] and markup.scripts == ["/js/app.js"]
    for path, kind in (
        ("/js/app.js", "text/javascript"),
        ("/js/capture-worklet.js", "text/javascript"),
        ("/css/base.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
    ):
        response = await api.get(path)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
    # the API answers exactly as it did without the UI
    wrong_method = await api.get("/api/system/models/preload")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"
    unknown = await api.get("/no-such-page")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    slash = await api.get("/api/voice-profiles/", follow_redirects=False)
    assert slash.status_code == 307
    assert (await api.post("/")).status_code == 405


# --- talking ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def spoken(
    playwright: Any, live_server: LiveServer, question_wav: Path
) -> AsyncIterator[dict[str, Any]]:
    """One hands-free spoken turn through the page: the microphone asks, the page answers."""
    live_server.state.limits = RateLimits(None)
    b = await launch(playwright, fake_audio=question_wav)
    context, page, log = await open_page(b, live_server)
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "open")
    await page.click("#mic-button")
    user = page.locator("#chat-log .msg.user .msg-text").first
    await expect(user).to_have_text(re.compile("capital", re.I), timeout=LONG_WAIT)
    await expect(page.locator("#waterfall .wf-row").first).to_be_visible(timeout=LONG_WAIT)
    stats = page.locator("#player-stats")
    await expect(stats).to_have_attribute("data-state", "idle", timeout=60_000)
    await page.click("#mic-button")  # microphone off
    result = {
        "user": await user.inner_text(),
        "reply": await page.locator("#chat-log .msg.assistant .msg-text").first.inner_text(),
        "stats": await dataset(page, "#player-stats"),
        "metrics": await page.eval_on_selector_all(
            "#waterfall .wf-row", "rows => rows.map(r => [r.dataset.metric, r.dataset.ms])"
        ),
        "bar_widths": await page.eval_on_selector_all(
            "#waterfall .wf-bar", "bars => bars.map(b => b.style.width)"
        ),
        "session_id": await page.get_attribute("#chat-log", "data-session-id"),
        "mic_state": await page.get_attribute("#mic-state", "data-state"),
        "audio_frames": log.sent_binary(),
        "playback": [json.loads(f) for f in log.sent_json("playback")],
        "configs": [json.loads(f) for f in log.sent_json("config")],
        "errors": log.errors(),
        "csp": await page.get_attribute("html", "data-csp-violations"),
    }
    await screenshot(page, "talk-spoken-turn")
    yield result
    await context.close()
    await b.close()


async def test_spoken_question_is_answered_aloud(spoken: dict[str, Any]) -> None:
    assert "capital" in spoken["user"].lower()
    # The reply is whatever the small LLM made of the transcript (Whisper base has heard "France"
    # as "friends" through the browser's resampling); its content is tested over the WebSocket
    # (tests/test_ws_chat.py). Here: the page shows a real reply, spoken aloud.
    assert len(spoken["reply"].split()) >= 2
    # the microphone went out as 32 ms binary frames (one VAD frame) of 16 kHz s16le PCM
    frames = spoken["audio_frames"]
    assert len(frames) >= 90
    assert {len(f) for f in frames[:-1]} == {1024}
    # hands-free was configured, the reply audio was played to the end and reported
    assert spoken["configs"] and spoken["configs"][0]["hands_free"] is True
    stats = spoken["stats"]
    assert int(stats["chunksReceived"]) >= 1
    assert stats["chunksPlayed"] == stats["chunksReceived"]
    assert int(stats["playedMs"]) > 500
    assert stats["cut"] == "0"
    assert any(p["played_ms"] > 500 for p in spoken["playback"])
    # the waterfall shows the stages of the turn, bars sized through CSSOM
    metrics = dict(spoken["metrics"])
    for key in ("endpointing_ms", "stt_ms", "llm_first_token_ms", "voice_to_voice_ms"):
        assert key in metrics, key
    assert all(w.endswith("%") for w in spoken["bar_widths"])
    assert spoken["mic_state"] == "off"
    assert spoken["errors"] == [] and spoken["csp"] is None


async def test_push_to_talk_with_the_space_key(
    playwright: Any, live_server: LiveServer, question_wav: Path
) -> None:
    b = await launch(playwright, fake_audio=question_wav)
    context, page, log = await open_page(b, live_server)
    try:
        await expect(page.locator("#conn-status")).to_have_attribute("data-state", "open")
        await page.click("label[for=mode-ptt]")
        await expect(page.locator("#ptt-button")).to_be_visible()
        await page.click("#chat-log")  # focus on the page, not on a control
        await page.keyboard.down("Space")
        await expect(page.locator("#ptt-button")).to_have_class(re.compile("held"))
        await page.wait_for_timeout(4_500)  # 1 s silence, the question, then silence
        await page.keyboard.up("Space")
        user = page.locator("#chat-log .msg.user .msg-text").first
        await expect(user).to_have_text(re.compile("capital", re.I), timeout=LONG_WAIT)
        await expect(page.locator("#chat-log .msg.assistant .msg-text").first).not_to_be_empty(
            timeout=LONG_WAIT
        )
        assert json.loads(log.sent_json("config")[-1])["hands_free"] is False
        assert log.sent_json("end_of_utterance")
        assert log.errors() == []
    finally:
        await context.close()
        await b.close()


async def test_pickers_configure_the_session(
    browser: Any, live_server: LiveServer, api: Any
) -> None:
    context, page, log = await open_page(browser, live_server)
    try:
        await expect(page.locator("#conn-status")).to_have_attribute("data-state", "open")
        profiles = (await api.get("/api/voice-profiles")).json()["items"]
        options = await page.eval_on_selector_all(
            "#voice-select option", "os => os.map(o => o.value)"
        )
        assert options == ["", *[p["id"] for p in profiles]]
        await page.select_option("#lang-select", "zh")
        await wait_until(lambda: len(log.sent_json("config")) > 1)
        assert json.loads(log.sent_json("config")[-1])["language"] == "zh"
        # hq speech is not configured on this server: it cannot be chosen, and the picker says why
        await expect(page.locator('#tts-select option[value="hq"]')).to_be_disabled()
        await expect(page.locator("#tts-hint")).to_contain_text("not set up on this server")
        assert await page.input_value("#lang-select") == "zh"
    finally:
        await context.close()


# --- voices -------------------------------------------------------------------------------


async def test_voice_profile_upload_report_test_edit_delete(
    browser: Any, live_server: LiveServer, voice_wav: tuple[Path, str]
) -> None:
    path, text = voice_wav
    name = f"Web voice {uuid.uuid4().hex[:6]}"
    context, page, log = await open_page(browser, live_server)
    try:
        await page.click("#tab-voices")
        await page.fill("#voice-name", name)
        await page.fill("#voice-description", "made by the browser test")
        await page.fill("#voice-reference", text)
        await page.set_input_files("#voice-file", str(path))
        await expect(page.locator("#voice-preview")).to_be_visible()
        await page.click("#voice-submit")
        card = page.locator(".voice-card.fresh")
        await expect(card.locator("h3")).to_have_text(name, timeout=LONG_WAIT)
        quality = await card.locator(".quality").inner_text()
        assert "dBFS" in quality and "dB" in quality
        accuracy = re.search(r"(\d+) %", quality.split("accuracy", 1)[1])
        assert accuracy and int(accuracy.group(1)) >= 60
        await expect(card.locator(".badge")).to_have_text(re.compile("Cloning|Packaged"))
        # the stored sample plays
        await card.get_by_role("button", name="Play sample").click()
        await expect(card.locator(".sample audio")).to_have_attribute(
            "data-state", re.compile("playing|ended")
        )
        # a test synthesis says honestly which voice spoke
        await card.get_by_role("button", name="Test synthesis").click()
        result = card.locator(".test-result")
        await expect(result).to_have_attribute("data-voice", re.compile(".+"), timeout=LONG_WAIT)
        cloned = await result.get_attribute("data-cloned")
        await expect(result).to_contain_text("Cloned voice" if cloned == "true" else "Not cloned")
        await expect(result.locator("audio")).to_have_attribute(
            "data-state", re.compile("playing|ended")
        )
        await screenshot(page, "voices-profile")
        # edit the description in the dialog
        await card.get_by_role("button", name="Edit").click()
        await expect(page.locator("#edit-dialog")).to_have_attribute("open", "")
        await page.fill("#edit-description", "edited in the dialog")
        await page.click("#edit-dialog button[value=save]")
        await expect(page.locator("#edit-dialog")).not_to_have_attribute("open", "")
        card = page.locator(".voice-card", has=page.locator("h3", has_text=name))
        await expect(card).to_contain_text("edited in the dialog")
        # delete: Escape cancels (focus returns), the dialog keeps focus inside, OK deletes
        delete = card.get_by_role("button", name="Delete")
        await delete.focus()
        await page.keyboard.press("Enter")
        dialog = page.locator("#confirm-dialog")
        await expect(dialog).to_have_attribute("open", "")
        for _ in range(5):
            await page.keyboard.press("Tab")
            inside = await page.evaluate(
                "document.querySelector('#confirm-dialog').contains(document.activeElement)"
            )
            assert inside
        await page.keyboard.press("Escape")
        await expect(dialog).not_to_have_attribute("open", "")
        assert await delete.evaluate("b => b === document.activeElement")
        await expect(card).to_have_count(1)
        await delete.click()
        await page.click("#confirm-ok")
        await expect(card).to_have_count(0)
        assert log.errors() == []
    finally:
        await context.close()


async def test_voice_profile_recorded_in_the_browser(
    playwright: Any, live_server: LiveServer, voice_wav: tuple[Path, str]
) -> None:
    path, text = voice_wav
    b = await launch(playwright, fake_audio=path)  # the microphone says the reference text
    context, page, log = await open_page(b, live_server)
    try:
        await page.click("#tab-voices")
        await page.fill("#voice-name", f"Recorded {uuid.uuid4().hex[:6]}")
        await page.fill("#voice-reference", text)
        await page.click("#record-start")
        await expect(page.locator("#record-time")).to_contain_text("Recording")
        await page.wait_for_timeout(7_000)
        await page.click("#record-stop")
        await expect(page.locator("#voice-source")).to_contain_text("Recorded")
        recorded = await page.get_attribute("#voice-preview", "data-type")
        assert recorded and recorded.startswith("audio/webm")  # MediaRecorder: WebM/Opus
        await page.click("#voice-submit")
        card = page.locator(".voice-card.fresh")
        await expect(card).to_be_visible(timeout=LONG_WAIT)
        quality = await card.locator(".quality").inner_text()
        accuracy = re.search(r"(\d+) %", quality.split("accuracy", 1)[1])
        assert accuracy and int(accuracy.group(1)) >= 60, quality
        assert log.errors() == []
    finally:
        await context.close()
        await b.close()


# --- history ------------------------------------------------------------------------------


async def test_history_search_play_export_delete(
    browser: Any, live_server: LiveServer, spoken: dict[str, Any]
) -> None:
    session_id = spoken["session_id"]
    context, page, log = await open_page(browser, live_server, accept_downloads=True)
    try:
        await page.click("#tab-history")
        await expect(page.locator(f".session-item[data-id='{session_id}']")).to_be_visible()
        await page.fill("#search-input", "capital")
        await page.press("#search-input", "Enter")
        hit = page.locator(f".hit[data-session='{session_id}'][data-turn='1']").first
        await expect(hit.locator("mark")).to_have_text(re.compile("capital", re.I))
        await screenshot(page, "history-search")
        await hit.click()
        turn = page.locator("#turn-list .turn.target")
        await expect(turn).to_have_attribute("data-turn", "1")
        await expect(turn).to_contain_text(spoken["reply"])
        await expect(turn.locator(".chip").first).to_be_visible()
        for role in ("user", "assistant"):
            await turn.locator(f"button[data-play={role}]").click()
            audio = turn.locator(f"audio[data-role={role}]")
            await expect(audio).to_have_attribute("data-state", re.compile("playing|ended"))
            assert float(await audio.get_attribute("data-duration") or 0) > 0.5
        # exports download as files
        for fmt, suffix in (("json", ".json"), ("markdown", ".md"), ("zip", ".zip")):
            async with page.expect_download() as info:
                await page.click(f"[data-export={fmt}]")
            download = await info.value
            assert download.suggested_filename.endswith(suffix)
            saved = await asyncio.to_thread(Path(await download.path()).read_bytes)
            if fmt != "zip":
                assert "capital" in saved.decode("utf-8").lower()
            else:
                assert saved[:2] == b"PK"
        await screenshot(page, "history-session")
        # delete, after a confirmation
        await page.click("#session-delete")
        await page.click("#confirm-ok")
        await expect(page.locator(f".session-item[data-id='{session_id}']")).to_have_count(0)
        await expect(page.locator("#detail-empty")).to_be_visible()
        assert log.errors() == []
    finally:
        await context.close()


async def test_search_snippets_are_the_only_html(browser: Any, live_server: LiveServer) -> None:
    """Text that looks like markup is shown as text; only <mark> from the snippet is markup."""
    context, page, _ = await open_page(browser, live_server)
    try:
        nodes = await page.evaluate(
            """async () => {
                const { snippetNodes } = await import('/js/history.js');
                const span = document.createElement('span');
                span.append(...snippetNodes('a &lt;b&gt; <mark>hit</mark><img src=x onerror=1>'));
                return [span.innerHTML, span.querySelectorAll('img').length];
            }"""
        )
        assert nodes == ["a &lt;b&gt; <mark>hit</mark>", 0]
    finally:
        await context.close()


# --- system -------------------------------------------------------------------------------


async def test_system_models_memory_and_warmup(browser: Any, live_server: LiveServer) -> None:
    context, page, log = await open_page(browser, live_server)
    try:
        await page.click("#tab-system")
        stt = page.locator("#model-table tr[data-slot=stt]")
        await expect(stt).to_contain_text("faster-whisper")
        await expect(page.locator("#machine .usage").first).to_contain_text("RAM")
        await page.click("#warmup")
        await expect(page.locator("#system-busy")).to_be_visible()
        result = page.locator("#system-result[data-kind=warmup]")
        await expect(result).to_contain_text("Warm-up finished", timeout=LONG_WAIT)
        await expect(result.locator("li[data-slot=stt]")).to_have_class("ok")
        await page.click("#preload")
        # after the warm-up the models are in memory: the preload says so, not "0.0 s"
        await expect(page.locator("#system-result[data-kind=preload]")).to_contain_text(
            re.compile(r"already loaded|Loaded \d+ models? in"), timeout=LONG_WAIT
        )
        await expect(page.locator("#model-table tr[data-slot=stt]")).to_have_attribute(
            "data-state", "loaded"
        )
        await screenshot(page, "system")
        assert log.errors() == []
    finally:
        await context.close()


# --- languages, layout, keyboard, console -------------------------------------------------


async def test_traditional_chinese_is_remembered(browser: Any, live_server: LiveServer) -> None:
    context, page, log = await open_page(browser, live_server)
    try:
        await page.select_option("#ui-lang", "zh-TW")
        await expect(page.locator("#tab-talk")).to_have_text("對話")
        await expect(page.locator("#mic-label")).to_have_text("開始說話")
        await page.reload()
        await expect(page.locator("#tab-history")).to_have_text("歷史紀錄")
        assert await page.get_attribute("html", "lang") == "zh-TW"
        await page.click("#tab-voices")
        await expect(page.locator("#voice-submit")).to_have_text("建立設定檔")
        await screenshot(page, "zh-tw-voices")
        storage = await page.evaluate(
            "[Object.keys(localStorage), sessionStorage.length, document.cookie]"
        )
        assert storage == [["avatar.uiLanguage"], 0, ""]  # the token is in an HttpOnly cookie
        assert log.errors() == []
    finally:
        await context.close()


@pytest.mark.parametrize("language", ["en", "zh-TW"])
async def test_main_pages_have_no_console_errors(
    browser: Any, live_server: LiveServer, language: str
) -> None:
    context, page, log = await open_page(browser, live_server)
    try:
        await page.select_option("#ui-lang", language)
        for tab in ("talk", "voices", "history", "system"):
            await page.click(f"#tab-{tab}")
            await expect(page.locator(f"#panel-{tab}")).to_be_visible()
            await page.wait_for_load_state("networkidle")
            await screenshot(page, f"{tab}-{language}")
        assert log.errors() == []
        assert await page.get_attribute("html", "data-csp-violations") is None
    finally:
        await context.close()


async def test_phone_layout_fits_the_screen(browser: Any, live_server: LiveServer) -> None:
    context, page, log = await open_page(
        browser, live_server, viewport=(390, 844), is_mobile=True, has_touch=True
    )
    try:
        for tab in ("talk", "voices", "history", "system"):
            await page.click(f"#tab-{tab}")
            await page.wait_for_load_state("networkidle")
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (tab, width)
            await screenshot(page, f"phone-{tab}")
        assert log.errors() == []
    finally:
        await context.close()


async def test_keyboard_moves_between_tabs(browser: Any, live_server: LiveServer) -> None:
    context, page, _ = await open_page(browser, live_server)
    try:
        for _ in range(10):
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement.id") == "tab-talk":
                break
        else:
            pytest.fail("the tabs cannot be reached with Tab")
        shadow = await page.evaluate("getComputedStyle(document.activeElement).boxShadow")
        assert shadow != "none"  # the focus is visible
        await page.keyboard.press("ArrowRight")
        await expect(page.locator("#tab-voices")).to_be_focused()
        await expect(page.locator("#panel-voices")).to_be_visible()
        await page.keyboard.press("End")
        await expect(page.locator("#panel-system")).to_be_visible()
        await page.keyboard.press("Home")
        await expect(page.locator("#panel-talk")).to_be_visible()
        assert await page.get_attribute("#tab-talk", "aria-selected") == "true"
    finally:
        await context.close()


# --- failure paths ------------------------------------------------------------------------


async def test_missing_token_shows_the_login_panel(browser: Any, live_server: LiveServer) -> None:
    context, page, _ = await open_page(browser, live_server, login=False)
    try:
        await expect(page.locator("#login-panel")).to_be_visible()
        await expect(page.locator("#tab-talk")).to_be_hidden()
        await screenshot(page, "login")
        await page.fill("#login-token", live_server.token)
        await page.click("#login-panel button[type=submit]")
        await expect(page.locator("#panel-talk")).to_be_visible()
        assert await page.evaluate("localStorage.length + sessionStorage.length") == 0
        await page.click("#logout")
        await expect(page.locator("#login-panel")).to_be_visible()
    finally:
        await context.close()


async def test_denied_microphone_is_explained(playwright: Any, live_server: LiveServer) -> None:
    b = await launch(playwright, allow_mic=False)
    context, page, _ = await open_page(b, live_server, permissions=[])
    try:
        await page.click("#mic-button")
        await expect(page.locator("#mic-state")).to_have_attribute("data-state", "error")
        await expect(page.locator("#banner")).to_contain_text("Microphone access was denied")
        await expect(page.locator("#mic-button")).to_have_attribute("aria-pressed", "false")
        await screenshot(page, "mic-denied")
    finally:
        await context.close()
        await b.close()


@pytest.fixture(scope="module")
def scripted(
    tmp_path_factory: pytest.TempPathFactory, model_store: ModelStore
) -> Iterator[dict[str, Any]]:
    """Serves (``with scripted() as server``) the app with scripted engines (a long, slow
    reply), always at the same address, so tests may stop and restart it."""
    settings = scripted_settings(tmp_path_factory.mktemp("webfake"))
    engines = EngineHub(settings, model_store)
    engines.override("llm", ScriptedChat(STORY, interval_s=0.08))
    engines.override("tts.fast", ToneTts(ms_per_word=250))
    # slow to transcribe, so the barge-in's own turn starts well after the cut is checked
    engines.override("stt", ScriptedStt("Wait, stop, tell me something else.", delay_s=4.0))
    yield functools.partial(live_app, settings, hub=engines, port=free_port())
    engines.close()


async def _start_story(page: Any) -> None:
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "open")
    await page.fill("#text-input", "Tell me a story.")
    await page.click("#text-form button[type=submit]")
    await expect(page.locator("#player-stats")).to_have_attribute("data-state", "playing")


async def test_barge_in_cuts_playback_at_once(
    playwright: Any, scripted: Callable[[], ContextManager[LiveServer]], question_wav: Path
) -> None:
    b = await launch(playwright, fake_audio=question_wav)
    with scripted() as server:
        context, page, log = await open_page(b, server)
        try:
            await _start_story(page)
            await page.click("#mic-button")  # the question starts 1 s later: a barge-in
            stats = page.locator("#player-stats")
            await expect(stats).to_have_attribute("data-cut", "1", timeout=30_000)
            assert (await dataset(page, "#player-stats"))["state"] == "cut"
            reply = page.locator("#chat-log .msg.assistant").first
            await expect(reply).to_have_class(re.compile("interrupted"))
            await expect(reply.locator(".msg-meta")).to_contain_text("Interrupted")
            # what was heard is shorter than the story and no piece of it plays any more
            heard = await reply.locator(".msg-text").inner_text()
            assert 0 < len(heard) < len(STORY)
            played = (await dataset(page, "#player-stats"))["chunksPlayed"]
            await page.wait_for_timeout(1_000)
            assert (await dataset(page, "#player-stats"))["chunksPlayed"] == played
            await page.click("#mic-button")
            assert log.errors() == []
        finally:
            await context.close()
            await b.close()


@pytest.fixture(scope="module")
def backchannel_wav(speaker: PiperTts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    audio = say_en(speaker, "Yes.")  # shorter than the 600 ms backchannel window
    assert audio.duration_s < 0.9
    pcm = silence(1.0) + to_pcm16k(audio) + silence(3.0)
    return write_wav(tmp_path_factory.mktemp("wav") / "backchannel.wav", pcm)


async def logged(page: Any, entry: str) -> bool:
    return entry in await page.evaluate("window.duckLog")


_WATCH_DUCKING = """() => {
  window.duckLog = [];
  const stats = document.querySelector("#player-stats");
  new MutationObserver(() => {
    const d = stats.dataset;
    const last = window.duckLog[window.duckLog.length - 1];
    const now = `${d.ducked}:${d.state}`;
    if (now !== last) window.duckLog.push(now);
  }).observe(stats, { attributes: true });
}"""


async def test_a_backchannel_ducks_the_reply_then_it_plays_on(
    playwright: Any, scripted: Callable[[], ContextManager[LiveServer]], backchannel_wav: Path
) -> None:
    b = await launch(playwright, fake_audio=backchannel_wav)
    with scripted() as server:
        context, page, log = await open_page(b, server)
        try:
            await _start_story(page)
            await page.evaluate(_WATCH_DUCKING)
            await page.click("#mic-button")  # "Yes." 1 s later, over the story
            stats = page.locator("#player-stats")
            for _ in range(300):  # the page's CSP forbids wait_for_function's eval
                if await logged(page, "true:playing"):
                    break
                await page.wait_for_timeout(100)
            await expect(stats).to_have_attribute("data-ducked", "false", timeout=30_000)
            seen = await page.evaluate("window.duckLog")
            # lowered while the user spoke, then back to full volume, playing all along
            assert seen[seen.index("true:playing") :][-1] == "false:playing"
            assert (await dataset(page, "#player-stats"))["cut"] == "0"
            assert not log.sent_json("interrupt")
            await page.wait_for_timeout(1_500)  # no turn, no cut: the story goes on
            assert (await dataset(page, "#player-stats"))["cut"] == "0"
            assert not await page.locator("#chat-log .msg.assistant.interrupted").count()
            await page.click("#mic-button")
            assert log.errors() == []
        finally:
            await context.close()
            await b.close()


async def test_server_dropping_mid_reply_reconnects(
    browser: Any, scripted: Callable[[], ContextManager[LiveServer]]
) -> None:
    with scripted() as server:
        context, page, _ = await open_page(browser, server)
        await _start_story(page)
        server.served.stop_soon()  # the server goes away while the reply streams
        pill = page.locator("#conn-status")
        await expect(pill).to_have_attribute("data-state", re.compile("reconnecting|connecting"))
        await expect(page.locator("#banner")).to_contain_text("dropped in the middle of the reply")
        await expect(pill).to_contain_text("Reconnecting")
        assert (await dataset(page, "#player-stats"))["state"] in ("cut", "idle")
        await screenshot(page, "server-dropped")
    try:
        with scripted():  # back on the same port
            await expect(pill).to_have_attribute("data-state", "open", timeout=40_000)
            await expect(page.locator("#banner")).to_be_hidden()
    finally:
        await context.close()
