"""The command line as a user runs it: generate -> backfill -> query, in subprocesses."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY

pytestmark = pytest.mark.integration


def teilhabe(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TEILHABE_")}
    base.update(
        {
            "TEILHABE_PSEUDONYM_KEY": TEST_KEY,
            "TEILHABE_MIN_GROUP_SIZE": "1",
            "TEILHABE_METRICS_PORT": "0",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        }
    )
    return base


def test_generate_backfill_query_round_trip(tmp_path: Path, env: dict[str, str]) -> None:
    gen = teilhabe(
        "generate",
        "--out",
        "events.jsonl",
        "--seed",
        "3",
        "--days",
        "1",
        "--start",
        "2026-04-06T00:00:00Z",
        cwd=tmp_path,
        env=env,
    )
    assert gen.returncode == 0, gen.stderr
    n_events = sum(1 for _ in open(tmp_path / "events.jsonl"))
    assert (tmp_path / "events.directory.jsonl").exists() and n_events > 100

    back = teilhabe(
        "backfill", "events.jsonl", "--directory", "events.directory.jsonl", cwd=tmp_path, env=env
    )
    assert back.returncode == 0, back.stdout + back.stderr
    assert f"backfill done: {n_events} events in ClickHouse" in back.stdout + back.stderr

    q = teilhabe(
        "query",
        "SELECT count() AS n FROM teilhabe.events FINAL",
        "--format",
        "json",
        cwd=tmp_path,
        env=env,
    )
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout) == [{"n": n_events}]

    q = teilhabe(
        "query",
        "SELECT unit, sum(events) AS events FROM teilhabe.user_day_facts "
        "GROUP BY unit ORDER BY unit",
        "--format",
        "csv",
        cwd=tmp_path,
        env=env,
    )
    rows = list(csv.DictReader(io.StringIO(q.stdout)))
    assert sum(int(r["events"]) for r in rows) == n_events

    bad = teilhabe("query", "SELEKT 1", cwd=tmp_path, env=env)
    assert bad.returncode == 1 and "Syntax error" in bad.stderr


def test_invalid_configuration_fails_with_the_variable_named(
    tmp_path: Path, env: dict[str, str]
) -> None:
    out = teilhabe("migrate", cwd=tmp_path, env={**env, "TEILHABE_WINDOW_S": "-5"})
    assert out.returncode == 2 and "TEILHABE_WINDOW_S" in out.stderr


def test_worker_without_key_refuses_to_start(tmp_path: Path, env: dict[str, str]) -> None:
    no_key = {k: v for k, v in env.items() if k != "TEILHABE_PSEUDONYM_KEY"}
    out = teilhabe("worker", cwd=tmp_path, env=no_key, timeout=60)
    assert out.returncode == 1 and "TEILHABE_PSEUDONYM_KEY_FILE" in out.stderr
