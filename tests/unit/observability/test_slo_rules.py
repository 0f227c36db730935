"""The SLO file generates the committed rules (stale files fail), every alert is a multi-window,
multi-burn-rate alert with severity, summary and a runbook that exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from kassa.cli.main import main
from kassa.observability import slo

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parents[3]
SPEC = REPO / "deploy" / "observability" / "slo.yaml"
RULES = REPO / "deploy" / "observability" / "prometheus" / "kassa-slo.rules.yaml"
DASHBOARDS = REPO / "deploy" / "observability" / "dashboards"
RUNBOOKS = REPO / "docs" / "runbooks"


def _alerts() -> list[dict[str, Any]]:  # parsed YAML
    rules = yaml.safe_load(RULES.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def test_the_committed_rules_are_what_kassa_slo_generate_writes() -> None:
    assert main(["slo", "generate", "--check", "--spec", str(SPEC), "--out", str(RULES)]) == 0


def test_the_committed_dashboards_are_what_kassa_dashboards_generate_writes() -> None:
    assert main(["dashboards", "generate", "--check", "--spec", str(SPEC), "--out", str(DASHBOARDS)]) == 0


def test_a_stale_rule_file_fails_the_check_and_generate_rewrites_it(tmp_path: Path) -> None:
    out = tmp_path / "rules.yaml"
    out.write_text(RULES.read_text().replace("14.4", "14.5"))
    assert main(["slo", "generate", "--check", "--spec", str(SPEC), "--out", str(out)]) == 1
    assert main(["slo", "generate", "--spec", str(SPEC), "--out", str(out)]) == 0
    assert out.read_text() == RULES.read_text()


def test_each_slo_pages_on_fast_burns_and_tickets_slow_ones_with_both_windows() -> None:
    alerts = {str(a["alert"]): a for a in _alerts()}
    expected = {
        "page": [("14.4", "1h", "5m"), ("6", "6h", "30m")],
        "ticket": [("3", "1d", "2h"), ("1", "3d", "6h")],
    }
    for name in ("KassaAvailability", "KassaLatency", "KassaEventFreshness"):
        for severity, windows in expected.items():
            alert = alerts[f"{name}{severity.capitalize()}"]
            assert alert["labels"]["severity"] == severity
            conditions = str(alert["expr"]).split("\nor\n")
            assert len(conditions) == len(windows)
            for condition, (factor, long, short) in zip(conditions, windows, strict=True):
                found = re.findall(r"kassa:slo_error_ratio:rate(\w+)\{[^}]*\} > \(([0-9.]+) \* ", condition)
                assert found == [(long, factor), (short, factor)], condition


def test_the_error_budget_follows_from_each_objective() -> None:
    spec = slo.load(SPEC)
    assert {s.name: s.objective for s in spec.slos} == {"availability": 99.95, "latency": 99, "event-freshness": 99}
    assert {s.name: s.budget for s in spec.slos} == {"availability": 0.0005, "latency": 0.01, "event-freshness": 0.01}


def test_every_alert_has_a_severity_a_summary_and_a_runbook_that_exists() -> None:
    spec = slo.load(SPEC)
    alerts = _alerts()
    assert len(alerts) >= 7
    for alert in alerts:
        labels, annotations = alert["labels"], alert["annotations"]
        assert labels["severity"] in ("page", "ticket"), alert
        assert annotations["summary"], alert
        url = str(annotations["runbook_url"])
        assert url.startswith(spec.runbook_base_url), url
        page = RUNBOOKS / url.removeprefix(spec.runbook_base_url)
        assert page.is_file(), f"{alert['alert']}: runbook {page} is missing"
        assert f"# {alert['alert']}" in page.read_text(), f"{page} does not describe {alert['alert']}"


def test_every_runbook_but_the_guides_belongs_to_an_alert() -> None:
    named = {str(a["annotations"]["runbook_url"]).rsplit("/", 1)[-1] for a in _alerts()}
    guides = {"README.md", "incident-response.md", "live-event.md"}
    assert {p.name for p in RUNBOOKS.glob("*.md")} - guides == named


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.replace("objective: 99.95", "objective: 100"), "objective"),
        (lambda s: s.replace("period: 30d", "period: a month", 1), "duration"),
        (lambda s: s.replace("[{{window}}]", "[5m]"), "window"),
    ],
)
def test_a_malformed_slo_file_is_refused(tmp_path: Path, edit: Callable[[str], str], message: str) -> None:
    bad = tmp_path / "slo.yaml"
    bad.write_text(edit(SPEC.read_text()))
    with pytest.raises(slo.SloSpecInvalid, match=message):
        slo.load(bad)
