"""TLS and SASL for the Kafka adapter: what reaches aiokafka, checked once at start.

Settings (README): KASSA_KAFKA_SECURITY_PROTOCOL (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL;
default PLAINTEXT), KASSA_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512),
KASSA_KAFKA_USERNAME, KASSA_KAFKA_PASSWORD and KASSA_KAFKA_CA_FILE (a PEM bundle of the CAs that
sign the brokers' certificates; without it, the system's CAs). Amazon MSK with SASL/SCRAM is
SASL_SSL + SCRAM-SHA-512 on port 9096, its certificates signed by a public CA.

Every combination that would silently do less than asked is refused at start: credentials or a
mechanism without a SASL protocol, a SASL protocol without them, a CA file without TLS, a CA file
that cannot be read. TLS always verifies the broker's certificate and host name (aiokafka's
`create_ssl_context` does not allow otherwise). The password goes to aiokafka and nowhere else:
not into `repr`, `describe()` (what the logs show) or any error message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, cast, get_args

from aiokafka.helpers import create_ssl_context

if TYPE_CHECKING:
    from pathlib import Path

    from kassa.settings import Settings

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
PROTOCOLS: Final[tuple[str, ...]] = get_args(SecurityProtocol)
# GSSAPI and OAUTHBEARER need more than a user and a password (a keytab, a token provider).
MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSecurityInvalid(ValueError):
    """The KASSA_KAFKA_* security settings do not make sense together; raised at start."""


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        """Raises KafkaSecurityInvalid."""
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityInvalid(
                f"KASSA_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}"
            )
        if self.sasl:
            self._check_sasl()
        elif self.sasl_mechanism or self.username or self.password:
            raise KafkaSecurityInvalid(
                "KASSA_KAFKA_SASL_MECHANISM, KASSA_KAFKA_USERNAME and KASSA_KAFKA_PASSWORD need"
                f" KASSA_KAFKA_SECURITY_PROTOCOL SASL_SSL or SASL_PLAINTEXT, not {self.protocol}"
            )
        if self.ca_file is not None:
            if not self.tls:
                raise KafkaSecurityInvalid(
                    f"KASSA_KAFKA_CA_FILE needs KASSA_KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL, not {self.protocol}"
                )
            try:
                create_ssl_context(cafile=str(self.ca_file))
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise KafkaSecurityInvalid(f"KASSA_KAFKA_CA_FILE {self.ca_file} holds no usable CA: {exc}") from None

    def _check_sasl(self) -> None:
        if self.sasl_mechanism not in MECHANISMS:
            raise KafkaSecurityInvalid(
                f"KASSA_KAFKA_SASL_MECHANISM must be one of {', '.join(MECHANISMS)} with {self.protocol},"
                f" not {self.sasl_mechanism!r}"
            )
        if not self.username or not self.password:
            raise KafkaSecurityInvalid(f"{self.protocol} needs KASSA_KAFKA_USERNAME and KASSA_KAFKA_PASSWORD")

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        """Raises KafkaSecurityInvalid."""
        protocol = (settings.kafka_security_protocol or "PLAINTEXT").strip().upper()
        mechanism = settings.kafka_sasl_mechanism.strip().upper() if settings.kafka_sasl_mechanism else None
        return cls(
            protocol=cast("SecurityProtocol", protocol),  # checked in __post_init__
            sasl_mechanism=mechanism,
            username=settings.kafka_username,
            password=settings.kafka_password,
            ca_file=settings.kafka_ca_file,
        )

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def client_kwargs(self) -> dict[str, Any]:
        """The keyword arguments every aiokafka client (admin, producer, consumer) takes."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            # Verifies the broker's chain against the CA file (or the system's CAs) and its name.
            kwargs["ssl_context"] = create_ssl_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.username
            kwargs["sasl_plain_password"] = self.password
        return kwargs

    def describe(self) -> str:
        """For logs and banners: everything but the password."""
        parts: list[str] = [self.protocol]
        if self.sasl:
            parts.append(f"{self.sasl_mechanism} as {self.username!r}")
        if self.tls:
            parts.append(f"CAs from {self.ca_file}" if self.ca_file else "system CAs")
        return ", ".join(parts)
