"""One typed settings object for the whole pipeline, read from ``TEILHABE_*`` variables.

Every field is documented with its environment variable; the README's configuration table is
generated from this class (``teilhabe config --markdown``). Invalid values stop the start with a
message that names the variable, what is allowed and what it got.
"""

from __future__ import annotations

import os
import stat
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.envcheck import check_known, env_file_names
from pipeline.errors import ConfigError

ENV_PREFIX = "TEILHABE_"


class Settings(BaseSettings):
    """Configuration of a Teilhabe process (worker, CLI, demo)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=os.environ.get("TEILHABE_ENV_FILE", ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap: str = Field(
        "", description="Kafka bootstrap servers (host:port,...). Empty: start the embedded broker."
    )
    kafka_flavor: Literal["kafka", "tansu"] = Field(
        "kafka",
        description="Broker kind at TEILHABE_KAFKA_BOOTSTRAP; tansu = the embedded dev broker "
        "(short consumer group timeouts). Set by the demo and tests for the workers they start.",
    )
    app_id: str = Field("teilhabe", description="Faust app id = Kafka consumer group prefix.")
    topic_events: str = Field("teilhabe.events", description="Input topic: events or envelopes.")
    topic_activity: str = Field(
        "teilhabe.activity",
        description="Internal topic: valid pseudonymised events keyed by actor.",
    )
    topic_directory: str = Field(
        "teilhabe.directory", description="Compacted org directory topic (person -> unit, cohorts)."
    )
    topic_deadletter: str = Field(
        "teilhabe.deadletter", description="Invalid input with its original bytes and a reason."
    )
    events_partitions: int = Field(4, ge=1, le=1024, description="Partitions of the input topic.")
    activity_partitions: int = Field(
        4, ge=1, le=1024, description="Partitions of the activity topic (unit of parallelism)."
    )
    raw_retention_h: float = Field(
        24,
        gt=0,
        description="Retention in hours of the events and dead-letter topics (raw person ids), "
        "set as retention.ms when the workers create them.",
    )
    kafka_max_record_bytes: int = Field(
        1_000_000,
        ge=16_384,
        le=100_000_000,
        description="Largest Kafka record any Teilhabe producer writes (envelopes are split "
        "to fit; a single event above it is dead-lettered as oversized, a dead letter above "
        "it is cut). Keep it below the broker's message.max.bytes (Apache Kafka: 1048588).",
    )
    backfill_max_backlog: int = Field(
        200,
        ge=0,
        description="backfill and import --backfill send at most this many Kafka messages "
        "ahead of what the workers have committed, so the event-time windows they hold open "
        "stay bounded whatever the history's length (0 = no bound).",
    )
    broker_session_timeout_s: float = Field(
        0, ge=0, description="Consumer group session timeout; 0 = 6 s embedded, 30 s otherwise."
    )

    # --- Kafka security (README "Kafka security"; checked by pipeline.kafka_security) -------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How every Kafka client connects: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT "
        "or SASL_SSL (SASL over TLS). Anything but PLAINTEXT needs TEILHABE_KAFKA_BOOTSTRAP.",
    )
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="PEM file of the CA(s) that signed the brokers' certificates (SSL, "
        "SASL_SSL); unset = the system's CAs. Broker host names are always verified.",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="Client certificate (PEM) for mutual TLS; needs ..._SSL_KEYFILE."
    )
    kafka_ssl_keyfile: Path | None = Field(
        None,
        description="Private key (PEM, unencrypted) of the client certificate; must be "
        "readable by its owner only.",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (SASL_PLAINTEXT, SASL_SSL)."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password_file: Path | None = Field(
        None, description="File holding the SASL password; must be readable by its owner only."
    )

    # --- ClickHouse ------------------------------------------------------------------------
    clickhouse_dsn: str = Field(
        "chdb://",
        description="ClickHouse DSN. chdb:// = embedded chDB in TEILHABE_DATA_DIR/clickhouse, "
        "chdb://DIR = in DIR (served over HTTP on loopback by one process); "
        "http(s)://user@host:port = a ClickHouse server (the database is "
        "TEILHABE_CLICKHOUSE_DATABASE, created when missing).",
    )
    clickhouse_password: SecretStr | None = Field(
        None, description="ClickHouse password (or TEILHABE_CLICKHOUSE_PASSWORD_FILE)."
    )
    clickhouse_password_file: Path | None = Field(None, description="File holding the password.")
    clickhouse_database: str = Field("teilhabe", description="Database for tables and views.")
    sink_batch_rows: int = Field(
        10_000, ge=1, description="Rows per ClickHouse insert (flushes earlier on interval)."
    )
    sink_flush_interval_s: float = Field(
        1.0, gt=0, description="At most this long between ClickHouse flushes."
    )
    facts_ttl_days: int = Field(
        730,
        ge=1,
        description="Retention of pseudonymised event facts in ClickHouse (days); older events "
        "(also in a backfill) are dropped by the table's TTL. Every migrate (and worker start) "
        "brings the TTL of existing tables to this value.",
    )

    # --- Windows ---------------------------------------------------------------------------
    window_s: int = Field(3600, ge=1, description="Tumbling window size in event time (s).")
    grace_s: int = Field(
        600, ge=0, description="Lateness allowed before a window closes (event time, s)."
    )
    idle_close_s: float = Field(
        30.0,
        gt=0,
        description="If a partition gets no events for this long (wall clock), its watermark "
        "advances with the wall clock so idle windows still close.",
    )
    idle_close_mode: Literal["wall_clock", "flush_all", "end_of_input"] = Field(
        "wall_clock",
        description="What an idle partition does: advance its watermark with the wall clock "
        "(live); close all its windows (an input without end markers has ended); or nothing: "
        "end_of_input = windows close in event time and at the input's end-of-input markers "
        "only (backfill: exact whatever the timing, also across restarts).",
    )
    future_tolerance_s: int = Field(
        3600, ge=0, description="Events more than this far in the future are rejected."
    )
    max_message_bytes: int = Field(
        1_048_576, ge=1024, description="Larger Kafka messages go to the dead-letter topic."
    )

    # --- Privacy ---------------------------------------------------------------------------
    pseudonym_key: SecretStr | None = Field(
        None, description="HMAC key for pseudonymising person ids (or ..._KEY_FILE)."
    )
    pseudonym_key_file: Path | None = Field(
        None, description="File holding the HMAC key; must be readable by its owner only."
    )
    min_group_size: int = Field(
        5, ge=1, description="k: figures about fewer than k people are suppressed (1 = off)."
    )
    opt_out_file: Path | None = Field(
        None,
        description="People who opted out, one id per line (# comments); their events are "
        "dropped at ingest. Re-read when it changes.",
    )

    # --- Metric definitions (written to ClickHouse's config table for the views) -----------
    response_target_h: int = Field(
        24,
        ge=1,
        description="A post counts as answered in time when its first reply by "
        "someone else comes within this many hours (daily_response).",
    )
    unanswered_lookback_days: int = Field(
        14, ge=1, description="teilhabe_unanswered_posts counts posts of this many days back."
    )
    boundary_spanner_units: int = Field(
        3,
        ge=1,
        description="People who interacted with at least this many other units in a "
        "day are boundary spanners (daily_boundary_spanners).",
    )
    persona_ratio: float = Field(
        2.0,
        ge=1.01,
        description="Ratio band of the personas (persona_28d): made >= r x "
        "received = responder/broadcaster, received >= r x made = catalyst, else engager.",
    )
    heavy_contributions: int = Field(
        5,
        ge=1,
        description="Contributions in a day that make a heavy contributor (participation_pyramid).",
    )
    timezone: str = Field(
        "UTC",
        description="IANA time zone (e.g. Europe/Berlin) whose midnight ends a day: the day of "
        "every daily view, gauge and the report.",
    )

    # --- Exposition ------------------------------------------------------------------------
    fact_gauges_interval_s: float = Field(
        60.0,
        ge=1,
        description="How often a worker refreshes the gauges computed from the facts "
        "(cross-silo, response, participation, ideation, spaces, platforms).",
    )
    metrics_host: str = Field("127.0.0.1", description="Bind address of /metrics.")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Port of /metrics (0 = any).")

    # --- Grafana (teilhabe grafana push) ---------------------------------------------------
    grafana_url: str = Field(
        "http://127.0.0.1:3000", description="Grafana to upload dashboards and datasources to."
    )
    grafana_token: SecretStr | None = Field(
        None, description="Grafana service account token (or ..._TOKEN_FILE)."
    )
    grafana_token_file: Path | None = Field(
        None, description="File holding the Grafana token; must be readable by its owner only."
    )
    grafana_prometheus_url: str = Field(
        "http://prometheus:9090", description="Prometheus URL as Grafana reaches it (datasource)."
    )
    grafana_clickhouse_host: str = Field(
        "clickhouse", description="ClickHouse host as Grafana reaches it (datasource)."
    )
    grafana_clickhouse_port: int = Field(
        8123, ge=1, le=65535, description="ClickHouse HTTP port as Grafana reaches it."
    )
    grafana_clickhouse_user: str = Field(
        "analyst", description="Read-only ClickHouse user of the Grafana datasource."
    )
    grafana_clickhouse_password_file: Path | None = Field(
        None, description="File with that user's password (sent to Grafana as a secure field)."
    )

    # --- Webhooks (live ingest over HTTP, served by the worker) -----------------------------
    webhook_enabled: bool = Field(False, description="Serve the HTTP ingest endpoint.")
    webhook_host: str = Field("127.0.0.1", description="Bind address of the ingest endpoint.")
    webhook_port: int = Field(
        8088, ge=0, le=65535, description="Port of the ingest endpoint (0 = any)."
    )
    webhook_token_file: Path | None = Field(
        None, description="Bearer token for POST /v1/events (file, owner-only)."
    )
    slack_signing_secret_file: Path | None = Field(
        None, description="Slack app signing secret for POST /v1/slack/events (file, owner-only)."
    )
    mattermost_token_file: Path | None = Field(
        None, description="Mattermost outgoing webhook token(s), one per line (file, owner-only)."
    )
    webhook_max_bytes: int = Field(
        1_048_576, ge=1024, description="Larger request bodies are refused with 413."
    )
    webhook_rate_per_s: float = Field(
        200.0, gt=0, description="Authenticated requests per second per credential; above: 429."
    )
    webhook_burst: int = Field(
        400, ge=1, description="Authenticated requests a credential may send at once."
    )
    webhook_client_rate_per_s: float = Field(
        2.0,
        gt=0,
        description="Unauthenticated or refused requests per second per client address; "
        "above: 429.",
    )
    webhook_client_burst: int = Field(
        20, ge=1, description="Unauthenticated requests a client address may send at once."
    )
    webhook_header_timeout_s: float = Field(
        10.0, gt=0, description="A request's line and headers must arrive within this; else 408."
    )
    webhook_body_timeout_s: float = Field(
        30.0, gt=0, description="A request body must arrive within this; else 408."
    )
    webhook_keepalive_timeout_s: float = Field(
        75.0, gt=0, description="Idle connections (no request under way) are closed after this."
    )
    webhook_max_connections: int = Field(
        256, ge=1, description="Open connections at most; above: 503 with Retry-After."
    )

    # --- Process ---------------------------------------------------------------------------
    data_dir: Path = Field(Path("./var"), description="Local state, keys and logs.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    shutdown_timeout_s: float = Field(
        30.0,
        gt=0,
        description="On SIGTERM a worker flushes closed windows and commits for at most this "
        "long before it stops (what is left is replayed after the restart, not lost).",
    )
    demo: bool = Field(False, description="Demo mode: creates a pseudonymisation key if missing.")

    @field_validator("clickhouse_dsn")
    @classmethod
    def _check_dsn(cls, value: str) -> str:
        if not value.startswith(("chdb://", "http://", "https://", "clickhouse://")):
            raise ValueError(
                f"must start with chdb://, http://, https:// or clickhouse://, got {value!r}"
            )
        if urlsplit(value).password is not None:
            raise ValueError(
                "must not contain a password (it would show wherever the DSN is shown); put it "
                "in TEILHABE_CLICKHOUSE_PASSWORD or TEILHABE_CLICKHOUSE_PASSWORD_FILE"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name such as Europe/Berlin or UTC"
            ) from None
        return value

    @model_validator(mode="after")
    def _check_key_sources(self) -> Settings:
        if self.pseudonym_key is not None and self.pseudonym_key_file is not None:
            raise ValueError("set TEILHABE_PSEUDONYM_KEY or TEILHABE_PSEUDONYM_KEY_FILE, not both")
        return self

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Settings:
        from pipeline.kafka_security import check_combination

        check_combination(self)  # raises ConfigError naming the variable
        return self

    # --- derived ---------------------------------------------------------------------------
    @property
    def embedded_broker(self) -> bool:
        """True when no bootstrap server is configured: the embedded Tansu broker is used."""
        return not self.kafka_bootstrap.strip()

    @property
    def tansu(self) -> bool:
        """True when talking to Tansu (embedded or started by the demo): dev-only settings."""
        return self.embedded_broker or self.kafka_flavor == "tansu"

    @property
    def embedded_clickhouse(self) -> bool:
        """True when the DSN points at an embedded chDB directory."""
        return self.clickhouse_dsn.startswith("chdb://")

    @property
    def chdb_path(self) -> Path:
        """Directory of the embedded chDB (only meaningful when ``embedded_clickhouse``)."""
        return Path(
            self.clickhouse_dsn.removeprefix("chdb://") or str(self.data_dir / "clickhouse")
        )

    @property
    def session_timeout_s(self) -> float:
        """Consumer group session timeout: short on the embedded broker (see docs/design.md)."""
        if self.broker_session_timeout_s:
            return self.broker_session_timeout_s
        return 6.0 if self.tansu else 30.0

    def read_clickhouse_password(self) -> str:
        """The ClickHouse password from the environment or its file ('' when unset)."""
        if self.clickhouse_password is not None:
            return self.clickhouse_password.get_secret_value()
        if self.clickhouse_password_file is not None:
            return self.clickhouse_password_file.read_text().strip()
        return ""

    def read_pseudonym_key(self) -> bytes:
        """The HMAC key: TEILHABE_PSEUDONYM_KEY, else TEILHABE_PSEUDONYM_KEY_FILE, else
        ``data_dir/pseudonym.key`` when it exists (``teilhabe keygen --data-dir DIR`` writes
        it); in demo mode that file is created if missing.

        Raises ConfigError (naming the variables) when no key is available, or when the key file
        can be read by others than its owner.
        """
        own = default_key_path(self.data_dir)
        if self.pseudonym_key is not None:
            key = self.pseudonym_key.get_secret_value().encode()
        elif self.pseudonym_key_file is not None:
            key = read_private_file(self.pseudonym_key_file, "TEILHABE_PSEUDONYM_KEY_FILE")
        elif own.exists() or self.demo:
            key = read_private_file(ensure_demo_key(self.data_dir), "TEILHABE_DATA_DIR")
        else:
            raise ConfigError(
                f"no pseudonymisation key: none in {own} (TEILHABE_DATA_DIR), and neither "
                "TEILHABE_PSEUDONYM_KEY_FILE (a file readable by its owner only) nor "
                f"TEILHABE_PSEUDONYM_KEY is set; `teilhabe keygen --data-dir {self.data_dir}` "
                "creates one"
            )
        if len(key) < 16:
            raise ConfigError("the pseudonymisation key must be at least 16 bytes long")
        return key


#: The key's file name under TEILHABE_DATA_DIR (``teilhabe keygen``'s default, the demo's key).
KEY_FILE_NAME = "pseudonym.key"


def default_key_path(data_dir: Path) -> Path:
    """``data_dir/pseudonym.key``: used when no key is configured."""
    return data_dir / KEY_FILE_NAME


def ensure_demo_key(data_dir: Path) -> Path:
    """Create ``data_dir/pseudonym.key`` (mode 0600) unless it exists; return its path."""
    path = default_key_path(data_dir)
    if not path.exists():
        write_key_file(path)
    return path


def write_key_file(path: Path) -> None:
    """Write a fresh random 32-byte hex key to ``path`` with owner-only permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(os.urandom(32).hex())


def read_private_file(path: Path, variable: str) -> bytes:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{variable}: file {str(path)!r} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{variable}: {str(path)!r} is readable by group or others (mode {oct(mode & 0o777)});"
            " run: chmod 600 " + str(path)
        )
    return path.read_bytes().strip()


def redact_url(value: object) -> object:
    """``scheme://user:***@host...`` for a URL with a password; anything else unchanged."""
    if isinstance(value, str) and "://" in value and "@" in value:
        parts = urlsplit(value)
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
            if parts.port:
                netloc += f":{parts.port}"
            return urlunsplit(parts._replace(netloc=netloc))
    return value


def setting_names() -> list[str]:
    """The environment variable of every setting."""
    return [ENV_PREFIX + name.upper() for name in Settings.model_fields]


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; turn validation errors into one clear ConfigError.

    A ``TEILHABE_*`` variable (in the environment or the env file) that is no setting stops
    the start with the closest valid name: a misspelt setting would be ignored otherwise.
    """
    check_known(os.environ, setting_names())
    env_file = overrides.get("_env_file", Settings.model_config.get("env_file"))
    check_known(env_file_names(env_file), setting_names(), f" in {env_file}")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            var = ENV_PREFIX + field.upper() if err["loc"] else "settings"
            got = redact_url(err.get("input"))
            lines.append(f"{var}: {err['msg']} (got {got!r})")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (cached). Tests build their own with ``load_settings``."""
    return load_settings()
