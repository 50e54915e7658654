"""``--data-dir``: the three commands of a company's own import (keygen, import --backfill,
then reading the result) keep everything under one directory, never touch ``./var``, and run
while a second embedded stack (another data dir) is up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.dev.devstack import DevStack
from pipeline.settings import load_settings
from pipeline.sinks.clickhouse import get_client

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_teilhabe_env")]

ROOT = Path(__file__).resolve().parents[2]
SLACK = ROOT / "tests" / "connectors" / "samples" / "slack" / "workspace"
#: The sample export's people (bob has no e-mail address in it: his Slack id).
PEOPLE = "person,unit\nalice@example.org,Einkauf\nU02BOB,Vertrieb\ncarol@example.org,Einkauf\n"


def teilhabe(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The installed ``teilhabe`` entry point (``python -m`` when it is not installed)."""
    entry = Path(sys.executable).with_name("teilhabe")
    cmd = [str(entry)] if entry.exists() else [sys.executable, "-m", "pipeline.cli.main"]
    return subprocess.run(
        [*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def count_events(data_dir: str, cwd: Path, env: dict[str, str]) -> int:
    q = teilhabe(
        "query",
        "--data-dir",
        data_dir,
        "--format",
        "json",
        "SELECT count() AS n FROM teilhabe.events FINAL",
        cwd=cwd,
        env=env,
    )
    assert q.returncode == 0, q.stdout + q.stderr
    return int(json.loads(q.stdout)[0]["n"])


def test_keygen_import_query_stay_in_their_data_dir(tmp_path: Path) -> None:
    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w") as zf:
        for path in sorted(SLACK.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(SLACK).as_posix())
    (tmp_path / "people.csv").write_text(PEOPLE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEILHABE_")}
    env["PYTHONPATH"] = str(ROOT)
    env["TEILHABE_FACTS_TTL_DAYS"] = "36500"  # the sample is from 2024: keep its facts

    # a second embedded stack (broker, ClickHouse) of data dir B runs the whole time
    settings_b = load_settings(data_dir=tmp_path / "B")
    with DevStack(settings_b) as stack_b:
        key = teilhabe("keygen", "--data-dir", "A", cwd=tmp_path, env=env)
        assert key.returncode == 0, key.stderr

        imported = teilhabe(
            "import",
            "slack",
            "export.zip",
            "--directory",
            "people.csv",
            "--backfill",
            "--data-dir",
            "A",
            cwd=tmp_path,
            env=env,
        )
        output = imported.stdout + imported.stderr
        assert imported.returncode == 0, output
        assert "post_created: 8" in output  # what the connector reads from the sample
        n = count_events("A", tmp_path, env)
        assert f"backfill done: {n} events in ClickHouse" in output and n > 0

        # B's stack is still the one it started, and its ClickHouse holds none of A's events
        assert stack_b.broker is not None and stack_b.broker.proc is not None
        assert stack_b.broker.proc.poll() is None
        assert count_events("B", tmp_path, env) == 0
        client = get_client(settings_b)  # B's own server, reused by the query above
        assert client.command("SELECT count() FROM teilhabe.events") == 0
        client.close()

    a = tmp_path / "A"
    assert (a / "pseudonym.key").stat().st_mode & 0o077 == 0
    assert (a / "clickhouse").is_dir() and (a / "logs" / "worker-0.log").exists()
    assert (a / "logs" / "broker.log").exists() and (a / "faust").is_dir()
    assert not (tmp_path / "var").exists(), "nothing may fall back to ./var"
    assert not (tmp_path / "B" / "pseudonym.key").exists()
    # without a key anywhere, B names the command that makes one
    no_key = teilhabe(
        "export-person", "alice@example.org", "--data-dir", "B", cwd=tmp_path, env=env
    )
    assert no_key.returncode != 0 and "teilhabe keygen --data-dir B" in no_key.stderr
    assert not (tmp_path / "var").exists()
