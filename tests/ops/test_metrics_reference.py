"""The metrics reference in docs/metrics.md against what a worker really registers: every
metric documented, nothing documented that does not exist, the labels as stated, and no
label that could carry a person."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from pipeline.ops.exporter import PipelineMetrics
from pipeline.sources.webhooks.metrics import WebhookMetrics

ROOT = Path(__file__).resolve().parents[2]
PERSON_LABELS = {"actor", "actor_id", "user", "user_id", "person", "person_id", "email"}


def documented() -> dict[str, tuple[str, set[str]]]:
    """Wire name -> (type, labels) from the reference tables."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    section = text.split("## Prometheus metrics reference", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(teilhabe_[a-z_]+)` \|\s*(\w+)\s*\|([^|]*)\|", section, re.M)
    out: dict[str, tuple[str, set[str]]] = {}
    for name, kind, labels in rows:
        assert name not in out, f"{name} is documented twice"
        names = {re.sub(r"\s*\(.*\)", "", part).strip() for part in labels.split(",")}
        out[name] = (kind, {n for n in names if n})
    return out


def registered() -> dict[str, tuple[str, set[str]]]:
    """Wire name -> (type, labels) of every metric a worker registers."""
    registry = CollectorRegistry()
    wrappers = [*vars(PipelineMetrics.create(registry)).values()]
    wrappers += vars(WebhookMetrics.create(registry)).values()
    out: dict[str, tuple[str, set[str]]] = {}
    for value in wrappers:
        if isinstance(value, MetricWrapperBase):
            kind = value._type  # noqa: SLF001 - the client's own type name
            name = value._name + ("_total" if kind == "counter" else "")  # noqa: SLF001
            out[name] = (kind, set(value._labelnames))  # noqa: SLF001
    return out


def test_every_registered_metric_is_documented_with_its_type_and_labels() -> None:
    docs, real = documented(), registered()
    assert len(real) > 30, "the registry walk found too few metrics"
    assert sorted(set(real) - set(docs)) == [], "metrics missing from docs/metrics.md"
    assert sorted(set(docs) - set(real)) == [], "documented metrics that no worker exports"
    for name, (kind, labels) in real.items():
        assert docs[name] == (kind, labels), f"{name}: docs say {docs[name]}, code {kind, labels}"


def test_no_label_can_carry_a_person() -> None:
    for name, (_, labels) in registered().items():
        assert not labels & PERSON_LABELS, f"{name} has a person label"
