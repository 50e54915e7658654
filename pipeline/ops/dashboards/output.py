"""The dashboards' output: the JSON models, their committed file form and ``generate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.ops.dashboards.adoption import adoption
from pipeline.ops.dashboards.cross_silo import cross_silo
from pipeline.ops.dashboards.pipeline_health import pipeline_health
from pipeline.ops.dashboards.response_ideation import response_ideation


def dashboards() -> list[dict[str, Any]]:
    """The four Teilhabe dashboards as Grafana JSON models (deterministic)."""
    return [adoption(), cross_silo(), response_ideation(), pipeline_health()]


def render(model: dict[str, Any]) -> str:
    """The committed file form of a dashboard: sorted keys, indent 2, trailing newline."""
    return json.dumps(model, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def generate(out_dir: Path) -> list[Path]:
    """Write ``<uid>.json`` for every dashboard to ``out_dir`` (created); return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for model in dashboards():
        path = out_dir / f"{model['uid']}.json"
        path.write_text(render(model), encoding="utf-8")
        paths.append(path)
    return paths
