"""Grafana dashboards as code (grafana-foundation-sdk): adoption, cross-silo collaboration,
community response and ideation, pipeline health.

Pure functions: ``output.dashboards()`` returns the dashboard JSON models, ``output.generate``
writes them to ``<uid>.json`` (committed under deploy/grafana/dashboards, provisioned by Grafana
and uploaded by ``teilhabe grafana push``). Live figures come from Prometheus (every worker
exports the same fact-derived gauges, so they are aggregated with ``max by (unit)``; counters
with ``sum(rate(...[5m]))``), history from the ClickHouse analyst views (docs/metrics.md), which
already leave out groups smaller than k people.

ClickHouse targets are for the official plugin ``grafana-clickhouse-datasource`` (v4 query
model): ``editorType: "sql"``, ``rawSql`` with the plugin's macros (``$__dateFilter(day)``),
``format`` as in grafana-plugin-sdk-go's sqlutil (0 = time series, 1 = table) and the matching
``queryType`` (``timeSeries`` / ``table``). Time series queries name their time column ``time``.

Modules: ``datasources`` (uids, types), ``queries`` (targets), ``panels`` (panel and dashboard
builders), one module per dashboard, ``output`` (models, file form, ``generate``).
"""
