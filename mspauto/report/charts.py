"""The monthly report's charts, drawn by matplotlib as SVG text for the HTML and PDF.

Each chart is a pure function of the report. A chart without data draws the words
"No data" instead of empty axes, which would read as zero. Figures are built with
:class:`matplotlib.figure.Figure` directly (pyplot's global figure registry is not
thread-safe), text is drawn as paths with mathtext off (a host named ``$\\x$`` is text,
not a formula that fails to parse), and IDs are salted and the date left out so the
same report always gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, ParamSpec

from matplotlib import rc_context
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.typing import RcKeyType

from mspauto.sla.model import BaselineHost, MonthlyReport

__all__ = ["NO_DATA", "baseline_chart", "headline_chart", "latency_chart"]

NO_DATA = "no-data"
"""The SVG id of a chart's "No data" text (``no-data-<x>`` where one category lacks
data), so tools and tests can tell "nothing to chart" from a chart of zeros."""

# The stylesheet's colours: ink for this month, a light tint for last month (and the
# 90th percentile), red for contract lines and scores below the floor.
CURRENT = "#1f3a5f"
PREVIOUS = "#a9bcd0"
DEADLINE = "#b3261e"
BELOW = DEADLINE
_MUTED = "#6b7280"
_GRID = "#e3e8ef"

_WIDTH_IN = 7.0
"""The A4 page's text width (178 mm)."""
_PER_HOST_BARS_UP_TO = 20
"""More hosts than this and the baseline chart drops host names for a sorted profile."""
_LABEL_CHARS = 28

_RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "mspauto",
    "svg.fonttype": "path",
    "text.parse_math": False,
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.edgecolor": "#c5ced9",
    "axes.labelcolor": "#333333",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": "#333333",
    "ytick.color": "#333333",
    "legend.frameon": False,
}


_P = ParamSpec("_P")


def _styled(draw: Callable[_P, str]) -> Callable[_P, str]:
    """Run ``draw`` under the charts' rc settings: they apply when artists are made, not
    only when the figure is saved."""

    @wraps(draw)
    def styled(*args: _P.args, **kwargs: _P.kwargs) -> str:
        with rc_context(_RC):
            return draw(*args, **kwargs)

    return styled


@_styled
def headline_chart(report: MonthlyReport) -> str:
    """The percentage headlines, this month against last month, as bars."""
    headlines = [h for h in report.headlines if h.unit == "%"]
    if all(h.value is None for h in headlines):
        return _no_data()
    fig, ax = _figure(2.3)
    width = 0.38
    for i, headline in enumerate(headlines):
        if headline.previous is not None:
            _bar(ax, i - width / 2, headline.previous, width, PREVIOUS, "%")
        if headline.value is None:
            _no_data_at(ax, i + width / 2, 100)
        else:
            _bar(ax, i + width / 2, headline.value, width, CURRENT, "%")
    ax.set_xticks(range(len(headlines)), [_wrapped(h.label) for h in headlines])
    ax.set_ylim(0, 112)
    ax.set_yticks([0, 25, 50, 75, 100])
    ax.set_ylabel("%")
    _legend(
        ax, [Patch(color=PREVIOUS, label="last month"), Patch(color=CURRENT, label="this month")]
    )
    return _svg(fig)


@_styled
def latency_chart(report: MonthlyReport) -> str:
    """Median and 90th-percentile days to patch per severity, against the contract's
    deadline for that severity."""
    latency = report.patching.latency
    if all(s.median_days is None and s.p90_days is None for s in latency):
        return _no_data()
    deadlines: dict[str, float] = {
        str(k): float(v) for k, v in report.contract.get("patch_deadlines_days", {}).items()
    }
    fig, ax = _figure(2.4)
    width = 0.36
    top = max(
        [v for s in latency for v in (s.median_days, s.p90_days) if v is not None]
        + [deadlines.get(s.severity, 0.0) for s in latency]
    )
    for i, stats in enumerate(latency):
        if stats.median_days is None and stats.p90_days is None:
            _no_data_at(ax, i, top)
        else:
            if stats.median_days is not None:
                _bar(ax, i - width / 2, stats.median_days, width, CURRENT, "")
            if stats.p90_days is not None:
                _bar(ax, i + width / 2, stats.p90_days, width, PREVIOUS, "")
        deadline = deadlines.get(stats.severity)
        if deadline is not None:
            ax.hlines(deadline, i - 0.46, i + 0.46, colors=DEADLINE, linestyles="--", lw=1.2)
    ax.set_xticks(range(len(latency)), [s.severity.capitalize() for s in latency])
    ax.set_xlim(-0.6, len(latency) - 0.4)
    ax.set_ylim(0, top * 1.18 or 1)
    ax.set_ylabel("days to patch")
    _legend(
        ax,
        [
            Patch(color=CURRENT, label="median"),
            Patch(color=PREVIOUS, label="90th percentile"),
            Line2D([], [], color=DEADLINE, ls="--", lw=1.2, label="contract deadline"),
        ],
    )
    return _svg(fig)


@_styled
def baseline_chart(report: MonthlyReport) -> str:
    """Each host's hardening score against the contract's floor: one named bar per host
    for a small fleet, a sorted profile of every host for a large one."""
    hosts = report.baseline.hosts
    floor = report.baseline.floor
    if all(h.score is None for h in hosts):
        return _no_data()
    if len(hosts) <= _PER_HOST_BARS_UP_TO:
        return _per_host(hosts, floor)
    return _profile(hosts, floor)


def _per_host(hosts: Sequence[BaselineHost], floor: float) -> str:
    fig, ax = _figure(0.6 + 0.22 * len(hosts))
    for i, host in enumerate(hosts):
        if host.score is None:
            ax.text(1, i, "not audited", va="center", color=_MUTED, style="italic")
            continue
        colour = CURRENT if host.score >= floor else BELOW
        ax.barh(i, host.score, height=0.62, color=colour)
        ax.text(host.score + 1, i, f"{host.score:.1f}", va="center", fontsize=7)
    ax.axvline(floor, color=DEADLINE, ls="--", lw=1.2, label=f"floor {floor:.1f}")
    ax.set_yticks(range(len(hosts)), [_short(h.host) for h in hosts])
    ax.set_ylim(len(hosts) - 0.5, -0.5)
    ax.set_xlim(0, 108)
    ax.set_xlabel("baseline score")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _svg(fig)


def _profile(hosts: Sequence[BaselineHost], floor: float) -> str:
    scores = sorted(h.score for h in hosts if h.score is not None)
    below = sum(score < floor for score in scores)
    not_audited = len(hosts) - len(scores)
    fig, ax = _figure(2.3)
    # Sorted, the hosts below the floor come first: two filled step outlines draw
    # thousands of hosts as two paths instead of a rectangle each.
    ax.stairs(scores[:below], range(below + 1), fill=True, color=BELOW)
    ax.stairs(scores[below:], range(below, len(scores) + 1), fill=True, color=CURRENT)
    ax.axhline(floor, color=DEADLINE, ls="--", lw=1.2, label=f"floor {floor:.1f}")
    ax.set_xlim(0, len(scores))
    ax.set_ylim(0, 108)
    ax.set_xticks([])
    ax.set_ylabel("baseline score")
    note = f"{below} of {len(scores)} audited hosts below the floor"
    if not_audited:
        note += f"; {not_audited} not audited"
    ax.set_xlabel(f"hosts, lowest score first ({note})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _svg(fig)


def _figure(height: float) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(_WIDTH_IN, height), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axisbelow(True)
    ax.grid(axis="both", color=_GRID, lw=0.6)
    return fig, ax


def _bar(ax: Axes, x: float, value: float, width: float, colour: str, unit: str) -> None:
    ax.bar(x, value, width=width, color=colour)
    ax.text(x, value, f"{value:.1f}{unit}", ha="center", va="bottom", fontsize=6.5)


def _no_data_at(ax: Axes, x: float, top: float) -> None:
    ax.text(
        x,
        top * 0.04,
        "no data",
        ha="center",
        va="bottom",
        color=_MUTED,
        rotation=90,
        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5},
        zorder=5,
        gid=f"{NO_DATA}-{x:g}",
    )


def _no_data() -> str:
    fig = Figure(figsize=(_WIDTH_IN, 1.2))
    fig.patch.set_edgecolor("#c5ced9")
    fig.patch.set_linewidth(1.0)
    fig.text(0.5, 0.55, "No data", ha="center", va="center", fontsize=16, color=_MUTED, gid=NO_DATA)
    fig.text(
        0.5,
        0.35,
        "no evidence this month: nothing to chart (not a zero)",
        ha="center",
        va="center",
        fontsize=8,
        color=_MUTED,
    )
    return _svg(fig)


def _legend(ax: Axes, handles: Sequence[Artist]) -> None:
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _wrapped(label: str) -> str:
    """A category label on at most two lines."""
    short = _short(label)
    if len(short) <= 12 or " " not in short:
        return short
    middle = len(short) // 2
    spaces = [i for i, ch in enumerate(short) if ch == " "]
    cut = min(spaces, key=lambda i: abs(i - middle))
    return short[:cut] + "\n" + short[cut + 1 :]


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"


def _svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element (no XML prologue: it goes inside HTML)."""
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg") :]
