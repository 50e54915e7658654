"""Shared fixtures: settings + environment for real components in a temporary directory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pipeline.settings import Settings, load_settings

TEST_KEY = "teilhabe-test-key-0123456789abcdef"

#: The longest modules (real processes, paced input, fault windows), run first so that the two
#: workers of ``make test`` (pytest-xdist, ``--dist loadscope``: a module stays on one worker)
#: finish together instead of one of them starting a long module last.
LONGEST_FIRST = (  # measured: pytest --durations=0, summed per module
    "tests/faults/test_crash.py",
    "tests/faults/test_rebalance_outage.py",
    "tests/connectors/test_import_pipeline.py",
    "tests/faults/test_rebalance.py",
    "tests/ops/test_prometheus_server.py",
    "tests/integration/test_analyst_views.py",
    "tests/faults/test_sink_outage.py",
    "tests/faults/test_broker_stall.py",
    "tests/faults/test_restore.py",
    "tests/integration/test_real_size.py",
    "tests/integration/test_secondary_suppression.py",
    "tests/integration/test_data_dir.py",
    "tests/integration/test_report.py",
    "tests/integration/test_timezone.py",
    "tests/integration/test_report_analyst.py",
    "tests/integration/test_end_to_end.py",
    "tests/ops/test_alert_delivery.py",
    "tests/ops/test_report_browser.py",
    "tests/faults/test_sink_refused.py",
    "tests/integration/test_opt_out.py",
    "tests/integration/test_directory_mirror.py",
    "tests/integration/test_clickhouse_views.py",
    "tests/integration/test_cli.py",
    "tests/integration/test_demo_supervision.py",
    "tests/integration/test_silo_and_drop.py",
    "tests/integration/test_webhook_limits.py",
    "tests/integration/test_response_by_space.py",
    "tests/faults/test_replay_and_late.py",
    "tests/integration/test_erasure.py",
    "tests/integration/test_kafka_tls.py",
    "tests/faults/test_record_limits.py",
    "tests/faults/test_hostile_input.py",
    "tests/integration/test_webhooks.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules of ``LONGEST_FIRST`` first, in its order; the order inside a module is kept."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def configure(mp: pytest.MonkeyPatch, root: Path, **values: object) -> Settings:
    """Settings for a run under ``root``, mirrored into the environment so that worker
    subprocesses read exactly the same configuration."""
    base: dict[str, object] = {
        "data_dir": root / "var",
        "clickhouse_dsn": f"chdb://{root / 'var' / 'clickhouse'}",
        "pseudonym_key": TEST_KEY,
        "min_group_size": 1,
        "metrics_port": 0,
    }
    base.update(values)
    for key in list(os.environ):
        if key.startswith("TEILHABE_"):
            mp.delenv(key)
    for key, value in base.items():
        mp.setenv(f"TEILHABE_{key.upper()}", str(value))
    return load_settings()


@pytest.fixture
def make_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Factory fixture around ``configure`` for one test's temporary directory."""

    def factory(**values: object) -> Settings:
        return configure(monkeypatch, tmp_path, **values)

    return factory


@contextmanager
def migrated_clickhouse(root: Path, **values: object) -> Iterator[Any]:
    """A client of a freshly migrated embedded ClickHouse under ``root`` (settings as for
    ``configure``), for tests that load facts and query the views directly."""
    from pipeline.dev.clickhouse import EmbeddedClickHouse
    from pipeline.sinks.clickhouse import get_client
    from pipeline.sinks.migrate import migrate

    mp = pytest.MonkeyPatch()
    settings = configure(mp, root, **values)
    try:
        with EmbeddedClickHouse(settings):
            client = get_client(settings)
            migrate(client, settings)
            try:
                yield client
            finally:
                client.close()
    finally:
        mp.undo()


@pytest.fixture
def clean_teilhabe_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ``TEILHABE_*`` variable of the caller's environment and no ``.env`` of the checkout:
    the test sees only the settings it sets."""
    for name in list(os.environ):
        if name.startswith("TEILHABE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
