"""Every ``teilhabe`` command takes ``--data-dir``: a company's import never mixes with the
demo's ``./var`` because no command silently falls back to it."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from pipeline.cli.common import DataDirOption
from pipeline.cli.main import app
from pipeline.errors import ConfigError
from pipeline.settings import load_settings, write_key_file


def leaf_commands(command: Any, path: str = "teilhabe") -> dict[str, Any]:
    """Every runnable command under ``command`` (sub-apps walked), by its full name (typer
    ships its own click: duck-typed, not ``isinstance``)."""
    subs = getattr(command, "commands", None)
    if subs is None:
        return {path: command}
    found: dict[str, Any] = {}
    for name, sub in subs.items():
        found.update(leaf_commands(sub, f"{path} {name}"))
    return found


def without_data_dir(command: Any) -> list[str]:
    """The commands under ``command`` that have no ``--data-dir`` option."""
    return sorted(
        name
        for name, cmd in leaf_commands(command).items()
        if not any("--data-dir" in getattr(p, "opts", ()) for p in cmd.params)
    )


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEILHABE_DATA_DIR", "")  # restored after the test: --data-dir sets it
    for key in list(os.environ):
        if key.startswith("TEILHABE_"):
            monkeypatch.delenv(key)


def test_every_command_takes_data_dir() -> None:
    commands = leaf_commands(get_command(app))
    # the walk reaches the sub-apps' commands too
    assert {"teilhabe import", "teilhabe grafana push", "teilhabe directory import"} <= set(
        commands
    )
    assert len(commands) >= 16
    assert without_data_dir(get_command(app)) == []


def test_the_walk_finds_a_command_without_data_dir() -> None:
    """The check above fails for a command (also in a sub-app) that lacks the option."""
    root = typer.Typer()
    sub = typer.Typer()
    root.add_typer(sub, name="sub")

    @root.command()
    def good(data_dir: DataDirOption = None) -> None:
        """Example."""

    @root.command()
    def bad(out: Annotated[Path | None, typer.Option()] = None) -> None:
        """Example."""

    @sub.command()
    def nested() -> None:
        """Example."""

    assert without_data_dir(get_command(root)) == ["teilhabe bad", "teilhabe sub nested"]


def test_keygen_writes_the_data_dirs_key_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["keygen", "--data-dir", "acme"])
    assert result.exit_code == 0, result.output
    key = tmp_path / "acme" / "pseudonym.key"
    assert not key.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    first = key.read_bytes()
    again = CliRunner().invoke(app, ["keygen", "--data-dir", "acme"])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output
    assert key.read_bytes() == first
    # an explicit path still works as before, and the data dir's key is what settings read
    assert CliRunner().invoke(app, ["keygen", "other.key"]).exit_code == 0
    assert (tmp_path / "other.key").exists() and not (tmp_path / "var").exists()
    assert load_settings(data_dir=tmp_path / "acme").read_pseudonym_key() == first.strip()


def test_the_data_dirs_key_is_used_when_none_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="teilhabe keygen --data-dir"):
        load_settings(data_dir=tmp_path).read_pseudonym_key()
    write_key_file(tmp_path / "pseudonym.key")
    key = load_settings(data_dir=tmp_path).read_pseudonym_key()
    assert key == (tmp_path / "pseudonym.key").read_bytes().strip()
    # a configured key wins over the data dir's
    configured = load_settings(data_dir=tmp_path, pseudonym_key="k" * 32).read_pseudonym_key()
    assert configured == b"k" * 32
    # the data dir's key must be owner-only too
    (tmp_path / "pseudonym.key").chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_settings(data_dir=tmp_path).read_pseudonym_key()


def test_embedded_clickhouse_lives_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    assert load_settings(data_dir=tmp_path / "acme").chdb_path == tmp_path / "acme" / "clickhouse"
    assert load_settings().chdb_path == Path("var") / "clickhouse"
    explicit = load_settings(data_dir=tmp_path, clickhouse_dsn="chdb:///srv/ch").chdb_path
    assert explicit == Path("/srv/ch")
