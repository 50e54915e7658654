"""Kafka security settings: combinations checked at start, files checked when read, and the
same TLS / SASL arguments reaching every Kafka client constructor; unknown TEILHABE_*
variables refused with the closest valid name."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka.errors import SaslAuthenticationFailedError, UnsupportedSaslMechanismError

from pipeline.envcheck import NOT_SETTINGS
from pipeline.errors import ConfigError
from pipeline.kafka_security import kafka_security
from pipeline.ops.preflight import preflight, sasl_error
from pipeline.settings import load_settings, setting_names
from tests.sasl_broker import SaslBroker
from tests.tls_terminator import TlsTerminator

PASSWORD = "scram-password-from-the-file"
UNREACHABLE = "127.0.0.1:9"  # discard port: the preflight leaves it to the clients


pytestmark = pytest.mark.usefixtures("clean_teilhabe_env")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A CA, a client certificate with its owner-only key, an owner-only password file."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client = ca.issue_cert("client.teilhabe.test")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    (tmp_path / "password").write_text(PASSWORD + "\n")
    for name in ("client.key", "password"):
        os.chmod(tmp_path / name, 0o600)
    return {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "client.pem",
        "key": tmp_path / "client.key",
        "password": tmp_path / "password",
    }


def sasl_ssl(files: dict[str, Path], **values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "kafka_bootstrap": UNREACHABLE,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_ssl_cafile": files["ca"],
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "teilhabe",
        "kafka_sasl_password_file": files["password"],
    }
    base.update(values)
    return base


# --- combinations and files --------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "TEILHABE_KAFKA_SASL_MECHANISM"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN"},
            "TEILHABE_KAFKA_SASL_USERNAME",
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "u",
            },
            "TEILHABE_KAFKA_SASL_PASSWORD_FILE",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "c.pem"},
            "TEILHABE_KAFKA_SSL_KEYFILE",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "c.key"},
            "TEILHABE_KAFKA_SSL_CERTFILE",
        ),
        ({"kafka_ssl_cafile": "ca.pem"}, "TEILHABE_KAFKA_SSL_CAFILE"),
        (
            {"kafka_security_protocol": "SSL", "kafka_sasl_username": "u"},
            "TEILHABE_KAFKA_SASL_USERNAME",
        ),
    ],
)
def test_combinations_that_cannot_work_name_the_variable(
    values: dict[str, object], variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(kafka_bootstrap="kafka:9093", **values)


def test_security_needs_a_configured_broker() -> None:
    with pytest.raises(ConfigError, match="needs TEILHABE_KAFKA_BOOTSTRAP"):
        load_settings(kafka_security_protocol="SSL")


def test_unknown_protocol_and_mechanism_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEILHABE_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ConfigError, match="TEILHABE_KAFKA_SECURITY_PROTOCOL"):
        load_settings()
    monkeypatch.setenv("TEILHABE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TEILHABE_KAFKA_SASL_MECHANISM", "GSSAPI")
    with pytest.raises(ConfigError, match="TEILHABE_KAFKA_SASL_MECHANISM"):
        load_settings()


def test_password_file_readable_by_others_is_refused(files: dict[str, Path]) -> None:
    os.chmod(files["password"], 0o644)
    settings = load_settings(**sasl_ssl(files))
    with pytest.raises(ConfigError, match="TEILHABE_KAFKA_SASL_PASSWORD_FILE.*0o644.*chmod 600"):
        kafka_security(settings)


def test_client_key_readable_by_others_is_refused(files: dict[str, Path]) -> None:
    os.chmod(files["key"], 0o640)
    settings = load_settings(
        **sasl_ssl(files, kafka_ssl_certfile=files["cert"], kafka_ssl_keyfile=files["key"])
    )
    with pytest.raises(ConfigError, match="TEILHABE_KAFKA_SSL_KEYFILE"):
        kafka_security(settings)


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("kafka_ssl_cafile", "TEILHABE_KAFKA_SSL_CAFILE"),
        ("kafka_ssl_certfile", "TEILHABE_KAFKA_SSL_CERTFILE"),
        ("kafka_ssl_keyfile", "TEILHABE_KAFKA_SSL_KEYFILE"),
        ("kafka_sasl_password_file", "TEILHABE_KAFKA_SASL_PASSWORD_FILE"),
    ],
)
def test_missing_files_name_their_variable(
    files: dict[str, Path], tmp_path: Path, field: str, variable: str
) -> None:
    values = sasl_ssl(files, kafka_ssl_certfile=files["cert"], kafka_ssl_keyfile=files["key"])
    values[field] = tmp_path / "missing.pem"
    settings = load_settings(**values)
    with pytest.raises(ConfigError, match=f"{variable}.*does not exist"):
        kafka_security(settings)


def test_a_ca_file_without_a_certificate_is_refused(files: dict[str, Path]) -> None:
    files["ca"].write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="TEILHABE_KAFKA_SSL_CAFILE"):
        kafka_security(load_settings(**sasl_ssl(files)))


def test_plaintext_is_the_default_and_passes_nothing_else() -> None:
    security = kafka_security(load_settings())
    assert security.client_kwargs() == {"security_protocol": "PLAINTEXT"}


# --- every client gets the same arguments --------------------------------------------------


def check_security(kwargs: dict[str, Any], ca_subject: object) -> None:
    """The arguments of a SASL_SSL + SCRAM client with our CA and password."""
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "teilhabe"
    assert kwargs["sasl_plain_password"] == PASSWORD  # read from the file, stripped
    ctx = kwargs["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in ctx.get_ca_certs()] == [ca_subject]  # only our CA


class Recorder:
    """Stands in for a client class: records its keyword arguments, then stops the caller."""

    calls: list[dict[str, Any]]

    def __init__(self) -> None:
        self.calls = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        raise StopIteration  # the test needs the arguments only


@pytest.fixture
def settings_and_ca(files: dict[str, Path]) -> tuple[Any, object]:
    settings = load_settings(**sasl_ssl(files))
    ctx = ssl.create_default_context(cafile=str(files["ca"]))
    return settings, ctx.get_ca_certs()[0]["subject"]


def test_producer_gets_the_security_arguments(
    monkeypatch: pytest.MonkeyPatch, settings_and_ca: tuple[Any, object]
) -> None:
    from pipeline.sources import producer

    settings, ca = settings_and_ca
    record = Recorder()
    monkeypatch.setattr(producer, "KafkaProducer", record)
    with pytest.raises(StopIteration):
        producer.producer_for(settings)
    check_security(record.calls[0], ca)
    assert record.calls[0]["bootstrap_servers"] == UNREACHABLE


def test_admin_client_of_the_topic_creation_gets_them(
    monkeypatch: pytest.MonkeyPatch, settings_and_ca: tuple[Any, object]
) -> None:
    from pipeline.ops import topics

    settings, ca = settings_and_ca
    record = Recorder()
    monkeypatch.setattr(topics, "KafkaAdminClient", record)
    with pytest.raises(StopIteration):
        topics.ensure_topics(settings.kafka_bootstrap, settings)
    check_security(record.calls[0], ca)


def test_progress_and_pacer_clients_of_the_dev_stack_get_them(
    monkeypatch: pytest.MonkeyPatch, settings_and_ca: tuple[Any, object]
) -> None:
    from pipeline.dev import devstack

    settings, ca = settings_and_ca
    admin, consumer = Recorder(), Recorder()
    monkeypatch.setattr(devstack, "KafkaAdminClient", admin)
    monkeypatch.setattr(devstack, "KafkaConsumer", consumer)
    with pytest.raises(StopIteration):
        devstack.consumed_fraction(settings.kafka_bootstrap, settings)
    check_security(admin.calls[0], ca)
    monkeypatch.setattr(devstack, "KafkaAdminClient", lambda **kw: consumer(**kw))
    with pytest.raises(StopIteration):
        devstack.Pacer(settings.kafka_bootstrap, settings, 10).committed()
    check_security(consumer.calls[0], ca)  # Pacer's admin client, recorded by ``consumer``
    monkeypatch.setattr(devstack, "KafkaAdminClient", lambda **kw: object())
    with pytest.raises(StopIteration):
        devstack.consumed_fraction(settings.kafka_bootstrap, settings)
    check_security(consumer.calls[1], ca)  # the progress consumer


def test_faust_app_hands_them_to_aiokafka(
    settings_and_ca: tuple[Any, object], files: dict[str, Path], tmp_path: Path
) -> None:
    from agents.app import create_app
    from pipeline.ops.exporter import PipelineMetrics

    _, ca = settings_and_ca
    settings = load_settings(**sasl_ssl(files), pseudonym_key="k" * 32, data_dir=tmp_path)
    rt = create_app(settings, settings.kafka_bootstrap, PipelineMetrics.create())
    conf = rt.app.conf
    # what faust-streaming passes to every aiokafka consumer and producer it creates
    auth = dict(credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context))
    check_security(auth, ca)
    producer_auth = rt.app.producer._settings_auth()  # type: ignore[attr-defined]
    check_security(dict(producer_auth), ca)


def test_faust_app_with_tls_only(files: dict[str, Path], tmp_path: Path) -> None:
    from agents.app import create_app
    from pipeline.ops.exporter import PipelineMetrics

    settings = load_settings(
        kafka_bootstrap=UNREACHABLE,
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=files["ca"],
        kafka_ssl_certfile=files["cert"],
        kafka_ssl_keyfile=files["key"],
        pseudonym_key="k" * 32,
        data_dir=tmp_path,
    )
    rt = create_app(settings, settings.kafka_bootstrap, PipelineMetrics.create())
    auth = credentials_to_aiokafka_auth(rt.app.conf.broker_credentials, None)
    assert auth["security_protocol"] == "SSL"
    assert auth["ssl_context"].check_hostname
    assert "sasl_mechanism" not in auth


def sasl_settings(files: dict[str, Path], port: int, mechanism: str, **values: object) -> Any:
    base = sasl_ssl(
        files,
        kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_ssl_cafile=None,
        kafka_sasl_mechanism=mechanism,
    )
    base.update(values)
    return load_settings(**base)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_preflight_logs_in_with_the_password_from_the_file(
    files: dict[str, Path], mechanism: str
) -> None:
    with SaslBroker({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}, "teilhabe", PASSWORD) as b:
        settings = sasl_settings(files, b.port, mechanism)
        preflight(settings.kafka_bootstrap, settings)
    assert b.logins == [mechanism]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_a_wrong_password_names_the_sasl_settings(files: dict[str, Path], mechanism: str) -> None:
    with SaslBroker({"PLAIN", "SCRAM-SHA-512"}, "teilhabe", "another-password") as b:
        settings = sasl_settings(files, b.port, mechanism)
        with pytest.raises(ConfigError) as err:
            preflight(settings.kafka_bootstrap, settings)
    message = str(err.value)
    assert f"SASL authentication with 127.0.0.1:{b.port} failed" in message
    assert "Invalid username or password" in message  # the broker's own reason
    assert "TEILHABE_KAFKA_SASL_PASSWORD_FILE" in message and "'teilhabe'" in message
    assert PASSWORD not in message and not b.logins


def test_a_mechanism_the_broker_does_not_offer_names_the_mechanism_setting(
    files: dict[str, Path],
) -> None:
    with SaslBroker({"PLAIN"}, "teilhabe", PASSWORD) as b:
        settings = sasl_settings(files, b.port, "SCRAM-SHA-256")
        with pytest.raises(ConfigError, match="offers PLAIN, not SCRAM-SHA-256.*_SASL_MECHANISM"):
            preflight(settings.kafka_bootstrap, settings)


def test_sasl_over_tls_logs_in_through_the_tls_context(files: dict[str, Path]) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(files["ca"]))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    with (
        SaslBroker({"SCRAM-SHA-512"}, "teilhabe", PASSWORD) as b,
        TlsTerminator(server, b.port) as tls,
    ):
        settings = sasl_settings(
            files,
            tls.port,
            "SCRAM-SHA-512",
            kafka_security_protocol="SASL_SSL",
            kafka_ssl_cafile=files["ca"],
        )
        preflight(settings.kafka_bootstrap, settings)
        assert b.logins == ["SCRAM-SHA-512"] and tls.connections == 1
        wrong = sasl_settings(
            files,
            b.port,
            "SCRAM-SHA-512",
            kafka_security_protocol="SASL_SSL",
            kafka_ssl_cafile=files["ca"],
        )  # TLS to the port without TLS
        with pytest.raises(ConfigError, match="TEILHABE_KAFKA_SECURITY_PROTOCOL"):
            preflight(wrong.kafka_bootstrap, wrong, timeout_s=2.0)


def test_client_sasl_errors_name_the_sasl_settings(settings_and_ca: tuple[Any, object]) -> None:
    settings, _ = settings_and_ca
    security = kafka_security(settings)
    refused = sasl_error("k:9093", security, SaslAuthenticationFailedError("bad"))
    assert refused is not None and "TEILHABE_KAFKA_SASL_PASSWORD_FILE" in str(refused)
    unsupported = sasl_error("k:9093", security, UnsupportedSaslMechanismError("PLAIN only"))
    assert unsupported is not None and "TEILHABE_KAFKA_SASL_MECHANISM" in str(unsupported)
    assert sasl_error("k:9093", security, TimeoutError()) is None


def test_the_password_never_shows(settings_and_ca: tuple[Any, object]) -> None:
    settings, _ = settings_and_ca
    security = kafka_security(settings)
    assert PASSWORD not in repr(security) and PASSWORD not in str(settings.model_dump())


# --- unknown variables ---------------------------------------------------------------------


def test_unknown_variable_is_refused_with_the_closest_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEILHABE_KAFKA_BOOTSRAP", "kafka:9092")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == (
        "unknown setting TEILHABE_KAFKA_BOOTSRAP; did you mean TEILHABE_KAFKA_BOOTSTRAP?"
    )


def test_unknown_variable_in_the_env_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "COMPOSE_PROJECT_NAME=teilhabe\nTEILHABE_MIN_GROUP_SIZ=3\nTEILHABE_WINDOW_S=60\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "unknown setting TEILHABE_MIN_GROUP_SIZ in .env" in str(err.value)
    assert "did you mean TEILHABE_MIN_GROUP_SIZE?" in str(err.value)


def test_a_name_far_from_any_setting_points_to_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEILHABE_XYZZY", "1")
    with pytest.raises(ConfigError, match="TEILHABE_XYZZY; `teilhabe config --markdown`"):
        load_settings()


def test_every_setting_and_the_allow_list_are_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("TEILHABE_WINDOW_S=120\nOTHER_TOOL=1\n")
    for name in NOT_SETTINGS:
        monkeypatch.setenv(name, "1" if name != "TEILHABE_ENV_FILE" else ".env")
    monkeypatch.setenv("TEILHABE_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("teilhabe_min_group_size", "7")  # read case-insensitively
    settings = load_settings()
    assert settings.window_s == 120 and settings.min_group_size == 7
    assert "TEILHABE_KAFKA_SASL_PASSWORD_FILE" in setting_names()
