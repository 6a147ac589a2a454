"""Trend charts for the review pack: vector SVG, drawn without a browser (matplotlib).

One small chart per key KPI and partner: the last periods' values as a line, the target
as a dashed line, the reviewed period marked. Periods without data are gaps, never 0.
Text in the SVG is drawn as paths (``svg.fonttype = "path"``): the chart looks the same
wherever it is opened, and the PDF's text layer holds only the tables' numbers.
"""

from __future__ import annotations

import io
import math
import re

import matplotlib

matplotlib.use("Agg")  # no display, no browser: safe in a server process
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

LINE, TARGET, MARK = "#0969da", "#6e7781", "#cf222e"


def trend_svg(title: str, labels: list[str], values: list[float | None], *, unit: str,
              target: float | None = None, highlight: str | None = None, prefix: str = "") -> str:
    """An SVG document (text) of one KPI's trend."""
    fig = Figure(figsize=(4.6, 2.2), dpi=100)
    ax = fig.add_subplot()
    ys = [math.nan if v is None else float(v) for v in values]
    ax.plot(range(len(labels)), ys, color=LINE, marker="o", linewidth=1.8, markersize=3.5)
    if target is not None:
        ax.axhline(target, color=TARGET, linestyle="--", linewidth=1, label=f"target {target:g}")
    if highlight in labels:
        i = labels.index(highlight)
        if not math.isnan(ys[i]):
            ax.plot([i], [ys[i]], marker="o", color=MARK, markersize=6)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    # 4,200,000 on the axis, not "1e6" above it
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"))
    ax.set_title(f"{title} ({unit})", fontsize=9, loc="left")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", color="#d0d7de", linewidth=0.5)
    if all(math.isnan(y) for y in ys):
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color=TARGET)
    fig.tight_layout()
    out = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "partnerboard"}):
        fig.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    return _own_ids(text[text.index("<svg"):], prefix)  # no XML prolog: the SVG sits inside HTML


_ID = re.compile(r'(id="|href="#|url\(#)([^"#)]+)')


def _own_ids(svg: str, prefix: str) -> str:
    """matplotlib numbers its ids the same in every figure; one document holds several
    figures, so each gets its own prefix (ids, href and url() references alike)."""
    return _ID.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg) if prefix else svg
