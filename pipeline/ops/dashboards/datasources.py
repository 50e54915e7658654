"""The datasources the dashboards query: uids and types (``teilhabe grafana push`` creates them
with these), and the ClickHouse plugin's query-model constants."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import DataSourceRef

PROMETHEUS_UID = "teilhabe-prometheus"
PROMETHEUS_TYPE = "prometheus"
CLICKHOUSE_UID = "teilhabe-clickhouse"
CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
#: v4 of the ClickHouse plugin reads this query model as is (older ones are migrated).
CLICKHOUSE_PLUGIN_VERSION = "4.0.0"
#: sqlutil.FormatQueryOption of grafana-plugin-sdk-go, which the ClickHouse plugin uses.
FORMAT_TIME_SERIES = 0
FORMAT_TABLE = 1

PROMETHEUS = DataSourceRef(type_val=PROMETHEUS_TYPE, uid=PROMETHEUS_UID)
CLICKHOUSE = DataSourceRef(type_val=CLICKHOUSE_TYPE, uid=CLICKHOUSE_UID)
