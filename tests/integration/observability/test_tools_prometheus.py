"""The promtool fetcher says clearly what to do when Debian's package cannot be fetched."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import pytest

from support import tools_prometheus

if TYPE_CHECKING:
    from pathlib import Path


def test_a_failed_fetch_names_the_package_and_both_apt_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "apt-get"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "E: no network" >&2\nexit 100\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("KASSA_TOOLS_DIR", str(tmp_path / "tools"))
    with pytest.raises(tools_prometheus.ToolUnavailable, match="apt-get install prometheus") as raised:
        tools_prometheus.binary("promtool")
    assert "E: no network" in str(raised.value)
    assert calls.read_text().splitlines() == ["download prometheus", "update", "download prometheus"]
    assert not (tmp_path / "tools" / "prometheus").exists()
    assert os.environ["PATH"] == str(bin_dir)
