"""The web UI tells people what is going on (issue 15, points 1-7, and the zh-TW UI).

Headless Chromium against a real server: moonshine speech recognition (a streaming engine, so
partial transcripts exist), the real Piper voice, a scripted LLM (a known reply that starts after
a visible pause). Each point is checked at desktop (1280x800) and phone (390x844) size, and in
zh-TW; screenshots go to test-artifacts/web-ui/feedback-*.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from avatar.api.app import create_app
from avatar.api.ratelimit import RateLimits
from avatar.engines.hub import EngineHub
from avatar.engines.tts.piper import PiperTts
from avatar.settings import load_settings
from avatar.testing.fakes import ScriptedChat
from avatar.testing.processes import closed_port
from avatar.testing.serving import serve_in_thread
from conftest import MODEL_CACHE, TEST_TOKEN, LiveServer, say_en
from web_fixtures import (
    chromium_flags,
    launch,
    open_page,
    require_chromium,
    screenshot,
    write_wav,
)
from wsclient import silence, to_pcm16k

DESKTOP = (1280, 800)
PHONE = (390, 844)
REPLY = "The capital of France is Paris. It lies on the Seine, and two million people live there."
SAMPLE_TEXT = "The quick brown fox jumps over the lazy dog, and then once again."
LONG_ZH = "今天的天氣很好，我們一起去公園散步吧。" * 8


@pytest.fixture(scope="module")
async def playwright() -> AsyncIterator[Any]:
    require_chromium()
    async with async_playwright() as p:
        yield p


@pytest.fixture(scope="module")
async def browser(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    quiet = write_wav(tmp_path_factory.mktemp("wav") / "silence.wav", silence(3.0))
    b = await launch(playwright, fake_audio=quiet)
    yield b
    await b.close()


@pytest.fixture(scope="module")
def question_wav(speaker: PiperTts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    audio = say_en(speaker, "What is the capital of France, and how many people live there?")
    pcm = silence(1.0) + to_pcm16k(audio) + silence(2.5)
    return write_wav(tmp_path_factory.mktemp("wav") / "question.wav", pcm)


class Served:
    """One server configuration on a fixed port, started (and restarted) by tests."""

    def __init__(self, tmp: Path, model_store: Any) -> None:
        self.tmp, self.port = tmp, closed_port()
        self.running: Any = None
        self.chat = ScriptedChat(REPLY, interval_s=0.04, first_token_s=1.5)
        self.token = TEST_TOKEN
        self.settings = self.make_settings(TEST_TOKEN)
        self.hub = EngineHub(self.settings, model_store)
        self.hub.override("llm", self.chat)
        self.app: Any = None

    def make_settings(self, token: str) -> Any:
        return load_settings(
            data_dir=self.tmp,
            api_token=token,
            models={"cache_dir": MODEL_CACHE},
            stt={"engine": "moonshine"},
            server={"preload": False},
        )

    @property
    def live(self) -> LiveServer:
        host = f"127.0.0.1:{self.port}"
        return LiveServer(
            f"http://{host}",
            f"ws://{host}",
            self.token,
            self.settings,
            self.app,
            self.hub,
            self.running,
        )

    @contextmanager
    def serve(self, token: str = TEST_TOKEN) -> Iterator[Any]:
        """Serve the app (a new one: as after a restart), with ``token`` as its access token."""
        self.token = token
        self.app = create_app(self.make_settings(token), self.hub)
        with serve_in_thread(
            self.app, port=self.port, lifespan="on", ws_max_size=1 << 20
        ) as running:
            self.running = running
            self.app.state.avatar.limits = RateLimits(None)  # the UI makes many real calls
            yield running


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, model_store: Any) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("feedback"), model_store)
    yield s
    s.hub.close()


async def shots(page: Any, name: str, *, zh: bool = True) -> None:
    """Screenshots at desktop and phone size (and in zh-TW), then back to desktop English."""
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size({"width": size[0], "height": size[1]})
        await page.wait_for_timeout(150)
        await screenshot(page, f"feedback-{name}-{label}")
    if zh:
        await page.select_option("#ui-lang", "zh-TW")
        await page.wait_for_timeout(300)
        await screenshot(page, f"feedback-{name}-phone-zh")
        await page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})
        await screenshot(page, f"feedback-{name}-desktop-zh")
        await page.select_option("#ui-lang", "en")
    await page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})


async def signed_in(browser: Any, served: Served, **kwargs: Any) -> tuple[Any, Any, Any]:
    context, page, log = await open_page(browser, served.live, viewport=DESKTOP, **kwargs)
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "open")
    return context, page, log


async def say_text(page: Any, text: str) -> None:
    await page.fill("#text-input", text)
    await page.click("#text-form button[type=submit]")


# --- 1. a restart with a new token -------------------------------------------------------


async def test_1_restart_with_new_token_asks_to_sign_in_and_keeps_messages(
    browser: Any, served: Served
) -> None:
    with served.serve("first-token-0123456789abcdef"):
        context, page, log = await signed_in(browser, served)
    try:
        await expect(page.locator("#conn-status")).to_have_attribute(
            "data-state", re.compile("reconnecting|connecting")
        )
        await expect(page.locator("#conn-retry")).to_be_visible()
        await say_text(page, "Are you there?")
        typed = page.locator("#chat-log .msg.user").last
        await expect(typed).to_have_attribute("data-delivery", "pending")
        await expect(typed.locator(".msg-meta")).to_have_text("Sending…")
        started = time.monotonic()
        with served.serve("second-token-0123456789abcdef"):
            await expect(page.locator("#login-panel")).to_be_visible(timeout=15_000)
            noticed_s = time.monotonic() - started
            await expect(page.locator("#login-restarted")).to_be_visible()
            await expect(page.locator("#login-undelivered-list li")).to_have_text(
                ["Are you there?"]
            )
            await expect(page.locator("#banner")).to_be_hidden()
            await page.wait_for_timeout(1_200)  # no stale "Reconnecting…" comes back
            await expect(page.locator("#banner")).to_be_hidden()
            assert await page.title() == "Sign in to AVATAR · AVATAR"
            await shots(page, "1-restart")
            await page.select_option("#ui-lang", "zh-TW")
            await expect(page.locator("#login-restarted")).to_contain_text("重新啟動")
            assert "登入" in await page.title()
            await page.select_option("#ui-lang", "en")
        print(f"sign-in page shown {noticed_s:.1f} s after the server came back")
        # only the browser's own network messages (refused sockets, the 401): no script errors
        assert log.page_errors == []
        assert all(re.search("WebSocket|Failed to load resource", e) for e in log.errors())
    finally:
        await context.close()


# --- 2 and 3. voices that cannot speak, hq that is not configured --------------------------


@pytest.fixture(scope="module")
def sample_wav(speaker: PiperTts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    audio = say_en(speaker, SAMPLE_TEXT)
    return write_wav(tmp_path_factory.mktemp("wav") / "v.wav", to_pcm16k(audio))


async def test_2_3_voice_and_quality_pickers_say_what_cannot_work(
    browser: Any, served: Served, sample_wav: Path
) -> None:
    sample = sample_wav
    with served.serve():
        async with httpx.AsyncClient(
            base_url=served.live.url, headers=served.live.auth, timeout=180
        ) as api:
            created = await api.post(
                "/api/voice-profiles",
                data={"name": "Grandpa", "reference_text": "Something else entirely."},
                files={"audio_file": ("v.wav", sample.read_bytes(), "audio/wav")},
            )
            assert created.status_code == 201, created.text
        context, page, log = await signed_in(browser, served)
        try:
            option = page.locator("#voice-select option", has_text="Grandpa")
            await expect(option).to_be_disabled()
            await expect(option).to_contain_text("cannot be used on this server")
            hint = page.locator("#voice-hint")
            await expect(hint).to_be_visible()
            await expect(hint).to_contain_text("F5-TTS or CosyVoice2")
            await expect(hint).to_contain_text("piper")
            await expect(page.locator("#voice-select option").first).to_contain_text("piper")
            hq = page.locator('#tts-select option[value="hq"]')
            await expect(hq).to_be_disabled()
            await expect(page.locator("#tts-hint")).to_contain_text("not set up on this server")
            await shots(page, "2-3-pickers")
            await page.select_option("#ui-lang", "zh-TW")
            await expect(page.locator("#tts-hint")).to_contain_text("高品質語音")
            await expect(hq).to_have_text("高品質——無法使用")
            await page.select_option("#ui-lang", "en")
            # the Voices tab: a test synthesis says why the voice was not cloned
            await page.click("#tab-voices")
            card = page.locator(".voice-card", has_text="Grandpa")
            await card.get_by_role("button", name="Test synthesis").click()
            why = card.locator(".test-result .why")
            await expect(why).to_contain_text("no voice-cloning engine", timeout=60_000)
            # the server's quality warning, in the interface language
            warning = card.locator(".warning[data-code=transcript_mismatch]")
            await expect(warning).to_contain_text("does not match the reference text")
            await screenshot(page, "feedback-2-voices-test-desktop")
            await page.select_option("#ui-lang", "zh-TW")
            await expect(warning).to_contain_text("與參考文字不符")
            await screenshot(page, "feedback-2-voices-test-desktop-zh")
            await page.select_option("#ui-lang", "en")
            assert log.errors() == []
        finally:
            await context.close()
            async with httpx.AsyncClient(base_url=served.live.url, headers=served.live.auth) as a:
                await a.delete(f"/api/voice-profiles/{created.json()['id']}")


# --- 4. while the assistant works ------------------------------------------------------------


async def test_4_conversation_shows_words_as_heard_thinking_and_who_speaks(
    playwright: Any, served: Served, question_wav: Path
) -> None:
    b = await launch(playwright, fake_audio=question_wav)
    with served.serve():
        context, page, log = await signed_in(b, served)
        try:
            await page.click("#mic-button")
            live = page.locator("#chat-log .msg.user.live")
            await expect(live).to_be_visible(timeout=30_000)
            await expect(live.locator(".who-now")).to_have_text("speaking…")
            await expect(live.locator(".msg-text")).not_to_be_empty(timeout=30_000)
            partial = await live.locator(".msg-text").inner_text()
            await screenshot(page, "feedback-4-hearing-desktop")
            thinking = page.locator("#chat-log .msg.assistant.thinking")
            await expect(thinking).to_be_visible(timeout=60_000)
            await expect(thinking.locator(".who-now")).to_have_text("thinking…")
            final = await page.locator("#chat-log .msg.user").last.inner_text()
            await screenshot(page, "feedback-4-thinking-desktop")
            speaking = page.locator('#chat-log .msg.assistant[data-now="speaking"]')
            await expect(speaking).to_be_visible(timeout=60_000)
            await expect(speaking.locator(".who-now")).to_have_text("speaking")
            await shots(page, "4-speaking", zh=False)
            await page.select_option("#ui-lang", "zh-TW")
            await expect(speaking.locator(".who-now")).to_have_text("說話中", timeout=20_000)
            await screenshot(page, "feedback-4-speaking-desktop-zh")
            await expect(page.locator("#chat-log [data-now]")).to_have_count(0, timeout=60_000)
            await page.select_option("#ui-lang", "en")
            await page.click("#mic-button")
            # a spoken turn's latency: durations and times apart, each labelled as such
            await expect(page.locator("#waterfall .wf-group")).to_have_text(
                ["How long each step took", "Time from the end of your question"]
            )
            took = page.locator('#waterfall .wf-row[data-metric="stt_ms"] .wf-value')
            await expect(took).not_to_contain_text("at ")
            v2v = page.locator('#waterfall .wf-row[data-metric="voice_to_voice_ms"] .wf-value')
            await expect(v2v).to_contain_text("at ")
            # partials came over the socket and were shown before the final words
            assert partial and "capital" in final.lower()
            assert not await page.locator("#chat-log .msg.thinking").count()
            assert log.errors() == []
        finally:
            await context.close()
            await b.close()


async def test_4_player_ducks_pauses_and_resumes(playwright: Any, served: Served) -> None:
    """The hooks for "the user started speaking over the reply": quiet now, carry on after."""
    b = await playwright.chromium.launch(
        executable_path=str(launch.__globals__["CHROMIUM"]),
        args=[*chromium_flags(), "--autoplay-policy=no-user-gesture-required"],
    )
    with served.serve():
        context, page, _ = await signed_in(b, served)
        try:
            result = await page.evaluate(PLAYER_SCRIPT)
        finally:
            await context.close()
            await b.close()
    assert result["ducked"] == pytest.approx(0.0, abs=0.02)
    assert result["unducked"] == pytest.approx(1.0, abs=0.02)
    paused_at, later = result["pausedAt"], result["stillAt"]
    assert later == pytest.approx(paused_at, abs=1) and 100 < paused_at < 1500
    assert result["states"] == ["playing", "paused", "playing", "idle"]
    assert result["final"] == pytest.approx(2000, abs=60)  # every sample played, none twice


PLAYER_SCRIPT = """async () => {
  const { Player } = await import("/js/player.js");
  const context = new AudioContext();
  await context.resume();
  const stats = document.createElement("dl");
  for (const id of ["played-time", "received-time", "player-state"]) {
    const dd = document.createElement("dd"); dd.id = id; stats.append(dd);
  }
  const player = new Player(() => context, () => {}, stats);
  const pcm = new Uint8Array(16000 * 2);  // 1 s of silence at 16 kHz
  const data = btoa(String.fromCharCode(...pcm));
  for (let i = 0; i < 2; i++) player.enqueue({ turn_id: "t", data, sample_rate: 16000 });
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const states = [stats.dataset.state];
  player.duck(0);
  await sleep(150);
  const ducked = player.gain.gain.value;
  player.unduck();
  await sleep(150);
  const unducked = player.gain.gain.value;
  await sleep(300);
  player.pause();
  states.push(stats.dataset.state);
  const pausedAt = player.playedMs();
  await sleep(400);
  const stillAt = player.playedMs();
  player.resume();
  states.push(stats.dataset.state);
  await sleep(2600);
  states.push(stats.dataset.state);
  return { ducked, unducked, pausedAt, stillAt, states, final: player.playedMs() };
}"""


# --- 5. history ----------------------------------------------------------------------------


async def test_5_history_errors_deleted_hits_latency_and_playback(
    browser: Any, served: Served
) -> None:
    server = served.serve()
    server.__enter__()
    context, page, log = await signed_in(browser, served)
    try:
        await say_text(page, "Tell me about Paris please")
        await expect(page.locator("#waterfall .wf-row").first).to_be_visible(timeout=60_000)
        # the latency panel names its two kinds of figures; the playback panel agrees with itself
        groups = page.locator("#waterfall .wf-group")
        # a typed turn has no endpointing or transcription durations
        await expect(groups).to_have_text(["Time from the end of your question"])
        values = await page.locator("#waterfall .wf-value").all_inner_texts()
        assert values and all(v.startswith("at ") for v in values)
        stats = page.locator("#player-stats")
        await expect(stats).to_have_attribute("data-state", "idle", timeout=60_000)
        stats = await page.eval_on_selector("#player-stats", "n => ({...n.dataset})")
        assert abs(int(stats["playedMs"]) - int(stats["receivedMs"])) < 150
        assert await page.locator("#chunks-played").count() == 0
        await shots(page, "5-latency", zh=False)
        # search, then delete the conversation: its hit goes too
        await page.click("#tab-history")
        await page.fill("#search-input", "Paris")
        await page.click("#search-form button[type=submit]")
        hits = page.locator("#hit-list .hit")
        await expect(hits.first).to_be_visible()
        session_id = await hits.first.get_attribute("data-session")
        others = await page.locator(f'#hit-list .hit:not([data-session="{session_id}"])').count()
        await hits.first.click()
        await page.click("#session-delete")
        await page.click("#confirm-ok")
        await expect(page.locator("#detail-body")).to_be_hidden()
        await expect(page.locator(f'#hit-list .hit[data-session="{session_id}"]')).to_have_count(0)
        await expect(hits).to_have_count(others)
        # the server goes away: the list stays and says why it cannot load
        await say_text_via_api(served, "A second conversation about Lyon")
        await page.click("#sessions-refresh")
        await expect(page.locator("#session-list li", has_text="Lyon")).to_be_visible()
        items = await page.locator("#session-list li").count()
        server.__exit__(None, None, None)
        server = None
        await page.click("#sessions-refresh")
        error = page.locator("#history-error")
        await expect(error).to_contain_text("server is not reachable")
        await page.wait_for_timeout(1_200)  # the connection banner does not hide it
        await expect(error).to_be_visible()
        await expect(page.locator("#session-list li")).to_have_count(items)
        await shots(page, "5-history-down")
    finally:
        await context.close()
        if server is not None:
            server.__exit__(None, None, None)


async def test_history_shows_the_whole_reply_and_what_was_heard(
    browser: Any, served: Served
) -> None:
    from wsclient import ChatClient, connect

    with served.serve():
        async with connect(served.live) as ws:
            client = ChatClient(ws)
            await client.until(lambda e: e["type"] == "session_started")
            await client.send_json({"type": "text", "text": "Interrupted question about Paris"})
            first = await client.until(lambda e: e["type"] == "audio_response")
            await client.until(lambda e: e["type"] == "turn_end")
            turn_id = first["turn_id"]
            await client.send_json({"type": "playback", "turn_id": turn_id, "played_ms": 1200})
            await client.send_json({"type": "interrupt"})
            await client.until(lambda e: e["type"] == "interrupted")
        context, page, log = await signed_in(browser, served)
        try:
            await page.click("#tab-history")
            await page.locator(".session-item", has_text="Interrupted question").click()
            turn = page.locator("#turn-list .turn").first
            await expect(turn.locator(".badge.warn")).to_have_text("Cut short")
            await expect(turn.locator(".turn-side.assistant .msg-text")).to_have_text(REPLY)
            heard = turn.locator(".heard")
            await expect(heard).to_contain_text("Heard before the interruption (1.2 s of")
            await expect(heard).to_contain_text("The capital")
            await expect(turn.locator("button[data-play=assistant]")).to_contain_text(
                re.compile(r"Play reply audio \([4-9]\.\d s\)")  # the whole reply, not 1.2 s
            )
            await shots(page, "history-heard")
            assert log.errors() == []
        finally:
            await context.close()


async def say_text_via_api(served: Served, text: str) -> None:
    """A stored turn made over the WebSocket without the page (a second conversation)."""
    from wsclient import ChatClient, connect

    async with connect(served.live) as ws:
        client = ChatClient(ws)
        await client.until(lambda e: e["type"] == "session_started")
        await client.send_json({"type": "text", "text": text})
        await client.until(lambda e: e["type"] == "turn_end")


# --- 6. phone size ---------------------------------------------------------------------------


async def rows_of(page: Any, selector: str) -> int:
    return await page.eval_on_selector_all(
        selector,
        """ns => {
          const boxes = ns.filter(n => n.offsetParent).map(n => n.getBoundingClientRect())
            .sort((a, b) => a.top - b.top);
          let rows = 0, bottom = -Infinity;
          for (const box of boxes) {
            if (box.top >= bottom - 1) rows += 1;
            bottom = Math.max(bottom, box.bottom);
          }
          return rows;
        }""",
    )


async def test_6_phone_layout(browser: Any, served: Served) -> None:
    with served.serve():
        context, page, log = await signed_in(browser, served)
        try:
            await page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
            await say_text(page, LONG_ZH)
            await expect(page.locator("#latency-summary")).not_to_be_empty(timeout=60_000)
            assert await rows_of(page, ".talk-controls > :not([hidden])") <= 2
            stop = await page.eval_on_selector(
                "#stop-reply", "b => getComputedStyle(b).borderTopWidth"
            )
            assert stop != "0px"
            latency = await page.locator(".latency-card").bounding_box()
            settings = await page.locator(".talk-side .card").first.bounding_box()
            assert latency["y"] < settings["y"]  # the timing card comes before the settings
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE[0]  # long Chinese text wraps, nothing scrolls sideways
            await shots(page, "6-phone-talk")
            await page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
            await page.click("#tab-system")
            await expect(page.locator("#model-table tbody tr").first).to_be_visible()
            wrap = await page.eval_on_selector(".table-wrap", "w => [w.scrollWidth, w.clientWidth]")
            assert wrap[0] <= wrap[1]  # no hidden columns behind a sideways scroll
            label = await page.eval_on_selector(
                "#model-table tbody td", "td => getComputedStyle(td, '::before').content"
            )
            assert "Engine" in label
            await page.select_option("#ui-lang", "zh-TW")
            await expect(page.locator('#model-table tr[data-slot="stt"] th')).to_have_text(
                "語音辨識"
            )
            assert await page.title() == "系統 · AVATAR"
            await screenshot(page, "feedback-6-phone-system-zh")
            await page.select_option("#ui-lang", "en")
            await screenshot(page, "feedback-6-phone-system")
            assert log.errors() == []
        finally:
            await context.close()


# --- 7. smaller things -----------------------------------------------------------------------


async def test_7_validation_single_audio_preload_pill_and_cut_off(
    browser: Any, served: Served
) -> None:
    with served.serve() as running:
        context, page, log = await signed_in(browser, served)
        try:
            pill = page.locator("#conn-status")
            assert await pill.evaluate("p => p.tagName") == "SPAN"
            assert await pill.evaluate("p => p.tabIndex") < 0
            await expect(page.locator("#conn-retry")).to_be_hidden()
            # a validation error is tied to its field and goes once the field is fixed
            await page.click("#tab-voices")
            await page.click("#voice-submit")
            error = page.locator("#voice-error")
            await expect(error).to_be_visible()
            name = page.locator("#voice-name")
            await expect(name).to_have_attribute("aria-invalid", "true")
            await expect(name).to_have_attribute("aria-describedby", "voice-error")
            await screenshot(page, "feedback-7-validation-desktop")
            await name.fill("Alice")
            await expect(error).to_be_hidden()
            await expect(name).not_to_have_attribute("aria-invalid", "true")
            # one recording at a time
            played = await page.evaluate(TWO_AUDIOS)
            assert played == {"first": True, "second": False}
            # preloading what is loaded says so, not "finished in 0.0 s"
            await page.click("#tab-system")
            await page.click("#preload")
            await expect(page.locator("#system-result")).to_be_visible(timeout=120_000)
            served.app.state.avatar.limits = RateLimits(None)  # preload is limited per minute
            await page.click("#preload")
            await expect(page.locator("#system-result > p")).to_have_text(
                "Every model was already loaded; nothing to do.", timeout=60_000
            )
            await shots(page, "7-preload")
            # a reply cut by the server stopping is not "interrupted by you"
            await page.click("#tab-talk")
            served.chat.interval_s = 0.3
            await say_text(page, "Tell me a long story")
            reply = page.locator("#chat-log .msg.assistant").last
            await expect(reply).to_have_class(re.compile("streaming"), timeout=30_000)
            running.server.should_exit = True
            await expect(reply).to_have_class(re.compile("cut-off"), timeout=30_000)
            await expect(reply).not_to_have_class(re.compile(r"\binterrupted\b"))
            await expect(reply.locator(".msg-meta")).to_contain_text("Cut off")
            await expect(page.locator("#conn-retry")).to_be_visible()
            await shots(page, "7-cut-off")
        finally:
            served.chat.interval_s = 0.04
            await context.close()


TWO_AUDIOS = """async () => {
  const make = () => {
    const a = document.createElement("audio");
    const rate = 8000, n = rate * 3, b = new ArrayBuffer(44 + n * 2), v = new DataView(b);
    const w = (o, s) => [...s].forEach((c, i) => v.setUint8(o + i, c.charCodeAt(0)));
    w(0, "RIFF"); v.setUint32(4, 36 + n * 2, true); w(8, "WAVEfmt "); v.setUint32(16, 16, true);
    v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true);
    v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
    w(36, "data"); v.setUint32(40, n * 2, true);
    a.src = URL.createObjectURL(new Blob([b], { type: "audio/wav" }));
    a.muted = true;
    document.querySelector("#panel-voices").append(a);
    return a;
  };
  const first = make(), second = make();
  await second.play();
  await first.play();
  await new Promise((r) => setTimeout(r, 200));
  const result = { first: !first.paused, second: !second.paused };
  first.remove(); second.remove();
  return result;
}"""


async def test_zh_tw_language_names_titles_and_server_notices(browser: Any, served: Served) -> None:
    with served.serve():
        context, page, log = await signed_in(browser, served, locale="zh-TW")
        try:
            await page.select_option("#ui-lang", "zh-TW")
            assert await page.title() == "對話 · AVATAR"
            await say_text(page, "Hello there, what is the capital of France?")
            await expect(page.locator("#latency-summary")).not_to_be_empty(timeout=60_000)
            await page.click("#tab-history")
            assert await page.title() == "歷史紀錄 · AVATAR"
            await page.locator("#session-list .session-item").first.click()
            meta = page.locator("#detail-meta")
            await expect(meta).to_contain_text("語言：")
            assert "語言：en" not in await meta.inner_text()
            await expect(meta).to_contain_text("英")
            await shots(page, "zh-history", zh=False)
            # a server error known by its code shows in Chinese
            await page.evaluate(
                """() => import("/js/i18n.js").then(m => { document.title = m.serverMessage(
                     {code: "llm_failed", message: "boom"}); })"""
            )
            assert await page.title() == "語言模型無法回答這一輪。"
            assert log.errors() == []
        finally:
            await context.close()
