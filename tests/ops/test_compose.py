"""The production stack (docker-compose.yml, Dockerfile, deploy/clickhouse, .env.example) checked
offline: no Docker engine runs here, so the compose file is validated against the official Compose
Specification schema (vendored in tests/ops/schemas/) and every file and setting it refers to is
checked against what reads it (pipeline.settings.Settings, the teilhabe CLI, ClickHouse's users
parser, Prometheus' config)."""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
README = ROOT / "README.md"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
COMPOSE_SCHEMA = SCHEMA_DIR / "compose-spec.json"
USERS_XML = ROOT / "deploy" / "clickhouse" / "users.xml"
CONFIG_XML = ROOT / "deploy" / "clickhouse" / "config.xml"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"

#: The Teilhabe image (built from ./Dockerfile); services running it run the `teilhabe` CLI.
TEILHABE_IMAGE = "teilhabe"
#: Long-running services that keep data, and where it lives in their container.
DATA_DIRS = {
    "kafka": "/var/lib/kafka/data",
    "clickhouse": "/var/lib/clickhouse",
    "prometheus": "/prometheus",
    "alertmanager": "/alertmanager",  # silences and the notification log
    "grafana": "/var/lib/grafana",
    "webhook-proxy": "/data",  # Caddy's certificates and ACME account
}
#: The one service published beyond loopback, and what: the webhook proxy (ACME, HTTPS).
PUBLIC = {"webhook-proxy": {"80", "443"}}
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"


# --- helpers ------------------------------------------------------------------------------------


def raw_compose() -> dict[str, Any]:
    """docker-compose.yml as written (anchors and merge keys resolved, nothing interpolated)."""
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def env_example() -> dict[str, str]:
    """KEY=VALUE lines of .env.example."""
    values: dict[str, str] = {}
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f".env.example:{number}: {line!r}"
        assert key not in values, f".env.example: {key} twice"
        values[key] = value
    return values


_VAR = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", re.S)


def interpolate_string(text: str, env: dict[str, str], used: set[str] | None = None) -> str:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e},
    ${VAR:+a}, ${VAR+a}. A missing required variable raises KeyError."""

    def repl(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        body = m.group(2) if m.group(2) is not None else m.group(3)
        parsed = _BRACED.fullmatch(body)
        assert parsed, f"cannot parse ${{{body}}}"
        name, op, arg = parsed.group(1), parsed.group(2), parsed.group(3) or ""
        assert "$" not in arg, f"nested interpolation in ${{{body}}} is not supported here"
        if used is not None:
            used.add(name)
        value = env.get(name)
        if op is None:
            return value or ""
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?"):
            if value is None or (op == ":?" and not value):
                raise KeyError(f"{name}: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        return arg if value is not None else ""  # "+"

    return _VAR.sub(repl, text)


def interpolate(node: Any, env: dict[str, str], used: set[str] | None = None) -> Any:
    """``node`` with every string value interpolated (keys stay as they are, as in Compose)."""
    if isinstance(node, dict):
        return {k: interpolate(v, env, used) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, used) for v in node]
    if isinstance(node, str):
        return interpolate_string(node, env, used)
    return node


def compose() -> dict[str, Any]:
    """docker-compose.yml interpolated with the values of .env.example."""
    doc = interpolate(raw_compose(), env_example())
    assert isinstance(doc, dict)
    return doc


def services(doc: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return (doc or compose())["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict of strings (list or mapping form)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {k: v for k, _, v in pairs}
    return {
        k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in env.items()
    }


def image_name(service: dict[str, Any]) -> str:
    image = str(service.get("image", ""))
    return image.split("@")[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image


def teilhabe_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items() if image_name(s) == TEILHABE_IMAGE}


def mounts(service: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(type, source, target) of every volume entry (short or long syntax)."""
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            yield entry["type"], str(entry.get("source", "")), str(entry["target"])
            continue
        parts = entry.split(":")
        if len(parts) == 1:
            yield "volume", "", parts[0]
            continue
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        yield kind, source, target


def one_shot(doc: dict[str, Any]) -> set[str]:
    """Services others wait for to complete (restart "no"): migrations and the like."""
    waited = {
        dep
        for s in doc["services"].values()
        for dep, cond in (s.get("depends_on") or {}).items()
        if isinstance(s.get("depends_on"), dict)
        and cond.get("condition") == "service_completed_successfully"
    }
    return {n for n in waited if doc["services"][n].get("restart") == "no"}


def settings_for(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Settings built exactly as a container would: from these environment variables only."""
    import os

    from pipeline.settings import Settings

    for key in list(os.environ):
        if key.startswith("TEILHABE_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def dockerfile_env() -> dict[str, str]:
    """ENV KEY=VALUE of the Dockerfile's final stage (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    final = text.split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            for key, value in re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", line):
                env[key] = value
    return env


# --- 1. the Compose Specification ---------------------------------------------------------------


def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert "draft-07" in schema["$schema"], "the compose schema is JSON Schema draft-07"
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in compose_validator().iter_errors(doc)
    ]


def test_vendored_compose_schema_is_the_one_noted_in_its_readme() -> None:
    digest = hashlib.sha256(COMPOSE_SCHEMA.read_bytes()).hexdigest()
    notes = (SCHEMA_DIR / "README.md").read_text()
    assert digest in notes, "compose-spec.json differs from the version noted in its README"
    assert "Apache License 2.0" in notes and (SCHEMA_DIR / "LICENSE.compose-spec").exists()


def test_compose_file_matches_the_compose_specification() -> None:
    assert schema_errors(raw_compose()) == []
    assert schema_errors(compose()) == [], "invalid once .env.example is interpolated"


@pytest.mark.parametrize(
    "path, value",
    [
        (("services", "worker", "deploy", "replicas"), {"count": 2}),
        (("services", "worker", "healthcheck", "tset"), ["CMD", "true"]),
        (("services", "kafka", "depends_on"), {"clickhouse": {"condition": "healthy"}}),
        (("volumes", "kafka-data", "drvier"), "local"),
    ],
)
def test_the_schema_check_rejects_broken_compose_files(path: tuple[str, ...], value: Any) -> None:
    doc = copy.deepcopy(compose())
    node = doc
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    assert schema_errors(doc), f"{'/'.join(path)} = {value!r} was accepted"


# --- 2. files and variables the compose file refers to ------------------------------------------


def test_every_variable_is_in_env_example_and_every_example_is_used() -> None:
    used: set[str] = set()
    interpolate(raw_compose(), {k: "x" for k in env_example()}, used)
    examples = set(env_example())
    assert used - examples == set(), "used in docker-compose.yml, missing in .env.example"
    assert examples - used == set(), "in .env.example but not used by docker-compose.yml"
    # without any .env, the required secrets stop `docker compose up` with a message
    with pytest.raises(KeyError, match="CLICKHOUSE_WRITER_PASSWORD"):
        interpolate(raw_compose(), {})


def test_env_example_sets_no_teilhabe_variables() -> None:
    # Teilhabe processes started in the repository (make demo, make test) read ./.env too.
    leaking = [k for k in env_example() if k.startswith("TEILHABE_")]
    assert leaking == [], "these would leak into every teilhabe process run in the repository"


def test_bind_mounts_build_contexts_and_secret_files_exist() -> None:
    doc = compose()
    pending: list[str] = []
    for name, service in doc["services"].items():
        for kind, source, target in mounts(service):
            if kind != "bind":
                continue
            assert source.startswith("./"), f"{name}: bind mount {source} is not in the repository"
            path = ROOT / source
            if not path.exists() and GRAFANA_DIR in path.parents and not GRAFANA_DIR.exists():
                pending.append(source)
                continue
            assert path.exists(), f"{name}: {source} (mounted at {target}) does not exist"
        for env_file in service.get("env_file", []) or []:
            file = env_file if isinstance(env_file, str) else env_file["path"]
            assert (ROOT / file).exists(), f"{name}: env_file {file} does not exist"
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert (context / dockerfile).exists(), f"{name}: no {dockerfile} in {context}"
    readme = README.read_text()
    listed = ENV_EXAMPLE.read_text().split("# --- Secret files", 1)[1].split("\n# ---", 1)[0]
    for secret, spec in doc.get("secrets", {}).items():
        file = spec["file"]
        assert file.startswith("./secrets/"), f"secret {secret}: keep secret files in ./secrets/"
        # created by the operator, never committed: how, in .env.example's list
        assert re.search(rf"^#\s+{re.escape(file.removeprefix('./'))}\s", listed, re.M), (
            f"{file}: not in .env.example's secret files"
        )
    key = "teilhabe keygen secrets/pseudonym.key"
    assert key in readme and key in listed, "the key's command, in README and .env.example"
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    if pending:
        pytest.skip(f"deploy/grafana not created yet: {', '.join(pending)}")


# --- 3. TEILHABE_* settings and commands ----------------------------------------------------------


def test_teilhabe_variables_are_settings_fields() -> None:
    from pipeline.settings import ENV_PREFIX, Settings

    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    found = dict(dockerfile_env())
    for service in services().values():
        found.update(environment(service))
    unknown = sorted(k for k in found if k.startswith(ENV_PREFIX) and k not in fields)
    assert unknown == [], "not a setting (typo?) - pipeline/settings.py"


def test_teilhabe_services_get_valid_production_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.errors import TeilhabeError

    doc = compose()
    found = teilhabe_services()
    assert {"worker", "migrate", "generator"} <= set(found)
    for name, service in found.items():
        env = {**dockerfile_env(), **environment(service)}
        try:
            s = settings_for(env, monkeypatch)
        except (ValueError, TeilhabeError) as exc:
            pytest.fail(f"{name}: {exc}")
        assert not s.embedded_broker and not s.tansu, f"{name}: not on the production Kafka"
        host = s.kafka_bootstrap.split(",")[0].rsplit(":", 1)[0]
        assert image_name(doc["services"][host]) == "apache/kafka", f"{name}: {host} is no Kafka"
        if name in ("worker", "migrate"):
            assert not s.embedded_clickhouse
            dsn = re.match(r"https?://([^@/]+)@([^:/]+):(\d+)(/[^?]*)?$", s.clickhouse_dsn)
            assert dsn, f"{name}: {s.clickhouse_dsn}"
            assert dsn.group(1) == "teilhabe_writer" and dsn.group(2) == "clickhouse"
            # a database in the DSN fails the first connection: it does not exist before migrate
            assert dsn.group(4) in (None, "", "/"), f"{name}: no database in the DSN"
            assert s.clickhouse_database == "teilhabe"
            assert s.read_clickhouse_password(), f"{name}: no ClickHouse password"
        if s.pseudonym_key_file is not None:
            attached = {x if isinstance(x, str) else x["source"] for x in service["secrets"]}
            assert s.pseudonym_key_file.parent == Path("/run/secrets")
            assert s.pseudonym_key_file.name in attached, f"{name}: key secret not attached"
    worker = settings_for({**dockerfile_env(), **environment(found["worker"])}, monkeypatch)
    assert worker.metrics_host == "0.0.0.0", "Prometheus could not reach /metrics"
    assert worker.pseudonym_key_file is not None, "a worker refuses to start without a key"
    assert worker.activity_partitions >= services()["worker"]["deploy"]["replicas"]


def test_commands_are_valid_teilhabe_cli_calls() -> None:
    import typer

    from pipeline.cli.main import app

    cli = typer.main.get_command(app)
    assert hasattr(cli, "commands"), "the teilhabe CLI is a group of commands"
    entrypoint = re.search(r'^ENTRYPOINT \["teilhabe"\]$', DOCKERFILE.read_text(), re.M)
    assert entrypoint, "the image's entrypoint is the teilhabe CLI"
    for name, service in teilhabe_services().items():
        args = service["command"]
        assert isinstance(args, list) and args, f"{name}: give the command as a list"
        command = cli.commands.get(args[0])
        assert command is not None, f"{name}: `teilhabe {args[0]}` does not exist"
        try:
            command.make_context(args[0], list(args[1:]), resilient_parsing=False)
        except Exception as exc:  # noqa: BLE001 - typer vendors click: its own exception classes
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            pytest.fail(f"{name}: teilhabe {' '.join(args)}: {message}")
    assert teilhabe_services()["generator"]["command"][:2] == ["generate", "--live"]


# --- 4. ClickHouse users and server config ------------------------------------------------------

#: What ClickHouse's UsersConfigParser reads under <users><NAME> (src/Access/UsersConfigParser.cpp);
#: anything else is silently ignored there, so a typo would go unnoticed without this check.
AUTH_KEYS = {
    "no_password",
    "password",
    "password_sha256_hex",
    "password_scram_sha256_hex",
    "password_double_sha1_hex",
    "ldap",
    "kerberos",
    "ssl_certificates",
    "ssh_keys",
    "http_authentication",
}
USER_KEYS = AUTH_KEYS | {
    "profile",
    "networks",
    "allow_databases",
    "allow_dictionaries",
    "grants",
    "access_management",
    "named_collection_control",
    "named_collection_admin",
    "show_named_collections",
    "show_named_collections_secrets",
    "default_database",
    "databases",
    "quota",
}
#: May not be combined with <grants> ("Any other access control settings can't be specified").
NOT_WITH_GRANTS = {
    "allow_databases",
    "allow_dictionaries",
    "access_management",
    "named_collection_control",
    "named_collection_admin",
    "show_named_collections_secrets",
}
CONSTRAINT_KEYS = {"min", "max", "disallowed", "readonly", "const", "changeable_in_readonly"}
BUILTIN_PROFILES = {"default", "readonly"}  # in the image's users.xml
BUILTIN_QUOTAS = {"default"}
LOOPBACK = {"::1", "127.0.0.1"}


def users_xml() -> ET.Element:
    root = ET.parse(USERS_XML).getroot()  # raises on malformed XML (also "--" in a comment)
    assert root.tag == "clickhouse"
    return root


def grant_parts(query: str) -> tuple[set[str], str]:
    m = re.fullmatch(r"GRANT (.+?) ON (\S+)", query.strip())
    assert m, f"not a plain GRANT ... ON ...: {query!r}"
    return {p.strip() for p in m.group(1).split(",")}, m.group(2)


def clickhouse_checks(grants: list[str], settings: list[str]) -> dict[str, Any]:
    """Ask ClickHouse itself (chDB, a project dependency; in a child process) whether the grant
    queries parse and the settings exist."""
    script = """
import json, sys
import chdb
req = json.load(sys.stdin)
out = {"grants": {}, "settings": []}
for q in req["grants"]:
    sql = "SELECT formatQuery(" + json.dumps(q + " TO teilhabe_check").replace('"', "'") + ")"
    try:
        chdb.query(sql, "CSV")
        out["grants"][q] = ""
    except Exception as exc:
        out["grants"][q] = str(exc)[:300]
names = ", ".join("'" + n + "'" for n in req["settings"])
rows = chdb.query("SELECT name FROM system.settings WHERE name IN (" + names + ")", "JSON")
out["settings"] = [r["name"] for r in json.loads(str(rows))["data"]]
print(json.dumps(out))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps({"grants": grants, "settings": settings}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def required_writer_privileges() -> set[str]:
    """What the migrations and the sink need, read from the migration files themselves."""
    sql = "\n".join(p.read_text() for p in sorted((ROOT / "schemas" / "clickhouse").glob("*.sql")))
    sql = re.sub(r"--[^\n]*", "", sql).upper()
    migrate_py = (ROOT / "pipeline" / "sinks" / "migrate.py").read_text().upper()
    needed = {"INSERT", "SELECT"}
    if "CREATE DATABASE" in migrate_py + sql:
        needed.add("CREATE DATABASE")
    if re.search(r"CREATE TABLE", sql + migrate_py):
        needed.add("CREATE TABLE")
    if re.search(r"CREATE (OR REPLACE )?(MATERIALIZED )?VIEW", sql):
        needed.add("CREATE VIEW")
    if "CREATE OR REPLACE VIEW" in sql:
        needed.add("DROP VIEW")
    for statement in ("ALTER", "DROP TABLE", "TRUNCATE", "OPTIMIZE", "RENAME", "DROP DICTIONARY"):
        if re.search(rf"^\s*{statement}\b", sql, re.M):
            needed.add("ALTER" if statement == "ALTER" else statement)
    if "CREATE DICTIONARY" in sql:
        needed.add("CREATE DICTIONARY")
    return needed


def test_clickhouse_users_are_what_clickhouse_accepts() -> None:
    root = users_xml()
    users = root.find("users")
    assert users is not None
    profiles = {p.tag for p in root.findall("profiles/*")} | BUILTIN_PROFILES
    quotas = {q.tag for q in root.findall("quotas/*")} | BUILTIN_QUOTAS
    server_env = environment(services()["clickhouse"])
    for user in users:
        keys = [child.tag for child in user]
        assert set(keys) <= USER_KEYS, f"{user.tag}: unknown {set(keys) - USER_KEYS}"
        assert len(keys) == len(set(keys)), f"{user.tag}: an element twice"
        for network in user.findall("networks/*"):
            assert network.tag.startswith(("ip", "host")), f"{user.tag}: {network.tag}"
        if user.tag == "default":  # a patch of the image's user: only who may connect
            assert keys == ["networks"]
            networks = user.find("networks")
            assert networks is not None and networks.get("replace") == "replace"
            assert {n.text for n in networks} <= LOOPBACK, "default must not be on the network"
            continue
        auth = [k for k in keys if k in AUTH_KEYS]
        assert auth == ["password"], f"{user.tag}: one password, from the environment"
        password = user.find("password")
        assert password is not None and not (password.text or "").strip(), "literal password"
        variable = password.get("from_env")
        assert variable and variable in server_env, f"{user.tag}: {variable} not set for ClickHouse"
        assert user.findtext("profile") in profiles, (
            f"{user.tag}: no profile {user.findtext('profile')}"
        )
        assert user.findtext("quota") in quotas
        if "grants" in keys:
            assert not set(keys) & NOT_WITH_GRANTS, f"{user.tag}: refused beside <grants>"
        else:
            pytest.fail(f"{user.tag}: without <grants> a user may do everything")
    assert {u.tag for u in users} >= {"teilhabe_writer", "analyst", "default"}


def test_clickhouse_grants_and_profiles_parse_in_clickhouse() -> None:
    root = users_xml()
    grants = [q.text or "" for q in root.findall("users/*/grants/query")]
    settings: set[str] = set()
    for profile in root.findall("profiles/*"):
        for child in profile:
            if child.tag == "constraints":
                for constraint in child:
                    settings.add(constraint.tag)
                    kinds = [c.tag for c in constraint]
                    assert set(kinds) <= CONSTRAINT_KEYS, f"{constraint.tag}: {kinds}"
                    writability = {"readonly", "const", "changeable_in_readonly"} & set(kinds)
                    assert len(writability) <= 1
            else:
                settings.add(child.tag)
    checked = clickhouse_checks(grants, sorted(settings))
    assert {q: e for q, e in checked["grants"].items() if e} == {}
    assert settings - set(checked["settings"]) == set(), "no such ClickHouse setting"


def test_the_writer_may_run_the_migrations_in_its_database_only() -> None:
    writer = users_xml().find("users/teilhabe_writer")
    assert writer is not None
    granted: set[str] = set()
    for query in writer.findall("grants/query"):
        privileges, target = grant_parts(query.text or "")
        assert target == "teilhabe.*", f"writer: {query.text} reaches beyond database teilhabe"
        assert "ALL" not in privileges and "WITH GRANT OPTION" not in (query.text or "")
        granted |= privileges
    missing = required_writer_privileges() - granted
    assert missing == set(), "the migrations or the sink need these; grant them in users.xml"
    assert writer.find("access_management") is None


def test_the_analyst_is_read_only_on_teilhabe() -> None:
    root = users_xml()
    analyst = root.find("users/analyst")
    assert analyst is not None
    for query in analyst.findall("grants/query"):
        privileges, target = grant_parts(query.text or "")
        # one k-suppressed view each (pipeline/sinks/access.py; tests/unit/test_access.py)
        assert privileges == {"SELECT"} and re.fullmatch(r"teilhabe\.\w+", target), query.text
    assert analyst.findall("grants/query"), "no grants: the analyst could read nothing"
    profile = root.find(f"profiles/{analyst.findtext('profile')}")
    assert profile is not None and profile.findtext("readonly") == "1"
    # Grafana's datasource sets max_execution_time: allowed in readonly, which needs this:
    changeable = profile.findall("constraints/*/changeable_in_readonly")
    if changeable:
        config = ET.parse(CONFIG_XML).getroot()
        flag = "access_control_improvements/settings_constraints_replace_previous"
        assert config.findtext(flag) == "true"


def test_the_data_steward_is_read_only_on_teilhabe_and_not_grafanas() -> None:
    root = users_xml()
    steward = root.find("users/data_steward")
    assert steward is not None
    queries = [grant_parts(q.text or "") for q in steward.findall("grants/query")]
    assert queries == [({"SELECT"}, "teilhabe.*")]
    profile = root.find(f"profiles/{steward.findtext('profile')}")
    assert profile is not None and profile.findtext("readonly") == "1"
    password = steward.find("password")
    assert password is not None and password.get("from_env") == "CLICKHOUSE_STEWARD_PASSWORD"
    assert "CLICKHOUSE_STEWARD_PASSWORD" not in environment(services()["grafana"])


def test_clickhouse_mounts_users_and_config_where_the_server_reads_them() -> None:
    ch = services()["clickhouse"]
    targets = {source: target for kind, source, target in mounts(ch) if kind == "bind"}
    assert targets["./deploy/clickhouse/users.xml"].startswith("/etc/clickhouse-server/users.d/")
    assert targets["./deploy/clickhouse/config.xml"].startswith("/etc/clickhouse-server/config.d/")
    for path in (USERS_XML, CONFIG_XML):
        assert "-->" in path.read_text() and ET.parse(path).getroot().tag == "clickhouse"
    env = environment(ch)
    assert env.get("CLICKHOUSE_SKIP_USER_SETUP") == "1", "the image would add its own user"
    assert "CLICKHOUSE_PASSWORD" not in env and "CLICKHOUSE_USER" not in env


# --- 5. Prometheus and Grafana ------------------------------------------------------------------


def test_prometheus_gets_the_checked_config_and_finds_every_worker() -> None:
    prom = services()["prometheus"]
    binds = {target: source for kind, source, target in mounts(prom) if kind == "bind"}
    assert ROOT / binds["/etc/prometheus"] == PROMETHEUS_DIR  # what test_prometheus_rules checks
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    for pattern in config["rule_files"]:
        assert list(PROMETHEUS_DIR.glob(pattern)), f"rule_files {pattern} matches nothing"
    worker_port = environment(services()["worker"])["TEILHABE_METRICS_PORT"]
    sd = [sd for job in config["scrape_configs"] for sd in job.get("dns_sd_configs", [])]
    assert any("worker" in sd["names"] and str(sd["port"]) == worker_port for sd in sd)


def test_grafana_installs_the_clickhouse_plugin_and_mounts_its_provisioning() -> None:
    grafana = services()["grafana"]
    env = environment(grafana)
    plugins = env.get("GF_PLUGINS_PREINSTALL_SYNC") or env.get("GF_PLUGINS_PREINSTALL") or ""
    pinned = dict(p.split("@", 1) for p in plugins.split(",") if "@" in p)
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned.get("grafana-clickhouse-datasource", ""))
    assert env.get("CLICKHOUSE_ANALYST_PASSWORD"), "the datasource reads it from Grafana's env"
    binds = {target: source for kind, source, target in mounts(grafana) if kind == "bind"}
    assert binds["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert binds["/var/lib/grafana/dashboards"] == "./deploy/grafana/dashboards"
    provisioning = GRAFANA_DIR / "provisioning"
    if not provisioning.is_dir():
        pytest.skip("deploy/grafana/provisioning not created yet")
    files = sorted(provisioning.rglob("*.y*ml"))
    assert files, "no provisioning files"
    for file in files:
        text = file.read_text()
        doc = yaml.safe_load(text)
        for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text):
            if not name.startswith("__"):  # $__file{...} / $__env{...} are Grafana's own
                assert name in env, f"{file.relative_to(ROOT)}: ${name} is not in Grafana's env"
        for source in (doc or {}).get("datasources", []) or []:
            if source.get("type") == "grafana-clickhouse-datasource":
                data = source.get("jsonData", {})
                assert data.get("username", "analyst") == "analyst", "Grafana must read-only"
                assert data.get("host", "clickhouse") == "clickhouse"
        for provider in (doc or {}).get("providers", []) or []:
            path = PurePosixPath(provider.get("options", {}).get("path", ""))
            assert any(
                path == PurePosixPath(t) or PurePosixPath(t) in path.parents for t in binds
            ), f"{file.name}: dashboards path {path} is not mounted"


# --- 6. nothing in production depends on the dev broker -------------------------------------------


def test_no_dev_broker_in_the_production_configuration() -> None:
    files = [COMPOSE, DOCKERFILE, ENV_EXAMPLE, DOCKERIGNORE]
    files += [p for p in (ROOT / "deploy").rglob("*") if p.is_file()]
    for file in files:
        text = file.read_text(errors="replace").lower()
        for word in ("tansu", "calfkit"):
            assert word not in text, f"{file.relative_to(ROOT)} mentions {word}"
    for name, service in services().items():
        env = environment(service)
        assert env.get("TEILHABE_KAFKA_FLAVOR", "kafka") == "kafka", name
        assert "TEILHABE_BROKER_SESSION_TIMEOUT_S" not in env, f"{name}: dev-broker timeouts"
    kafka = environment(services()["kafka"])
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"]


# --- 7. health checks, volumes, ports, images -----------------------------------------------------


def test_every_long_running_service_has_a_health_check() -> None:
    doc = compose()
    shots = one_shot(doc)
    assert shots == {"migrate"}
    for name, service in doc["services"].items():
        if name in shots:
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: no health check"
        assert service.get("restart") in ("unless-stopped", "always"), f"{name}: no restart"
    worker_deps = doc["services"]["worker"]["depends_on"]
    assert worker_deps["migrate"]["condition"] == "service_completed_successfully"
    assert worker_deps["kafka"]["condition"] == "service_healthy"
    assert worker_deps["clickhouse"]["condition"] == "service_healthy"


def test_worker_health_check_probes_its_metrics_port() -> None:
    worker = services()["worker"]
    port = environment(worker)["TEILHABE_METRICS_PORT"]
    assert f"127.0.0.1:{port}/metrics" in " ".join(worker["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/metrics" in DOCKERFILE.read_text()


def test_data_lives_in_named_volumes() -> None:
    doc = compose()
    declared = set(doc.get("volumes", {}))
    used = set()
    for name, service in doc["services"].items():
        for kind, source, target in mounts(service):
            if kind == "volume":
                assert source in declared, f"{name}: anonymous or undeclared volume at {target}"
                used.add(source)
        if name in DATA_DIRS:
            named = {t for k, _, t in mounts(service) if k == "volume"}
            assert DATA_DIRS[name] in named, f"{name}: {DATA_DIRS[name]} is not a named volume"
    assert declared == used, "declared but unused volumes"
    assert environment(doc["services"]["kafka"])["KAFKA_LOG_DIRS"] == DATA_DIRS["kafka"]
    prometheus = doc["services"]["prometheus"]["command"]
    assert f"--storage.tsdb.path={DATA_DIRS['prometheus']}" in prometheus


def test_workers_scale_and_host_ports_are_loopback_only() -> None:
    doc = compose()
    worker = doc["services"]["worker"]
    assert worker["deploy"]["replicas"] == 2
    assert "ports" not in worker and "container_name" not in worker, "replicas would clash"
    for name, service in doc["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            if name in PUBLIC:
                assert str(port).split(":") in ([p, p] for p in PUBLIC[name]), f"{name}: {port}"
                continue
            assert host_ip == "127.0.0.1", f"{name}: {port} is published beyond loopback"
    for name, ports in PUBLIC.items():
        proxy = doc["services"][name]
        assert proxy.get("profiles"), f"{name}: public, so only on request (a profile)"
        assert {str(p).split(":")[-1] for p in proxy["ports"]} == ports


def test_images_are_pinned() -> None:
    for name, service in services().items():
        image = str(service.get("image", ""))
        assert image, f"{name}: no image"
        tag = image.split("@")[0].rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        assert "@sha256:" in image or (tag and tag != "latest"), f"{name}: {image} is not pinned"
        assert re.search(r"\d", tag or image.split("@")[-1]), f"{name}: {image} has no version"
    teilhabe = {s["image"] for s in teilhabe_services().values()}
    assert len(teilhabe) == 1, "worker, migrate and generator run one image"
    for line in re.findall(r"^FROM (\S+)", DOCKERFILE.read_text(), re.M):
        assert ":" in line and not line.endswith(":latest"), f"Dockerfile: FROM {line}"


# --- the image ----------------------------------------------------------------------------------


def dockerignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins (``!`` re-includes)."""
    ignored = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        candidates = [pattern]
        if pattern.startswith("**/"):
            candidates.append(pattern[3:])
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates) or any(
            fnmatch.fnmatchcase(part, pattern[3:]) for part in parts if pattern.startswith("**/")
        ):
            ignored = not negate
    return ignored


def test_the_image_is_non_root_without_dev_dependencies_or_secrets() -> None:
    text = DOCKERFILE.read_text()
    final = text.split("\nFROM ")[-1]
    user = re.findall(r"^USER (\S+)", final, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0"), "runs as root"
    assert "[test]" not in text and "pip install -e" not in text, "dev dependencies in the image"
    assert "build-essential" not in final, "compilers in the runtime stage"
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), f"COPY {item}: no such file"
            assert not dockerignored(item), f"COPY {item}: excluded by .dockerignore"
    for secret in (".env", "secrets/pseudonym.key", "var/clickhouse", ".venv/bin", ".git/HEAD"):
        assert dockerignored(secret), f"{secret} would be sent to the Docker build"
    assert dockerignored("pipeline/__pycache__/x.pyc")


def test_dockerignore_matcher_can_fail() -> None:
    assert not dockerignored("pyproject.toml") and dockerignored("tests/ops/test_compose.py")


# --- README -------------------------------------------------------------------------------------


def test_readme_shows_the_production_path() -> None:
    readme = README.read_text()
    title = "## Production: Apache Kafka, ClickHouse, Prometheus, Grafana"
    assert title in readme and readme.index(title) < readme.index("## Configuration")
    section = readme[readme.index(title) :].split("\n## ", 1)[0]
    for needle in (
        "cp .env.example .env",
        "teilhabe keygen secrets/pseudonym.key",
        "docker compose up -d",
        "docker compose --profile generator up -d",
        "--scale worker=",
        "clickhouse-client",
        "analyst",
        "kafka-topics.sh",
        "ReplicatedReplacingMergeTree",
        "Distributed",
        "127.0.0.1:3000",
        "127.0.0.1:9090",
    ):
        assert needle in section, f"README production section lacks {needle!r}"


# --- alerting, retention, the webhook endpoint --------------------------------------------------


def test_workers_and_migrate_get_the_facts_retention(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("worker", "migrate"):
        env = environment(services()[name])
        assert env["TEILHABE_FACTS_TTL_DAYS"] == env_example()["FACTS_TTL_DAYS"], name
        settings = settings_for({**dockerfile_env(), **env}, monkeypatch)
        assert settings.facts_ttl_days == int(env_example()["FACTS_TTL_DAYS"])
    raw = environment(raw_compose()["services"]["worker"])
    assert raw["TEILHABE_FACTS_TTL_DAYS"] == "${FACTS_TTL_DAYS:-730}"  # the setting's default
    from pipeline.settings import Settings

    assert Settings.model_fields["facts_ttl_days"].default == 730


def test_alertmanager_runs_the_checked_config_with_its_secret_files() -> None:
    am = services()["alertmanager"]
    binds = {target: source for kind, source, target in mounts(am) if kind == "bind"}
    assert binds["/etc/alertmanager/alertmanager.yml"] == "./deploy/alertmanager/alertmanager.yml"
    assert all(v.endswith(":ro") for v in am["volumes"] if str(v).startswith("./"))
    assert image_name(am) == "prom/alertmanager"
    major, minor = (int(x) for x in am["image"].split(":v")[1].split(".")[:2])
    assert (major, minor) >= (0, 25), "the config uses *_file secrets (Alertmanager 0.25+)"
    # every `*_file:` of the config is a secret attached to the service
    files = re.findall(
        r"_file: (\S+)", (ROOT / binds["/etc/alertmanager/alertmanager.yml"]).read_text()
    )
    assert {f"/run/secrets/{s}" for s in am["secrets"]} >= set(files)
    assert "--cluster.listen-address=" in am["command"], "one instance: no gossip port"
    prometheus = services()["prometheus"]
    assert "alertmanager" in prometheus["depends_on"]


def test_the_worker_serves_the_webhook_with_a_token_from_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = services()["worker"]
    env = {**dockerfile_env(), **environment(worker)}
    s = settings_for(env, monkeypatch)
    assert s.webhook_enabled and s.webhook_host == "0.0.0.0"
    assert str(s.webhook_port) in [str(p) for p in worker["expose"]]
    assert s.webhook_token_file is not None and s.webhook_token_file.parent == Path("/run/secrets")
    assert s.webhook_token_file.name in worker["secrets"]
    assert s.webhook_max_bytes == int(env_example()["WEBHOOK_MAX_BYTES"])


def test_the_webhook_proxy_forwards_only_the_worker_routes_to_the_webhook_port() -> None:
    from agents.webhooks import ROUTES

    proxy = services()["webhook-proxy"]
    binds = {target: source for kind, source, target in mounts(proxy) if kind == "bind"}
    assert ROOT / binds["/etc/caddy/Caddyfile"] == CADDYFILE
    text = CADDYFILE.read_text()
    (paths,) = re.findall(r"^\s+path (.+)$", text, re.M)
    assert sorted(paths.split()) == sorted(ROUTES.values()), "the proxy's routes drift"
    assert "/healthz" not in text.split("@ingest", 1)[1] and "/metrics" not in paths
    worker = environment(services()["worker"])
    assert re.search(rf"name worker\s+port {worker['TEILHABE_WEBHOOK_PORT']}\s", text)
    env = environment(proxy)
    assert env["WEBHOOK_MAX_BODY"] == worker["TEILHABE_WEBHOOK_MAX_BYTES"]
    # the Caddyfile's placeholders are set, and its defaults agree with the compose defaults
    for name, default in re.findall(r"\{\$([A-Z_]+):([^}]*)\}", text):
        assert name in env, f"Caddyfile reads {name}, compose does not set it"
        raw = environment(raw_compose()["services"]["webhook-proxy"])[name]
        assert raw.endswith(f":-{default}}}"), f"{name}: Caddyfile default {default}, compose {raw}"
