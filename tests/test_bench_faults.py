"""`avatar bench faults` in a tiny form: a row per fault mode, the plot and the JSON written.

The timing claim itself (other sessions within 20 %) is a benchmark figure, not asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

from avatar.bench import faults as bench
from conftest import make_settings


def test_the_fault_benchmark_measures_every_mode(tmp_path: Path) -> None:
    windows = bench.measure_fault_isolation(
        make_settings(tmp_path / "base"), tmp_path / "run", bystanders=1, window_s=1.0
    )
    rows = bench.summarize(windows)
    expected = ["none", *[m.value for m in bench.FAULT_MODES], "none (again)"]
    assert [r["fault"] for r in rows] == expected
    for row in rows:
        assert row["bystander_turns"] > 0 and row["bystander_errors"] == 0
        assert row["bystander_p50_ms"] > 0
    assert rows[0]["p50_change_pct"] == 0.0
    by_fault = {r["fault"]: r for r in rows}
    assert by_fault["none"]["faulty_turns"] == 0
    # the faulty session really met its fault (a trickle is slow, not an error)
    assert by_fault["refused"]["faulty_errors"].get("engine_unavailable")
    assert by_fault["http_401"]["faulty_errors"].get("engine_auth")
    assert by_fault["hang_before_first_token"]["faulty_errors"] == {"engine_timeout": 1}
    assert by_fault["trickle"]["faulty_turns"] == 1

    bench.write_json(rows, {"bystanders": 1}, tmp_path / "faults.json")
    assert len(json.loads((tmp_path / "faults.json").read_text())["rows"]) == len(expected)
    bench.plot(windows, rows, tmp_path / "faults.png")
    assert (tmp_path / "faults.png").read_bytes()[:4] == b"\x89PNG"
