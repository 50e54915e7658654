"""Settings: defaults, environment, and errors that name the variable."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings, write_key_file


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("TEILHABE_"):
            monkeypatch.delenv(key)


def test_defaults_mean_embedded_everything() -> None:
    s = load_settings()
    assert s.embedded_broker and s.embedded_clickhouse and s.min_group_size == 5
    assert s.session_timeout_s == 6.0  # short group timeouts on the embedded broker
    assert s.metrics_host == "127.0.0.1"


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEILHABE_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("TEILHABE_MIN_GROUP_SIZE", "7")
    s = load_settings()
    assert not s.embedded_broker and s.min_group_size == 7 and s.session_timeout_s == 30.0


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TEILHABE_MIN_GROUP_SIZE", "0"),
        ("TEILHABE_WINDOW_S", "soon"),
        ("TEILHABE_CLICKHOUSE_DSN", "mysql://x"),
        ("TEILHABE_LOG_LEVEL", "CHATTY"),
        ("TEILHABE_IDLE_CLOSE_MODE", "never"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert var in str(err.value) and value in str(err.value)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe/Berlin'; DROP TABLE x; --", "../etc"])
def test_unknown_time_zone_stops_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, zone: str
) -> None:
    monkeypatch.setenv("TEILHABE_TIMEZONE", zone)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "TEILHABE_TIMEZONE" in str(err.value) and "IANA" in str(err.value)


def test_time_zone_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().timezone == "UTC"
    monkeypatch.setenv("TEILHABE_TIMEZONE", "Europe/Berlin")
    assert load_settings().timezone == "Europe/Berlin"


def test_worker_refuses_to_start_without_a_key_outside_the_demo(tmp_path: Path) -> None:
    # a data dir without pseudonym.key (./var may hold the demo's)
    with pytest.raises(ConfigError, match="TEILHABE_PSEUDONYM_KEY_FILE"):
        load_settings(data_dir=tmp_path).read_pseudonym_key()


def test_demo_creates_an_owner_only_key(tmp_path: Path) -> None:
    s = load_settings(demo=True, data_dir=tmp_path)
    key = s.read_pseudonym_key()
    assert len(key) >= 32 and key == s.read_pseudonym_key()
    mode = (tmp_path / "pseudonym.key").stat().st_mode
    assert not mode & (stat.S_IRWXG | stat.S_IRWXO)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    write_key_file(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_settings(pseudonym_key_file=path).read_pseudonym_key()


def test_secrets_are_hidden_when_dumped() -> None:
    s = load_settings(pseudonym_key="super-secret-key-material", clickhouse_password="pw-123")
    dumped = repr(s) + str(s.model_dump())
    assert "super-secret-key-material" not in dumped and "pw-123" not in dumped
