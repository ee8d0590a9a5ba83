"""Health, system management, auth, rate limits and web hardening against the live server."""

from __future__ import annotations

import httpx
import pytest

from avatar.api.ratelimit import RateLimits
from conftest import rate_limits


async def test_health_reports_database_models_and_disk(api: httpx.AsyncClient) -> None:
    body = (await api.get("/health")).json()
    assert body["status"] == "ok", body["problems"]
    assert body["database"]["ok"] and body["database"]["dialect"] == "sqlite"
    assert body["models"]["stt"]["loaded"] and body["models"]["llm"]["loaded"]
    assert body["disk"]["free_mb"] > 0


async def test_health_needs_no_token(live_server) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as anonymous:
        assert (await anonymous.get("/health")).status_code == 200


async def test_system_info(api: httpx.AsyncClient) -> None:
    info = (await api.get("/api/system/info")).json()
    assert info["cpu"]["logical_cores"] >= 1 and info["memory"]["total_mb"] > 0
    assert isinstance(info["gpus"], list)  # NVML where present; [] on this CPU machine
    assert info["versions"]["fastapi"]


async def test_models_status_says_hq_is_unavailable_and_why(api: httpx.AsyncClient) -> None:
    status = (await api.get("/api/system/models/status")).json()
    assert status["slots"]["stt"]["loaded"] and status["slots"]["stt"]["device"] == "cpu"
    assert status["slots"]["llm"]["load_s"] is not None
    hq = status["tts_modes"]["hq"]
    assert (
        hq["configured"] is False and hq["available"] is False and "AVATAR_TTS__HQ" in hq["reason"]
    )


async def test_preload_and_warmup_report_what_they_did(api: httpx.AsyncClient) -> None:
    preload = (await api.post("/api/system/models/preload")).json()
    assert {s["slot"] for s in preload["slots"]} >= {"stt", "llm", "tts.fast"}
    warm = (await api.post("/api/system/models/warmup")).json()
    assert all(step["ok"] for step in warm["steps"]), warm
    assert all(step["took_ms"] > 0 for step in warm["steps"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/system/info"),
        ("GET", "/api/system/models/status"),
        ("POST", "/api/system/models/preload"),
        ("POST", "/api/system/models/warmup"),
    ],
)
async def test_token_is_required(live_server, method: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as anonymous:
        missing = await anonymous.request(method, path)
        wrong = await anonymous.request(
            method, path, headers={"Authorization": "Bearer not-the-token-at-all"}
        )
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "unauthorized"


async def test_login_sets_an_httponly_cookie_that_authenticates(live_server) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as browser:
        bad = await browser.post("/login", data={"token": "nope"})
        assert bad.status_code == 401
        ok = await browser.post("/login", data={"token": live_server.token})
        assert ok.status_code == 303
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert (await browser.get("/api/system/info")).status_code == 200
        await browser.post("/logout")
        assert (await browser.get("/api/system/info")).status_code == 401


async def test_rate_limit_answers_429_with_retry_after(api: httpx.AsyncClient, live_server) -> None:
    with rate_limits(live_server, admin="1/minute"):
        codes = [(await api.post("/api/system/models/preload")).status_code for _ in range(2)]
        assert codes[0] == 200 and codes[1] == 429
        limited = await api.post("/api/system/models/preload")
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["code"] == "rate_limited"


async def test_security_headers_and_generic_errors(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/system/info")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "access-control-allow-origin" not in response.headers
    missing = await api.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


async def test_foreign_host_header_is_refused(live_server) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not reach the API."""
    async with httpx.AsyncClient(base_url=live_server.url) as client:
        response = await client.get("/health", headers={"Host": "evil.example"})
    assert response.status_code == 400


async def test_rate_limits_shared_through_redis(redis_url: str) -> None:
    """Two processes' limiters pointed at one Redis share one budget (scale-out)."""
    from limits import parse

    from avatar.api.errors import ApiError

    item = parse("2/minute")
    first, second = RateLimits(redis_url), RateLimits(redis_url)
    key = f"test-{id(first)}"
    await first.hit(item, key)
    await second.hit(item, key)
    with pytest.raises(ApiError) as info:
        await first.hit(item, key)
    assert info.value.http_status == 429


async def test_rate_limits_survive_redis_going_away() -> None:
    """Redis unreachable: requests are still limited (per process), never failed."""
    from limits import parse

    from avatar.api.errors import ApiError

    limits = RateLimits("redis://127.0.0.1:1/0")  # nothing listens on port 1
    item = parse("1/minute")
    await limits.hit(item, "k")
    with pytest.raises(ApiError):
        await limits.hit(item, "k")


async def test_system_info_shows_placement_and_gpu_admission(api: httpx.AsyncClient) -> None:
    info = (await api.get("/api/system/info")).json()
    slots = {p["slot"]: p for p in info["placement"]["placements"]}
    assert slots["stt"]["device"] == "cpu" and slots["stt"]["reason"]  # no GPU on this machine
    assert info["admission"]["cards"] == []
    status = (await api.get("/api/system/models/status")).json()
    assert status["slots"]["llm"]["placement"]["device"] == "cpu"


async def test_method_not_allowed_lists_every_method_at_the_path(api: httpx.AsyncClient) -> None:
    response = await api.request("PATCH", "/api/voice-profiles")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}


async def test_browser_login_with_a_wrong_token_goes_back_to_the_ui(live_server) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as browser:
        response = await browser.post(
            "/login", data={"token": "nope"}, headers={"Accept": "text/html"}
        )
    assert response.status_code == 303 and response.headers["location"] == "/?login=failed"
