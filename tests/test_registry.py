"""The engine registry: lazy import, install hints, unknown names."""

from __future__ import annotations

import pytest

from avatar.engines.registry import REGISTRY, EngineSpec, engine_class, spec_for
from avatar.errors import EngineUnavailable


def test_unknown_engine_lists_the_known_ones() -> None:
    with pytest.raises(EngineUnavailable) as info:
        spec_for("stt", "telepathy")
    assert "faster-whisper" in (info.value.hint or "")


def test_missing_dependency_names_what_to_install() -> None:
    spec = EngineSpec(
        "tts",
        "ghost",
        "avatar_no_such_module.engine:Ghost",
        "pip install 'avatar[gpu]'",
        "not installed",
    )
    with pytest.raises(EngineUnavailable) as info:
        engine_class(spec)
    assert "pip install 'avatar[gpu]'" in (info.value.hint or "")
    assert "avatar_no_such_module" in info.value.message


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_every_registered_engine_imports(key: tuple[str, str]) -> None:
    cls = engine_class(REGISTRY[key])  # type: ignore[index]
    assert hasattr(cls, "from_settings")
