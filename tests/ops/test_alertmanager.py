"""deploy/alertmanager/alertmanager.yml checked with the real amtool (Debian's
prometheus-alertmanager, installed by ``make test``) and against what it must agree with: the
alert rules' names and severities, the secrets docker-compose.yml mounts, Prometheus'
``alerting:`` section. Delivery through the real servers: tests/ops/test_alert_delivery.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "teilhabe.rules.yml"
AMTOOL = shutil.which("amtool")
needs_amtool = pytest.mark.skipif(
    AMTOOL is None, reason="amtool not installed (make test installs prometheus-alertmanager)"
)


def config() -> dict[str, object]:
    doc = yaml.safe_load(CONFIG.read_text())
    assert isinstance(doc, dict)
    return doc


def rules() -> dict[str, str]:
    """Alert name -> severity, from the shipped rules."""
    doc = yaml.safe_load(RULES.read_text())
    return {
        r["alert"]: r["labels"]["severity"]
        for g in doc["groups"]
        for r in g["rules"]
        if "alert" in r
    }


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(AMTOOL), *args], capture_output=True, text=True, timeout=30)


@needs_amtool
def test_amtool_check_config_passes() -> None:
    out = amtool("check-config", str(CONFIG))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout and "1 inhibit rules" in out.stdout, out.stdout


@needs_amtool
def test_amtool_check_config_can_fail(tmp_path: Path) -> None:
    # a field of a later Alertmanager than the oldest one supported (0.25): refused
    broken = CONFIG.read_text().replace("      - url: ", "      - url_file: ", 1)
    assert broken != CONFIG.read_text()
    (tmp_path / "alertmanager.yml").write_text(broken)
    assert amtool("check-config", str(tmp_path / "alertmanager.yml")).returncode != 0


@needs_amtool
@pytest.mark.parametrize(
    "labels, receiver",
    [
        (["alertname=PipelineStalled", "severity=critical"], "page"),
        (["alertname=BrokerDown", "severity=critical"], "page"),
        (["alertname=EngagementDrop", "severity=warning", "unit=IT"], "team"),
        (["alertname=SiloIncreasing", "severity=info"], "team"),
        (["alertname=Unknown"], "team"),
    ],
)
def test_routes_by_severity(labels: list[str], receiver: str) -> None:
    out = amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.split() == [receiver], f"{labels} went to {out.stdout!r}"


def test_every_rule_severity_has_a_route_and_the_inhibition_names_real_alerts() -> None:
    routes = config()["route"]
    assert isinstance(routes, dict)
    routed = {
        m.split("=", 1)[1].strip('"')
        for r in routes["routes"]
        for m in r["matchers"]
        if m.startswith("severity=")
    }
    assert set(rules().values()) <= routed, "a severity the rules use falls to the default"
    assert {"alertname", "unit"} <= set(routes["group_by"])
    (inhibit,) = config()["inhibit_rules"]  # type: ignore[misc]
    (source,) = inhibit["source_matchers"]
    (target,) = inhibit["target_matchers"]
    assert source == 'alertname="BrokerDown"' and "BrokerDown" in rules()
    names = re.fullmatch(r'alertname=~"(.*)"', target)
    assert names, target
    assert set(names.group(1).split("|")) == {"PipelineStalled", "ConsumerLagHigh"}
    assert set(names.group(1).split("|")) <= set(rules()), "inhibits an alert that does not exist"


def test_secrets_come_from_files_that_compose_mounts() -> None:
    text = CONFIG.read_text()
    for key in ("password:", "credentials:", "auth_secret:", "api_key:", "token:"):
        assert not re.search(rf"^\s*\w*{key}", text, re.M), f"a literal secret: {key}"
    files = re.findall(r"_file: (\S+)", text)
    assert len(files) >= 2, files
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["alertmanager"]
    mounted = {f"/run/secrets/{name}" for name in service["secrets"]}
    assert set(files) <= mounted, "a secret file alertmanager.yml reads is not mounted"
    for name in service["secrets"]:
        assert compose["secrets"][name]["file"].startswith("./secrets/")
    assert (
        "./deploy/alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro"
        in service["volumes"]
    )
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in service["command"]


def test_prometheus_sends_its_alerts_to_the_compose_alertmanager() -> None:
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = [
        t
        for am in prometheus["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    (port,) = compose["services"]["alertmanager"]["ports"]
    assert targets == ["alertmanager:9093"] and port == "127.0.0.1:9093:9093"
