"""The real Prometheus server (Debian's package) with the project's configuration and rules
scrapes a real worker fed by the generator with an injected drop in one unit. Through the
Prometheus HTTP API: the recording rules produce values, and EngagementDrop fires for the
dropped unit and for no other.

Two things differ from production, and only these: the scrape target is the worker on
loopback instead of the compose DNS name, and every ``for:`` and interval is shortened so the
test does not wait two hours. Expressions, labels and annotations are the shipped ones.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.dev import generator as gen
from tests.faults.harness import Dataset, FaultRun, dataset_from_spec
from tests.ops.server_process import ServerProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS = shutil.which("prometheus")
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
DAYS = 33  # the last day is a Friday: every unit has k people in its newest window
DROP_FROM = START + timedelta(days=28)


def drop_dataset(root: Path) -> Dataset:
    """33 days of a seeded organisation; IT falls to 30 % of its activity in the last week."""
    spec = gen.OrgSpec(
        seed=5,
        start=START,
        days=DAYS,
        events_per_user_day=4,
        drop_unit="IT",
        drop_from=DROP_FROM,
        drop_factor=0.3,
    )
    return dataset_from_spec(root, spec)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shortened_config(root: Path, target: str, alertmanager: str | None = None) -> Path:
    """The project's prometheus.yml and rules, pointed at ``target`` (and at the Alertmanager
    ``host:port``, else at none) with short timings."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (job,) = config["scrape_configs"]
    job.pop("dns_sd_configs")
    job["static_configs"] = [{"targets": [target]}]
    (managers,) = config.pop("alerting")["alertmanagers"]
    if alertmanager is not None:
        managers["static_configs"] = [{"targets": [alertmanager]}]
        config["alerting"] = {"alertmanagers": [managers]}
    rules_dir = root / "rules"
    rules_dir.mkdir(parents=True)
    for rules in (PROMETHEUS_DIR / "rules").glob("*.rules.yml"):
        text = re.sub(r"^(\s+for:) .*$", r"\1 2s", rules.read_text(), flags=re.M)
        (rules_dir / rules.name).write_text(text)
    assert config["rule_files"] == ["rules/*.rules.yml"], "the test mirrors this layout"
    path = root / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Prometheus(ServerProcess):
    """A Prometheus server process on loopback and its HTTP API."""

    def __init__(self, config: Path, root: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        argv = [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address={self.url.removeprefix('http://')}",
        ]
        super().__init__(argv, root / "prometheus.log")

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=5) as resp:
            doc = json.loads(resp.read())
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr: str) -> dict[str, float]:
        """Instant query; one value per series, keyed by its ``unit`` label (or '')."""
        data = self.get("/api/v1/query", query=expr)
        return {r["metric"].get("unit", ""): float(r["value"][1]) for r in data["result"]}


@pytest.fixture
def prometheus_for() -> Iterator[Any]:
    servers: list[Prometheus] = []

    def start(config: Path, root: Path) -> Prometheus:
        servers.append(Prometheus(config, root))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.mark.skipif(PROMETHEUS is None, reason="make test installs Debian's prometheus package")
def test_real_prometheus_fires_engagement_drop_for_the_dropped_unit_only(
    tmp_path: Path, prometheus_for: Any
) -> None:
    dataset = drop_dataset(tmp_path / "data")
    with FaultRun(
        tmp_path / "run",
        dataset,
        window_s=86_400,
        grace_s=3_600,
        min_group_size=5,
        fact_gauges_interval_s=2,
    ) as run:
        run.produce()
        run.start_worker()
        run.wait_drained(timeout_s=400)
        run.sleep_until(
            lambda: (
                'teilhabe_ei_index{unit="*"}' in run.metrics_text()
                and "teilhabe_engagement_baseline_ratio{" in run.metrics_text()
            ),
            60,
            "the baseline and fact gauges",
        )

        def group_lags() -> list[float]:
            return [
                float(line.rsplit(" ", 1)[1])
                for line in run.metrics_text().splitlines()
                if line.startswith("teilhabe_consumer_group_lag_messages{")
            ]

        # drained: the broker's view of the group (read every 30 s) must say nothing waits,
        # else PipelineStalled would page on every quiet night
        run.sleep_until(
            lambda: group_lags() and not any(group_lags()), 90, "the group lag probe at 0"
        )
        (metrics_url,) = run.stack.worker_metrics_urls()
        target = urllib.parse.urlsplit(metrics_url).netloc
        prom = prometheus_for(shortened_config(tmp_path / "prometheus", target), tmp_path)

        prom.wait("the worker target up", lambda: prom.query("up") == {"": 1.0})
        ratios = prom.wait(
            "the baseline recording rule",
            lambda: prom.query("unit:teilhabe_engagement_baseline_ratio:max"),
        )
        org_ei = prom.wait("the org E-I rule", lambda: prom.query("org:teilhabe_ei_index:max"))
        rate = prom.wait(
            "the ingest rate rule", lambda: prom.query("job:teilhabe_events_ingested:rate5m")
        )
        dead = prom.wait(
            "the dead-letter rate rule", lambda: prom.query("job:teilhabe_dead_letters:rate5m")
        )
        firing = prom.wait(
            "EngagementDrop firing",
            lambda: prom.query('ALERTS{alertname="EngagementDrop", alertstate="firing"}'),
        )
        ingested = prom.query("sum(teilhabe_events_ingested_total)")
        time.sleep(3)  # a few more evaluations: nothing else may start firing
        firing = prom.query('ALERTS{alertname="EngagementDrop", alertstate="firing"}')
        alerts = prom.get("/api/v1/alerts")["alerts"]
        backlog = prom.query('max(teilhabe_consumer_group_lag_messages{topic=~".*events"})')
        partitions = len(group_lags())

    assert backlog == {"": 0.0} and partitions == run.settings.events_partitions, backlog
    assert not [a for a in alerts if a["labels"]["alertname"] == "PipelineStalled"]

    print(f"\nbaseline ratio by unit: {ratios}\norg E-I: {org_ei}")
    assert len(ratios) >= 4, f"every unit with k people should have a ratio, got {ratios}"
    assert ratios["IT"] < 0.5, "the injected drop (to 30 %) must show in IT's ratio"
    for unit, ratio in ratios.items():
        if unit != "IT":
            assert ratio > 0.5, f"{unit} had no drop but its ratio is {ratio:.2f}"
    assert -1 <= org_ei[""] <= 1
    # the scraped counter holds every event; drained before the first scrape, it does not move
    assert ingested == {"": float(len(dataset.events))}, ingested
    assert rate == {"": 0.0} and dead == {"": 0.0}, (rate, dead)
    assert set(firing) == {"IT"}, f"EngagementDrop must fire for IT only, fired for {firing}"
    (drop,) = [a for a in alerts if a["labels"]["alertname"] == "EngagementDrop"]
    assert "IT" in drop["annotations"]["summary"]
    assert "docs/runbooks.md#engagementdrop" in drop["annotations"]["description"]
