"""Grafana dashboards as code and ``teilhabe grafana push``: the committed JSON is what the code
generates, every Prometheus expression uses exported and documented metrics (aggregated the
right way), every ClickHouse query runs on a freshly migrated chDB, the provisioning matches the
dashboards, and push talks to a (fake) Grafana the way Grafana's HTTP API expects."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.grafana import grafana_app
from pipeline.errors import ConfigError, TeilhabeError
from pipeline.ops.dashboards.datasources import (
    CLICKHOUSE_TYPE,
    CLICKHOUSE_UID,
    FORMAT_TABLE,
    FORMAT_TIME_SERIES,
    PROMETHEUS_TYPE,
    PROMETHEUS_UID,
)
from pipeline.ops.dashboards.output import dashboards, render
from pipeline.ops.grafana import GrafanaError, datasources, push
from pipeline.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = ROOT / "deploy" / "grafana" / "dashboards"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "teilhabe.rules.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
REFERENCE_HEADING = "## Prometheus metrics reference"

TITLES = {
    "teilhabe-adoption": "Teilhabe · Adoption overview",
    "teilhabe-cross-silo": "Teilhabe · Cross-silo collaboration",
    "teilhabe-response-ideation": "Teilhabe · Community response & ideation",
    "teilhabe-pipeline": "Teilhabe · Pipeline health",
}
#: Gauges every worker exports with the same values (read from the facts / directory).
FACT_GAUGES = {
    "teilhabe_engagement_active_users",
    "teilhabe_engagement_events",
    "teilhabe_engagement_baseline_ratio",
    "teilhabe_engagement_baseline_events",
    "teilhabe_directory_headcount",
    "teilhabe_unanswered_posts",
    "teilhabe_ei_index",
    "teilhabe_cross_silo_share",
    "teilhabe_participation_people",
    "teilhabe_ideation",
    "teilhabe_space_active_users",
    "teilhabe_platform_active_users",
}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset"}
PROMQL_KEYWORDS |= {"bool", "and", "or", "unless", "inf", "nan", "atan2"}
UNITS = ("Vertrieb", "Einkauf")
TOKEN = "glsa_test_token_0123456789"
CH_PASSWORD = "analyst-secret-pw"


# --- walking the dashboards ------------------------------------------------------------------


def panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    """All panels, rows' nested panels included."""
    out = []
    for panel in model.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def targets(datasource_type: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dashboard uid, panel, target) for every target of ``datasource_type``."""
    found = []
    for model in dashboards():
        for panel in panels(model):
            for target in panel.get("targets", []):
                ds = target.get("datasource") or panel.get("datasource") or {}
                if ds.get("type") == datasource_type:
                    found.append((str(model["uid"]), panel, target))
    return found


def variables(datasource_type: str) -> list[tuple[str, dict[str, Any]]]:
    """(dashboard uid, variable) for every query variable of ``datasource_type``."""
    return [
        (str(model["uid"]), var)
        for model in dashboards()
        for var in model.get("templating", {}).get("list", [])
        if var.get("type") == "query" and var.get("datasource", {}).get("type") == datasource_type
    ]


def prometheus_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every Prometheus target and variable."""
    exprs = [
        (f"{uid} / {panel['title']} / {t['refId']}", str(t["expr"]))
        for uid, panel, t in targets(PROMETHEUS_TYPE)
    ]
    exprs += [
        (f"{uid} / ${var['name']}", str(var["query"])) for uid, var in variables(PROMETHEUS_TYPE)
    ]
    return exprs


def metric_names(expr: str) -> set[str]:
    """Metric (and recording rule) names in a PromQL expression: no functions, labels,
    keywords, durations, numbers or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "", text)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text):
        name = match.group(1)
        if name.lower() not in PROMQL_KEYWORDS:
            names.add(name)
    return names


def wire_names() -> dict[str, str]:
    """Every series name the workers expose -> its metric family name."""
    from pipeline.ops.exporter import PipelineMetrics

    names: dict[str, str] = {}
    for family in PipelineMetrics.create().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        for suffix in suffixes.get(family.type, [""]):
            names[family.name + suffix] = family.name
    return names


def recording_rules() -> set[str]:
    doc = yaml.safe_load(RULES.read_text())
    return {str(r["record"]) for g in doc["groups"] for r in g["rules"] if "record" in r}


def metrics_reference() -> set[str]:
    """Metric names of the rows of docs/metrics.md's Prometheus metrics reference table
    (``| `teilhabe_events_ingested_total` | counter | ...``)."""
    text = METRICS_DOC.read_text()
    assert REFERENCE_HEADING in text, (
        f"docs/metrics.md has no '{REFERENCE_HEADING}' section (a table whose rows start "
        "with the backticked metric name)"
    )
    section = text.split(REFERENCE_HEADING, 1)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]
    return set(re.findall(r"^\|\s*`([A-Za-z_:][\w:]*)`", section, flags=re.M))


# --- 1. committed output ---------------------------------------------------------------------


def test_committed_dashboards_are_the_generated_ones() -> None:
    models = dashboards()
    expected = {f"{m['uid']}.json": render(m).encode() for m in models}
    committed = {p.name: p.read_bytes() for p in DASHBOARDS_DIR.glob("*.json")}
    hint = "run `teilhabe grafana generate` and commit deploy/grafana/dashboards"
    assert sorted(committed) == sorted(expected), f"dashboard files differ: {hint}"
    for name, content in expected.items():
        assert committed[name] == content, f"{name} is not what the code generates: {hint}"
    assert render(dashboards()[0]) == render(models[0]), "generation is not deterministic"


def test_generate_writes_sorted_indented_json_with_a_trailing_newline(tmp_path: Path) -> None:
    result = CliRunner().invoke(grafana_app, ["generate", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "out").glob("*.json"))
    assert [f.stem for f in files] == sorted(TITLES)
    for f in files:
        text = f.read_text()
        assert text.endswith("}\n") and text.startswith('{\n  "')
        model = json.loads(text)
        assert text == json.dumps(model, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        assert str(f) in result.output


# --- 2. Prometheus expressions ---------------------------------------------------------------


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y",z=~"${unit:regex}"}[5m]))) '
        "/ on() group_left max(b) offset 1d + 1e-09 * time() - job:c:rate5m and bool d"
    )
    assert metric_names(expr) == {"a_bucket", "b", "job:c:rate5m", "d"}


def test_prometheus_queries_use_exported_documented_metrics() -> None:
    exported = wire_names()
    recorded = recording_rules()
    reference = metrics_reference()
    exprs = prometheus_expressions()
    assert len(exprs) >= 20
    used: set[str] = set()
    for where, expr in exprs:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in names:
            assert name in exported or name in recorded, (
                f"{where}: {name} is neither exported by the workers (pipeline/ops/exporter.py, "
                f"counters end in _total, histograms in _bucket/_sum/_count) nor a recording "
                f"rule: {expr!r}"
            )
            used.add(name)
    for name in sorted(used - recorded):
        family = exported[name]
        assert name in reference or family in reference, (
            f"{name} is used by a dashboard but not in docs/metrics.md '{REFERENCE_HEADING}'"
        )


def test_fact_gauges_are_maxed_and_counters_rated() -> None:
    exported = wire_names()
    counters = {n for n in exported if n.endswith("_total")}
    for where, expr in prometheus_expressions():
        for name in FACT_GAUGES:
            for match in re.finditer(rf"\b{name}\b", expr):
                before = expr[: match.start()].rstrip()
                assert re.search(r"\bmax(?:\s+by\s*\([^)]*\))?\s*\($", before), (
                    f"{where}: {name} must be aggregated with max (every worker exports the "
                    f"same value): {expr!r}"
                )
        for name in counters:
            for match in re.finditer(rf"\b{name}\b", expr):
                before = expr[: match.start()].rstrip()
                assert re.search(r"\b(?:rate|increase)\($", before), (
                    f"{where}: counter {name} must be used as sum(rate(...[5m])): {expr!r}"
                )
                assert expr.lstrip().startswith("sum"), f"{where}: sum the rate: {expr!r}"


# --- 3. ClickHouse queries on a migrated chDB ------------------------------------------------


RANGE_TO = datetime.now(UTC)
RANGE_FROM = RANGE_TO - timedelta(days=30)


def expand_macros(sql: str, units: tuple[str, ...] = UNITS) -> str:
    """Grafana's and the ClickHouse plugin's expansion (pkg/macros) for the last 30 days."""

    def date_filter(m: re.Match[str]) -> str:
        col = m.group(1).strip()
        return (
            f"{col} >= toDate('{RANGE_FROM:%Y-%m-%d}') AND {col} <= toDate('{RANGE_TO:%Y-%m-%d}')"
        )

    def time_filter(m: re.Match[str]) -> str:
        col = m.group(1).strip()
        return (
            f"{col} >= toDateTime({int(RANGE_FROM.timestamp())}) AND "
            f"{col} <= toDateTime({int(RANGE_TO.timestamp())})"
        )

    sql = re.sub(r"\$__dateFilter\(([^)]*)\)", date_filter, sql)
    sql = re.sub(r"\$__timeFilter\(([^)]*)\)", time_filter, sql)
    sql = sql.replace("$__fromTime", f"toDateTime({int(RANGE_FROM.timestamp())})")
    sql = sql.replace("$__toTime", f"toDateTime({int(RANGE_TO.timestamp())})")
    sql = sql.replace("${unit:singlequote}", ",".join(f"'{u}'" for u in units))
    sql = sql.replace("${unit:sqlstring}", ",".join(f"'{u}'" for u in units))
    sql = sql.replace("${unit}", units[0]).replace("$unit", units[0])
    assert "$" not in sql, f"a macro or variable the test does not know: {sql}"
    return sql


def facts() -> list[dict[str, Any]]:
    """Two days of facts of two units with every kind of event the views use."""
    events: list[dict[str, Any]] = []
    people = {"p1": "Vertrieb", "p2": "Vertrieb", "p3": "Einkauf", "p4": "Einkauf"}

    def ev(etype: str, ts: int, actor: str, target: str | None = None, **more: Any) -> None:
        events.append(
            {
                "event_id": f"e{len(events)}",
                "event_type": etype,
                "ts": ts,
                "actor_id": actor,
                "actor_unit": people[actor],
                "space_id": "s1",
                "platform": "test",
                "target_actor_id": target,
                "target_unit": people[target] if target else None,
                "content_id": more.get("content"),
                "parent_content_id": more.get("root"),
                "root_content_id": more.get("root"),
                "idea_status": more.get("status"),
            }
        )

    for back in (2, 1):
        day = (RANGE_TO - timedelta(days=back)).replace(hour=9, minute=0, second=0)
        t = int(day.timestamp() * 1000)
        ev("post_created", t, "p1", content=f"c{back}")
        ev("reply_created", t + 60_000, "p3", "p1", content=f"r{back}", root=f"c{back}")
        ev("reply_created", t + 120_000, "p2", "p1", content=f"q{back}", root=f"c{back}")
        ev("post_created", t + 1000, "p3", content=f"d{back}")
        ev("reply_created", t + 3_600_000, "p1", "p3", content=f"s{back}", root=f"d{back}")
        ev("reaction_added", t + 2000, "p2", "p3")
        ev("mention", t + 3000, "p4", "p2")
        ev("share", t + 4000, "p4", "p3")
        ev("view", t + 5000, "p4")
        ev("idea_submitted", t + 6000, "p3", content=f"i{back}")
        ev("idea_voted", t + 7000, "p1", "p3", content=f"i{back}")
        ev("idea_commented", t + 8000, "p2", "p3", content=f"i{back}")
        ev("idea_status_changed", t + 86_000_000, "p4", content=f"i{back}", status="accepted")
    return events


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from pipeline.sinks.facts import EVENT_COLUMNS, event_row
    from tests.conftest import migrated_clickhouse

    with migrated_clickhouse(tmp_path_factory.mktemp("grafana-ch"), min_group_size=1) as client:
        rows = [event_row(e, late=False) for e in facts()]
        client.insert("teilhabe.events", rows, column_names=EVENT_COLUMNS)
        client.insert(
            "teilhabe.directory_people",
            [(p, u, "{}") for p, u in {"p1": "Vertrieb", "p3": "Einkauf"}.items()],
            column_names=("person_id", "unit", "attributes"),
        )
        yield client


def clickhouse_queries() -> list[tuple[str, str, int]]:
    """(where, rawSql, format) of every ClickHouse target and variable."""
    found = [
        (f"{uid} / {panel['title']} / {t['refId']}", str(t["rawSql"]), int(t["format"]))
        for uid, panel, t in targets(CLICKHOUSE_TYPE)
    ]
    found += [
        (f"{uid} / ${var['name']}", str(var["query"]), FORMAT_TABLE)
        for uid, var in variables(CLICKHOUSE_TYPE)
    ]
    return found


@pytest.mark.integration
def test_clickhouse_queries_run_on_the_migrated_views(ch: Any) -> None:
    queries = clickhouse_queries()
    assert len(queries) >= 15
    for where, sql, fmt in queries:
        try:
            result = ch.query(expand_macros(sql))
        except Exception as exc:  # noqa: BLE001 - report which panel broke
            pytest.fail(f"{where}: the query fails on the migrated schema: {exc}\n{sql}")
        assert result.result_rows, f"{where}: no rows for two days of facts\n{sql}"
        if fmt == FORMAT_TIME_SERIES:
            assert result.column_names[0] == "time", f"{where}: time series need a time column"
            assert result.column_types[0].base_type.startswith("DateTime"), where
        if where.endswith("$unit"):
            assert {r[0] for r in result.result_rows} == set(UNITS), where


def test_clickhouse_targets_are_plugin_queries() -> None:
    for uid, panel, target in targets(CLICKHOUSE_TYPE):
        where = f"{uid} / {panel['title']}"
        assert target["datasource"] == {"type": CLICKHOUSE_TYPE, "uid": CLICKHOUSE_UID}, where
        assert target["editorType"] == "sql", where
        assert target["format"] in (FORMAT_TIME_SERIES, FORMAT_TABLE), where
        expected = "timeSeries" if target["format"] == FORMAT_TIME_SERIES else "table"
        assert target["queryType"] == expected, where
        assert "teilhabe." not in target["rawSql"], f"{where}: use the datasource's database"
        if panel["type"] == "table":
            assert target["format"] == FORMAT_TABLE, where
        if panel["type"] in ("timeseries", "heatmap"):
            assert target["format"] == FORMAT_TIME_SERIES, where


# --- 4. structure ----------------------------------------------------------------------------


def test_four_dashboards_with_datasources_ids_and_positions() -> None:
    models = dashboards()
    assert {m["uid"]: m["title"] for m in models} == TITLES
    uids = {PROMETHEUS_UID: PROMETHEUS_TYPE, CLICKHOUSE_UID: CLICKHOUSE_TYPE}
    for model in models:
        seen: set[int] = set()
        assert model["panels"], model["uid"]
        for panel in panels(model):
            where = f"{model['uid']} / {panel.get('title')}"
            assert isinstance(panel.get("id"), int) and panel["id"] not in seen, where
            seen.add(panel["id"])
            pos = panel.get("gridPos") or {}
            assert {"x", "y", "w", "h"} <= set(pos), where
            assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, where
            if panel["type"] == "row":
                continue
            ds = panel.get("datasource") or {}
            assert uids.get(ds.get("uid")) == ds.get("type"), f"{where}: datasource {ds}"
            assert panel.get("targets"), f"{where}: no query"
            for target in panel["targets"]:
                tds = target.get("datasource", ds)
                assert uids.get(tds.get("uid")) == tds.get("type"), where
        for var in model.get("templating", {}).get("list", []):
            ds = var.get("datasource") or {}
            assert uids.get(ds.get("uid")) == ds.get("type"), f"{model['uid']} ${var['name']}"
    fact_boards = [m for m in models if m["uid"] != "teilhabe-pipeline"]
    for model in fact_boards:
        names = [v["name"] for v in model["templating"]["list"]]
        assert names == ["unit"], model["uid"]
        text = json.dumps(model["panels"])
        assert "${unit:regex}" in text or "${unit:singlequote}" in text, model["uid"]


def test_cross_silo_dashboard_has_matrix_heatmap_trend_and_gauge() -> None:
    model = next(m for m in dashboards() if m["uid"] == "teilhabe-cross-silo")
    by_type: dict[str, list[str]] = {}
    for panel in panels(model):
        for t in panel["targets"]:
            by_type.setdefault(panel["type"], []).append(t.get("rawSql") or t.get("expr"))
    assert any("daily_silo_matrix" in q for q in by_type["heatmap"])
    assert any("daily_silo_matrix" in q for q in by_type["table"])
    assert any("daily_ei_index" in q for q in by_type["timeseries"])
    assert any("teilhabe_ei_index" in q for q in by_type["gauge"])


# --- 5. provisioning -------------------------------------------------------------------------


@pytest.fixture
def grafana_settings(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Settings from nothing but the given values (no TEILHABE_ variables of the caller)."""
    for key in list(os.environ):
        if key.startswith("TEILHABE_"):
            monkeypatch.delenv(key)

    def factory(**values: object) -> Settings:
        return load_settings(**values)

    return factory


def test_provisioning_matches_dashboards_and_push(
    grafana_settings: Callable[..., Settings],
) -> None:
    doc = yaml.safe_load((PROVISIONING / "datasources" / "teilhabe.yml").read_text())
    provisioned = {d["uid"]: d for d in doc["datasources"]}
    referenced = {
        (t.get("datasource") or p["datasource"])["uid"]
        for m in dashboards()
        for p in panels(m)
        for t in p.get("targets", [])
    }
    assert referenced == set(provisioned) == {PROMETHEUS_UID, CLICKHOUSE_UID}
    prom, ch = provisioned[PROMETHEUS_UID], provisioned[CLICKHOUSE_UID]
    assert prom["type"] == PROMETHEUS_TYPE and prom["url"] == "http://prometheus:9090"
    assert prom["isDefault"] is True
    assert ch["type"] == "grafana-clickhouse-datasource"
    password = ch["secureJsonData"]["password"]
    assert re.fullmatch(r"\$\{?CLICKHOUSE_ANALYST_PASSWORD\}?", password), "not an env reference"
    assert "password" not in json.dumps(ch["jsonData"]).lower()
    # `teilhabe grafana push` with default settings creates the same datasources.
    pushed = {d["uid"]: d for d in datasources(grafana_settings())}
    for uid, source in provisioned.items():
        for key in ("name", "type", "access", "isDefault", "jsonData"):
            assert pushed[uid].get(key) == source.get(key), f"{uid}.{key} differs from push"
        assert pushed[uid].get("url") == source.get("url"), uid

    dash_doc = yaml.safe_load((PROVISIONING / "dashboards" / "teilhabe.yml").read_text())
    (provider,) = dash_doc["providers"]
    assert provider["type"] == "file" and provider["folder"] == "Teilhabe"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider.get("folderUid") == "teilhabe"


def test_datasources_put_the_password_in_secure_json_only(
    grafana_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    pw = tmp_path / "ch.pw"
    pw.write_text(CH_PASSWORD + "\n")
    sources = {
        d["uid"]: d for d in datasources(grafana_settings(grafana_clickhouse_password_file=pw))
    }
    ch = sources[CLICKHOUSE_UID]
    assert ch["secureJsonData"] == {"password": CH_PASSWORD}
    assert CH_PASSWORD not in json.dumps({k: v for k, v in ch.items() if k != "secureJsonData"})
    assert "secureJsonData" not in datasources(grafana_settings())[1]


# --- 6. push against a fake Grafana ----------------------------------------------------------


@dataclass
class FakeGrafana:
    """Records requests; answers like Grafana's HTTP API for what push uses."""

    token: str = TOKEN
    status: int | None = None  # answer everything with this status
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: list[dict[str, Any]] = field(default_factory=list)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        self.requests.append((method, path, headers, body))
        if self.status is not None:
            return self.status, {"message": "Unauthorized" if self.status == 401 else "Forbidden"}
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"message": "Unauthorized"}
        if method == "GET" and path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            if uid in self.datasources:
                return 200, self.datasources[uid]
            return 404, {"message": "Data source not found"}
        if method == "POST" and path == "/api/datasources":
            self.datasources[body["uid"]] = body
            return 200, {"id": len(self.datasources), "message": "Datasource added"}
        if method == "PUT" and path.startswith("/api/datasources/uid/"):
            self.datasources[path.rsplit("/", 1)[1]] = body
            return 200, {"message": "Datasource updated"}
        if method == "GET" and path == "/api/folders":
            return 200, self.folders
        if method == "POST" and path == "/api/folders":
            folder = {"id": len(self.folders) + 1, "uid": body["uid"], "title": body["title"]}
            self.folders.append(folder)
            return 200, folder
        if method == "POST" and path == "/api/dashboards/db":
            uid = body["dashboard"]["uid"]
            self.dashboards[uid] = body
            return 200, {"status": "success", "uid": uid, "url": f"/d/{uid}/x", "version": 1}
        return 404, {"message": "Not found"}

    def calls(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _, _ in self.requests]


@pytest.fixture
def fake_grafana() -> Iterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer = fake.handle(self.command, self.path, headers, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server's names

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def token_file(tmp_path: Path, mode: int = 0o600, token: str = TOKEN) -> Path:
    path = tmp_path / "grafana.token"
    path.write_text(token + "\n")
    path.chmod(mode)
    return path


@pytest.fixture
def pushing(
    fake_grafana: tuple[FakeGrafana, str],
    grafana_settings: Callable[..., Settings],
    tmp_path: Path,
) -> tuple[FakeGrafana, Settings]:
    """The fake Grafana and settings that push to it (its URL, a token file only the owner
    can read)."""
    fake, url = fake_grafana
    return fake, grafana_settings(grafana_url=url, grafana_token_file=token_file(tmp_path))


def test_push_creates_datasources_folder_and_dashboards(
    fake_grafana: tuple[FakeGrafana, str],
    grafana_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    fake, url = fake_grafana
    fake.datasources[PROMETHEUS_UID] = {"id": 1, "uid": PROMETHEUS_UID, "name": "old"}
    pw = tmp_path / "ch.pw"
    pw.write_text(CH_PASSWORD)
    settings = grafana_settings(
        grafana_url=url,
        grafana_token_file=token_file(tmp_path),
        grafana_clickhouse_password_file=pw,
    )
    report = push(settings, DASHBOARDS_DIR)

    assert all(h.get("authorization") == f"Bearer {TOKEN}" for _, _, h, _ in fake.requests)
    calls = fake.calls()
    assert ("PUT", f"/api/datasources/uid/{PROMETHEUS_UID}") in calls  # existed: updated
    assert ("POST", "/api/datasources") in calls  # ClickHouse: created
    assert fake.datasources[PROMETHEUS_UID]["url"] == "http://prometheus:9090"
    ch = fake.datasources[CLICKHOUSE_UID]
    assert ch["type"] == CLICKHOUSE_TYPE and ch["secureJsonData"] == {"password": CH_PASSWORD}
    assert fake.folders == [{"id": 1, "uid": "teilhabe", "title": "Teilhabe"}]
    assert sorted(fake.dashboards) == sorted(TITLES)
    committed = {m["uid"]: m for m in dashboards()}
    for uid, body in fake.dashboards.items():
        assert body["overwrite"] is True and body["folderUid"] == "teilhabe"
        assert body["dashboard"] == committed[uid]
    assert calls.index(("POST", "/api/folders")) < calls.index(("POST", "/api/dashboards/db"))

    kinds = [(i.kind, i.action) for i in report.items]
    assert kinds[:3] == [
        ("datasource", "updated"),
        ("datasource", "created"),
        ("folder", "created"),
    ]
    assert kinds.count(("dashboard", "uploaded")) == 4
    text = "\n".join([*(i.line() for i in report.items), *report.notes, report.summary()])
    assert CH_PASSWORD not in text and TOKEN not in text

    # A second push finds the folder and updates everything in place.
    fake.requests.clear()
    again = push(settings, DASHBOARDS_DIR)
    assert ("POST", "/api/folders") not in fake.calls()
    assert ("POST", "/api/datasources") not in fake.calls()
    assert [i.action for i in again.items if i.kind == "folder"] == ["exists"]


def test_push_command_prints_one_line_per_object(
    fake_grafana: tuple[FakeGrafana, str],
    grafana_settings: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, url = fake_grafana
    grafana_settings()  # clears TEILHABE_ variables
    monkeypatch.setenv("TEILHABE_GRAFANA_URL", url)
    monkeypatch.setenv("TEILHABE_GRAFANA_TOKEN_FILE", str(token_file(tmp_path)))
    result = CliRunner().invoke(grafana_app, ["push", "--dashboards", str(DASHBOARDS_DIR)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 + 1 + 4 + 1, lines  # datasources, folder, dashboards, summary
    for uid in TITLES:
        assert any(uid in line and "dashboard" in line for line in lines), uid
    assert lines[-1].startswith("pushed 2 datasources and 4 dashboards") and url in lines[-1]
    assert TOKEN not in result.output


def test_push_reports_a_rejected_token(pushing: tuple[FakeGrafana, Settings]) -> None:
    fake, settings = pushing
    url = settings.grafana_url
    fake.status = 401
    with pytest.raises(GrafanaError, match="401") as info:
        push(settings, DASHBOARDS_DIR)
    message = str(info.value)
    assert url in message and "TEILHABE_GRAFANA_TOKEN_FILE" in message
    assert TOKEN not in message
    assert not fake.dashboards

    fake.status = 403
    with pytest.raises(GrafanaError, match="403") as info:
        push(settings, DASHBOARDS_DIR)
    assert url in str(info.value) and "Admin" in str(info.value)


def test_push_reports_connection_refused(
    grafana_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    settings = grafana_settings(grafana_url=url, grafana_token_file=token_file(tmp_path))
    with pytest.raises(GrafanaError, match="cannot connect") as info:
        push(settings, DASHBOARDS_DIR)
    assert url in str(info.value) and "TEILHABE_GRAFANA_URL" in str(info.value)


def test_push_refuses_a_token_file_others_can_read(
    pushing: tuple[FakeGrafana, Settings], grafana_settings: Callable[..., Settings]
) -> None:
    fake, settings = pushing
    assert settings.grafana_token_file is not None
    settings.grafana_token_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        push(settings, DASHBOARDS_DIR)
    assert not fake.requests, "the token was sent although its file is readable by others"
    with pytest.raises(TeilhabeError, match="no Grafana token"):
        push(grafana_settings(grafana_url=settings.grafana_url), DASHBOARDS_DIR)


def test_push_without_dashboards_says_to_generate(
    grafana_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = grafana_settings(grafana_token_file=token_file(tmp_path))
    with pytest.raises(GrafanaError, match="teilhabe grafana generate"):
        push(settings, tmp_path / "empty")
