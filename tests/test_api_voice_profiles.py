"""/api/voice-profiles against the live server with the real models.

The reference speech is made by the real embedded TTS, so the real VAD, STT and speaker encoder
analyse it exactly as they would a user's recording. Every bad input is checked for its status,
its problem+json code, and for leaving the stored profiles and files unchanged.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import soundfile as sf

from avatar.audio.decode import decode_audio
from avatar.audio.encode import encode_flac, encode_opus, encode_wav
from avatar.audio.pcm import PcmAudio
from avatar.audio.resample import resample
from avatar.engines.base import VoiceRef
from avatar.engines.hub import EngineHub
from avatar.services import speech
from avatar.services.voice_quality import transcript_accuracy
from avatar.services.voices import ProfileVoices
from avatar.storage import Database, NotFound
from avatar.testing.fakes import ToneTts
from conftest import TEST_TOKEN, live_app, make_settings, rate_limits

BASE = "/api/voice-profiles"
PROBLEM = "application/problem+json"
# Sentences the real STT transcribes reliably from the real TTS (Piper's output varies by run).
SENTENCES = (
    "The quick brown fox jumps over the lazy dog. We walked to the market on a sunny morning."
)
WRONG_TEXT = "Colourless green ideas sleep furiously while purple elephants dance at midnight."


# --- audio made by the real TTS --------------------------------------------------------------


def padded(audio: PcmAudio, seconds: float = 0.4, noise_level: float = 3e-4) -> PcmAudio:
    """Pauses before and after, and a faint noise floor (-70 dBFS) like a quiet room."""
    pad = np.zeros(int(seconds * audio.sample_rate), dtype=np.float32)
    samples = np.concatenate([pad, audio.samples, pad])
    rng = np.random.default_rng(1)
    samples = samples + rng.standard_normal(len(samples)).astype(np.float32) * noise_level
    return PcmAudio(samples.astype(np.float32), audio.sample_rate)


@pytest.fixture(scope="module")
def voice(hub: EngineHub) -> PcmAudio:
    """About 5 s of real speech (the sentences), with pauses around it."""
    audio = asyncio.run(speech.say(hub, SENTENCES, language="en"))
    assert audio.duration_s >= 4.0
    return padded(audio)


@pytest.fixture(scope="module")
def short_voice(hub: EngineHub) -> PcmAudio:
    return padded(asyncio.run(speech.say(hub, "Hello there.", language="en")))


def pyav_bytes(audio: PcmAudio, container: str, codec: str, rate: int) -> bytes:
    audio = resample(audio, rate)
    out = io.BytesIO()
    with av.open(out, "w", format=container) as media:
        stream = media.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(
            audio.samples.reshape(1, -1), format="fltp", layout="mono"
        )
        frame.sample_rate, frame.pts = rate, 0
        for item in (frame, None):
            for packet in stream.encode(item):
                media.mux(packet)
    return out.getvalue()


def vorbis_bytes(audio: PcmAudio) -> bytes:
    out = io.BytesIO()
    sf.write(out, audio.samples, audio.sample_rate, format="OGG", subtype="VORBIS")
    return out.getvalue()


FORMATS = {
    "wav": (encode_wav, "audio/wav"),
    "flac": (encode_flac, "audio/flac"),
    "ogg-opus": (encode_opus, "audio/ogg"),
    "ogg-vorbis": (vorbis_bytes, "audio/ogg"),
    "mp3": (lambda a: pyav_bytes(a, "mp3", "libmp3lame", 22_050), "audio/mpeg"),
    "webm": (lambda a: pyav_bytes(a, "webm", "libopus", 48_000), "audio/webm"),
}


# --- helpers ---------------------------------------------------------------------------------


def unique(prefix: str = "voice") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def upload(
    client: httpx.AsyncClient,
    data: bytes,
    *,
    name: str | None = None,
    reference_text: str = SENTENCES,
    description: str = "test voice",
    filename: str = "voice.wav",
    content_type: str = "audio/wav",
) -> httpx.Response:
    fields = {
        "name": name or unique(),
        "description": description,
        "reference_text": reference_text,
    }
    return await client.post(
        BASE, data=fields, files={"audio_file": (filename, data, content_type)}
    )


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["detail"] and "Traceback" not in response.text
    return body


def profile_files(live_server: Any) -> set[str]:
    return {p.name for p in (Path(live_server.settings.data_dir) / "audio" / "profiles").iterdir()}


async def snapshot(api: httpx.AsyncClient, live_server: Any) -> tuple[int, set[str]]:
    listing = await api.get(BASE, params={"page_size": 200})
    assert listing.status_code == 200
    return listing.json()["total"], profile_files(live_server)


@pytest.fixture
async def created(api: httpx.AsyncClient) -> AsyncIterator[list[str]]:
    """Ids to delete after the test (so names and files do not pile up across tests)."""
    ids: list[str] = []
    yield ids
    for profile_id in ids:
        await api.delete(f"{BASE}/{profile_id}")


@pytest.fixture
def anonymous(live_server: Any) -> Iterator[httpx.AsyncClient]:
    yield httpx.AsyncClient(base_url=live_server.url, timeout=60)


# --- creating profiles -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_each_accepted_format_becomes_a_profile(
    api: httpx.AsyncClient, created: list[str], voice: PcmAudio, fmt: str
) -> None:
    encode, content_type = FORMATS[fmt]
    response = await upload(api, encode(voice), filename=f"voice.{fmt}", content_type=content_type)
    assert response.status_code == 201, response.text
    profile = response.json()
    created.append(profile["id"])
    assert profile["engine_status"] == "packaged_voice"
    assert profile["embedding_dimensions"] == 256 and "embedding" not in profile
    assert abs(profile["duration_s"] - voice.duration_s) < 0.15
    quality = profile["quality"]
    assert 3.5 < quality["speech_duration_s"] <= quality["duration_s"]
    assert quality["transcript_accuracy"] >= 0.8, quality["transcript"]
    assert quality["accuracy_unit"] == "word"
    assert not {w["code"] for w in profile["warnings"]} & {"too_quiet", "clipping", "noisy"}
    stored = await api.get(profile["audio_url"])
    assert stored.status_code == 200 and stored.headers["content-type"] == "audio/wav"
    assert stored.content[:4] == b"RIFF"  # normalised to WAV whatever was uploaded


async def test_quality_report_of_a_clean_recording(
    api: httpx.AsyncClient, created: list[str], voice: PcmAudio
) -> None:
    response = await upload(api, encode_wav(voice))
    assert response.status_code == 201, response.text
    profile = response.json()
    created.append(profile["id"])
    q = profile["quality"]
    assert -30 < q["level_dbfs"] < -10  # the TTS speaks near -19 dBFS RMS
    assert 0.5 < q["peak"] <= 1.0 and q["peak_dbfs"] <= 0.0
    assert q["clipping_ratio"] < 0.001
    assert q["snr_method"] == "vad" and -80 < q["noise_floor_dbfs"] < -60
    assert 35 < q["snr_db"] < 65
    assert q["transcript_language"] == "en" and "fox" in q["transcript"].lower()
    assert q["transcript_accuracy"] >= 0.8 and profile["warnings"] == []
    assert profile["sample_rate"] == voice.sample_rate


async def test_wrong_reference_text_scores_low_and_warns(
    api: httpx.AsyncClient, created: list[str], voice: PcmAudio
) -> None:
    response = await upload(api, encode_wav(voice), reference_text=WRONG_TEXT)
    assert response.status_code == 201, response.text
    profile = response.json()
    created.append(profile["id"])
    assert profile["quality"]["transcript_accuracy"] < 0.3
    assert [w["code"] for w in profile["warnings"]] == ["transcript_mismatch"]
    # Fixing the reference text re-scores the stored transcript (no new recording needed).
    fixed = await api.put(f"{BASE}/{profile['id']}", json={"reference_text": SENTENCES})
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["quality"]["transcript_accuracy"] >= 0.8
    assert fixed.json()["warnings"] == []


async def test_without_reference_text_the_transcript_stands_in(
    api: httpx.AsyncClient, created: list[str], voice: PcmAudio
) -> None:
    response = await upload(api, encode_wav(voice), reference_text="  ")
    assert response.status_code == 201, response.text
    profile = response.json()
    created.append(profile["id"])
    quality = profile["quality"]
    assert quality["reference_text_source"] == "transcript"
    assert profile["reference_text"] == quality["transcript"] and "fox" in quality["transcript"]
    assert quality["transcript_accuracy"] is None and profile["warnings"] == []
    # A reference text given later is scored; CJK text is scored by character.
    cjk = await api.put(f"{BASE}/{profile['id']}", json={"reference_text": "敏捷的棕色狐狸"})
    assert cjk.status_code == 200, cjk.text
    scored = cjk.json()["quality"]
    assert scored["reference_text_source"] == "upload" and scored["accuracy_unit"] == "character"
    assert scored["transcript_accuracy"] == 0.0
    assert [w["code"] for w in cjk.json()["warnings"]] == ["transcript_mismatch"]


async def test_quiet_clipped_and_noisy_recordings_are_flagged(
    api: httpx.AsyncClient, created: list[str], voice: PcmAudio
) -> None:
    rate, samples = voice.sample_rate, voice.samples
    noise = np.random.default_rng(7).standard_normal(len(samples)).astype(np.float32) * 0.04
    cases = {
        "too_quiet": samples * 0.03,
        "clipping": np.clip(samples * 6.0, -1.0, 1.0),
        "noisy": samples + noise,
    }
    for code, altered in cases.items():
        audio = PcmAudio(altered.astype(np.float32), rate)
        response = await upload(api, encode_wav(audio))
        assert response.status_code == 201, response.text
        created.append(response.json()["id"])
        warnings = {w["code"]: w for w in response.json()["warnings"]}
        assert code in warnings, (code, response.json()["quality"])
        assert warnings[code]["message"] and warnings[code]["hint"]


def test_transcript_accuracy_scores_words_or_cjk_characters() -> None:
    assert transcript_accuracy("Hello, world!", "hello world") == (1.0, "word")
    assert transcript_accuracy("one two three four", "one too three") == (0.5, "word")
    assert transcript_accuracy("sea shells by the sea shore", "Seashells by the seashore.") == (
        1.0,
        "word",
    )
    assert transcript_accuracy("the seashore", "the sea shore")[0] == 1.0
    assert transcript_accuracy("今天天气很好", "今天天气不错。") == (0.667, "character")
    assert transcript_accuracy("", "anything") == (None, "word")
    assert transcript_accuracy("a b", "x y z w v u")[0] == 0.0  # clamped, never negative


# --- reading, editing, deleting --------------------------------------------------------------


async def test_list_get_update_delete(
    api: httpx.AsyncClient, created: list[str], voice: PcmAudio, live_server: Any
) -> None:
    data = encode_wav(voice)
    first = (await upload(api, data, name=unique("first"))).json()
    second = (await upload(api, data, name=unique("second"))).json()
    created += [first["id"], second["id"]]

    listing = await api.get(BASE, params={"page": 1, "page_size": 1})
    assert listing.status_code == 200
    page = listing.json()
    assert page["total"] >= 2 and page["pages"] >= 2 and len(page["items"]) == 1
    assert page["items"][0]["id"] == second["id"]  # newest first

    got = await api.get(f"{BASE}/{first['id']}")
    assert got.status_code == 200 and got.json() == first

    new_name = unique("renamed")
    updated = await api.put(
        f"{BASE}/{first['id']}", json={"name": new_name, "description": "new description"}
    )
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["name"] == new_name and body["description"] == "new description"
    assert body["reference_text"] == SENTENCES  # untouched
    taken = await api.put(f"{BASE}/{second['id']}", json={"name": new_name})
    assert_problem(taken, 409, "conflict")
    bad = await api.put(f"{BASE}/{first['id']}", json={"name": "", "colour": "red"})
    assert_problem(bad, 422, "validation_error")
    assert (await api.get(f"{BASE}/{first['id']}")).json()["name"] == new_name

    before = profile_files(live_server)
    deleted = await api.delete(f"{BASE}/{first['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert len(profile_files(live_server)) == len(before) - 1  # the audio went with the row
    assert_problem(await api.get(f"{BASE}/{first['id']}"), 404, "not_found")
    assert_problem(await api.get(f"{BASE}/{first['id']}/audio"), 404, "not_found")
    assert_problem(await api.delete(f"{BASE}/{first['id']}"), 404, "not_found")


async def test_audio_download_is_the_normalised_wav(
    api: httpx.AsyncClient, created: list[str], voice: PcmAudio
) -> None:
    mp3_44k = pyav_bytes(voice, "mp3", "libmp3lame", 44_100)
    response = await upload(
        api, mp3_44k, filename="holiday recording.mp3", content_type="audio/mpeg"
    )
    assert response.status_code == 201, response.text
    profile = response.json()
    created.append(profile["id"])
    audio = await api.get(profile["audio_url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    disposition = audio.headers["content-disposition"]
    assert f"voice-profile-{profile['id']}.wav" in disposition and "holiday" not in disposition
    decoded = decode_audio(audio.content, target_rate=None)
    assert decoded.sample_rate == profile["sample_rate"] == 44_100
    assert abs(decoded.duration_s - profile["duration_s"]) < 0.01


# --- speaking with a profile -----------------------------------------------------------------


@pytest.fixture
async def profile_id(api: httpx.AsyncClient, created: list[str], voice: PcmAudio) -> str:
    response = await upload(api, encode_wav(voice))
    assert response.status_code == 201, response.text
    created.append(response.json()["id"])
    return str(response.json()["id"])


async def test_profile_voices_resolves_ids_for_voice_sessions(
    live_server: Any, profile_id: str, voice: PcmAudio
) -> None:
    # A second Database on the server's file: the server's engine belongs to its own loop.
    db = Database(live_server.settings.resolved_database_url)
    try:
        voices = ProfileVoices(db, live_server.app.state.avatar.audio)
        ref = await voices.voice(profile_id)
        assert ref.name is None and ref.reference_text == SENTENCES
        assert ref.reference_audio is not None
        assert ref.reference_audio.sample_rate == voice.sample_rate
        assert abs(ref.reference_audio.duration_s - voice.duration_s) < 0.01
        embedding = ref.conditioning["embedding"]
        assert isinstance(embedding, list) and len(embedding) == 256
        with pytest.raises(NotFound):
            await voices.voice("0" * 32)
    finally:
        await db.dispose()


async def test_test_synthesis_says_it_is_a_packaged_voice(
    api: httpx.AsyncClient, profile_id: str, live_server: Any
) -> None:
    with rate_limits(live_server, profile_test="3/minute"):
        await _three_test_syntheses_then_limited(api, profile_id)


async def _three_test_syntheses_then_limited(api: httpx.AsyncClient, profile_id: str) -> None:
    english = await api.post(f"{BASE}/{profile_id}/test", data={"text": "Hello, this is a test."})
    assert english.status_code == 200, english.text
    assert english.headers["content-type"] == "audio/wav"
    assert english.headers["x-avatar-voice"] == "piper:joe"
    assert english.headers["x-avatar-voice-cloned"] == "false"
    assert english.headers["x-avatar-profile-status"] == "packaged_voice"
    audio = decode_audio(english.content, target_rate=None)
    assert audio.duration_s > 0.8 and float(np.abs(audio.samples).max()) > 0.1

    chinese = await api.post(f"{BASE}/{profile_id}/test", data={"text": "你好，这是一个测试。"})
    assert chinese.status_code == 200, chinese.text
    assert chinese.headers["x-avatar-voice"] == "kokoro:jf_gongitsune"
    assert chinese.headers["x-avatar-voice-cloned"] == "false"
    assert decode_audio(chinese.content).duration_s > 0.5

    unknown = await api.post(f"{BASE}/{'0' * 32}/test", data={"text": "Hello."})
    assert_problem(unknown, 404, "not_found")
    limited = await api.post(f"{BASE}/{profile_id}/test", data={"text": "Hello."})
    assert_problem(limited, 429, "rate_limited")  # 3/minute
    assert int(limited.headers["retry-after"]) >= 1


async def test_test_synthesis_validates_text(api: httpx.AsyncClient, profile_id: str) -> None:
    for data in ({"text": ""}, {"text": "x" * 501}, {}):
        assert_problem(
            await api.post(f"{BASE}/{profile_id}/test", data=data), 422, "validation_error"
        )


# --- bad inputs: each one is refused clearly and changes nothing -----------------------------


async def test_tokens_are_required(
    anonymous: httpx.AsyncClient,
    api: httpx.AsyncClient,
    live_server: Any,
    voice: PcmAudio,
    profile_id: str,
) -> None:
    before = await snapshot(api, live_server)
    wrong = {"Authorization": "Bearer not-the-token"}
    async with anonymous:
        for headers in ({}, wrong):
            calls = [
                anonymous.post(
                    BASE,
                    headers=headers,
                    data={"name": unique()},
                    files={"audio_file": ("v.wav", encode_wav(voice), "audio/wav")},
                ),
                anonymous.get(BASE, headers=headers),
                anonymous.get(f"{BASE}/{profile_id}", headers=headers),
                anonymous.put(f"{BASE}/{profile_id}", headers=headers, json={"name": "x"}),
                anonymous.delete(f"{BASE}/{profile_id}", headers=headers),
                anonymous.get(f"{BASE}/{profile_id}/audio", headers=headers),
                anonymous.post(f"{BASE}/{profile_id}/test", headers=headers, data={"text": "hi"}),
            ]
            for call in calls:
                response = await call
                assert_problem(response, 401, "unauthorized")
                assert response.headers["www-authenticate"] == "Bearer"
    assert await snapshot(api, live_server) == before
    assert (await api.get(f"{BASE}/{profile_id}")).status_code == 200


async def test_unknown_ids_are_404(api: httpx.AsyncClient) -> None:
    for profile_id in ("0" * 32, "no-such-profile", "..%2F..%2Fetc%2Fpasswd"):
        url = f"{BASE}/{profile_id}"
        assert_problem(await api.get(url), 404, "not_found")
        assert_problem(await api.get(f"{url}/audio"), 404, "not_found")
        assert_problem(await api.put(url, json={"description": "x"}), 404, "not_found")
        assert_problem(await api.delete(url), 404, "not_found")


async def test_oversize_upload_is_413_before_it_is_stored(
    api: httpx.AsyncClient, live_server: Any
) -> None:
    before = await snapshot(api, live_server)
    big = b"RIFF" + bytes(26 * 1024 * 1024)
    response = await upload(api, big)
    body = assert_problem(response, 413, "payload_too_large")
    assert "25 MiB" in body["detail"]
    # Other bodies on the router are capped at 64 KiB, before validation or lookup.
    huge_json = await api.put(f"{BASE}/{'0' * 32}", json={"description": "x" * 100_000})
    assert "64 KiB" in assert_problem(huge_json, 413, "payload_too_large")["detail"]
    assert await snapshot(api, live_server) == before


async def raw_post(live_server: Any, head: str, parts: list[bytes]) -> tuple[int, bytes]:
    """Send a request over a bare socket and read the answer without finishing the body.

    A server that only answers once it has the whole body would leave this waiting.
    """
    host, port = live_server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode())
        for part in parts:
            writer.write(part)
            await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        status = int(answer.split(b" ", 2)[1])
        length = int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return status, await asyncio.wait_for(reader.readexactly(length), 30)
    finally:
        writer.close()


def request_head(live_server: Any, extra: str) -> str:
    return (
        f"POST {BASE} HTTP/1.1\r\nHost: {live_server.url.removeprefix('http://')}\r\n"
        f"Authorization: Bearer {live_server.token}\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\n{extra}\r\n"
    )


async def test_oversize_body_is_refused_while_it_streams(
    api: httpx.AsyncClient, live_server: Any
) -> None:
    before = await snapshot(api, live_server)
    # A declared Content-Length over the cap is refused before any of the body is sent.
    declared = request_head(live_server, f"Content-Length: {26 * 1024 * 1024}\r\n")
    status, body = await raw_post(live_server, declared, [])
    assert status == 413 and b"payload_too_large" in body
    # A chunked body is counted as it arrives: 30 MiB sent, the terminating chunk never is.
    part = b'--b\r\nContent-Disposition: form-data; name="audio_file"; filename="v.wav"\r\n\r\n'
    mib = bytes(1024 * 1024)
    chunks = [b"%x\r\n%s\r\n" % (len(part), part)] + [b"%x\r\n%s\r\n" % (len(mib), mib)] * 30
    chunked = request_head(live_server, "Transfer-Encoding: chunked\r\n")
    status, body = await raw_post(live_server, chunked, chunks)
    assert status == 413 and b"payload_too_large" in body
    assert await snapshot(api, live_server) == before


@pytest.mark.parametrize(
    ("payload", "filename", "content_type"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(2048), "voice.wav", "audio/wav"),  # a lying name and type
        (b"These are my notes, not a recording.\n" * 50, "notes.txt", "text/plain"),
        (b"<html><script>alert(1)</script></html>", "voice.mp3", "audio/mpeg"),
    ],
    ids=["png", "text", "html"],
)
async def test_unsupported_formats_are_415(
    api: httpx.AsyncClient, live_server: Any, payload: bytes, filename: str, content_type: str
) -> None:
    before = await snapshot(api, live_server)
    response = await upload(api, payload, filename=filename, content_type=content_type)
    assert_problem(response, 415, "audio_unsupported_format")
    assert await snapshot(api, live_server) == before


async def test_too_little_speech_is_422(
    api: httpx.AsyncClient, live_server: Any, short_voice: PcmAudio
) -> None:
    before = await snapshot(api, live_server)
    rate = 16_000
    noise = np.random.default_rng(3).standard_normal(5 * rate).astype(np.float32) * 0.05
    cases = [
        (encode_wav(short_voice), "speech_too_short"),
        (encode_wav(PcmAudio.silence(5.0, rate)), "audio_empty"),
        (encode_wav(PcmAudio(noise, rate)), "audio_empty"),
    ]
    for data, code in cases:
        body = assert_problem(await upload(api, data), 422, code)
        assert "speech" in body["detail"] and body["hint"]
    assert await snapshot(api, live_server) == before


async def test_over_60_seconds_is_refused(api: httpx.AsyncClient, live_server: Any) -> None:
    before = await snapshot(api, live_server)
    long = encode_wav(PcmAudio.silence(61.0, 16_000))
    body = assert_problem(await upload(api, long), 413, "audio_too_large")
    assert "60 s" in body["detail"]
    assert await snapshot(api, live_server) == before


async def test_form_validation_is_422(api: httpx.AsyncClient, voice: PcmAudio) -> None:
    data = encode_wav(voice)
    cases: list[dict[str, Any]] = [
        {"data": {"name": "x" * 101}, "files": {"audio_file": ("v.wav", data, "audio/wav")}},
        {"data": {"name": "   "}, "files": {"audio_file": ("v.wav", data, "audio/wav")}},
        {"data": {"name": unique()}},  # no audio file
    ]
    for case in cases:
        response = await api.post(BASE, **case)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith(PROBLEM)


async def test_client_file_names_are_ignored_and_never_reflected(
    api: httpx.AsyncClient, created: list[str], live_server: Any, voice: PcmAudio
) -> None:
    data = encode_wav(voice)
    traversal = await upload(api, data, filename="../../etc/passwd")
    assert traversal.status_code == 201, traversal.text
    profile = traversal.json()
    created.append(profile["id"])
    audio_root = Path(live_server.settings.data_dir) / "audio"
    assert not (audio_root / "profiles" / "../../etc/passwd").exists()
    files = profile_files(live_server)
    assert all(len(name) == 36 and name.endswith(".wav") for name in files)  # <uuid hex>.wav
    download = await api.get(profile["audio_url"])
    for response in (traversal, download):
        assert "passwd" not in response.text and "passwd" not in str(response.headers)

    # httpx escapes control characters in a file name; send raw CR LF as an attacker would.
    boundary = "b0undary"
    raw = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{unique()}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="reference_text"\r\n\r\n'
            f"{SENTENCES}\r\n--{boundary}\r\nContent-Disposition: form-data;"
            f' name="audio_file"; filename="a\r\nX-Injected: 1.wav"\r\n'
            f"Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    injected = await api.post(
        BASE, content=raw, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert injected.status_code in (201, 422), injected.text
    if injected.status_code == 201:
        created.append(injected.json()["id"])
    assert "x-injected" not in {k.lower() for k in injected.headers}
    assert "Injected" not in injected.text
    escaped = await upload(api, data, filename="a\r\nX-Injected: 1.wav")
    assert escaped.status_code == 201, escaped.text
    created.append(escaped.json()["id"])
    assert "x-injected" not in {k.lower() for k in escaped.headers}
    assert "Injected" not in escaped.text


async def test_markup_and_sql_are_stored_verbatim(
    api: httpx.AsyncClient, created: list[str], voice: PcmAudio
) -> None:
    name = f"<script>alert('x')</script>' OR '1'='1 {uuid.uuid4().hex[:6]}"
    description = '\'); DROP TABLE voice_profiles; -- <img src=x onerror=alert(1)> "quoted" %s'
    response = await upload(api, encode_wav(voice), name=name, description=description)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    profile = response.json()
    created.append(profile["id"])
    assert profile["name"] == name and profile["description"] == description
    got = (await api.get(f"{BASE}/{profile['id']}")).json()
    assert got["name"] == name and got["description"] == description
    listing = await api.get(BASE, params={"page_size": 200})
    assert listing.status_code == 200  # the table is still there
    assert name in [p["name"] for p in listing.json()["items"]]


async def test_duplicate_name_is_409(
    api: httpx.AsyncClient, created: list[str], live_server: Any, voice: PcmAudio
) -> None:
    name = unique("dup")
    first = await upload(api, encode_wav(voice), name=name)
    assert first.status_code == 201
    created.append(first.json()["id"])
    before = await snapshot(api, live_server)
    body = assert_problem(await upload(api, encode_wav(voice), name=f"  {name} "), 409, "conflict")
    assert name in body["detail"]
    assert await snapshot(api, live_server) == before


async def test_uploads_are_rate_limited(api: httpx.AsyncClient, live_server) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    with rate_limits(live_server, profile_create="5/minute"):
        for _ in range(5):
            assert (await upload(api, png)).status_code == 415
        limited = await upload(api, png)
    assert_problem(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1


# --- with a cloning engine configured --------------------------------------------------------


class CloningTone(ToneTts):
    """Stands in for a cloning hq engine (none ships with the embedded models): it keeps the
    VoiceRef it is given, so the test sees what a real cloning engine would receive."""

    def __init__(self) -> None:
        super().__init__(sample_rate=24_000, ms_per_word=100.0)
        self.capabilities = replace(self.capabilities, cloning=True, quality="hq")
        self.voices: list[VoiceRef | None] = []

    async def synthesize_stream(
        self, text: str, *, language: str = "en", voice: VoiceRef | None = None
    ) -> AsyncIterator[PcmAudio]:
        self.voices.append(voice)
        async for chunk in super().synthesize_stream(text, language=language, voice=voice):
            yield chunk

    def describe_voice(self, language: str, voice: VoiceRef | None) -> str:
        if voice is None or voice.reference_audio is None:
            return "tone:default"
        return f"tone:clone:{voice.conditioning['profile_name']}"


@pytest.fixture(scope="module")
def cloning_server(
    tmp_path_factory: pytest.TempPathFactory, hub: EngineHub
) -> Iterator[tuple[str, CloningTone]]:
    """A second server whose hq slot can clone; the other engines are the shared real ones."""
    settings = make_settings(tmp_path_factory.mktemp("cloning"), tts={"hq": {"engine": "tone"}})
    # a hub of its own that borrows the loaded engines: never closed, they are the session's
    clone_hub = EngineHub(settings, hub.models)
    cloning = CloningTone()
    shared = {"stt": hub.stt, "speaker": hub.speaker, "tts.fast": hub.tts(), "tts.hq": cloning}
    with live_app(settings, hub=clone_hub, engines=shared) as server:
        yield server.url, cloning


async def test_a_cloning_engine_gets_the_reference_and_says_so(
    cloning_server: tuple[str, CloningTone], voice: PcmAudio
) -> None:
    url, engine = cloning_server
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        name = "clone\r\nX-Injected: 1"  # a name a cloning engine may echo into its label
        response = await upload(client, encode_wav(voice), name=name)
        assert response.status_code == 201, response.text
        profile = response.json()
        assert profile["engine_status"] == "cloning_ready"
        spoken = await client.post(f"{BASE}/{profile['id']}/test", data={"text": "Hello there."})
    assert spoken.status_code == 200, spoken.text
    assert spoken.headers["x-avatar-voice-cloned"] == "true"
    assert spoken.headers["x-avatar-profile-status"] == "cloning_ready"
    assert spoken.headers["x-avatar-voice"] == "tone:clone:cloneX-Injected: 1"  # one line
    assert "x-injected" not in {k.lower() for k in spoken.headers}
    assert decode_audio(spoken.content, target_rate=None).sample_rate == 24_000
    ref = engine.voices[-1]
    assert ref is not None and ref.reference_audio is not None
    assert abs(ref.reference_audio.duration_s - profile["duration_s"]) < 0.01
    assert ref.reference_text == SENTENCES
    embedding = ref.conditioning["embedding"]
    assert isinstance(embedding, list) and len(embedding) == 256
    assert abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-3  # the stored voiceprint
