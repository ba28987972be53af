"""The benchmark's report: a terminal table, the targets as ratios, bench.json, bench.md and charts.

Servers are compared as *ratios measured in the same run*: on a laptop, absolute
numbers move with everything else the machine does, but two servers measured one
after the other under the same load rarely swap places. A cell where the harness
itself was the bottleneck is shown but never used in a ratio.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from chatlab.bench.runner import KNEE_P99_MS, Cell

#: One colour per server, the same in every chart of the kit.
SERVER_COLORS = {"reference": "tab:blue", "asyncio": "tab:green", "naive": "tab:red"}
MEMORY_PER_CLIENT_KIB = 100.0  # the memory target: less than this per connected client


# -- targets ---------------------------------------------------------------------------


@dataclass
class Target:
    """One goal of the reference server, measured against the asyncio twin in this run."""

    name: str
    rule: str  #: what "met" means, in words
    reference: float | None
    other: float | None  #: the asyncio twin's figure, or the limit
    ratio: float | None  #: reference / other
    met: bool | None  #: None when this run did not measure it
    detail: str = ""


def _find(cells: Iterable[Cell], server: str, workload: str, clients: int) -> Cell | None:
    for cell in cells:
        if (cell.server, cell.workload, cell.clients) == (server, workload, clients):
            return cell
    return None


def _value(cell: Cell | None, name: str) -> float | None:
    if cell is None or not cell.published:
        return None
    return cell.median.get(name)


def targets(cells: Sequence[Cell]) -> list[Target]:
    """The issue's targets, each as the reference-to-asyncio ratio measured in ``cells``."""
    found: list[Target] = []
    for workload, clients in (("busy", 200), ("classroom", 1000), ("fixed", 1000)):
        mine, theirs = _find(cells, "reference", workload, clients), _find(cells, "asyncio", workload, clients)
        reference, other = _value(mine, "p99_ms"), _value(theirs, "p99_ms")
        loss = _value(mine, "loss")
        detail = ""
        if reference is None and mine is not None and mine.runs and not all(run.failed for run in mine.runs):
            # A late harness only ever adds to latency: the reference's figure is then an
            # upper bound, still good enough to show that it is no worse than the twin's.
            reference, loss = mine.median.get("p99_ms"), mine.median.get("loss")
            detail = "the reference's cell was harness-bound, so its p99 is an upper bound"
        ratio = reference / other if reference is not None and other else None
        met = None if ratio is None else ratio <= 1.0 and loss == 0
        if loss not in (None, 0):
            detail = "; ".join(filter(None, [detail, f"reference lost {loss:.3%}"]))
        found.append(Target(f"p99 at {workload} N={clients}", "reference p99 <= asyncio p99, no loss", reference, other, ratio, met, detail))
    for clients in (50, 200, 1000):
        reference = _value(_find(cells, "reference", "saturate", clients), "deliveries_per_s")
        other = _value(_find(cells, "asyncio", "saturate", clients), "deliveries_per_s")
        ratio = reference / other if reference is not None and other else None
        found.append(
            Target(f"saturation at N={clients}", "reference deliveries/s >= asyncio's", reference, other, ratio, None if ratio is None else ratio >= 1.0)
        )
    memory = _value(_find(cells, "reference", "connections", 1000), "memory_per_client_kib")
    found.append(
        Target(
            "memory per client at N=1000",
            f"under {MEMORY_PER_CLIENT_KIB:.0f} KiB",
            memory,
            MEMORY_PER_CLIENT_KIB,
            memory / MEMORY_PER_CLIENT_KIB if memory is not None else None,
            None if memory is None else memory < MEMORY_PER_CLIENT_KIB,
        )
    )
    return found


def knees(cells: Sequence[Cell]) -> dict[str, float | None]:
    """Per server: the highest offered load (deliveries/s) of the sweep with p99 under the knee."""
    found: dict[str, float | None] = {}
    for cell in cells:
        if cell.workload != "sweep":
            continue
        found.setdefault(cell.server, None)
        p99 = _value(cell, "p99_ms")
        if p99 is not None and p99 <= KNEE_P99_MS and not _value(cell, "loss"):
            found[cell.server] = max(found[cell.server] or 0.0, cell.offered)
    return found


# -- text ------------------------------------------------------------------------------


def _number(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


COLUMNS = (
    ("server", lambda c: c.server),
    ("workload", lambda c: c.workload),
    ("N", lambda c: str(c.clients)),
    ("offered/s", lambda c: _number(c.offered, 0) if c.offered else "-"),
    ("deliveries/s", lambda c: _number(c.median.get("deliveries_per_s"), 0)),
    ("loss", lambda c: "-" if c.median.get("loss") is None else f"{c.median['loss']:.2%}"),
    ("p50 ms", lambda c: _number(c.median.get("p50_ms"))),
    ("p99 ms", lambda c: _number(c.median.get("p99_ms"))),
    ("p99.9 ms", lambda c: _number(c.median.get("p999_ms"))),
    ("max ms", lambda c: _number(c.median.get("max_ms"))),
    ("cpu cores", lambda c: _number(c.median.get("cpu_cores"), 2)),
    ("RSS MB", lambda c: _number(c.median.get("rss_mb"), 0)),
    ("threads", lambda c: _number(c.median.get("threads"), 0)),
    ("KiB/client", lambda c: _number(c.median.get("memory_per_client_kib"))),
    ("harness late ms", lambda c: _number(c.median.get("harness_lateness_p99_ms"))),
    ("note", lambda c: c.note),
)


def _rows(cells: Sequence[Cell]) -> list[list[str]]:
    return [[cell_text(cell) for _, cell_text in COLUMNS] for cell in cells]


def table(cells: Sequence[Cell]) -> str:
    """The cells as an aligned text table, medians of the repetitions."""
    header = [name for name, _ in COLUMNS]
    rows = _rows(cells)
    widths = [max(len(row[index]) for row in [header, *rows]) for index in range(len(header))]
    lines = ["  ".join(text.ljust(width) if index < 2 else text.rjust(width) for index, (text, width) in enumerate(zip(row, widths, strict=True))).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _target_line(target: Target) -> str:
    verdict = {True: "met", False: "NOT met", None: "not measured in this run"}[target.met]
    if target.ratio is None:
        return f"{target.name}: {verdict}"
    return (
        f"{target.name}: reference {_number(target.reference, 1)} vs {_number(target.other, 1)}, "
        f"ratio {target.ratio:.2f} ({target.rule}): {verdict}{'; ' + target.detail if target.detail else ''}"
    )


def targets_text(found: Sequence[Target]) -> str:
    return "\n".join(_target_line(target) for target in found)


def markdown(cells: Sequence[Cell], found: Sequence[Target], meta: dict[str, object]) -> str:
    """The run as a markdown page: settings, targets, knees, then the full table."""
    header = [name for name, _ in COLUMNS]
    lines = [
        "# chatlab bench",
        "",
        ", ".join(f"{key}: {value}" for key, value in meta.items()),
        "",
        "## Targets (reference server against its asyncio twin, same run)",
        "",
        *[f"- {_target_line(target)}" for target in found],
        "",
        "## Knees (highest offered load with p99 under 100 ms)",
        "",
        *([f"- {server}: {_number(load, 0) if load else 'none of the steps'} deliveries/s" for server, load in knees(cells).items()]
          or ["- not measured in this run"]),
        "",
        "## Cells (medians of the repetitions)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *["| " + " | ".join(row) + " |" for row in _rows(cells)],
        "",
    ]
    return "\n".join(lines)


# -- charts ----------------------------------------------------------------------------


def _figure(width: float = 10.0, height: float = 4.5) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


_PLAIN = FuncFormatter(lambda value, _: f"{value:g}")  # 40, not 4x10^1, on log axes


def _log_axes(axes: Axes, x: bool = True) -> None:
    """Log scales with plain numbers, and a word when there is nothing to show."""
    if x:
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(_PLAIN)
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(_PLAIN)
    axes.yaxis.set_minor_formatter(_PLAIN)
    if not axes.lines:
        axes.text(0.5, 0.5, "not measured in this run", transform=axes.transAxes, ha="center", va="center", color="gray")
        axes.set_ylim(1, 10)  # an empty log axis has no range of its own
        if x:
            axes.set_xlim(1, 10)
        return
    for name, values in (("x", [v for line in axes.lines for v in line.get_xdata()]), ("y", [v for line in axes.lines for v in line.get_ydata()])):
        low, high = min(values), max(values)
        if low == high and low > 0:  # one point: give the log scale a decade around it
            getattr(axes, f"set_{name}lim")(low / 3, high * 3)


def _servers(cells: Sequence[Cell]) -> list[str]:
    return list(dict.fromkeys(cell.server for cell in cells))


def plot_latency_vs_clients(cells: Sequence[Cell]) -> Figure:
    """p99 latency against the number of clients, one panel per workload, one line per server."""
    workloads = [name for name in ("classroom", "busy", "fixed") if any(cell.workload == name for cell in cells)]
    figure = _figure(4.0 * max(1, len(workloads)) + 1, 4.5)
    panels = figure.subplots(1, max(1, len(workloads)), squeeze=False)[0]
    for axes, workload in zip(panels, workloads or ["(none)"], strict=True):
        for server in _servers(cells):
            points = sorted((c.clients, c.median.get("p99_ms")) for c in cells if c.server == server and c.workload == workload and c.published and c.median.get("p99_ms") is not None)
            if points:
                axes.plot(*zip(*points, strict=True), marker="o", color=SERVER_COLORS.get(server), label=server)
        _log_axes(axes)
        axes.set_title(f"{workload}: p99 delivery latency")
        axes.set_xlabel("clients")
        axes.set_ylabel("p99 latency (ms)")
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    return figure


def plot_latency_vs_load(cells: Sequence[Cell]) -> Figure:
    """The sweep: p99 latency against offered load, per server, with the 100 ms knee line."""
    figure = _figure(8.0, 4.5)
    axes = figure.subplots()
    sweeps = [cell for cell in cells if cell.workload == "sweep" and cell.published and cell.median.get("p99_ms") is not None]
    for server in _servers(sweeps):
        points = sorted((cell.offered, cell.median["p99_ms"]) for cell in sweeps if cell.server == server)
        axes.plot(*zip(*points, strict=True), marker="o", color=SERVER_COLORS.get(server), label=server)
    _log_axes(axes, x=False)
    axes.axhline(KNEE_P99_MS, color="gray", linestyle="--", label=f"knee: p99 {KNEE_P99_MS:.0f} ms")
    clients = sorted({cell.clients for cell in sweeps})
    axes.set_title(f"p99 latency against offered load ({', '.join(map(str, clients)) or 'no'} clients)")
    axes.set_xlabel("offered load (deliveries per second)")
    axes.set_ylabel("p99 latency (ms)")
    axes.legend()
    return figure


def plot_saturation(cells: Sequence[Cell]) -> Figure:
    """Deliveries per second at saturation: grouped bars, one group per N, one bar per server."""
    figure = _figure(8.0, 4.5)
    axes = figure.subplots()
    saturated = [cell for cell in cells if cell.workload == "saturate" and cell.published]
    counts = sorted({cell.clients for cell in saturated})
    servers = _servers(saturated)
    width = 0.8 / max(1, len(servers))
    for offset, server in enumerate(servers):
        heights = [next((c.median.get("deliveries_per_s") or 0 for c in saturated if c.server == server and c.clients == n), 0) / 1e6 for n in counts]
        positions = [index + (offset - (len(servers) - 1) / 2) * width for index in range(len(counts))]
        axes.bar(positions, heights, width=width, color=SERVER_COLORS.get(server), label=server)
    axes.set_xticks(range(len(counts)), [f"{n} clients" for n in counts])
    axes.set_title("Throughput at saturation")
    axes.set_xlabel("clients")
    axes.set_ylabel("deliveries per second (millions)")
    if servers:
        axes.legend()
    return figure


def plot_memory(cells: Sequence[Cell]) -> Figure:
    """Memory per client and threads, for the idle-connections workload."""
    figure = _figure(10.0, 4.0)
    memory_axes, thread_axes = figure.subplots(1, 2)
    idle = [cell for cell in cells if cell.workload == "connections" and cell.published]
    for server in _servers(idle):
        points = sorted((c.clients, c.median.get("memory_per_client_kib") or 0.0, c.median.get("threads") or 0.0) for c in idle if c.server == server)
        clients, memory, threads = zip(*points, strict=True)
        memory_axes.plot(clients, memory, marker="o", color=SERVER_COLORS.get(server), label=server)
        thread_axes.plot(clients, threads, marker="o", color=SERVER_COLORS.get(server), label=server)
    memory_axes.axhline(MEMORY_PER_CLIENT_KIB, color="gray", linestyle="--", label="target")
    memory_axes.set_title("Server memory per connected client")
    memory_axes.set_xlabel("idle clients")
    memory_axes.set_ylabel("RSS growth per client (KiB)")
    thread_axes.set_title("Server threads")
    thread_axes.set_xlabel("idle clients")
    thread_axes.set_ylabel("threads")
    for axes in (memory_axes, thread_axes):
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(_PLAIN)
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    return figure


CHARTS = {
    "latency_vs_clients.png": plot_latency_vs_clients,
    "latency_vs_load.png": plot_latency_vs_load,
    "saturation.png": plot_saturation,
    "memory.png": plot_memory,
}


def write(folder: Path, cells: Sequence[Cell], meta: dict[str, object]) -> list[Path]:
    """Write bench.json, bench.md and the charts into ``folder``; return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    found = targets(cells)
    document = {
        "meta": meta,
        "targets": [asdict(target) for target in found],
        "knees": knees(cells),
        "cells": [cell.as_dict() for cell in cells],
    }
    written = [folder / "bench.json", folder / "bench.md"]
    written[0].write_text(json.dumps(document, indent=1) + "\n")
    written[1].write_text(markdown(cells, found, meta))
    for name, plot in CHARTS.items():
        path = folder / name
        plot(cells).savefig(path, dpi=100)
        written.append(path)
    return written
