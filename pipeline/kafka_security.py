"""Kafka security: the ``TEILHABE_KAFKA_SECURITY_*`` / ``_SSL_*`` / ``_SASL_*`` settings turned
into the arguments of every Kafka client (kafka-python producers, admin clients and consumers,
aiokafka inside Faust, the broker probe), so that all of them connect the same way.

One TLS context is built from the settings: the system's CAs or ``TEILHABE_KAFKA_SSL_CAFILE``,
host names always verified, TLS 1.2 at least, a client certificate for mutual TLS. A foundation
module (beside ``pipeline.settings``): the pipeline and the agents both import it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.settings import Settings, read_private_file

TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_SSL_FILES = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
_SASL_FIELDS = ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password_file")


def _var(field: str) -> str:
    return "TEILHABE_" + field.upper()


def check_combination(settings: Settings) -> None:
    """ConfigError (naming the variable) for settings that cannot work together.

    Files are checked when they are read (``kafka_security``), so that commands that do not
    talk to Kafka still run where the files are missing.
    """
    protocol = settings.kafka_security_protocol
    if protocol != "PLAINTEXT" and settings.embedded_broker:
        raise ConfigError(
            f"TEILHABE_KAFKA_SECURITY_PROTOCOL={protocol} needs TEILHABE_KAFKA_BOOTSTRAP: the "
            "embedded broker speaks PLAINTEXT only"
        )
    if protocol not in TLS_PROTOCOLS:
        for field in _SSL_FILES:
            if getattr(settings, field) is not None:
                raise ConfigError(
                    f"{_var(field)} is set, but TEILHABE_KAFKA_SECURITY_PROTOCOL={protocol} "
                    "does not use TLS: set it to SSL or SASL_SSL"
                )
    if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
        given, missing = (
            ("TEILHABE_KAFKA_SSL_CERTFILE", "TEILHABE_KAFKA_SSL_KEYFILE")
            if settings.kafka_ssl_keyfile is None
            else ("TEILHABE_KAFKA_SSL_KEYFILE", "TEILHABE_KAFKA_SSL_CERTFILE")
        )
        raise ConfigError(f"{given} is set without {missing}: mutual TLS needs both")
    if protocol in SASL_PROTOCOLS:
        for field in _SASL_FIELDS:
            if not getattr(settings, field):
                raise ConfigError(
                    f"TEILHABE_KAFKA_SECURITY_PROTOCOL={protocol} needs {_var(field)}"
                    + (" (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)" if "mechanism" in field else "")
                )
    else:
        for field in _SASL_FIELDS:
            if getattr(settings, field):
                raise ConfigError(
                    f"{_var(field)} is set, but TEILHABE_KAFKA_SECURITY_PROTOCOL={protocol} "
                    "does not use SASL: set it to SASL_SSL (or SASL_PLAINTEXT)"
                )


def _existing(path: Path, variable: str) -> str:
    if not path.is_file():
        raise ConfigError(f"{variable}: file {str(path)!r} does not exist")
    return str(path)


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of every Kafka client: host names verified, the CA file (or the system's
    CAs), the client certificate for mutual TLS. ConfigError naming the variable of a missing,
    unreadable or invalid file."""
    cafile = None
    if settings.kafka_ssl_cafile is not None:
        cafile = _existing(settings.kafka_ssl_cafile, "TEILHABE_KAFKA_SSL_CAFILE")
    try:  # with a CA file: only its CAs; without: the system's
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"TEILHABE_KAFKA_SSL_CAFILE: {cafile!r} holds no PEM certificate ({exc})"
        ) from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.kafka_ssl_certfile is not None and settings.kafka_ssl_keyfile is not None:
        certfile = _existing(settings.kafka_ssl_certfile, "TEILHABE_KAFKA_SSL_CERTFILE")
        read_private_file(settings.kafka_ssl_keyfile, "TEILHABE_KAFKA_SSL_KEYFILE")
        try:
            ctx.load_cert_chain(certfile, str(settings.kafka_ssl_keyfile))
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"TEILHABE_KAFKA_SSL_CERTFILE / TEILHABE_KAFKA_SSL_KEYFILE: cannot use "
                f"{certfile!r} with its key ({exc}); both must be PEM, the key unencrypted "
                "and matching the certificate"
            ) from None
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    return ctx


@dataclass(frozen=True)
class KafkaSecurity:
    """How Kafka clients connect; ``client_kwargs`` for kafka-python and aiokafka alike."""

    protocol: str
    ssl_context: ssl.SSLContext | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    client_cert: bool = False  # mutual TLS: the context holds a client certificate

    @property
    def tls(self) -> bool:
        """True when the connection is TLS (SSL, SASL_SSL)."""
        return self.protocol in TLS_PROTOCOLS

    @property
    def sasl(self) -> bool:
        """True when the client authenticates with SASL."""
        return self.protocol in SASL_PROTOCOLS

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of a kafka-python or aiokafka client (same names in both)."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.ssl_context is not None:
            kwargs["ssl_context"] = self.ssl_context
        if self.sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs

    def __repr__(self) -> str:  # never the password
        return (
            f"KafkaSecurity(protocol={self.protocol!r}, tls={self.tls}, "
            f"sasl_mechanism={self.sasl_mechanism!r}, sasl_username={self.sasl_username!r})"
        )


PLAINTEXT = KafkaSecurity("PLAINTEXT")


def kafka_security(settings: Settings) -> KafkaSecurity:
    """The security of ``settings``' Kafka clients, its files read and checked now
    (ConfigError naming the variable: missing file, password file readable by others...)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return PLAINTEXT
    ctx = ssl_context(settings) if protocol in TLS_PROTOCOLS else None
    client_cert = ctx is not None and settings.kafka_ssl_certfile is not None
    if protocol not in SASL_PROTOCOLS:
        return KafkaSecurity(protocol, ctx, client_cert=client_cert)
    assert settings.kafka_sasl_password_file is not None  # check_combination
    password = read_private_file(
        settings.kafka_sasl_password_file, "TEILHABE_KAFKA_SASL_PASSWORD_FILE"
    ).decode()
    if not password:
        raise ConfigError(
            f"TEILHABE_KAFKA_SASL_PASSWORD_FILE: {str(settings.kafka_sasl_password_file)!r} "
            "is empty"
        )
    return KafkaSecurity(
        protocol,
        ctx,
        settings.kafka_sasl_mechanism,
        settings.kafka_sasl_username,
        password,
        client_cert=client_cert,
    )


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for a kafka-python / aiokafka client of ``settings``."""
    return kafka_security(settings).client_kwargs()
