"""What a swarm run found, for people: a text summary, charts, and a run folder with one offline HTML page.

After a run, three things want telling, in this order: did the server break a rule
(the checker's violations), how fast were messages delivered (latency and loss), and
did everyone get a fair share (fairness). Everything here follows that order.

* :func:`summary_table` is the plain text the command line prints at the end, and
  :func:`figure_summary` its last line, a one-line figure summary such as
  ``50 bots, 12,345 deliveries, 0 lost, p99 3.20 ms, Jain 0.98, 0 violations``.
* :func:`plot_latency_cdf`, :func:`plot_latency_over_time`, :func:`plot_fairness` and
  :func:`plot_timeline` return matplotlib figures, for notebooks and for the report.
* :func:`write_report` fills a run folder: ``events.csv``, ``summary.json``, one PNG
  per chart and ``report.html``, a single file that opens offline (its images are
  embedded, its style inline, and it links to nothing).

The figures are plain :class:`matplotlib.figure.Figure` objects drawn by the Agg
renderer, never registered with ``pyplot``: no window ever opens, no global state
changes, nothing needs closing (a figure is freed like any object). In Jupyter, a
cell that ends with one shows it.

``check_result`` is what ``chatlab.swarm.checker.check()`` returns; only its
``violations`` (kind -> a record with ``kind``, ``count``, ``example`` and
``explanation``), ``ok`` and ``summary()`` are used. ``None`` means "not checked".
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from chatlab.swarm.events import Event, write_csv
from chatlab.swarm.metrics import NS_PER_MS, NS_PER_S, PERCENTILES, Distribution, Metrics, membership_changes

Window = tuple[float, float, str]  # an impairment or fault window: (start_s, end_s, label), seconds since t0

CHARTS = {  # file name -> caption, in the order the report shows them
    "latency_cdf.png": "How long deliveries took: the share of (message, receiver) pairs delivered within a given time.",
    "latency_over_time.png": "Latency of the messages planned in each second of the run.",
    "fairness.png": "Per-bot fairness: each receiver's mean latency and each sender's delivered throughput.",
    "timeline.png": "The run over time: sends, deliveries, joins, leaves and who was online.",
}

MAX_PLOT_POINTS = 5000  # a CDF with more samples is drawn from this many exact samples
MAX_TICK_LABELS = 40  # name each bot under its bar up to this many bots
PLANNED_COLOR, ACTUAL_COLOR, WORST_COLOR, LOSS_COLOR = "tab:blue", "tab:orange", "tab:red", "tab:red"


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------


def format_ms(ns: float | None) -> str:
    """A duration in nanoseconds as milliseconds with about three significant digits."""
    if ns is None:
        return "-"
    ms = ns / NS_PER_MS
    if abs(ms) < 1:
        return f"{ms:.3f} ms"
    if abs(ms) < 10:
        return f"{ms:.2f} ms"
    if abs(ms) < 100:
        return f"{ms:.1f} ms"
    return f"{ms:,.0f} ms"


def _format_index(index: float | None) -> str:
    return "-" if index is None else f"{index:.3f}"


def _visible(text: str) -> str:
    """``text`` with control characters (ANSI escapes, NUL, ...) written as escapes, so they show."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)


def _event_line(event: Event, t0_ns: int) -> str:
    """One event as a readable line: time since t0, who, what, and the rest."""
    parts = [f"{(event.t_ns - t0_ns) / NS_PER_S:+.6f} s", f"{event.bot}#{event.conn}", event.kind]
    if event.name:
        parts.append(f"name={event.name}")
    if event.peer:
        parts.append(f"peer={event.peer}")
    if event.msg_id:
        parts.append(f"id={event.msg_id}")
    if event.text:
        parts.append(repr(event.text) if not event.text.isprintable() else f"'{event.text}'")
    return "  ".join(_visible(part) for part in parts)


def _violations(check_result: Any) -> list[Any]:
    """The violations found (count above zero), in the checker's order."""
    if check_result is None:
        return []
    return [violation for violation in check_result.violations.values() if violation.count > 0]


# ---------------------------------------------------------------------------
# The text summary
# ---------------------------------------------------------------------------


def figure_summary(check_result: Any, metrics: Metrics) -> str:
    """The run in one line: bots, deliveries, loss, tail latency, fairness, violations."""
    found = _violations(check_result)
    total = sum(violation.count for violation in found)
    if check_result is None:
        verdict = "not checked"
    elif found:
        verdict = f"{total:,} violation{'s' if total != 1 else ''} ({len(found)} kind{'s' if len(found) != 1 else ''})"
    else:
        verdict = "0 violations"
    return (
        f"{len(metrics.bots)} bots, {metrics.delivered:,} deliveries, {metrics.lost:,} lost, "
        f"p99 {format_ms(metrics.latency.percentile(99))}, Jain {_format_index(metrics.fairness.latency_index)}, "
        f"{verdict}"
    )


def stall_verdict(metrics: Metrics) -> str:
    """Whether the harness's own stalls could explain the latency, in words.

    The harness's control thread sleeps and records how late it wakes (STALL
    events). If the harness is often late by about as much as the latency tail, the
    bots themselves were slow to run, and the tail may be theirs rather than the
    server's; likewise for its rare worst stall against the worst latency.
    """
    stalls, latency = metrics.stalls, metrics.latency
    if not len(stalls):
        return "no harness stalls recorded: the delay came from the server (or the network), not the harness"
    stall_p99, stall_max = stalls.percentile(99) or 0, stalls.max_ns or 0
    latency_p99, latency_max = latency.percentile(99), latency.max_ns
    if latency_p99 is not None and stall_p99 * 2 >= latency_p99:
        return (
            f"the harness itself was often late (stall p99 {format_ms(stall_p99)} against latency p99 "
            f"{format_ms(latency_p99)}): the tail may be the harness's, not the server's"
        )
    if latency_max is not None and stall_max * 2 >= latency_max:
        return (
            f"the harness stalled rarely but as long as the worst deliveries (stall max {format_ms(stall_max)} "
            f"against latency max {format_ms(latency_max)}): the slowest may be the harness's"
        )
    return (
        f"the harness kept time (stall p99 {format_ms(stall_p99)}, max {format_ms(stall_max)}): "
        "the delay came from the server (or the network)"
    )


def summary_table(check_result: Any, metrics: Metrics) -> str:
    """The plain-text summary printed at the end of a run: violations, then latency, then fairness."""
    lines = ["Violations"]
    found = _violations(check_result)
    if check_result is None:
        lines.append("  not checked")
    elif not found:
        lines.append("  none found")
    else:
        width = max(len(violation.kind) for violation in found)
        for violation in found:
            lines.append(f"  {violation.kind:<{width}}  {violation.count:>6,}  {violation.explanation}")
            for event in violation.example:
                lines.append(f"  {'':<{width}}          {_event_line(event, metrics.t0_ns)}")

    lines += [
        "",
        f"Latency, from the planned send time ({metrics.delivered:,} delivered, "
        f"{metrics.lost:,} lost = {metrics.loss_fraction:.2%} of {metrics.expected:,} due)",
    ]
    rows: list[tuple[str, Distribution]] = [
        ("planned send -> received", metrics.latency),
        ("actual send -> received", metrics.latency_from_send),
        ("send lag (planned -> actual)", metrics.send_lag),
        ("join (connect -> joined)", metrics.join_latency),
        ("harness stalls (lateness)", metrics.stalls),
    ]
    labels = [label for label, _ in PERCENTILES] + ["max"]
    width = max(len(label) for label, _ in rows)
    lines.append(f"  {'':<{width}}  {'count':>8}" + "".join(f"  {label:>10}" for label in labels))
    for label, distribution in rows:
        values = [distribution.percentile(fraction) for _, fraction in PERCENTILES] + [distribution.max_ns]
        lines.append(
            f"  {label:<{width}}  {len(distribution):>8,}" + "".join(f"  {format_ms(value):>10}" for value in values)
        )
    if metrics.lost:
        lines.append(
            f"  Percentiles are over delivered pairs only; the {metrics.lost:,} lost "
            f"pair{'s are' if metrics.lost != 1 else ' is'} counted as loss, not as latency."
        )
    lines.append(f"  {stall_verdict(metrics)}.")

    intended, achieved = metrics.intended_send_rate, metrics.achieved_send_rate
    peak = int(metrics.delivered_per_s.max()) if len(metrics.delivered_per_s) else 0
    lines += [
        "",
        f"Throughput: {metrics.sends:,} sends, intended {_format_rate(intended)}, achieved {_format_rate(achieved)}; "
        f"peak {peak:,} deliveries/s; {metrics.joined:,} of {metrics.connections:,} connections joined",
        "",
        "Fairness (Jain's index: 1 = perfectly fair, 1/n = one takes all)",
    ]
    fairness = metrics.fairness
    lines.append(
        f"  receivers, over 1/mean latency  {_format_index(fairness.latency_index):>6}  "
        f"({_bots(fairness.receivers)})  worst-off {fairness.latency_worst_bot or '-'}: "
        f"mean {format_ms(fairness.latency_worst_mean_ns)} (median {format_ms(fairness.latency_median_mean_ns)})"
    )
    lines.append(
        f"  senders, over delivered/s       {_format_index(fairness.throughput_index):>6}  "
        f"({_bots(fairness.senders)})  worst-off {fairness.throughput_worst_bot or '-'}: "
        f"{_format_rate(fairness.throughput_worst_per_s)} (median {_format_rate(fairness.throughput_median_per_s)})"
    )
    lines += ["", figure_summary(check_result, metrics)]
    return "\n".join(lines)


def _bots(count: int) -> str:
    return f"{count} bot" if count == 1 else f"{count} bots"


def _format_rate(per_s: float | None) -> str:
    return "-" if per_s is None else f"{per_s:,.1f}/s"


# ---------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------


def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    """A new figure drawn by Agg, outside pyplot."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _no_data(axes: Axes, what: str) -> None:
    axes.text(0.5, 0.5, what, transform=axes.transAxes, ha="center", va="center", color="gray")


def _shade(axes: Axes, windows: Iterable[Window], label_them: bool = True) -> None:
    """Shade impairment or fault windows on ``axes``, one colour per label (in the legend once, when asked)."""
    colours: dict[str, str] = {}
    for start_s, end_s, label in windows:
        first = label not in colours
        colour = colours.setdefault(label, f"C{(len(colours) + 4) % 10}")
        axes.axvspan(start_s, end_s, color=colour, alpha=0.15, label=label if label_them and first else None)


def _legend_if_several(axes: Axes, loc: str = "best") -> None:
    """A legend, but only when the axes has more than one labelled series."""
    handles, _ = axes.get_legend_handles_labels()
    if len(handles) > 1:
        axes.legend(loc=loc, fontsize="small")


def _thin(values: np.ndarray, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_PLOT_POINTS exact (value, fraction) points, evenly spread by rank, the last kept."""
    if len(values) <= MAX_PLOT_POINTS:
        return values, fractions
    picks = np.unique(np.linspace(0, len(values) - 1, MAX_PLOT_POINTS).round().astype(np.int64))
    return values[picks], fractions[picks]


def plot_latency_cdf(metrics: Metrics) -> Figure:
    """The empirical CDF of delivery latency, from the planned and from the actual send time.

    A point (x, y) on a curve says: a share y of the (message, receiver) pairs that
    were due arrived within x. Lost pairs count as never arriving, so with loss the
    curve stops short of 1 by the fraction lost. The gap between the two curves is
    what coordinated omission would have hidden. The x axis is logarithmic when the
    latencies span more than two decades.
    """
    figure = _figure()
    axes = figure.add_subplot()
    axes.set_title("Delivery latency CDF")
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("fraction of due deliveries")
    if not len(metrics.latency):
        _no_data(axes, "no deliveries")
        return figure
    total = len(metrics.latency) + metrics.lost
    for distribution, label, color, style in (
        (metrics.latency, "from planned send (honest)", PLANNED_COLOR, "-"),
        (metrics.latency_from_send, "from actual send", ACTUAL_COLOR, "--"),
    ):
        values, fractions = _thin(distribution.values_ns, np.arange(1, len(distribution) + 1) / total)
        x = np.concatenate([[values[0]], values]) / NS_PER_MS
        y = np.concatenate([[0.0], fractions])
        axes.step(x, y, where="post", color=color, linestyle=style, label=label)
    for label in ("p50", "p99", "p99.9"):
        value = metrics.latency.percentile(label[1:])
        if value is not None:
            axes.axvline(value / NS_PER_MS, color="gray", linewidth=0.8, linestyle=":")
            axes.text(value / NS_PER_MS, 0.02, f" {label}", rotation=90, color="gray", fontsize="small", va="bottom")
    if metrics.lost:
        axes.axhline(
            1 - metrics.lost / total,
            color=LOSS_COLOR,
            linewidth=0.8,
            linestyle=":",
            label=f"lost: {metrics.lost:,} ({metrics.lost / total:.2%})",
        )
    smallest, largest = metrics.latency.values_ns[0], metrics.latency.values_ns[-1]
    if smallest > 0 and largest / smallest > 100:
        axes.set_xscale("log")
    axes.set_ylim(0, 1.02)
    axes.grid(True, alpha=0.3)
    _legend_if_several(axes)
    return figure


def plot_latency_over_time(metrics: Metrics, windows: Sequence[Window] = ()) -> Figure:
    """p50 and p99 latency of the messages planned in each one-second bucket.

    Buckets are by *planned* send time, so a stall shows up in the second it
    happened, as a spike of the messages that should have gone out then. A red
    cross on top marks a second some of whose messages were lost.
    """
    figure = _figure()
    axes = figure.add_subplot()
    axes.set_title("Latency over time (by planned send time)")
    axes.set_xlabel("planned send time (s since start)")
    axes.set_ylabel("latency (ms)")
    _shade(axes, windows)
    centers = metrics.bucket_starts_s + 0.5
    if not len(metrics.latency):
        _no_data(axes, "no deliveries")
    for label, fraction, marker in (("p50", 50, "o"), ("p99", 99, "s")):
        values = [bucket.percentile(fraction) for bucket in metrics.latency_over_time]
        y = np.array([np.nan if value is None else value / NS_PER_MS for value in values])
        if not np.all(np.isnan(y)):
            axes.plot(centers, y, marker=marker, markersize=3, label=label)
    lossy = metrics.lost_over_time > 0
    if np.any(lossy):
        axes.scatter(
            centers[lossy],
            np.full(int(lossy.sum()), 0.97),
            marker="x",
            color=LOSS_COLOR,
            transform=axes.get_xaxis_transform(),
            label=f"a second with lost deliveries ({metrics.lost:,} lost in all)",
        )
    axes.set_xlim(0, max(1, len(metrics.bucket_starts_s)))
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    _legend_if_several(axes)
    return figure


def plot_fairness(metrics: Metrics) -> Figure:
    """Two bar charts, one bar per bot: receivers' mean latency, senders' delivered throughput.

    Bars are sorted worst first, the worst-off bot in red; a dashed line marks the
    median. Each title gives Jain's index (see :func:`chatlab.swarm.metrics.jain_index`).
    """
    figure = _figure(10.0, 4.5)
    left, right = figure.subplots(1, 2)
    fairness = metrics.fairness

    receivers = [stats for stats in metrics.per_bot.values() if stats.received or stats.lost]
    means = {stats.bot: stats.latency.mean_ns for stats in receivers}
    # Worst first: received nothing, then the highest mean latency.
    order = sorted(means, key=lambda bot: (means[bot] is not None, -(means[bot] or 0.0), bot))
    heights = [0.0 if means[bot] is None else means[bot] / NS_PER_MS for bot in order]
    _bars(left, order, heights, fairness.latency_worst_bot, "receivers")
    left.set_title(f"Receivers: mean latency\nJain {_format_index(fairness.latency_index)} (over 1/latency)")
    left.set_ylabel("mean latency (ms)")
    if fairness.latency_median_mean_ns is not None:
        left.axhline(fairness.latency_median_mean_ns / NS_PER_MS, color="gray", linestyle="--", label="median")

    senders = [stats for stats in metrics.per_bot.values() if stats.sent]
    divisor = metrics.duration_s if metrics.duration_s > 0 else 1.0
    rates = {stats.bot: stats.delivered_to_others / divisor for stats in senders}
    order = sorted(rates, key=lambda bot: (rates[bot], bot))
    _bars(right, order, [rates[bot] for bot in order], fairness.throughput_worst_bot, "senders")
    right.set_title(f"Senders: delivered throughput\nJain {_format_index(fairness.throughput_index)}")
    right.set_ylabel("deliveries of its messages per second")
    if fairness.throughput_median_per_s is not None:
        right.axhline(fairness.throughput_median_per_s, color="gray", linestyle="--", label="median")

    for axes, what in ((left, "receivers"), (right, "senders")):
        axes.set_xlabel(f"bots ({what}), worst first")
        if not axes.patches:
            _no_data(axes, f"no {what}")
        _legend_if_several(axes, loc="upper right")
    figure.suptitle("Fairness per bot")
    return figure


def _bars(axes: Axes, bots: list[str], heights: list[float], worst: str | None, what: str) -> None:
    """One bar per bot, the worst-off one in red, bot names under the bars when they fit."""
    if not bots:
        return
    colors = [WORST_COLOR if bot == worst else PLANNED_COLOR for bot in bots]
    positions = np.arange(len(bots))
    axes.bar(positions, heights, color=colors, width=0.8)
    # Legend entries: one proxy per colour, so the legend says which is which.
    axes.bar([0], [0], color=PLANNED_COLOR, label=what)
    if worst is not None:
        axes.bar([0], [0], color=WORST_COLOR, label=f"worst-off: {worst}")
    if max(heights) > 0:  # headroom for the legend above the tallest bar
        axes.set_ylim(0, max(heights) * 1.35)
    if len(bots) <= MAX_TICK_LABELS:
        axes.set_xticks(positions, bots, rotation=90, fontsize="small")
    else:
        axes.set_xticks([])


def plot_timeline(events: Iterable[Event], metrics: Metrics, windows: Sequence[Window] = ()) -> Figure:
    """The run over time in three panels sharing the time axis, with fault windows shaded.

    Top: sends per second, as the schedule planned them and as they were made (a
    gap means the bots fell behind). Middle: deliveries per second. Bottom: joins
    (up) and leaves (down) per second, and the number of connections in the room,
    exact to the event. ``windows`` are (start_s, end_s, label) spans in seconds
    since the start, such as an impairment a later scenario switches on.
    """
    figure = _figure(9.0, 7.5)
    sends_axes, deliveries_axes, members_axes = figure.subplots(3, 1, sharex=True)
    figure.suptitle("Run timeline")
    starts = metrics.bucket_starts_s
    edges = np.append(starts, starts[-1] + 1 if len(starts) else 1)

    sends_axes.stairs(metrics.planned_per_s, edges, color="gray", linestyle="--", label="planned")
    sends_axes.stairs(metrics.sent_per_s, edges, color=PLANNED_COLOR, label="sent")
    sends_axes.set_title("Sends")
    sends_axes.set_ylabel("sends per second")

    deliveries_axes.stairs(metrics.delivered_per_s, edges, color="tab:green", label="delivered")
    deliveries_axes.set_title("Deliveries")
    deliveries_axes.set_ylabel("deliveries per second")

    members_axes.bar(
        starts + 0.5, metrics.joins_per_s, width=0.8, color="tab:green", alpha=0.6, label="joins per second"
    )
    members_axes.bar(
        starts + 0.5, -metrics.leaves_per_s, width=0.8, color="tab:red", alpha=0.6, label="leaves per second"
    )
    changes = membership_changes(events)
    times = [0.0] + [(t_ns - metrics.t0_ns) / NS_PER_S for t_ns, _ in changes] + [float(edges[-1])]
    online = np.cumsum([0] + [delta for _, delta in changes])
    members_axes.step(times, np.append(online, online[-1]), where="post", color="black", label="online")
    members_axes.axhline(0, color="gray", linewidth=0.5)
    members_axes.set_title("Membership")
    members_axes.set_ylabel("connections")
    members_axes.set_xlabel("time (s since start)")

    for number, axes in enumerate((sends_axes, deliveries_axes, members_axes)):
        _shade(axes, windows, label_them=number == 0)
        axes.grid(True, alpha=0.3)
        _legend_if_several(axes)
    members_axes.set_xlim(0, float(edges[-1]))
    return figure


# ---------------------------------------------------------------------------
# The run folder
# ---------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """json.dumps' fallback: events and other dataclasses as dicts, sets as sorted lists, numpy as Python."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple)):
        return list(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def _check_dict(check_result: Any) -> dict[str, Any]:
    """The checker's verdict for summary.json: ok, its summary, and each violation with its example."""
    if check_result is None:
        return {"checked": False}
    return {
        "checked": True,
        "ok": bool(check_result.ok),
        "summary": check_result.summary(),
        "violations": {
            kind: {
                "count": violation.count,
                "explanation": violation.explanation,
                "example": [asdict(event) for event in violation.example],
            }
            for kind, violation in check_result.violations.items()
        },
    }


def write_report(
    folder: Path | str, events: Sequence[Event], check_result: Any, metrics: Metrics, meta: dict[str, Any]
) -> Path:
    """Write a run folder and return the folder (its page is ``folder / "report.html"``).

    The folder (created if needed) receives ``events.csv``, ``summary.json`` (``meta``,
    the checker's verdict with every violation and its smallest example, and
    ``metrics.to_dict()``), the four charts as PNG, and ``report.html``. ``meta``
    describes the run (scenario, seed, bots, duration, server, ...); its optional
    ``windows`` entry, a list of (start_s, end_s, label), is shaded on the charts.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    windows = [(float(start), float(end), str(label)) for start, end, label in meta.get("windows", ())]

    write_csv(events, folder / "events.csv")
    summary = {"meta": meta, "check": _check_dict(check_result), "metrics": metrics.to_dict()}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n", encoding="utf-8")

    figures = {
        "latency_cdf.png": plot_latency_cdf(metrics),
        "latency_over_time.png": plot_latency_over_time(metrics, windows),
        "fairness.png": plot_fairness(metrics),
        "timeline.png": plot_timeline(events, metrics, windows),
    }
    images: dict[str, bytes] = {}
    for name, figure in figures.items():
        figure.savefig(folder / name, dpi=100)
        images[name] = (folder / name).read_bytes()

    (folder / "report.html").write_text(_html(check_result, metrics, meta, images), encoding="utf-8")
    return folder


# -- report.html ---------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; }
.verdict { font-size: 1.15em; padding: 0.5em 0.8em; border-radius: 4px; }
.ok { background: #e6f4ea; } .bad { background: #fce8e6; } .unknown { background: #eee; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.number { text-align: right; font-variant-numeric: tabular-nums; }
pre { margin: 0; font-size: 0.85em; white-space: pre-wrap; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
.note { color: #555; }
"""


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], numbers: Sequence[int] = ()) -> str:
    """An HTML table; cells are escaped, except those already marked up with <pre>."""
    parts = ["<table><tr>" + "".join(f"<th>{html.escape(cell)}</th>" for cell in header) + "</tr>"]
    for row in rows:
        cells = []
        for column, cell in enumerate(row):
            text = cell if isinstance(cell, str) and cell.startswith("<pre>") else html.escape(str(cell))
            cells.append(f'<td class="number">{text}</td>' if column in numbers else f"<td>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _meta_value(value: Any, limit: int = 300) -> str:
    """A meta value as text, cut short if long (summary.json has it whole)."""
    text = value if isinstance(value, str) else json.dumps(value, default=_jsonable)
    return text if len(text) <= limit else text[:limit] + " ... (in full in summary.json)"


def _html(check_result: Any, metrics: Metrics, meta: dict[str, Any], images: dict[str, bytes]) -> str:
    """The whole report page: self-contained, no scripts, no links."""
    title = f"chatlab swarm report: {meta.get('scenario', 'run')}"
    found = _violations(check_result)
    verdict_class = "unknown" if check_result is None else ("bad" if found else "ok")
    body = [f"<h1>{html.escape(title)}</h1>"]
    body.append(f'<p class="verdict {verdict_class}">{html.escape(figure_summary(check_result, metrics))}</p>')
    body.append(_table(["run", ""], [(key, _meta_value(value)) for key, value in meta.items()]))

    body.append("<h2>Violations</h2>")
    if check_result is None:
        body.append('<p class="note">The log was not checked.</p>')
    elif not found:
        body.append("<p>None found: nothing lost, duplicated, reordered or leaked among certain members.</p>")
    else:
        rows = [
            (
                violation.kind,
                f"{violation.count:,}",
                violation.explanation,
                "<pre>"
                + html.escape("\n".join(_event_line(event, metrics.t0_ns) for event in violation.example))
                + "</pre>",
            )
            for violation in found
        ]
        body.append(_table(["kind", "count", "explanation", "smallest example"], rows, numbers=[1]))

    body.append("<h2>Latency</h2>")
    body.append(
        f"<p>Measured from the <b>planned</b> send time, so a stall cannot hide behind the sends it delayed. "
        f"{metrics.delivered:,} pairs delivered, <b>{metrics.lost:,} lost</b> "
        f"({metrics.loss_fraction:.2%} of {metrics.expected:,} due). "
        f"Percentiles are over the delivered pairs; lost ones are reported as loss, not left out silently.</p>"
    )
    labels = [label for label, _ in PERCENTILES] + ["max"]
    rows = []
    for label, distribution in (
        ("planned send to receipt", metrics.latency),
        ("actual send to receipt", metrics.latency_from_send),
        ("send lag (planned to actual send)", metrics.send_lag),
        ("join (connect to joined)", metrics.join_latency),
        ("harness stalls (lateness)", metrics.stalls),
    ):
        values = [distribution.percentile(fraction) for _, fraction in PERCENTILES] + [distribution.max_ns]
        rows.append([label, f"{len(distribution):,}"] + [format_ms(value) for value in values])
    body.append(_table(["measure", "count"] + labels, rows, numbers=range(1, 2 + len(labels))))
    body.append(f'<p class="note">{html.escape(stall_verdict(metrics))}.</p>')
    body.append(
        f"<p>Sends: {metrics.sends:,}; intended rate {_format_rate(metrics.intended_send_rate)}, "
        f"achieved {_format_rate(metrics.achieved_send_rate)}. Connections: {metrics.connections:,}, "
        f"joined {metrics.joined:,}, refused a name {metrics.refused:,}, failed {metrics.connect_failed:,}.</p>"
    )

    body.append("<h2>Fairness</h2>")
    body.append(
        "<p>Jain's index, (&Sigma;x)&sup2; / (n &middot; &Sigma;x&sup2;): 1 when every bot got the same, "
        "1/n when one bot got everything.</p>"
    )
    fairness = metrics.fairness
    body.append(
        _table(
            ["judged", "over", "bots", "Jain's index", "worst-off", "its value", "median"],
            [
                (
                    "receivers",
                    "1 / mean latency",
                    fairness.receivers,
                    _format_index(fairness.latency_index),
                    fairness.latency_worst_bot or "-",
                    format_ms(fairness.latency_worst_mean_ns),
                    format_ms(fairness.latency_median_mean_ns),
                ),
                (
                    "senders",
                    "delivered pairs per second",
                    fairness.senders,
                    _format_index(fairness.throughput_index),
                    fairness.throughput_worst_bot or "-",
                    _format_rate(fairness.throughput_worst_per_s),
                    _format_rate(fairness.throughput_median_per_s),
                ),
            ],
            numbers=[2, 3],
        )
    )
    bot_rows = [
        (
            stats.bot,
            stats.sent,
            stats.delivered_to_others,
            stats.received,
            format_ms(stats.latency.percentile(50)),
            format_ms(stats.latency.percentile(99)),
            stats.lost,
            stats.undelivered,
        )
        for stats in metrics.per_bot.values()
    ]
    body.append(f"<details><summary>Per bot ({len(bot_rows)} bots)</summary>")
    body.append(
        _table(
            [
                "bot",
                "sent",
                "delivered to others",
                "received",
                "p50 as receiver",
                "p99 as receiver",
                "lost",
                "undelivered",
            ],
            bot_rows,
            numbers=range(1, 8),
        )
    )
    body.append("</details>")

    body.append("<h2>Charts</h2>")
    for name, caption in CHARTS.items():
        encoded = base64.b64encode(images[name]).decode("ascii")
        body.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


__all__ = [
    "CHARTS",
    "Window",
    "figure_summary",
    "format_ms",
    "plot_fairness",
    "plot_latency_cdf",
    "plot_latency_over_time",
    "plot_timeline",
    "stall_verdict",
    "summary_table",
    "write_report",
]
