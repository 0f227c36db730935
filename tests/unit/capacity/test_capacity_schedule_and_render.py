"""Event schedules are validated before any arithmetic, the unit cost comes from the bench results,
and the committed example in deploy/capacity is exactly what the planner renders."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from kassa.capacity import Assumptions, Target, event_load, parse_schedule, plan_steps, unit_cost_from
from kassa.capacity.errors import InvalidSchedule, NoUnitCost
from kassa.capacity.render import cron_job, plan_document, render_kubernetes, render_tfvars

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "deploy" / "capacity"

GOOD = """
events:
  - name: final
    start: 2027-03-13T19:00:00Z
    end: 2027-03-13T22:00:00+00:00
    expected_audience: 1000
    price: {amount: 999, currency: EUR}
"""


def test_a_valid_schedule_parses_with_zones_and_minor_units() -> None:
    [final] = parse_schedule(GOOD)
    assert final.start == datetime(2027, 3, 13, 19, tzinfo=UTC)
    assert (final.expected_audience, final.price_minor, final.currency) == (1000, 999, "EUR")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("2027-03-13T22:00:00+00:00", "2027-03-13T18:00:00Z"), "end must be after start"),
        (("2027-03-13T19:00:00Z", "2027-03-13T19:00:00"), "time zone"),
        (("currency: EUR", "currency: euro"), "ISO 4217"),
        (("amount: 999", "amount: 9.99"), "price.amount"),
        (("expected_audience: 1000", "expected_audience: -5"), "expected_audience"),
        (("name: final", "name: Final Match"), "name"),
    ],
)
def test_a_malformed_event_is_refused_with_its_reason(change: tuple[str, str], words: str) -> None:
    with pytest.raises(InvalidSchedule, match=words):
        parse_schedule(GOOD.replace(*change))


def test_two_events_with_one_name_are_refused() -> None:
    doubled = GOOD + GOOD.split("events:\n", 1)[1]
    with pytest.raises(InvalidSchedule, match="unique"):
        parse_schedule(doubled)


def test_the_unit_cost_is_the_headline_single_transfer_cpu_of_a_bench_result() -> None:
    result = {
        "headline": {"workers": 2},
        "configs": [
            {
                "workers": 1,
                "single": {
                    "cpu": {"api_ms_per_transfer": 9, "worker_ms_per_transfer": 9, "postgres_ms_per_transfer": 9}
                },
            },
            {
                "workers": 2,
                "single": {
                    "cpu": {"api_ms_per_transfer": 0.3, "worker_ms_per_transfer": 0.2, "postgres_ms_per_transfer": 0.1}
                },
            },
        ],
    }
    cost = unit_cost_from(result, "r.json")
    assert (cost.api_ms, cost.worker_ms, cost.postgres_ms) == (0.3, 0.2, 0.1)
    with pytest.raises(NoUnitCost):
        unit_cost_from({"headline": {"workers": 3}, "configs": result["configs"]}, "r.json")


def test_a_step_becomes_a_cronjob_at_its_utc_minute_patching_both_autoscalers() -> None:
    [final] = parse_schedule(GOOD)
    cost = unit_cost_from(json.loads(next((REPO / "bench" / "results").glob("*.json")).read_text()), "bench")
    raise_step = plan_steps([final], cost, Assumptions())[0]
    job = cron_job(raise_step, Target())
    assert job["spec"]["schedule"] == "30 18 13 3 *"  # 30 minutes of lead time before 19:00Z
    containers = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    patched = {c["args"][2]: json.loads(c["args"][-1])["spec"] for c in containers}
    assert set(patched) == {"kassa-api", "kassa-worker-consumers"}
    assert patched["kassa-api"]["minReplicas"] == raise_step.capacity.api_replicas


def test_the_committed_example_is_what_the_planner_renders() -> None:
    committed = json.loads((EXAMPLE / "example" / "plan.json").read_text())
    # Re-render from the bench result the example was made from, so a newer `make bench` run
    # does not make this test fail; regenerate the example with the command in the runbook.
    source = committed["unit_cost_cpu_ms_per_transfer"]["source"]
    cost = unit_cost_from(json.loads((REPO / "bench" / "results" / source).read_text()), source)
    events = parse_schedule((EXAMPLE / "events.example.yaml").read_text())
    steps = plan_steps(events, cost, Assumptions())
    loads = [event_load(e, Assumptions()) for e in events]
    assert plan_document(loads, steps, cost, Assumptions(), Target()) == committed
    manifests = render_kubernetes(steps, Target())
    assert manifests == (EXAMPLE / "example" / "kubernetes.yaml").read_text()
    kinds = [d["kind"] for d in yaml.safe_load_all(manifests)]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding"] + ["CronJob"] * len(steps)
    for name, values in render_tfvars(steps, Target()).items():
        assert json.loads((EXAMPLE / "example" / "terraform" / name).read_text()) == values
