"""Fake readings (``pipeline.ops.readings``) for the gauge tests: two data sets, A and B, with
other units, values and days, and each refresh as the worker calls it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from pipeline.ops import gauges, readings
from pipeline.ops.exporter import PipelineMetrics


def data(tag: str) -> dict[str, Any]:
    """Data set A or B: other units, values and days, so that any mix is visible."""
    a = tag == "A"
    units = ["IT", "HR", "Sales"] if a else ["IT", "Legal"]
    n = 10 if a else 20
    window = readings.NewestWindow(
        start=1_700_000_000 if a else 1_700_003_600,
        units={u: (n + i, {"view": n + i, "post_created": i + 1}) for i, u in enumerate(units)},
    )
    if hasattr(window, "baseline"):
        window.baseline = {u: (float(n), 1.0 + i / 10) for i, u in enumerate(units)}
    return {
        "window": window,
        "past": [{u: n for u in units}] * 4,
        "unanswered": [(u, n + i, 9) for i, u in enumerate(units)],
        "unanswered_space": [(f"space-{u}", "chat", n + i) for i, u in enumerate(units)],
        "figures": readings.DayFigures(
            day=date(2026, 3, 2) if a else date(2026, 3, 3),
            ei=[(u, -0.5 + i / 10, 0.1 * (i + 1)) for i, u in enumerate([*units, "*"])],
            pyramid=[(u, n, n + 1, n + 2) for u in units],
            ideation=[(u, 1, n, 3) for u in units],
            spaces=[(f"space-{u}", "chat", n) for u in units],
            platforms=[("chat", n), ("wiki", n + 5)] if a else [("chat", n)],
        ),
        "headcount": [(u, n * 3) for u in units],
    }


class FakeReadings:
    """Readings of the current data set (switched between refreshes)."""

    def __init__(self) -> None:
        self.now = data("A")
        three = "int, int]" in str(inspect.signature(readings.unanswered_by_unit).return_annotation)
        self.with_authors = three  # (unit, posts, authors) in older readings, else (unit, posts)

    def install(self, mp: pytest.MonkeyPatch) -> None:
        mp.setattr(readings, "newest_window", lambda *a, **k: self.now["window"])
        mp.setattr(readings, "past_window_events", lambda *a, **k: self.now["past"], raising=False)
        mp.setattr(
            readings,
            "unanswered_by_unit",
            lambda *a, **k: [r if self.with_authors else r[:2] for r in self.now["unanswered"]],
        )
        mp.setattr(
            readings,
            "unanswered_by_space",
            lambda *a, **k: self.now["unanswered_space"],
            raising=False,
        )
        mp.setattr(readings, "newest_day_figures", lambda *a, **k: self.now["figures"])
        mp.setattr(readings, "unit_headcount", lambda *a, **k: self.now["headcount"], raising=False)


def refreshes(m: PipelineMetrics) -> dict[str, Callable[[], None]]:
    """Each refresh as the worker calls it (the client is unused: the readings are fakes)."""
    client: Any = None
    out: dict[str, Callable[[], None]] = {
        "engagement": lambda: gauges.refresh_engagement_gauges(client, "db", m, 3600),
        "unanswered": lambda: gauges.refresh_unanswered_gauge(client, "db", m, 48, 14, 0),
        "facts": lambda: gauges.refresh_fact_gauges(client, "db", m),
    }
    if hasattr(gauges, "refresh_unanswered_by_space_gauge"):
        out["unanswered_space"] = lambda: gauges.refresh_unanswered_by_space_gauge(
            client, "db", m, 48, 14, 0
        )
    if hasattr(gauges, "refresh_headcount_gauge"):
        out["headcount"] = lambda: gauges.refresh_headcount_gauge(client, "db", m)
    return out
