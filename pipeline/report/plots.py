"""The report's plots: matplotlib (Agg) drawn to SVG strings to inline in the HTML.

Text stays text (``svg.fonttype = 'none'``: searchable, small, testable), the output is
deterministic (a fixed ``svg.hashsalt`` per plot, which also keeps element ids unique across the
plots of one page, and no date in the metadata). Every function takes rows that
``pipeline.report.figures`` read from the k-suppressed views and returns None when there is
nothing to draw, so labels only ever name groups a view shows.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

#: Okabe & Ito's colour-blind safe palette (black last: the org line).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
MAX_LINES = 8  # more units than this: the largest ones, the rest in the tables
MAX_BARS = 15  # more units or spaces: the largest ones (all of them in the embedded data)
STYLE: dict[str, Any] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial", "Liberation Sans"],
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#888888",
    "axes.grid": True,
    "grid.color": "#e4e4e4",
    "grid.linewidth": 0.8,
    "axes.axisbelow": True,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "legend.frameon": False,
    "legend.fontsize": 9,
}


@contextmanager
def figure(name: str, width: float = 8.0, height: float = 3.4) -> Iterator[Figure]:
    """A figure in the report's style; ``name`` salts the SVG ids (deterministic, unique)."""
    rc: Any = {**STYLE, "svg.hashsalt": f"teilhabe-report-{name}"}
    with plt.rc_context(rc):
        fig = plt.figure(figsize=(width, height))
        fig.set_label(name)
        try:
            yield fig
        finally:
            plt.close(fig)


def to_svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element (its size in pt: the same font size in every
    plot; the page's CSS shrinks it to the column when narrower)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg[svg.index("<svg") :], flags=re.S)
    prefix = fig.get_label()  # ids unique within the page: matplotlib numbers from 1 per plot
    svg = re.sub(r'\bid="', f'id="{prefix}-', svg)
    svg = svg.replace("url(#", f"url(#{prefix}-").replace('href="#', f'href="#{prefix}-')
    return svg.replace("<svg ", '<svg role="img" ', 1)


def _x(days: list[date]) -> list[float]:
    """Days as matplotlib's date numbers (the date axis formats them)."""
    import matplotlib.dates as mdates

    return [float(mdates.date2num(d)) for d in days]


def _top(values: dict[str, float], n: int) -> list[str]:
    return sorted(values, key=lambda u: (-values[u], u))[:n]


def of(shown: int, total: int, what: str) -> str:
    """A title's note when a plot shows only the largest of its groups."""
    return f" ({shown} largest of {total} {what})" if shown < total else ""


def _date_axis(ax: Any) -> None:
    """Whole days on the x axis, about six labels whatever the period's length."""
    import matplotlib.dates as mdates

    lo, hi = ax.get_xlim()
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, round((hi - lo) / 6))))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))


def adoption_daily(rows: list[dict[str, Any]]) -> str | None:
    """Active people per day by unit, as a share of the unit's headcount when known."""
    if not rows:
        return None
    share = all(r["adoption_rate"] is not None for r in rows)
    series: dict[str, dict[date, float]] = defaultdict(dict)
    for r in rows:
        v = r["adoption_rate"] * 100 if share else r["active_users"]
        series[r["unit"]][date.fromisoformat(r["day"])] = v
    mean = {u: sum(s.values()) / len(s) for u, s in series.items()}
    with figure("adoption-daily") as fig:
        ax = fig.subplots()
        for i, unit in enumerate(_top(mean, MAX_LINES)):
            pts = sorted(series[unit].items())
            ax.plot(
                _x([d for d, _ in pts]),
                [v for _, v in pts],
                marker="o",
                markersize=2.5,
                linewidth=1.6,
                color=PALETTE[i % len(PALETTE)],
                label=unit,
            )
        ax.set_ylabel("% of headcount active" if share else "active people")
        if share:
            ax.set_ylim(bottom=0)
        ax.set_title(
            "Active people per day"
            + (" (share of the unit's headcount)" if share else "")
            + of(min(MAX_LINES, len(series)), len(series), "units").replace(" largest", "")
        )
        _date_axis(ax)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return to_svg(fig)


def adoption_reach(rows: list[dict[str, Any]]) -> str | None:
    """Per unit: mean daily, weekly and 28-day active people against the headcount."""
    rows = [r for r in rows if r["headcount"]]
    if not rows:
        return None
    biggest = _top({r["unit"]: float(r["headcount"]) for r in rows}, MAX_BARS)
    note = of(len(biggest), len(rows), "units")
    rows = sorted(
        (r for r in rows if r["unit"] in biggest), key=lambda r: r["mau"] / r["headcount"]
    )
    with figure("adoption-reach", height=0.45 * len(rows) + 1.2) as fig:
        ax = fig.subplots()
        h = 0.26
        for j, (key, label) in enumerate(
            [("mau", "28 days"), ("wau", "7 days"), ("mean_dau", "a day (mean)")]
        ):
            ys = [i + (1 - j) * h for i in range(len(rows))]
            ax.barh(
                ys,
                [100 * r[key] / r["headcount"] for r in rows],
                height=h,
                color=PALETTE[j],
                label=label,
            )
        top = max(100.0, *(100 * r["mau"] / r["headcount"] for r in rows))
        for i, r in enumerate(rows):
            ax.text(
                top * 1.02,
                i,
                f"stickiness {100 * r['stickiness']:.0f}%",
                va="center",
                fontsize=8,
                color="#444444",
            )
        ax.set_yticks(range(len(rows)), [r["unit"] for r in rows])
        ax.set_xlim(0, top * 1.25)
        ax.set_xticks([x for x in range(0, int(top) + 1, 20)])
        ax.set_xlabel("% of the unit's headcount active (stickiness: DAU / MAU, mean)")
        ax.set_title("Reach at the end of the period" + note)
        ax.grid(axis="y", visible=False)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="active in")
        return to_svg(fig)


def stacked_shares(
    name: str, title: str, rows: list[dict[str, Any]], parts: list[tuple[str, str]]
) -> str | None:
    """Per unit a 100 % bar of ``parts`` (column, label), the share printed inside."""
    rows = [r for r in rows if sum(r[c] for c, _ in parts) > 0]
    biggest = _top({r["unit"]: float(sum(r[c] for c, _ in parts)) for r in rows}, MAX_BARS)
    title += of(len(biggest), len(rows), "units")
    rows = [r for r in rows if r["unit"] in biggest]
    if not rows:
        return None
    with figure(name, height=0.42 * len(rows) + 1.3) as fig:
        ax = fig.subplots()
        left = [0.0] * len(rows)
        for j, (col, label) in enumerate(parts):
            vals = [100 * r[col] / sum(r[c] for c, _ in parts) for r in rows]
            bars = ax.barh(
                range(len(rows)), vals, left=left, color=PALETTE[j], label=label, height=0.7
            )
            for bar, v in zip(bars, vals, strict=True):
                if v >= 7:
                    ax.text(
                        bar.get_x() + bar.get_width() / 2,
                        bar.get_y() + 0.35,
                        f"{v:.0f}%",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if j in (0, 2, 5, 7) else "black",
                    )
            left = [a + b for a, b in zip(left, vals, strict=True)]
        ax.set_yticks(range(len(rows)), [r["unit"] for r in rows])
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of people")
        ax.grid(visible=False)
        ax.set_title(title)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return to_svg(fig)


def ei_lines(rows: list[dict[str, Any]]) -> str | None:
    """The E-I index per day: the organisation (black) and its units."""
    rows = [r for r in rows if r["ei_index"] is not None]
    if not rows:
        return None
    series: dict[str, dict[date, float]] = defaultdict(dict)
    for r in rows:
        series[r["unit"]][date.fromisoformat(r["day"])] = r["ei_index"]
    units = {u: float(len(s)) for u, s in series.items() if u != "*"}
    with figure("ei-lines") as fig:
        ax = fig.subplots()
        ax.axhline(0, color="#888888", linewidth=0.8)
        for i, unit in enumerate(_top(units, MAX_LINES - 1)):
            pts = sorted(series[unit].items())
            ax.plot(
                _x([d for d, _ in pts]),
                [v for _, v in pts],
                linewidth=1.2,
                color=PALETTE[i % 7],
                label=unit,
                alpha=0.85,
            )
        if "*" in series:
            pts = sorted(series["*"].items())
            ax.plot(
                _x([d for d, _ in pts]),
                [v for _, v in pts],
                linewidth=2.8,
                color="black",
                label="organisation",
            )
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("E-I index")
        ax.text(
            0.005,
            0.02,
            "-1: all ties inside the unit",
            transform=ax.transAxes,
            fontsize=8,
            color="#555555",
        )
        ax.text(
            0.005,
            0.93,
            "+1: all ties to other units",
            transform=ax.transAxes,
            fontsize=8,
            color="#555555",
        )
        ax.set_title(
            "E-I index per day (Krackhardt & Stern)"
            + of(min(MAX_LINES - 1, len(units)), len(units), "units").replace(" largest", "")
        )
        _date_axis(ax)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return to_svg(fig)


def spanners(rows: list[dict[str, Any]]) -> str | None:
    """Boundary spanners as a share of the unit's active person-days."""
    rows = [r for r in rows if r["active_person_days"]]
    biggest = _top({r["unit"]: float(r["active_person_days"]) for r in rows}, MAX_BARS)
    note = of(len(biggest), len(rows), "units")
    rows = [r for r in rows if r["unit"] in biggest]
    if not rows:
        return None
    with figure("spanners", height=0.38 * len(rows) + 1.2) as fig:
        ax = fig.subplots()
        vals = [100 * r["spanner_person_days"] / r["active_person_days"] for r in rows]
        ax.barh(range(len(rows)), vals, color=PALETTE[2], height=0.65)
        for i, v in enumerate(vals):
            ax.text(v + 0.5, i, f"{v:.1f}%", va="center", fontsize=8)
        ax.set_yticks(range(len(rows)), [r["unit"] for r in rows])
        ax.invert_yaxis()
        ax.set_xlim(0, max(10.0, max(vals) * 1.2))
        ax.set_xlabel("% of active person-days spent spanning boundaries")
        ax.grid(axis="y", visible=False)
        ax.set_title("Boundary spanners" + note)
        return to_svg(fig)


def response_spaces(rows: list[dict[str, Any]]) -> str | None:
    """The busiest spaces: posts answered within the target, later, and not yet."""
    rows = [r for r in rows if r["posts"]]
    note = of(min(MAX_BARS, len(rows)), len(rows), "spaces by posts")
    rows = rows[:MAX_BARS]
    if not rows:
        return None
    with figure("response-spaces", height=0.4 * len(rows) + 1.3) as fig:
        ax = fig.subplots()
        labels = [
            f"{r['space_id']} ({r['platform']})" if r["platform"] else r["space_id"] for r in rows
        ]
        within = [r["answered_within_target"] for r in rows]
        unanswered = [r["unanswered"] for r in rows]
        later = [r["posts"] - a - u for r, a, u in zip(rows, within, unanswered, strict=True)]
        y = range(len(rows))
        ax.barh(y, within, color=PALETTE[2], label="answered within target", height=0.7)
        ax.barh(y, later, left=within, color=PALETTE[1], label="answered later", height=0.7)
        ax.barh(
            y,
            unanswered,
            left=[a + b for a, b in zip(within, later, strict=True)],
            color="#bbbbbb",
            label="not answered",
            height=0.7,
        )
        for i, r in enumerate(rows):
            m = r["median_first_response_s"]
            note = f"median {m / 3600:.1f} h" if m is not None else "none answered"
            ax.text(r["posts"] * 1.01, i, note, va="center", fontsize=8)
        ax.set_yticks(list(y), labels)
        ax.invert_yaxis()
        ax.set_xlim(0, max(r["posts"] for r in rows) * 1.25)
        ax.set_xlabel("posts")
        ax.grid(axis="y", visible=False)
        ax.set_title("Posts per community and how they were answered" + note)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return to_svg(fig)


def growth_lines(rows: list[dict[str, Any]]) -> str | None:
    """New, first-time contributing, returning and dormant people per day (units shown)."""
    if not rows:
        return None
    cols = [
        ("returning_users", "returning"),
        ("dormant_users", "dormant"),
        ("new_members", "new members"),
        ("first_time_contributors", "first contribution"),
    ]
    per_day: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        for c, _ in cols:
            per_day[date.fromisoformat(r["day"])][c] += r[c]
    days = sorted(per_day)
    with figure("growth", height=3.0) as fig:
        left, right = fig.subplots(1, 2)
        for ax, part in ((left, cols[:1]), (right, cols[1:])):
            for c, label in part:
                ax.plot(
                    _x(days),
                    [per_day[d][c] for d in days],
                    color=PALETTE[[c for c, _ in cols].index(c)],
                    linewidth=1.8,
                    label=label,
                )
            ax.set_ylim(bottom=0)
            _date_axis(ax)
            ax.legend(loc="lower left" if ax is left else "upper right")
        left.set_ylabel("people (sum of the units shown)")
        left.set_title("Returning people per day")
        right.set_title("Dormant, new and first-time contributors")
        fig.tight_layout()
        return to_svg(fig)


def cohort_lines(rows: list[dict[str, Any]]) -> str | None:
    """Each cohort's share of members active per day."""
    if not rows:
        return None
    series: dict[str, dict[date, float]] = defaultdict(dict)
    for r in rows:
        series[r["cohort"]][date.fromisoformat(r["day"])] = 100 * r["active_rate"]
    with figure("cohorts", height=3.0) as fig:
        ax = fig.subplots()
        for i, c in enumerate(_top({c: float(len(s)) for c, s in series.items()}, MAX_LINES)):
            pts = sorted(series[c].items())
            ax.plot(
                _x([d for d, _ in pts]),
                [v for _, v in pts],
                color=PALETTE[i % 8],
                marker="o",
                markersize=2.5,
                label=c,
            )
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of members active")
        ax.set_title("Cohorts: members active per day")
        _date_axis(ax)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return to_svg(fig)


def funnel(rows: list[dict[str, Any]]) -> str | None:
    """Ideas submitted and how many reached each status (sum of the units shown)."""
    stages = [
        ("submitted", "submitted"),
        ("in_review", "in review"),
        ("accepted", "accepted"),
        ("rejected", "rejected"),
        ("implemented", "implemented"),
    ]
    sums = {c: sum(r[c] for r in rows) for c, _ in stages}
    if not sums["submitted"]:
        return None
    with figure("funnel", height=2.6) as fig:
        ax = fig.subplots()
        vals = [sums[c] for c, _ in stages]
        colors = [PALETTE[0], PALETTE[4], PALETTE[2], PALETTE[5], PALETTE[3]]
        ax.barh(range(len(stages)), vals, color=colors, height=0.65)
        for i, v in enumerate(vals):
            share = 100 * v / sums["submitted"]
            ax.text(v, i, f"  {v:,} ({share:.0f}%)", va="center", fontsize=8)
        ax.set_yticks(range(len(stages)), [label for _, label in stages])
        ax.invert_yaxis()
        ax.set_xlim(0, sums["submitted"] * 1.25)
        ax.set_xlabel("ideas submitted in the period (sum of the units shown)")
        ax.grid(axis="y", visible=False)
        ax.set_title("Idea funnel")
        return to_svg(fig)
