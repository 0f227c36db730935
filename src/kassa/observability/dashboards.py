"""Grafana dashboards as code (grafana-foundation-sdk builders), written by `kassa dashboards generate`.

Four dashboards: the money path (requests, outcomes, latency percentiles, batch sizes, money
moved), events (outbox and consumer lag, freshness, dead letters, webhooks), SLO burn (from the
SLO file: error ratio against budget, burn rates, budget left) and the database and processes.
Every panel reads one Prometheus data source chosen by the `datasource` variable. The e2e test
runs each panel's PromQL against a real Prometheus scraping kassa.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

if TYPE_CHECKING:
    from kassa.observability.slo import SloSpec

__all__ = ["MONEY_PATH", "build_all", "panel_queries", "render_all"]

MONEY_PATH = "kassa-money-path.json"
_DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
_MONEY_ROUTES = 'route=~"/v1/(transfers|transactions|purchases|payouts|refunds)(/.*)?"'
_TRANSFERS = 'method="POST",route="/v1/transfers"'


def _query(expr: str, legend: str, ref: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(_DS)


def _series(
    title: str, unit: str, *queries: tuple[str, str], description: str = "", width: int = 12
) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(_DS).span(width).height(8)
    if description:
        panel = panel.description(description)
    for i, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i)))
    return panel


def _stat(title: str, unit: str, expr: str, legend: str = "") -> stat.Panel:
    return stat.Panel().title(title).unit(unit).datasource(_DS).span(6).height(8).with_target(_query(expr, legend, "A"))


def _dashboard(uid: str, title: str, tags: list[str]) -> dashboard.Dashboard:
    source = dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .tags(["kassa", *tags])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .with_variable(source)
    )


def _quantiles(metric: str, selector: str, by: str = "") -> list[tuple[str, str]]:
    group = f"le{', ' + by if by else ''}"
    legend = f"p{{q}}{' {{' + by + '}}' if by else ''}"
    return [
        (
            f"histogram_quantile({q / 100:g}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[5m])))",
            legend.replace("{q}", str(q)),
        )
        for q in (50, 95, 99)
    ]


def money_path() -> dashboard.Dashboard:
    return (
        _dashboard("kassa-money-path", "kassa / money path", ["money-path"])
        .with_panel(
            _series(
                "Money-moving requests by status",
                "reqps",
                (
                    f'sum by (route, status) (rate(kassa_http_requests_total{{method="POST",{_MONEY_ROUTES}}}[5m]))',
                    "{{route}} {{status}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Transactions by product and outcome",
                "ops",
                ("sum by (product, outcome) (rate(kassa_transactions_total[5m]))", "{{product}} {{outcome}}"),
            )
        )
        .with_panel(
            _series("POST /v1/transfers latency", "s", *_quantiles("kassa_http_request_duration_seconds", _TRANSFERS))
        )
        .with_panel(
            _series("Ledger batch size (commands per transaction)", "short", *_quantiles("kassa_ledger_batch_size", ""))
        )
        .with_panel(
            _series("Ledger batch transaction time", "s", *_quantiles("kassa_ledger_batch_duration_seconds", ""))
        )
        .with_panel(
            _series(
                "Money moved (minor units per second) by currency",
                "short",
                ("sum by (currency) (rate(kassa_money_moved_minor_units_total[5m]))", "{{currency}}"),
            )
        )
        .with_panel(
            _series(
                "Idempotent replays and expired holds",
                "ops",
                ("sum(rate(kassa_idempotent_replays_total[5m]))", "replays"),
                ("sum(rate(kassa_holds_expired_total[5m]))", "holds expired"),
            )
        )
    )


def events() -> dashboard.Dashboard:
    return (
        _dashboard("kassa-events", "kassa / events and webhooks", ["events"])
        .with_panel(_series("Outbox lag (oldest unpublished event)", "s", ("max(kassa_outbox_lag_seconds)", "lag")))
        .with_panel(
            _series(
                "Consumer lag (events not acknowledged)",
                "short",
                ("max by (consumer) (kassa_consumer_lag_events)", "{{consumer}}"),
            )
        )
        .with_panel(
            _series("Event to effect delay", "s", *_quantiles("kassa_consumer_delay_seconds", "", by="consumer"))
        )
        .with_panel(_series("Dead letters", "short", ("max by (consumer) (kassa_dlq_size)", "{{consumer}}")))
        .with_panel(
            _series(
                "Events published and consumed",
                "ops",
                ("sum(rate(kassa_events_published_total[5m]))", "published"),
                ("sum by (consumer, outcome) (rate(kassa_events_consumed_total[5m]))", "{{consumer}} {{outcome}}"),
            )
        )
        .with_panel(
            _series(
                "Webhook attempts by outcome",
                "ops",
                ("sum by (outcome) (rate(kassa_webhook_attempts_total[5m]))", "{{outcome}}"),
            )
        )
        .with_panel(
            _series(
                "Webhook success ratio",
                "percentunit",
                (
                    'sum(rate(kassa_webhook_attempts_total{outcome="succeeded"}[15m]))'
                    " / sum(rate(kassa_webhook_attempts_total[15m]))",
                    "succeeded",
                ),
            )
        )
        .with_panel(_series("Webhook attempt latency", "s", *_quantiles("kassa_webhook_attempt_seconds", "")))
    )


def slo_burn(spec: SloSpec) -> dashboard.Dashboard:
    board = _dashboard("kassa-slo", "kassa / SLO burn", ["slo"])
    for slo in spec.slos:
        sel = f'{{slo="{slo.name}"}}'
        budget = f"kassa:slo_error_budget:ratio{sel}"
        board = board.with_panel(
            _stat(
                f"{slo.title}: budget left ({slo.period})",
                "percentunit",
                f"1 - kassa:slo_error_ratio:rate{slo.period}{sel} / on (slo) {budget}",
            )
        ).with_panel(
            _series(
                f"{slo.title}: burn rate",
                "short",
                *[(f"kassa:slo_error_ratio:rate{w}{sel} / on (slo) {budget}", w) for w in ("5m", "1h", "6h", "1d")],
                description=f"{slo.description} A burn rate of 1 spends the budget in exactly {slo.period}.",
                width=18,  # beside its budget stat: one row per SLO
            )
        )
    return board


def database() -> dashboard.Dashboard:
    return (
        _dashboard("kassa-database", "kassa / database and processes", ["database"])
        .with_panel(_series("Pool connections", "short", ("sum by (state) (kassa_db_pool_connections)", "{{state}}")))
        .with_panel(
            _series(
                "Pool saturation (in use / max)",
                "percentunit",
                (
                    'sum(kassa_db_pool_connections{state="in_use"}) / sum(kassa_db_pool_connections{state="max"})',
                    "in use",
                ),
            )
        )
        .with_panel(
            _series(
                "Ledger transactions per second", "ops", ("sum(rate(kassa_ledger_batch_size_count[5m]))", "batches")
            )
        )
        .with_panel(
            _series(
                "Process CPU", "percentunit", ("sum by (role) (rate(kassa_process_cpu_seconds_total[5m]))", "{{role}}")
            )
        )
        .with_panel(
            _series("Process memory", "bytes", ("sum by (role) (kassa_process_resident_memory_bytes)", "{{role}}"))
        )
    )


def build_all(spec: SloSpec) -> dict[str, Any]:
    """The dashboards as Grafana JSON models, by file name."""
    boards = {
        MONEY_PATH: money_path(),
        "kassa-events.json": events(),
        "kassa-slo.json": slo_burn(spec),
        "kassa-database.json": database(),
    }
    return {name: board.build() for name, board in boards.items()}


def render_all(built: dict[str, Any]) -> dict[str, str]:
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {name: encoder.encode(model) + "\n" for name, model in built.items()}


def panel_queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of a dashboard JSON model."""
    return [(panel["title"], target["expr"]) for panel in model["panels"] for target in panel.get("targets", [])]
