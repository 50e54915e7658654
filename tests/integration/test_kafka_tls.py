"""Kafka over TLS only: the embedded broker behind a TLS terminator that requires a client
certificate (mutual TLS), its metadata advertising the TLS port, so every Kafka client of the
pipeline (producer, admin, consumers, the Faust workers, the broker probe) must speak TLS to
get anywhere. A backfill over it gives the oracle's figures; a wrong CA, a missing client
certificate and a PLAINTEXT client end with a message that names the setting to check."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from rich.console import Console

from pipeline.dev.backfill import run_backfill
from pipeline.dev.broker import EmbeddedBroker, free_port
from pipeline.dev.clickhouse import EmbeddedClickHouse
from pipeline.errors import ConfigError
from pipeline.kafka_security import kafka_security
from pipeline.ops.brokerprobe import probe
from pipeline.ops.preflight import preflight
from pipeline.settings import load_settings
from tests.conftest import configure
from tests.faults.harness import (
    GRACE_S,
    WINDOW_S,
    assert_equal_to_oracle,
    make_dataset,
    oracle,
    read_figures,
)
from tests.tls_terminator import TlsTerminator

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class TlsBroker:
    """The TLS-only broker and the files a client needs (and a wrong CA)."""

    bootstrap: str
    cafile: Path
    wrong_cafile: Path
    certfile: Path
    keyfile: Path
    terminator: TlsTerminator

    def security(self, **values: object) -> dict[str, object]:
        """The TEILHABE_KAFKA_* values of a mutual TLS client (overridable)."""
        base: dict[str, object] = {
            "kafka_bootstrap": self.bootstrap,
            "kafka_flavor": "tansu",
            "kafka_security_protocol": "SSL",
            "kafka_ssl_cafile": self.cafile,
            "kafka_ssl_certfile": self.certfile,
            "kafka_ssl_keyfile": self.keyfile,
        }
        base.update(values)
        return base


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    root = tmp_path_factory.mktemp("tls")
    ca, wrong_ca = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    wrong_ca.cert_pem.write_to_path(str(root / "wrong-ca.pem"))
    client = ca.issue_cert("client.teilhabe.test")
    client.cert_chain_pems[0].write_to_path(str(root / "client.pem"))
    client.private_key_pem.write_to_path(str(root / "client.key"))
    os.chmod(root / "client.key", 0o600)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED  # mutual TLS
    tls_port = free_port()
    with (
        EmbeddedBroker(root, advertised_port=tls_port) as broker,
        TlsTerminator(server, broker.port, tls_port) as terminator,
    ):
        yield TlsBroker(
            f"127.0.0.1:{tls_port}",
            root / "ca.pem",
            root / "wrong-ca.pem",
            root / "client.pem",
            root / "client.key",
            terminator,
        )


def test_backfill_over_mutual_tls_equals_the_oracle(tls_broker: TlsBroker, tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", seed=29, days=2)
    mp = pytest.MonkeyPatch()
    try:
        values = tls_broker.security(window_s=WINDOW_S, grace_s=GRACE_S)
        settings = configure(mp, tmp_path, **values)
        before = tls_broker.terminator.connections
        started = time.monotonic()
        summary = run_backfill(
            settings,
            data.events_path,
            data.directory_path,
            console=Console(quiet=True),
            timeout_s=300,
        )
        seconds = time.monotonic() - started
        with EmbeddedClickHouse(settings):
            actual = read_figures(settings)
    finally:
        mp.undo()
    expected = oracle(data.events, data.units)
    print(
        f"\nbackfill over mutual TLS: {summary['events']} events, {len(actual.windows)} windows "
        f"in {seconds:.1f} s; oracle: {expected.facts} events, {len(expected.windows)} windows; "
        f"{tls_broker.terminator.connections - before} TLS sessions"
    )
    assert_equal_to_oracle(expected, actual)
    assert expected.total_events() > 1000
    # producer, admin, pacer, progress consumer and the worker's aiokafka clients all went
    # through the terminator (the broker advertises nothing else)
    assert tls_broker.terminator.connections - before >= 5


def test_wrong_ca_ends_the_backfill_with_a_message_naming_the_ca_setting(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e1"}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEILHABE_")}
    values = tls_broker.security(kafka_ssl_cafile=tls_broker.wrong_cafile)
    env.update({f"TEILHABE_{k.upper()}": str(v) for k, v in values.items()})
    env.update(
        TEILHABE_DATA_DIR=str(tmp_path / "var"),
        TEILHABE_CLICKHOUSE_DSN=f"chdb://{tmp_path / 'var' / 'clickhouse'}",
        TEILHABE_PSEUDONYM_KEY="teilhabe-test-key-0123456789abcdef",
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "backfill", str(events)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.monotonic() - started
    print(f"\nwrong CA: exit {done.returncode} after {seconds:.1f} s: {done.stderr.strip()}")
    assert done.returncode == 1
    assert f"TLS handshake with {tls_broker.bootstrap} failed" in done.stderr
    assert "certificate verify failed" in done.stderr
    assert "TEILHABE_KAFKA_SSL_CAFILE" in done.stderr
    assert "KafkaTimeoutError" not in done.stderr and "Traceback" not in done.stderr


def test_missing_client_certificate_names_the_certificate_settings(
    tls_broker: TlsBroker,
) -> None:
    settings = load_settings(**tls_broker.security(kafka_ssl_certfile=None, kafka_ssl_keyfile=None))
    with pytest.raises(ConfigError) as err:
        preflight(settings.kafka_bootstrap, settings)
    assert "client certificate" in str(err.value)
    assert "TEILHABE_KAFKA_SSL_CERTFILE" in str(err.value)


def test_client_certificate_of_another_ca_is_refused_naming_the_certificate_settings(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    stranger = trustme.CA().issue_cert("stranger.teilhabe.test")
    stranger.cert_chain_pems[0].write_to_path(str(tmp_path / "stranger.pem"))
    stranger.private_key_pem.write_to_path(str(tmp_path / "stranger.key"))
    os.chmod(tmp_path / "stranger.key", 0o600)
    settings = load_settings(
        **tls_broker.security(
            kafka_ssl_certfile=tmp_path / "stranger.pem",
            kafka_ssl_keyfile=tmp_path / "stranger.key",
        )
    )
    with pytest.raises(ConfigError) as err:
        preflight(settings.kafka_bootstrap, settings)
    assert "refuse the client certificate" in str(err.value)
    assert "TEILHABE_KAFKA_SSL_CERTFILE" in str(err.value)


def test_plaintext_client_on_the_tls_port_names_the_protocol_setting(
    tls_broker: TlsBroker,
) -> None:
    settings = load_settings(kafka_bootstrap=tls_broker.bootstrap, kafka_flavor="tansu")
    with pytest.raises(ConfigError, match="TEILHABE_KAFKA_SECURITY_PROTOCOL is PLAINTEXT"):
        preflight(settings.kafka_bootstrap, settings)


def test_broker_probe_speaks_tls(tls_broker: TlsBroker) -> None:
    settings = load_settings(**tls_broker.security())
    security = kafka_security(settings)
    assert asyncio.run(probe(tls_broker.bootstrap, 5.0, security.ssl_context)) > 0
    with pytest.raises((OSError, TimeoutError, asyncio.IncompleteReadError)):
        asyncio.run(probe(tls_broker.bootstrap, 2.0))  # without TLS: no answer
