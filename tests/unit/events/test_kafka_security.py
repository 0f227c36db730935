"""The KASSA_KAFKA_* security settings become exactly the aiokafka keyword arguments they name, for
every client of the adapter; nonsense combinations stop the start; the password is never shown."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from kassa.events.bus import create_bus, kafka
from kassa.events.bus.kafka import KafkaBus
from kassa.events.bus.kafka_security import KafkaSecurity, KafkaSecurityInvalid
from kassa.events.errors import EventBusUnavailable
from kassa.settings import Settings
from support.tls import make_authority

if TYPE_CHECKING:
    from pathlib import Path

PASSWORD = "pw-Zq8#not-for-logs"  # noqa: S105 - a test value searched for in every rendering


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in (
        "KASSA_KAFKA_SECURITY_PROTOCOL",
        "KASSA_KAFKA_SASL_MECHANISM",
        "KASSA_KAFKA_USERNAME",
        "KASSA_KAFKA_PASSWORD",
        "KASSA_KAFKA_CA_FILE",
        "KASSA_KAFKA_REPLICATION_FACTOR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KASSA_KAFKA_BOOTSTRAP", "b-1.example:9096,b-2.example:9096")
    for name, value in env.items():
        monkeypatch.setenv(f"KASSA_KAFKA_{name}", value)
    return Settings.from_env()


def test_without_settings_the_adapter_stays_plaintext_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    security = KafkaSecurity.from_settings(_settings(monkeypatch))
    assert security == KafkaSecurity()
    assert security.client_kwargs() == {"security_protocol": "PLAINTEXT"}


def test_msk_scram_over_tls_with_a_ca_file_builds_a_verifying_context_and_the_sasl_arguments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    authority = make_authority(tmp_path)
    settings = _settings(
        monkeypatch,
        SECURITY_PROTOCOL="sasl_ssl",
        SASL_MECHANISM="scram-sha-512",
        USERNAME="kassa",
        PASSWORD=PASSWORD,
        CA_FILE=str(authority.ca_file),
    )
    kwargs = KafkaSecurity.from_settings(settings).client_kwargs()
    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "kassa",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True
    # Exactly the CA of the file, not the system's: a broker signed by anyone else is refused.
    names = [str(part) for cert in context.get_ca_certs() for rdn in cert["subject"] for part in rdn]
    assert names == [str(("commonName", "kassa test CA"))]


def test_tls_without_a_ca_file_verifies_against_the_system_cas_and_plain_sasl_without_tls_has_no_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tls = KafkaSecurity.from_settings(_settings(monkeypatch, SECURITY_PROTOCOL="SSL")).client_kwargs()
    assert set(tls) == {"security_protocol", "ssl_context"}
    assert tls["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    plain = KafkaSecurity.from_settings(
        _settings(
            monkeypatch, SECURITY_PROTOCOL="SASL_PLAINTEXT", SASL_MECHANISM="PLAIN", USERNAME="u", PASSWORD=PASSWORD
        )
    ).client_kwargs()
    assert plain == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "u",
        "sasl_plain_password": PASSWORD,
    }


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SECURITY_PROTOCOL": "TLS"}, "KASSA_KAFKA_SECURITY_PROTOCOL"),
        ({"SECURITY_PROTOCOL": "SASL_SSL", "USERNAME": "u", "PASSWORD": "p"}, "KASSA_KAFKA_SASL_MECHANISM"),
        ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "GSSAPI", "USERNAME": "u", "PASSWORD": "p"}, "MECHANISM"),
        ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "PLAIN", "USERNAME": "u"}, "KASSA_KAFKA_PASSWORD"),
        ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "PLAIN", "PASSWORD": PASSWORD}, "KASSA_KAFKA_USERNAME"),
        ({"USERNAME": "u", "PASSWORD": PASSWORD}, "SASL_SSL or SASL_PLAINTEXT"),
        ({"SECURITY_PROTOCOL": "SSL", "SASL_MECHANISM": "PLAIN"}, "SASL_SSL or SASL_PLAINTEXT"),
        ({"CA_FILE": "/etc/hostname"}, "KASSA_KAFKA_CA_FILE needs"),
        ({"SECURITY_PROTOCOL": "SSL", "CA_FILE": "/nonexistent/ca.pem"}, "no usable CA"),
        ({"SECURITY_PROTOCOL": "SSL", "CA_FILE": "/etc/hostname"}, "no usable CA"),
    ],
)
def test_settings_that_would_silently_do_less_than_asked_stop_the_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], names: str
) -> None:
    settings = _settings(monkeypatch, **env)
    with pytest.raises(KafkaSecurityInvalid, match=names) as refused:
        create_bus(settings)
    assert PASSWORD not in str(refused.value)


def test_the_password_appears_in_no_repr_description_or_settings_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(
        monkeypatch, SECURITY_PROTOCOL="SASL_SSL", SASL_MECHANISM="SCRAM-SHA-512", USERNAME="kassa", PASSWORD=PASSWORD
    )
    security = KafkaSecurity.from_settings(settings)
    bus = create_bus(settings)
    assert isinstance(bus, KafkaBus) and bus.security == security
    for shown in (repr(settings), str(settings), repr(security), security.describe(), repr(bus.security)):
        assert PASSWORD not in shown, shown
    assert security.describe() == "SASL_SSL, SCRAM-SHA-512 as 'kassa', system CAs"


class _Recorder:
    """Stands in for the aiokafka clients: records each one's keyword arguments, connects nowhere."""

    made: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.made.append((type(self).__name__, kwargs))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def list_topics(self) -> list[str]:
        return [kafka.TOPIC]


class Admin(_Recorder):
    pass


class Producer(_Recorder):
    pass


class Consumer(_Recorder):
    pass


async def test_the_admin_client_the_producer_and_every_consumer_get_the_same_security(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka, "AIOKafkaAdminClient", Admin)
    monkeypatch.setattr(kafka, "AIOKafkaProducer", Producer)
    monkeypatch.setattr(kafka, "AIOKafkaConsumer", Consumer)
    _Recorder.made = []
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "kassa", PASSWORD)
    bus = KafkaBus("b-1.example:9096", security=security)
    await bus.connect()
    await bus.subscribe("webhooks")
    await bus.subscribe("notifications")
    assert [name for name, _ in _Recorder.made] == ["Admin", "Producer", "Consumer", "Consumer"]
    contexts = {id(kwargs["ssl_context"]) for _, kwargs in _Recorder.made}
    assert len(contexts) == 1, "one SSL context, built once, for every client"
    for _, kwargs in _Recorder.made:
        assert kwargs["bootstrap_servers"] == "b-1.example:9096"
        assert (kwargs["security_protocol"], kwargs["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-256")
        assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("kassa", PASSWORD)
    await bus.close()


class _Created:
    def __init__(self, topic_errors: list[tuple[Any, ...]]) -> None:
        self.topic_errors = topic_errors


class EmptyAdmin(Admin):
    """A cluster without the events topic: records what kassa asks to create, answers `answer`."""

    created: ClassVar[list[Any]] = []
    answer: ClassVar[list[tuple[Any, ...]]] = []

    async def list_topics(self) -> list[str]:
        return []

    async def create_topics(self, topics: list[Any]) -> _Created:
        self.created.extend(topics)
        return _Created(self.answer)


@pytest.mark.parametrize("factor", [None, "3"])
async def test_kassa_creates_the_events_topic_with_the_configured_replication_factor(
    monkeypatch: pytest.MonkeyPatch, factor: str | None
) -> None:
    env = {} if factor is None else {"REPLICATION_FACTOR": factor}
    settings = _settings(monkeypatch, **env)
    monkeypatch.setattr(kafka, "AIOKafkaAdminClient", EmptyAdmin)
    monkeypatch.setattr(kafka, "AIOKafkaProducer", Producer)
    EmptyAdmin.created, EmptyAdmin.answer = [], [(kafka.TOPIC, 0, None)]
    bus = create_bus(settings)
    await bus.connect()
    (topic,) = EmptyAdmin.created
    assert (topic.name, topic.replication_factor) == (kafka.TOPIC, int(factor or 1))
    await bus.close()


async def test_a_topic_the_broker_refuses_to_create_stops_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "AIOKafkaAdminClient", EmptyAdmin)
    monkeypatch.setattr(kafka, "AIOKafkaProducer", Producer)
    EmptyAdmin.created, EmptyAdmin.answer = [], [(kafka.TOPIC, 38, "Replication factor: 3 larger than brokers: 1")]
    with pytest.raises(EventBusUnavailable, match="error 38 Replication factor"):
        await KafkaBus("b-1.example:9092", replication_factor=3).connect()


@pytest.mark.parametrize("value", ["0", "8"])
def test_a_replication_factor_out_of_bounds_stops_the_start(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    with pytest.raises(ValueError, match="KASSA_KAFKA_REPLICATION_FACTOR"):
        _settings(monkeypatch, REPLICATION_FACTOR=value)
