"""Gauge families served from an immutable snapshot: a scrape sees a whole refresh or none of it.

The gauges read from ClickHouse (``pipeline.ops.gauges``) used to be cleared and then set child by
child while Prometheus could scrape, so a scrape could see an empty or half-filled family. Here a
refresh builds every family it owns first and then replaces them with one assignment of a new
mapping; ``collect`` reads that mapping once, so each scrape sees either the old or the new
complete set of every family.

The families are defined by ``SnapshotGauge`` objects (name, help, label names exactly as a
``prometheus_client.Gauge``, so the metrics reference and the alert rules see the same names and
types) that are never registered themselves and refuse ``labels``/``set``: their values only ever
come in through ``FactGauges.publish``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NoReturn

from prometheus_client import Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: One sample: label values (in the family's label order) and the value.
Sample = tuple[tuple[str, ...], float]


class SnapshotGauge(Gauge):
    """The definition of a gauge family served by ``FactGauges`` (never registered itself)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, labelnames, registry=None)

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            f"{self._name} is served from a snapshot: publish it with FactGauges.publish "
            "(pipeline.ops.gauges), never set a child"
        )

    labels = set = inc = dec = clear = remove = _refuse


class FactGauges(Collector):
    """Collector of the ``SnapshotGauge`` families: publish replaces families, collect reads one
    snapshot.

    ``serving`` is False on a worker that is not the leader (``agents.leader``): it exports the
    families empty and drops publishes (a refresh still in flight when the role moved on).
    """

    def __init__(self, specs: Iterable[SnapshotGauge]) -> None:
        self._specs: dict[str, SnapshotGauge] = {s._name: s for s in specs}  # noqa: SLF001
        self._values: Mapping[str, tuple[Sample, ...]] = MappingProxyType({})
        self._lock = threading.Lock()  # publishers only; collect never waits
        self.serving = True

    def _family(self, spec: SnapshotGauge) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            spec._name,  # noqa: SLF001 - the definition's own fields
            spec._documentation,  # noqa: SLF001
            labels=list(spec._labelnames),  # noqa: SLF001
        )

    def describe(self) -> list[GaugeMetricFamily]:
        """The families without samples (what the registry checks for duplicate names)."""
        return [self._family(spec) for spec in self._specs.values()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Every family from one snapshot (families without a value have no samples)."""
        values = self._values  # one read: the old or the new complete set, never a mix
        for name, spec in self._specs.items():
            family = self._family(spec)
            for labels, value in values.get(name, ()):
                family.add_metric(labels, value)
            yield family

    def publish(self, families: Mapping[SnapshotGauge, Iterable[Sample]]) -> bool:
        """Replace the given families (each one completely) in one assignment; the others keep
        their values. False (nothing changed) while not serving."""
        new: dict[str, tuple[Sample, ...]] = {}
        for spec, samples in families.items():
            name, arity = spec._name, len(spec._labelnames)  # noqa: SLF001
            if self._specs.get(name) is not spec:
                raise KeyError(f"{name} is not a family of this collector")
            rows = tuple((tuple(map(str, labels)), float(v)) for labels, v in samples)
            if any(len(labels) != arity for labels, _ in rows):
                raise ValueError(f"{name}: every sample needs {arity} label values")
            new[name] = rows
        with self._lock:
            if not self.serving:
                return False
            self._values = MappingProxyType({**self._values, **new})
        return True

    def serve(self, on: bool) -> None:
        """Start or stop serving; stopping empties every family at once."""
        with self._lock:
            self.serving = on
            if not on:
                self._values = MappingProxyType({})

    def value(self, spec: SnapshotGauge, labels: Sequence[str] = ()) -> float | None:
        """The served value of one sample (None when absent)."""
        for got, v in self._values.get(spec._name, ()):  # noqa: SLF001
            if got == tuple(labels):
                return v
        return None
