"""Port settings and the API's worker count take a valid value or are refused with one line
naming the setting and the valid range; 0 means "pick a free port" only for the API's port
under `kassa up`."""

from __future__ import annotations

import pytest

from kassa.cli.main import main
from kassa.settings import Settings, SettingsError

PORTS = (
    "KASSA_HTTP_PORT",
    "KASSA_METRICS_PORT",
    "KASSA_HTTP_WORKERS",
    "KASSA_TOPUP_TIMEOUT_S",
    "KASSA_KAFKA_REPLICATION_FACTOR",
)


@pytest.fixture(autouse=True)
def _no_port_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PORTS:
        monkeypatch.delenv(name, raising=False)


def test_unset_ports_take_their_defaults() -> None:
    settings = Settings.from_env()
    assert (settings.http_port, settings.metrics_port) == (8000, None)


@pytest.mark.parametrize(
    ("name", "raw"), [("KASSA_HTTP_PORT", "1"), ("KASSA_HTTP_PORT", "65535"), ("KASSA_HTTP_PORT", "0")]
)
def test_the_api_port_takes_any_tcp_port_and_0_for_a_free_one(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str
) -> None:
    monkeypatch.setenv(name, raw)
    assert Settings.from_env().http_port == int(raw)


@pytest.mark.parametrize("raw", ["1", "2", "64"])
def test_the_api_takes_1_to_64_worker_processes(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("KASSA_HTTP_WORKERS", raw)
    assert Settings.from_env().http_workers == int(raw)


def test_the_metrics_port_takes_a_tcp_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASSA_METRICS_PORT", "9464")
    assert Settings.from_env().metrics_port == 9464


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        (
            "KASSA_HTTP_PORT",
            "65536",
            "KASSA_HTTP_PORT must be a TCP port from 0 to 65535 (0: kassa up picks a free port), not 65536",
        ),
        (
            "KASSA_HTTP_PORT",
            "-1",
            "KASSA_HTTP_PORT must be a TCP port from 0 to 65535 (0: kassa up picks a free port), not -1",
        ),
        ("KASSA_HTTP_PORT", "http", "KASSA_HTTP_PORT must be an integer, not 'http'"),
        # A worker's metrics on a port nobody is told could never be scraped.
        ("KASSA_METRICS_PORT", "0", "KASSA_METRICS_PORT must be a TCP port from 1 to 65535, not 0"),
        ("KASSA_METRICS_PORT", "70000", "KASSA_METRICS_PORT must be a TCP port from 1 to 65535, not 70000"),
        # No API worker would answer; far past the cores only connections and contention grow.
        ("KASSA_HTTP_WORKERS", "0", "KASSA_HTTP_WORKERS must be from 1 to 64, not 0"),
        ("KASSA_HTTP_WORKERS", "65", "KASSA_HTTP_WORKERS must be from 1 to 64, not 65"),
        ("KASSA_HTTP_WORKERS", "two", "KASSA_HTTP_WORKERS must be an integer, not 'two'"),
        # The other counted settings share the rule and its message.
        ("KASSA_TOPUP_TIMEOUT_S", "0", "KASSA_TOPUP_TIMEOUT_S must be from 1 to 2592000 seconds, not 0"),
        ("KASSA_KAFKA_REPLICATION_FACTOR", "8", "KASSA_KAFKA_REPLICATION_FACTOR must be from 1 to 7, not 8"),
    ],
)
def test_a_port_outside_the_range_is_refused_naming_the_setting_and_the_range(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, message: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env()
    assert str(refused.value) == message


@pytest.mark.parametrize("command", ["up", "api"])
def test_the_cli_prints_a_refused_setting_as_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    monkeypatch.setenv("KASSA_HTTP_PORT", "99999")
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert (
        err == "kassa: KASSA_HTTP_PORT must be a TCP port from 0 to 65535 (0: kassa up picks a free port), not 99999\n"
    )


def test_kassa_api_alone_refuses_port_0_which_only_kassa_up_can_pick(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KASSA_HTTP_PORT", "0")
    assert main(["api"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "KASSA_HTTP_PORT=0" in err and "1 to 65535" in err


def test_the_sandbox_provider_refuses_port_0(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["provider", "sandbox", "--port", "0", "--callback-url", "http://127.0.0.1:1/", "--secret-file", "/none"]
    with pytest.raises(SystemExit) as refused:
        main(args)
    assert refused.value.code == 2
    assert "--port must be a TCP port from 1 to 65535, not 0" in capsys.readouterr().err
