"""Alerts reach people: the real Prometheus and the real Alertmanager (Debian's packages) on
loopback deliver the project's alerts to a webhook receiver run by the test.

What is real: Prometheus' config and rules (deploy/prometheus), the worker's metric registry
(``PipelineMetrics``) as the scrape target, and Alertmanager's routing tree and inhibition
(deploy/alertmanager/alertmanager.yml). What is shortened, and why: every ``for:`` becomes 2 s
and the group waits 1 s, otherwise EngagementDrop would take 2 hours; the real durations and
the PromQL timing are tested by promtool (deploy/prometheus/tests/, tests/ops/
test_prometheus_rules.py), so here only the delivery path is. The receivers point at the test's
HTTP server instead of a pager and an SMTP server: nothing leaves the machine.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import start_http_server

from pipeline.ops.exporter import PipelineMetrics
from tests.ops.server_process import ServerProcess
from tests.ops.test_prometheus_server import (  # noqa: F401 - the fixture, used by name
    PROMETHEUS,
    free_port,
    prometheus_for,
    shortened_config,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AM_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
needs_servers = pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None,
    reason="make test installs Debian's prometheus and prometheus-alertmanager",
)


class Receiver:
    """A webhook receiver on loopback: keeps every notification with its path and arrival."""

    def __init__(self) -> None:
        received: list[tuple[str, float, dict[str, Any]]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, path: str | None = None) -> list[tuple[str, float, dict[str, Any]]]:
        """(receiver path, arrival, alert) of every alert received (at ``path``)."""
        return [
            (p, t, alert)
            for p, t, doc in list(self.received)
            if path is None or p == path
            for alert in doc["alerts"]
        ]

    def first(self, name: str) -> tuple[str, float, dict[str, Any]] | None:
        got = [a for a in self.alerts() if a[2]["labels"]["alertname"] == name]
        return got[0] if got else None


def receiver_config(receiver: Receiver) -> dict[str, Any]:
    """The project's alertmanager.yml with the receivers pointed at ``receiver`` (one path per
    receiver) and the group waits shortened; routes and inhibition stay as shipped."""
    doc = yaml.safe_load(AM_CONFIG.read_text())
    doc.pop("global")
    doc["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": f"{receiver.url}/{r['name']}"}]}
        for r in doc["receivers"]
    ]
    routes = [doc["route"], *doc["route"].get("routes", [])]
    for route in routes:
        for key, value in (("group_wait", "1s"), ("group_interval", "1s")):
            if key in route or route is doc["route"]:
                route[key] = value
    return dict(doc)


class Alertmanager(ServerProcess):
    """A real Alertmanager on loopback (no cluster listener) and its v2 API."""

    poll_s = 0.2
    wait_s = 60.0

    def __init__(self, config: dict[str, Any], root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        path = root / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config))
        self.address = f"127.0.0.1:{free_port()}"
        argv = [
            str(ALERTMANAGER),
            f"--config.file={path}",
            f"--storage.path={root / 'data'}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",
        ]
        super().__init__(argv, root / "alertmanager.log")
        self.wait("ready", lambda: self.request("/-/ready") is not None)

    def request(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://{self.address}{path}", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read()
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return raw.decode()

    def alerts(self) -> dict[str, dict[str, Any]]:
        """Alert name -> the API's view of it (status: active / suppressed, inhibitedBy)."""
        return {a["labels"]["alertname"]: a for a in self.request("/api/v2/alerts")}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def alertmanager(receiver: Receiver, tmp_path: Path) -> Iterator[Alertmanager]:
    am = Alertmanager(receiver_config(receiver), tmp_path / "alertmanager")
    yield am
    am.stop()


@pytest.fixture
def worker_metrics() -> Iterator[tuple[PipelineMetrics, str]]:
    """A worker's real metric registry on loopback, filled with a quiet night's figures: the
    broker up, nothing waiting, nothing consumed; IT's engagement at 30 % of its baseline."""
    metrics = PipelineMetrics.create()
    metrics.broker_up.set(1)
    metrics.messages_consumed.labels("teilhabe.events").inc(0)
    metrics.messages_consumed.labels("teilhabe.activity").inc(0)
    for partition in range(3):
        metrics.group_lag.labels("teilhabe.events", str(partition)).set(0)
    metrics.fact_gauges.publish(
        {metrics.baseline_ratio: [(("IT",), 0.3), (("Vertrieb",), 1.05), (("Einkauf",), 0.9)]}
    )
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    yield metrics, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@needs_servers
def test_alerts_reach_the_receivers_and_pipeline_stalled_needs_waiting_input(
    tmp_path: Path,
    prometheus_for: Any,  # noqa: F811 - the fixture imported above
    alertmanager: Alertmanager,
    receiver: Receiver,
    worker_metrics: tuple[PipelineMetrics, str],
) -> None:
    metrics, target = worker_metrics
    started = time.monotonic()
    config = shortened_config(tmp_path / "prometheus", target, alertmanager.address)
    prom = prometheus_for(config, tmp_path)
    prom.wait("the target up", lambda: prom.query("up") == {"": 1.0})

    # 1. EngagementDrop (warning) reaches the team receiver with its unit and runbook
    path, arrived, drop = alertmanager.wait(
        "EngagementDrop at the receiver", lambda: receiver.first("EngagementDrop")
    )
    assert path == "/team"
    assert drop["status"] == "firing"
    assert drop["labels"]["unit"] == "IT" and drop["labels"]["severity"] == "warning"
    assert "docs/runbooks.md#engagementdrop" in drop["annotations"]["description"]
    assert "IT dropped to 30%" in drop["annotations"]["summary"]
    assert {a["labels"].get("unit") for _, _, a in receiver.alerts()} <= {"IT", None}
    print(f"\nEngagementDrop at the receiver {arrived - started:.1f} s after Prometheus started")

    # 2. a quiet night: nothing waits, nothing is consumed. The pipeline group must have been
    # evaluated past the shortened `for:` since the drop arrived; PipelineStalled never pending.
    def evaluated_since(t: float) -> bool:
        groups = prom.get("/api/v1/rules")["groups"]
        (group,) = [g for g in groups if g["name"] == "teilhabe.pipeline"]
        last = datetime.fromisoformat(group["lastEvaluation"].replace("Z", "+00:00"))
        return last.timestamp() > t

    quiet_from = time.time()
    prom.wait("3 more evaluations", lambda: evaluated_since(quiet_from + 3), timeout_s=30)
    assert prom.query('ALERTS{alertname="PipelineStalled"}') == {}
    assert receiver.first("PipelineStalled") is None

    # 3. the control: input waits and still nothing is consumed -> it fires and pages
    stalled_at = time.monotonic()
    metrics.group_lag.labels("teilhabe.events", "1").set(40)
    path, arrived, stalled = alertmanager.wait(
        "PipelineStalled at the receiver", lambda: receiver.first("PipelineStalled")
    )
    assert path == "/page" and stalled["labels"]["severity"] == "critical"
    assert "docs/runbooks.md#pipelinestalled" in stalled["annotations"]["description"]
    assert stalled["annotations"]["summary"].startswith("40 input messages wait")
    print(f"PipelineStalled at the receiver {arrived - stalled_at:.1f} s after the input waited")


@needs_servers
def test_broker_down_inhibits_pipeline_stalled_and_consumer_lag_high(
    alertmanager: Alertmanager, receiver: Receiver
) -> None:
    def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
        return {
            "labels": {"alertname": name, "severity": severity, **labels},
            "annotations": {"summary": name},
            "startsAt": datetime.now(UTC).isoformat(),
        }

    alertmanager.request("/api/v2/alerts", [alert("BrokerDown", "critical")])
    alertmanager.wait("BrokerDown paged", lambda: receiver.first("BrokerDown"))
    alertmanager.request(
        "/api/v2/alerts",
        [
            alert("PipelineStalled", "critical"),
            alert("ConsumerLagHigh", "warning", topic="teilhabe.events", partition="2"),
        ],
    )
    # posted after them with the same group wait: once it arrives, their groups were flushed
    alertmanager.request("/api/v2/alerts", [alert("DeadLetterSpike", "warning")])
    alertmanager.wait("the control alert", lambda: receiver.first("DeadLetterSpike"))

    state = alertmanager.alerts()
    for name in ("PipelineStalled", "ConsumerLagHigh"):
        assert state[name]["status"]["state"] == "suppressed", state[name]
        assert state[name]["status"]["inhibitedBy"], f"{name} not inhibited"
        assert receiver.first(name) is None, f"{name} was delivered despite BrokerDown"
    assert state["BrokerDown"]["status"]["state"] == "active"
    assert state["DeadLetterSpike"]["status"]["state"] == "active"
    assert [p for p, _, a in receiver.alerts() if a["labels"]["alertname"] == "BrokerDown"] == [
        "/page"
    ]


@needs_servers
def test_without_broker_down_pipeline_stalled_is_paged(
    alertmanager: Alertmanager, receiver: Receiver
) -> None:
    """The inhibition test's counterpart: the same alert alone is not suppressed."""
    alertmanager.request(
        "/api/v2/alerts",
        [
            {
                "labels": {"alertname": "PipelineStalled", "severity": "critical"},
                "startsAt": datetime.now(UTC).isoformat(),
            }
        ],
    )
    path, _, _ = alertmanager.wait(
        "PipelineStalled paged", lambda: receiver.first("PipelineStalled")
    )
    assert path == "/page"
    assert alertmanager.alerts()["PipelineStalled"]["status"]["state"] == "active"
