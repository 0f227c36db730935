"""The events context never names the contexts that react to events, not even as a string for
`import_module`: the wiring in `kassa.bootstrap` hands their consumers to the runtime."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

EVENTS = Path(__file__).resolve().parents[3] / "src" / "kassa" / "events"
FILES = sorted(EVENTS.rglob("*.py"))
# Contexts that consume events; none of them may appear in the events package's code.
CONSUMER_CONTEXTS = ("notifications", "payments", "settlement", "identity", "ledger", "api", "bootstrap")


def test_the_events_package_has_modules_to_check() -> None:
    assert any(f.name == "runtime.py" for f in FILES) and any(f.name == "registry.py" for f in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(EVENTS)))
def test_an_events_module_does_not_name_a_consumer_context(path: Path) -> None:
    text = path.read_text()
    for context in CONSUMER_CONTEXTS:
        assert not re.search(rf"kassa\.{context}\b", text), f"{path.name} names kassa.{context}"
    assert "import_module" not in text, f"{path.name} imports modules by name"
