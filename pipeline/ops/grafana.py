"""Upload Teilhabe's datasources, folder and dashboards to a Grafana (``teilhabe grafana push``).

Uses Grafana's HTTP API through ``grafana_client`` with a service account token
(TEILHABE_GRAFANA_TOKEN or TEILHABE_GRAFANA_TOKEN_FILE, the file readable by its owner only).
Datasources are created or updated by uid, the folder is created when missing, every dashboard
is uploaded with ``overwrite``. The ClickHouse password goes to Grafana as a secure field and
never into a log line, a report or an error message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

from pipeline.errors import ConfigError, TeilhabeError
from pipeline.ops.dashboards.datasources import (
    CLICKHOUSE_TYPE,
    CLICKHOUSE_UID,
    PROMETHEUS_TYPE,
    PROMETHEUS_UID,
)
from pipeline.settings import Settings, read_private_file, redact_url

TIMEOUT_S = 10.0
TOKEN_HELP = (
    "create a service account token in Grafana (Administration > Users and access > Service "
    "accounts, role Admin: datasources need it) and put it in a file readable by you only, "
    "named by TEILHABE_GRAFANA_TOKEN_FILE"
)

T = TypeVar("T")


class GrafanaError(TeilhabeError):
    """Grafana cannot be reached, refused the token, or refused an upload."""


@dataclass(frozen=True)
class Pushed:
    """One object uploaded to Grafana."""

    kind: Literal["datasource", "folder", "dashboard"]
    uid: str
    title: str
    action: Literal["created", "updated", "exists", "uploaded"]
    url: str = ""

    def line(self) -> str:
        """One line for the command's output."""
        where = f" {self.url}" if self.url else ""
        return f"{self.kind:<10} {self.action:<8} {self.uid}  {self.title}{where}"


@dataclass
class PushReport:
    """What ``push`` did, in order."""

    grafana_url: str
    items: list[Pushed] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        """Objects of ``kind`` pushed."""
        return sum(1 for item in self.items if item.kind == kind)

    def summary(self) -> str:
        """One closing line."""
        folder = next((i.title for i in self.items if i.kind == "folder"), "?")
        return (
            f"pushed {self.count('datasource')} datasources and {self.count('dashboard')} "
            f"dashboards (folder {folder!r}) to {self.grafana_url}"
        )


def read_token(settings: Settings) -> str:
    """The Grafana token from TEILHABE_GRAFANA_TOKEN or its owner-only file; ConfigError if
    neither is set or the file is readable by others."""
    if settings.grafana_token is not None:
        token = settings.grafana_token.get_secret_value().strip()
    elif settings.grafana_token_file is not None:
        token = read_private_file(
            settings.grafana_token_file, "TEILHABE_GRAFANA_TOKEN_FILE"
        ).decode("utf-8", "replace")
    else:
        raise ConfigError(f"no Grafana token: {TOKEN_HELP} (or set TEILHABE_GRAFANA_TOKEN)")
    if not token:
        raise ConfigError(f"the Grafana token is empty: {TOKEN_HELP}")
    return token


def _clickhouse_password(settings: Settings) -> str | None:
    path = settings.grafana_clickhouse_password_file
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"TEILHABE_GRAFANA_CLICKHOUSE_PASSWORD_FILE: file {str(path)!r} does not exist"
        ) from None


def datasources(settings: Settings) -> list[dict[str, Any]]:
    """The Prometheus and ClickHouse datasources as Grafana's HTTP API takes them.

    The ClickHouse password (TEILHABE_GRAFANA_CLICKHOUSE_PASSWORD_FILE) goes into
    ``secureJsonData``; without the file no ``secureJsonData`` is sent, so an update keeps the
    password Grafana already has.
    """
    clickhouse: dict[str, Any] = {
        "uid": CLICKHOUSE_UID,
        "name": "Teilhabe ClickHouse",
        "type": CLICKHOUSE_TYPE,
        "access": "proxy",
        "isDefault": False,
        "jsonData": {
            "host": settings.grafana_clickhouse_host,
            "port": settings.grafana_clickhouse_port,
            "protocol": "http",
            "secure": False,
            "username": settings.grafana_clickhouse_user,
            "defaultDatabase": settings.clickhouse_database,
        },
    }
    password = _clickhouse_password(settings)
    if password is not None:
        clickhouse["secureJsonData"] = {"password": password}
    prometheus: dict[str, Any] = {
        "uid": PROMETHEUS_UID,
        "name": "Teilhabe Prometheus",
        "type": PROMETHEUS_TYPE,
        "access": "proxy",
        "url": settings.grafana_prometheus_url,
        "isDefault": True,
        "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
    }
    return [prometheus, clickhouse]


def folder_uid(title: str) -> str:
    """A stable folder uid from its title ("Teilhabe" -> "teilhabe", as provisioned)."""
    return re.sub(r"[^a-z0-9_-]+", "-", title.lower()).strip("-")[:40] or "teilhabe"


def load_dashboards(dashboards_dir: Path) -> list[dict[str, Any]]:
    """The dashboard JSON models in ``dashboards_dir`` (``*.json``, by name)."""
    paths = sorted(dashboards_dir.glob("*.json")) if dashboards_dir.is_dir() else []
    if not paths:
        raise GrafanaError(
            f"no dashboards (*.json) in {dashboards_dir}; run `teilhabe grafana generate` "
            "or give --dashboards DIR"
        )
    models = []
    for path in paths:
        try:
            model = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise GrafanaError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(model, dict) or not model.get("uid") or not model.get("title"):
            raise GrafanaError(f"{path} is not a dashboard (no uid or title)")
        models.append(model)
    return models


@contextmanager
def _explained(url: str, doing: str) -> Iterator[None]:
    """Turn grafana_client and HTTP errors into a GrafanaError that says what to do."""
    try:
        yield
    except GrafanaUnauthorizedError:
        raise GrafanaError(
            f"Grafana at {url} rejected the token (401 Unauthorized) while {doing}: the token "
            f"is wrong, expired or revoked; {TOKEN_HELP}"
        ) from None
    except GrafanaTimeoutError:
        raise GrafanaError(
            f"Grafana at {url} did not answer within {TIMEOUT_S:.0f} s while {doing}"
        ) from None
    except GrafanaServerError as exc:
        raise GrafanaError(
            f"Grafana at {url} failed while {doing} ({exc.message}); see Grafana's log"
        ) from None
    except GrafanaClientError as exc:
        if exc.status_code == 403:
            raise GrafanaError(
                f"Grafana at {url} denied {doing} (403 Forbidden: {_grafana_message(exc)}): "
                "give the token's service account the Admin role (datasources need Admin); "
                "provisioned datasources and dashboards cannot be changed over the API"
            ) from None
        raise GrafanaError(
            f"Grafana at {url} refused {doing} ({exc.status_code}: {_grafana_message(exc)})"
        ) from None
    except (niquests.exceptions.RequestException, GrafanaException) as exc:
        raise GrafanaError(
            f"cannot connect to Grafana at {url} while {doing} ({_reason(exc)}): is Grafana "
            "running there? Set TEILHABE_GRAFANA_URL to its address (e.g. http://127.0.0.1:3000)"
        ) from None


def _grafana_message(exc: GrafanaException) -> str:
    response = exc.response
    if isinstance(response, dict) and response.get("message"):
        return str(response["message"])
    return str(exc.message)


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return "connection refused" if "refused" in text.lower() else text[:200]


def _call(url: str, doing: str, fn: Callable[[], T]) -> T:
    with _explained(url, doing):
        return fn()


def _find_datasource(api: GrafanaApi, url: str, uid: str) -> dict[str, Any] | None:
    with _explained(url, f"reading datasource {uid}"):
        try:
            found = api.datasource.get_datasource_by_uid(uid)
        except GrafanaClientError as exc:
            if exc.status_code == 404:
                return None
            raise
    if not isinstance(found, dict):
        raise GrafanaError(f"unexpected answer from {url} (is it Grafana?): {str(found)[:200]}")
    return found


def _ensure_folder(api: GrafanaApi, url: str, title: str) -> Pushed:
    folders = _call(url, "listing folders", api.folder.get_all_folders)
    if not isinstance(folders, list):
        raise GrafanaError(f"unexpected answer from {url} (is it Grafana?): {str(folders)[:200]}")
    for existing in folders:
        if isinstance(existing, dict) and existing.get("title") == title:
            return Pushed("folder", str(existing.get("uid", "")), title, "exists")
    uid = folder_uid(title)
    create = partial(api.folder.create_folder, title, uid)
    created = _call(url, f"creating folder {title!r}", create)
    if isinstance(created, dict) and created.get("uid"):
        uid = str(created["uid"])
    return Pushed("folder", uid, title, "created")


def connect(settings: Settings) -> GrafanaApi:
    """A client for TEILHABE_GRAFANA_URL with the configured token (nothing sent yet)."""
    base = settings.grafana_url.strip()
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"TEILHABE_GRAFANA_URL must start with http:// or https://, got {base!r}")
    # grafana_client appends "api" to the URL's path: a sub-path needs its trailing slash.
    return GrafanaApi.from_url(
        base.rstrip("/") + "/", credential=read_token(settings), timeout=TIMEOUT_S
    )


def push(settings: Settings, dashboards_dir: Path, folder: str = "Teilhabe") -> PushReport:
    """Create or update the datasources, create the folder if missing and upload every
    dashboard of ``dashboards_dir`` into it (overwrite). GrafanaError / ConfigError say what
    went wrong and what to do."""
    url = str(redact_url(settings.grafana_url.strip()))
    models = load_dashboards(dashboards_dir)
    sources = datasources(settings)
    api = connect(settings)
    report = PushReport(grafana_url=url)
    if settings.grafana_clickhouse_password_file is None:
        report.notes.append(
            "no TEILHABE_GRAFANA_CLICKHOUSE_PASSWORD_FILE: the ClickHouse datasource keeps the "
            "password Grafana has (none when it was just created)"
        )
    for source in sources:
        uid = str(source["uid"])
        if _find_datasource(api, url, uid) is None:
            create = partial(api.datasource.create_datasource, source)
            _call(url, f"creating datasource {uid}", create)
            report.items.append(Pushed("datasource", uid, str(source["name"]), "created"))
        else:
            update = partial(api.datasource.update_datasource_by_uid, uid, source)
            _call(url, f"updating datasource {uid}", update)
            report.items.append(Pushed("datasource", uid, str(source["name"]), "updated"))
    target = _ensure_folder(api, url, folder)
    report.items.append(target)
    for model in models:
        uid = str(model["uid"])
        body = {
            "dashboard": {k: v for k, v in model.items() if k not in ("id", "version")},
            "folderUid": target.uid,
            "overwrite": True,
            "message": "teilhabe grafana push",
        }
        upload = partial(api.dashboard.update_dashboard, body)
        answer = _call(url, f"uploading dashboard {uid}", upload)
        link = str(answer.get("url", "")) if isinstance(answer, dict) else ""
        report.items.append(Pushed("dashboard", uid, str(model["title"]), "uploaded", link))
    return report
