"""The report's heatmaps (the unit x unit matrix, coverage by type and platform): vector cells
drawn with ``pcolormesh``, never an embedded raster image, in the style of
``pipeline.report.plots``."""

from __future__ import annotations

from typing import Any

import matplotlib

from pipeline.report.plots import figure, of, to_svg

#: More units than this: the matrix of the busiest ones (every cell is in the embedded data).
MAX_UNITS = 20

matplotlib.use("Agg")


def _cells(ax: Any, grid: list[list[float]], cmap: str, empty: str) -> Any:
    """A heatmap of vector cells (no embedded raster image), row 0 at the top, log colours;
    NaN cells (none, or hidden) in ``empty``."""
    import numpy as np

    values = np.ma.masked_invalid(np.array(grid, dtype=float))
    rows, cols = values.shape
    mesh = ax.pcolormesh(
        np.arange(cols + 1) - 0.5,
        np.arange(rows + 1) - 0.5,
        values,
        cmap=matplotlib.colormaps[cmap].with_extremes(bad=empty),
        norm=matplotlib.colors.LogNorm(vmin=1, vmax=max(1.0, float(values.max() or 1))),
        edgecolors="white",
        linewidth=1.0,
    )
    ax.set_facecolor(empty)
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return mesh


def silo_heatmap(rows: list[dict[str, Any]]) -> str | None:
    """The unit x unit matrix of interactions summed over the period (shown cells only)."""
    rows = [r for r in rows if r["interactions"] > 0]
    if not rows:
        return None
    weight: dict[str, float] = {}
    for r in rows:
        for u in (r["from_unit"], r["to_unit"]):
            weight[u] = weight.get(u, 0.0) + r["interactions"]
    units = sorted(sorted(weight, key=lambda u: (-weight[u], u))[:MAX_UNITS])
    rows = [r for r in rows if r["from_unit"] in units and r["to_unit"] in units]
    idx = {u: i for i, u in enumerate(units)}
    grid = [[float("nan")] * len(units) for _ in units]
    for r in rows:
        grid[idx[r["from_unit"]]][idx[r["to_unit"]]] = r["interactions"]
    size = min(8.0, max(4.0, 0.55 * len(units) + 2.5))
    small = len(units) > 12
    with figure("silo-heatmap", width=size + 1.5, height=size) as fig:
        ax = fig.subplots()
        im = _cells(ax, grid, "Blues", "#f2f2f2")
        ax.set_aspect("equal")
        top = max(r["interactions"] for r in rows)
        if not small:
            for r in rows:
                v = r["interactions"]
                ax.text(
                    idx[r["to_unit"]],
                    idx[r["from_unit"]],
                    f"{v:,}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if v > top**0.75 else "black",
                )
        ax.set_xticks(range(len(units)), units, rotation=35 if not small else 60, ha="right")
        ax.set_yticks(range(len(units)), units)
        ax.tick_params(labelsize=7 if small else 10)
        ax.set_xlabel("to unit (target of the reply, reaction, mention or share)")
        ax.set_ylabel("from unit (actor)")
        ax.grid(visible=False)
        ax.set_title(
            "Interactions between units over the period"
            + of(len(units), len(weight), "units by interactions")
        )
        bar = fig.colorbar(im, ax=ax, shrink=0.7, label="interactions")
        if bar.solids is not None:
            bar.solids.set_rasterized(False)  # vector, not an embedded image
            bar.solids.set_edgecolor("face")  # no seams between its bands
        return to_svg(fig)


def coverage_heatmap(cells: list[dict[str, Any]], types: list[str]) -> str | None:
    """Events by type (rows, every type of the contract) and platform (columns)."""
    if not cells:
        return None
    platforms = sorted({c["platform"] for c in cells})
    grid = [[float("nan")] * len(platforms) for _ in types]
    for c in cells:
        grid[types.index(c["event_type"])][platforms.index(c["platform"])] = c["events"]
    with figure(
        "coverage", width=2.2 + 1.4 * len(platforms), height=0.33 * len(types) + 1.4
    ) as fig:
        ax = fig.subplots()
        _cells(ax, grid, "Purples", "#f7f7f7")
        top = max(c["events"] for c in cells)
        for c in cells:
            v = c["events"]
            ax.text(
                platforms.index(c["platform"]),
                types.index(c["event_type"]),
                f"{v:,}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if v > top**0.8 else "black",
            )
        ax.set_xticks(range(len(platforms)), [p or "(none)" for p in platforms])
        ax.xaxis.tick_top()
        ax.set_yticks(range(len(types)), types)
        ax.grid(visible=False)
        ax.tick_params(length=0)
        ax.set_title("Events by type and platform (grey: none, or fewer than k people)", pad=24)
        return to_svg(fig)
