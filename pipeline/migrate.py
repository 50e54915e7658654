"""Versioned ClickHouse migrations from ``schemas/clickhouse/NNN_name.sql``.

Each file may hold several statements separated by ``;`` at a line end; ``{db}`` and
``{ttl_days}`` are filled in. Applied versions are recorded with a checksum in
``{db}.schema_migrations``; editing an applied migration is an error (add a new one).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from clickhouse_connect.driver.client import Client

from pipeline.errors import ConfigError
from pipeline.settings import Settings

_NAME_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def migration_files(migrations_dir: Path | None = None) -> list[tuple[int, str, str]]:
    """(version, name, text) of every migration, in version order."""
    if migrations_dir is not None:
        entries = [(p.name, p.read_text()) for p in migrations_dir.iterdir()]
    else:
        folder = resources.files("schemas").joinpath("clickhouse")
        entries = [(p.name, p.read_text()) for p in folder.iterdir() if p.name.endswith(".sql")]
    out = []
    for name, text in entries:
        m = _NAME_RE.match(name)
        if m:
            out.append((int(m.group(1)), name, text))
    out.sort()
    versions = [v for v, _, _ in out]
    if len(set(versions)) != len(versions):
        raise ConfigError(f"two migrations share a version number: {[n for _, n, _ in out]}")
    return out


def statements(text: str) -> list[str]:
    """Split a migration into statements (``;`` at a line end), comments dropped."""
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("--")]
    parts = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
    return [p.strip() for p in parts if p.strip()]


def migrate(client: Client, settings: Settings, migrations_dir: Path | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date)."""
    db = settings.clickhouse_database
    client.command(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, "
        "checksum String, applied_at DateTime) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {
        int(v): (n, c)
        for v, n, c in client.query(
            f"SELECT version, name, checksum FROM {db}.schema_migrations FINAL"
        ).result_rows
    }
    applied = []
    for version, name, text in migration_files(migrations_dir):
        checksum = hashlib.sha256(text.encode()).hexdigest()
        if version in done:
            if done[version][1] != checksum:
                raise ConfigError(
                    f"migration {name} changed after it was applied (checksum differs); "
                    "never edit an applied migration, add a new one"
                )
            continue
        sql = text.replace("{db}", db).replace("{ttl_days}", str(settings.facts_ttl_days))
        for stmt in statements(sql):
            client.command(stmt)
        client.insert(
            f"{db}.schema_migrations",
            [(version, name, checksum, datetime.now(UTC).replace(tzinfo=None))],
            column_names=("version", "name", "checksum", "applied_at"),
        )
        applied.append(name)
    client.command(
        f"INSERT INTO {db}.config (key, value) VALUES ('min_group_size', "
        f"'{int(settings.min_group_size)}')"
    )
    return applied
