"""Faust's broker credentials from the Kafka security settings (``pipeline.kafka_security``).

faust-streaming 0.15 hands ``broker_credentials`` to every aiokafka client it makes (consumer,
producer, the client consumer) through ``credentials_to_aiokafka_auth``: ``SSLCredentials``
becomes ``security_protocol=SSL`` with its context, ``SASLCredentials`` becomes
``SASL_PLAINTEXT`` (or ``SASL_SSL`` when it carries a context) with mechanism, user name and
password: the same arguments the kafka-python clients get.
"""

from __future__ import annotations

import faust
from faust.types.auth import CredentialsT

from pipeline.kafka_security import KafkaSecurity


def faust_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """``broker_credentials`` for ``faust.App`` (None = PLAINTEXT)."""
    if security.sasl:
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password,
            ssl_context=security.ssl_context if security.tls else None,
            mechanism=security.sasl_mechanism,
        )
    if security.tls:
        return faust.SSLCredentials(security.ssl_context)
    return None
