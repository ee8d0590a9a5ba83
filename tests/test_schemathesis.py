"""Property-based API testing: schemathesis generates requests from the app's own OpenAPI schema
and runs all of its checks against the live server (real engines), authenticated, with rate
limits off for the run. A 5xx, a response that breaks the schema, an undocumented status or
content type, or invalid data accepted fails the test.

The run uses the ``st`` command line (the examples, coverage and fuzzing phases): schemathesis
4.32's pytest integration (``schemathesis.pytest.from_fixture``) fails under pytest 9.2, which
removed the ``Node._nodeid`` attribute it rewrites. The seed is printed; replay a failure with
``st run ... --seed <seed>``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import LiveServer

ST = Path(sys.executable).parent / "st"
MAX_EXAMPLES = 8  # per operation and phase: the whole run takes about a minute here
ALL_OK = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]

# Checks switched off for single operations, each naming the bug it stands for (reported to the
# lead; not fixed here). Remove an entry once its bug is fixed; every other check still runs.
Operation = tuple[str, str | None]  # path, method (None: all methods of the path)
KNOWN_BUGS: list[tuple[str, str, list[Operation]]] = []  # none known


def config_file(folder: Path) -> Path:
    """``schemathesis.toml`` for the run (JSON strings and lists are valid TOML values)."""
    audio_ok = [*ALL_OK, "400", "413", "415", "422"]
    lines = [
        "# Every built-in check; the response-time check stays off (it takes a limit, and tests",
        "# never assert wall-clock speed: 2 shared CPU cores, real models).",
        "[checks]",
        "enabled = true",
        "",
        "# Whether an upload is decodable audio cannot be said in JSON Schema: schema-valid random",
        "# bytes are refused with 415 (not audio), 413 (too long) or 422 (empty, no speech); and",
        "# OpenAI's cross-field rule (word timestamps need verbose_json) is a 400 (/v1 errors).",
        "[[operations]]",
        f"include-path = {json.dumps(['/v1/audio/transcriptions', '/api/voice-profiles'])}",
        'include-method = "POST"',
        f"checks.positive_data_acceptance.expected-statuses = {json.dumps(audio_ok)}",
    ]
    for check, why, operations in KNOWN_BUGS:
        for path, method in operations:
            lines += [
                "",
                f"# KNOWN BUG: {why}",
                "[[operations]]",
                f"include-path = {json.dumps(path)}",
            ]
            if method:
                lines.append(f"include-method = {json.dumps(method)}")
            lines.append(f"checks.{check}.enabled = false")
    config = folder / "schemathesis.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


@pytest.fixture
def no_rate_limits(live_server: LiveServer) -> Iterator[None]:
    limits = live_server.app.state.avatar.limits  # type: ignore[attr-defined]
    was = limits.enabled
    limits.enabled = False
    try:
        yield
    finally:
        limits.enabled = was


# The run's own limit, not the suite's 300 s: a random seed may draw chat requests that generate
# up to their token limit (one such run took over 300 s in the whole suite on 2 cores; alone,
# the same test takes ~2 minutes).
@pytest.mark.timeout(1500)
def test_api_conforms_to_its_schema(
    live_server: LiveServer, no_rate_limits: None, tmp_path: Path
) -> None:
    command = [
        str(ST),
        "--no-color",
        "--config-file",
        str(config_file(tmp_path)),
        "run",
        f"{live_server.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {live_server.token}",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--request-timeout",
        "300",  # a legal request may generate up to the context window on 2 shared cores
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=1500, check=False, cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20_000:]
    tested = re.search(r"Tested:\s+(\d+)", output)
    assert tested and int(tested.group(1)) >= 4, output[-5_000:]  # the /v1 routes at least
