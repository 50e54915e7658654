"""Alerting and recording rules checked and unit-tested with the real promtool (Debian's
prometheus package, installed by ``make test``): every alert firing and not firing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "teilhabe.rules.yml"
TEST_DIR = ROOT / "deploy" / "prometheus" / "tests"
TESTS = sorted(TEST_DIR.glob("*.test.yml"))
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (make test installs Debian's prometheus)"
)


def alerts() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


@needs_promtool
def test_rules_are_valid() -> None:
    out = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_prometheus_config_is_valid_and_loads_the_rules() -> None:
    config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    out = subprocess.run(
        [str(PROMTOOL), "check", "config", str(config)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "teilhabe.rules.yml" in out.stdout + out.stderr, "the rules are not loaded"


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    out = subprocess.run(
        [str(PROMTOOL), "test", "rules", *(t.name for t in TESTS)],
        capture_output=True,
        text=True,
        cwd=TEST_DIR,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_is_tested_firing_and_not_firing_and_has_a_runbook() -> None:
    tests = [case for t in TESTS for case in yaml.safe_load(t.read_text())["tests"]]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    for rule in alerts():
        name = str(rule["alert"])
        assert name in fired, f"{name} is never tested firing"
        assert name in quiet, f"{name} is never tested staying quiet"
        annotations = rule["annotations"]
        assert isinstance(annotations, dict) and annotations.get("summary")
        assert f"docs/runbooks.md#{name.lower()}" in str(annotations["description"])
        assert re.search(rf"^## {name}$", runbooks, re.M), f"no runbook section for {name}"


def test_rules_use_only_metrics_the_workers_export() -> None:
    from pipeline.ops.exporter import PipelineMetrics

    exported = set()
    for metric in PipelineMetrics.create().registry.collect():
        exported.add(metric.name)
        exported.add(metric.name + "_total")
    doc = yaml.safe_load(RULES.read_text())
    recorded = {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    for group in doc["groups"]:
        for rule in group["rules"]:
            for name in re.findall(
                r"\b(teilhabe_[a-z_]+|[a-z]+:teilhabe_[a-z_]+:[a-z0-9]+)", rule["expr"]
            ):
                assert name in exported or name in recorded, f"{name} in {rule} is not exported"
