"""promtool (Debian's prometheus package, fetched when missing) accepts the generated rules and
its unit tests prove them: a fast burn pages within minutes, a slow burn opens a ticket, a
healthy service fires nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.tools_prometheus import binary

OBSERVABILITY = Path(__file__).resolve().parents[3] / "deploy" / "observability"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary("promtool")), *args], capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_generated_rules() -> None:
    result = _promtool("check", "rules", str(OBSERVABILITY / "prometheus" / "kassa-slo.rules.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_of_the_burn_rate_alerts_pass() -> None:
    result = _promtool("test", "rules", str(OBSERVABILITY / "tests" / "kassa-slo.test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_fail_when_an_alert_is_weakened(tmp_path: Path) -> None:
    # The same tests against rules whose page conditions need 10x the burn: they must catch it.
    rules = (OBSERVABILITY / "prometheus" / "kassa-slo.rules.yaml").read_text()
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "kassa-slo.rules.yaml").write_text(
        rules.replace("(14.4 * ", "(144 * ").replace("(6 * ", "(60 * ")
    )
    (tmp_path / "tests").mkdir()
    tests = (OBSERVABILITY / "tests" / "kassa-slo.test.yaml").read_text()
    (tmp_path / "tests" / "kassa-slo.test.yaml").write_text(tests)
    result = _promtool("test", "rules", str(tmp_path / "tests" / "kassa-slo.test.yaml"))
    assert result.returncode != 0
    assert "KassaLatencyPage" in result.stdout + result.stderr


def test_promtool_accepts_the_example_prometheus_configuration() -> None:
    result = _promtool("check", "config", str(OBSERVABILITY / "prometheus" / "prometheus.example.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
