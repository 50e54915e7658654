"""Security basics: secrets come from the environment or owner-only files, never from a command
line that shows in ``ps``, never in output or logs; /metrics binds to loopback by default.

The worker log of a full run is scanned for raw ids and the key in
``tests/faults/test_hostile_input.py``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from pipeline.cli import main as cli
from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.dev.clickhouse import EmbeddedClickHouse
from pipeline.dev.devstack import DevStack
from pipeline.errors import ConfigError
from pipeline.ops.exporter import PipelineMetrics
from pipeline.settings import load_settings, write_key_file

KEY = "key-material-that-must-stay-secret-0123"
PASSWORD = "clickhouse-password-never-shown"
SECRET_NAME = re.compile(r"pass|secret|token|key|credential|auth|dsn", re.IGNORECASE)


pytestmark = pytest.mark.usefixtures("clean_teilhabe_env")


def value_options(command: Any, path: str = "teilhabe") -> list[tuple[str, Any]]:
    """(command path, parameter) of every option or argument that takes a value, in the whole
    command tree (typer ships its own click: duck-typed, not ``isinstance``)."""
    found: list[tuple[str, Any]] = []
    for param in command.params:
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue
        found.append((path, param))
    for name, sub in getattr(command, "commands", {}).items():
        found += value_options(sub, f"{path} {name}")
    return found


def secret_options(command: Any) -> list[str]:
    """Options/arguments whose name says they take a secret (a ``*_file`` path is fine)."""
    out = []
    for path, param in value_options(command):
        names = [param.name or "", *param.opts, *param.secondary_opts]
        if param.name and param.name.endswith("_file"):
            continue
        if any(SECRET_NAME.search(n) for n in names):
            out.append(f"{path} {'/'.join(param.opts) or param.name}")
    return out


def test_no_command_line_option_takes_a_secret() -> None:
    root = get_command(cli.app)
    commands = set(getattr(root, "commands", {}))
    assert {"worker", "demo", "produce", "backfill", "generate", "query", "keygen"} <= commands
    assert len(value_options(root)) >= 15  # the walk sees the real options
    assert secret_options(root) == []


def test_the_option_check_finds_a_secret_option() -> None:
    """The check above would notice an option that takes a password, token or key."""
    app = typer.Typer()

    @app.command()
    def connect(
        password: Annotated[str, typer.Option()] = "",
        api_token: Annotated[str, typer.Option("--api-token")] = "",
        pseudonym_key_file: Annotated[Path | None, typer.Option()] = None,
        verbose: Annotated[bool, typer.Option()] = False,
    ) -> None:
        """Example."""

    @app.command()
    def other(key: Annotated[str, typer.Argument()]) -> None:
        """Example."""

    assert sorted(secret_options(get_command(app))) == [
        "teilhabe connect --api-token",
        "teilhabe connect --password",
        "teilhabe other key",
    ]


def test_workers_get_secrets_through_the_environment_not_the_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What ``ps`` shows of the processes the stack starts: no key, no password."""
    monkeypatch.setenv("TEILHABE_PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("TEILHABE_CLICKHOUSE_PASSWORD", PASSWORD)
    settings = load_settings(data_dir=tmp_path / "var")
    launched: list[tuple[list[str], dict[str, str]]] = []

    class LaunchedError(Exception):
        """Raised instead of starting a process: nothing runs, nothing to stop."""

    def record(args: list[str], env: dict[str, str] | None = None, **_: Any) -> None:
        launched.append((list(args), dict(env if env is not None else os.environ)))
        raise LaunchedError

    monkeypatch.setattr(subprocess, "Popen", record)
    stack = DevStack(settings)
    stack.log_dir.mkdir(parents=True)
    stack.bootstrap = "127.0.0.1:9"
    with pytest.raises(LaunchedError):
        stack.start_worker()
    with pytest.raises(LaunchedError):
        EmbeddedClickHouse(settings).start()
    assert len(launched) == 2
    for argv, _env in launched:
        shown = " ".join(argv)
        assert KEY not in shown and PASSWORD not in shown, shown
    assert launched[0][1]["TEILHABE_PSEUDONYM_KEY"] == KEY  # the worker still gets it


def test_metrics_bind_to_loopback_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    host = load_settings().metrics_host
    assert ipaddress.ip_address(host).is_loopback
    port = PipelineMetrics.create().serve(host, 0)
    listening = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # LISTEN
            listening.append(ipaddress.IPv4Address(bytes.fromhex(addr)[::-1]))
    assert listening and all(a.is_loopback for a in listening), listening
    monkeypatch.setenv("TEILHABE_METRICS_HOST", "0.0.0.0")
    assert load_settings().metrics_host == "0.0.0.0"  # exposing it is a deliberate setting


def test_key_and_password_never_in_dumps_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key_file = tmp_path / "pseudonym.key"
    write_key_file(key_file)
    file_key = key_file.read_text()
    pw_file = tmp_path / "ch.password"
    pw_file.write_text(PASSWORD + "-from-file\n")
    pw_file.chmod(0o600)
    shown: list[str] = []
    for s in (
        load_settings(pseudonym_key=KEY, clickhouse_password=PASSWORD),
        load_settings(pseudonym_key_file=key_file, clickhouse_password_file=pw_file),
    ):
        assert s.read_pseudonym_key() in (KEY.encode(), file_key.encode())
        assert s.read_clickhouse_password() in (PASSWORD, PASSWORD + "-from-file")
        Pseudonymiser(s.read_pseudonym_key())("anna@example.org")
        shown += [repr(s), str(s), str(s.model_dump()), s.model_dump_json()]
    with pytest.raises(ConfigError) as short:
        load_settings(pseudonym_key="short-secret").read_pseudonym_key()
    key_file.chmod(0o640)
    with pytest.raises(ConfigError) as readable:
        load_settings(pseudonym_key_file=key_file).read_pseudonym_key()
    shown += [str(short.value), str(readable.value), caplog.text]
    for text in shown:
        for secret in (KEY, file_key, PASSWORD, "short-secret"):
            assert secret not in text, text


def test_config_command_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEILHABE_PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("TEILHABE_CLICKHOUSE_PASSWORD", PASSWORD)
    out = CliRunner().invoke(cli.app, ["config"])
    assert out.exit_code == 0, out.output
    assert (
        "TEILHABE_PSEUDONYM_KEY=" in out.output and "TEILHABE_METRICS_HOST=127.0.0.1" in out.output
    )
    assert KEY not in out.output and PASSWORD not in out.output


def test_password_inside_the_dsn_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEILHABE_CLICKHOUSE_DSN", f"http://writer:{PASSWORD}@ch.internal:8123/db")
    out = CliRunner().invoke(cli.app, ["config"])
    assert out.exit_code != 0 and PASSWORD not in out.output
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert PASSWORD not in str(err.value)
    assert "TEILHABE_CLICKHOUSE_PASSWORD" in str(err.value)


def test_pseudonyms_are_the_keyed_hmac_also_past_the_cache_bound() -> None:
    import hashlib
    import hmac

    key = b"k" * 32
    p = Pseudonymiser(key, cache_size=3)  # a tiny cache: emptied several times below
    ids = [f"person-{i % 7}@example.org" for i in range(50)] + ["J\u00fcrgen", "\ud800x"]
    for raw in ids:
        expected = hmac.new(key, raw.encode("utf-8", "surrogatepass"), hashlib.sha256)
        assert p(raw) == expected.hexdigest()[:32]
    assert len(p._cache) <= 3
