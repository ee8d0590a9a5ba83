"""What integrators meet outside /v1: settings one field at a time, rate limits they can set, a
CLI that answers at once, and models named by what their files say they are."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from avatar.errors import ConfigError
from avatar.models.catalog import CATALOG, canonical_name
from avatar.models.store import ModelStore
from avatar.services.integrity import DEFAULT_GRACE_S
from avatar.settings import load_settings
from conftest import LiveServer, rate_limits

# --- settings -------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [k for k in os.environ if k.startswith("AVATAR_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(os.path.dirname(__file__))  # no .env here
    return monkeypatch


@pytest.mark.parametrize(
    ("variable", "value", "read"),
    [
        ("AVATAR_TTS__FAST__VOICE", "amy", lambda s: (s.tts.fast.voice, s.tts.fast.engine)),
        ("AVATAR_TTS__FAST__DEVICE", "cuda:1", lambda s: (s.tts.fast.device, s.tts.fast.model)),
        ("AVATAR_LLM__TEMPERATURE", "0.9", lambda s: (s.llm.temperature, s.llm.engine)),
        ("AVATAR_SERVER__PORT", "9000", lambda s: (s.server.port, s.server.host)),
        (
            "AVATAR_RATE_LIMITS__CHAT",
            "5/second",
            lambda s: (s.rate_limits.chat, s.rate_limits.speech),
        ),
    ],
)
def test_one_nested_field_alone_keeps_the_rest_of_its_group(clean_env, variable, value, read):
    clean_env.setenv(variable, value)
    defaults = read(load_settings())
    clean_env.delenv(variable)
    untouched = read(load_settings())
    assert defaults[0] != untouched[0]  # the field changed ...
    assert defaults[1] == untouched[1]  # ... and its neighbour kept its default


def test_a_remote_fast_voice_needs_only_its_engine_and_url(clean_env) -> None:
    clean_env.setenv("AVATAR_TTS__FAST__BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError) as info:
        load_settings()  # a base URL on the embedded engine would be ignored: say so
    assert "AVATAR_TTS__FAST" in str(info.value) and "ENGINE=openai" in str(info.value)
    clean_env.setenv("AVATAR_TTS__FAST__ENGINE", "openai")
    fast = load_settings().tts.fast
    assert (fast.engine, fast.base_url, fast.model) == ("openai", "http://127.0.0.1:9/v1", None)


def test_a_bad_rate_limit_setting_is_named(clean_env) -> None:
    clean_env.setenv("AVATAR_RATE_LIMITS__EXPORT", "lots")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "AVATAR_RATE_LIMITS__EXPORT" in str(info.value) and "120/minute" in str(info.value)


# --- rate limits ----------------------------------------------------------------------------


async def test_limits_are_keyed_by_token_and_health_has_its_own(live_server: LiveServer) -> None:
    state = live_server.app.state.avatar  # type: ignore[attr-defined]
    from avatar.api.ratelimit import RateLimits

    state.limits = RateLimits(None)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as anonymous:
        with rate_limits(live_server, health="2/minute"):
            assert (await anonymous.get("/health")).status_code == 200
            assert (await anonymous.get("/health", headers=live_server.auth)).status_code == 200
            # one budget per client: the token's is not the address's
            assert (await anonymous.get("/health")).status_code == 200
            assert (await anonymous.get("/health")).status_code == 429
            assert (await anonymous.get("/health", headers=live_server.auth)).status_code == 200
        with rate_limits(live_server, health=""):  # '' turns a limit off
            codes = {(await anonymous.get("/health")).status_code for _ in range(5)}
            assert codes == {200}
        # a wrong token is an address, so rotating bad tokens gains nothing
        with rate_limits(live_server, health="1/minute"):
            bad = {"Authorization": "Bearer not-the-token-at-all-0000"}
            assert (await anonymous.get("/health", headers=bad)).status_code == 200
            assert (await anonymous.get("/health", headers=bad)).status_code == 429


# --- the command line -------------------------------------------------------------------------


def test_help_imports_no_engine_storage_or_web_code() -> None:
    probe = (
        "import sys\n"
        "from avatar.cli.main import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "import json; print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    modules = set(json.loads(done.stderr.strip().splitlines()[-1]))
    heavy = {"faster_whisper", "llama_cpp", "onnxruntime", "sqlalchemy", "fastapi", "numpy"}
    assert not heavy & modules
    assert not {m for m in modules if m.startswith(("avatar.engines", "avatar.storage"))}
    assert "serve" in done.stdout and "transcribe" in done.stdout


def test_check_grace_default_matches_the_service() -> None:
    from avatar.cli.check import GRACE_S

    assert GRACE_S == DEFAULT_GRACE_S


def test_models_list_fits_80_columns_without_cutting() -> None:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    done = subprocess.run(
        [sys.executable, "-m", "avatar.cli.main", "models", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    assert "GPL-3.0-or-later" in done.stdout
    assert "Qwen2.5 Coder 0.5B Instruct AWQ" in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 80


def test_empty_say_explains_itself() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "avatar.cli.main", "say", "  ", "-o", "/tmp/never.wav"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "give the words to say" in done.stderr


# --- models named by what their files say ------------------------------------------------------


def test_every_catalog_model_says_what_its_file_is() -> None:
    for spec in CATALOG.values():
        assert spec.upstream, f"{spec.name}: what does its file say it is?"
        assert spec.license and spec.packages


def test_the_default_llm_is_named_by_its_gguf_header(model_store: ModelStore) -> None:
    import llama_cpp

    spec = CATALOG["qwen2.5-coder-0.5b-instruct"]
    llama = llama_cpp.Llama(str(model_store.path(spec.name)), vocab_only=True, verbose=False)
    name = llama.metadata["general.name"]
    assert name == "Qwen2.5 Coder 0.5B Instruct AWQ" and name in spec.upstream
    assert "Coder" in spec.description


def test_the_old_model_id_is_an_alias(model_store: ModelStore) -> None:
    assert canonical_name("qwen2.5-0.5b-instruct") == "qwen2.5-coder-0.5b-instruct"
    assert model_store.spec("qwen2.5-0.5b-instruct").name == "qwen2.5-coder-0.5b-instruct"
    assert load_settings(llm={"model": "qwen2.5-0.5b-instruct"}).llm.model  # still accepted


# --- the OpenAPI document ----------------------------------------------------------------------


def openapi(tmp_path) -> dict:
    from avatar.api.app import create_app

    return create_app(load_settings(data_dir=tmp_path, api_token="t" * 20)).openapi()


def test_readme_counts_the_endpoints_the_document_has(tmp_path) -> None:
    import pathlib
    import re

    paths = openapi(tmp_path)["paths"]
    avatar_ops = [
        (method, path)
        for path, item in paths.items()
        if not path.startswith("/v1/")
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    claimed = re.search(r"\((\d+) AVATAR endpoints", readme)
    assert claimed is not None and int(claimed.group(1)) == len(avatar_ops), avatar_ops


def test_main_requests_and_responses_have_examples_and_types(tmp_path) -> None:
    doc = openapi(tmp_path)
    schemas = doc["components"]["schemas"]
    for name in ("ChatCompletionCreate", "ChatCompletionPublic", "TranscriptionVerbosePublic"):
        assert schemas[name].get("examples"), name
    for path, method in [
        ("/api/system/info", "get"),
        ("/api/system/models/status", "get"),
        ("/api/system/models/preload", "post"),
        ("/api/system/models/warmup", "post"),
    ]:
        content = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        ref = content["schema"].get("$ref", "")
        assert ref.startswith("#/components/schemas/") and ref.endswith("Public"), (path, ref)
    assert schemas["PreloadPublic"]["properties"]["took_s"]
    health = doc["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]
    refs = {r["$ref"].rsplit("/", 1)[-1] for r in health["schema"]["anyOf"]}
    assert refs == {"HealthPublic", "HealthAnonymousPublic"}  # with and without the token
