"""One call for a whole swarm run: server, bots, checker, metrics, report.

For notebooks and tests::

    from chatlab.swarm.runner import run

    result = run("bots/broadcast.py", bots=50, duration=5, seed=7, server="reference")
    result.ok               # True when the checker found nothing
    result.violations       # kind -> Violation (count, smallest example, explanation)
    result.summary          # the figures of summary.json, as a dict
    result.plot_latency_cdf()   # a matplotlib Figure

``chatlab swarm`` on the command line is a thin shell around :func:`run`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatlab.swarm import checker, metrics, report
from chatlab.swarm.engine import RawRun, ScenarioError, load_scenario, run_bots, run_bots_in_workers
from chatlab.swarm.events import Event
from chatlab.swarm.scenario import Scenario

SERVERS = ("reference", "asyncio", "naive")
DRAIN_CHECK_EVERY = 0.5  # seconds between two checks of "has everything arrived?"


@dataclass
class SwarmRun:
    """The outcome of one run: the log, the verdict, the figures, and where the report is."""

    meta: dict[str, Any]  #: scenario, seed, bots, duration, server...
    events: list[Event]
    result: checker.CheckResult
    metrics: metrics.Metrics
    report_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def violations(self) -> dict[str, checker.Violation]:
        return self.result.violations

    @property
    def summary(self) -> dict[str, Any]:
        return {"meta": self.meta, "check": self.result.summary(), "metrics": self.metrics.to_dict()}

    def summary_table(self) -> str:
        return report.summary_table(self.result, self.metrics)

    def plot_latency_cdf(self):  # type: ignore[no-untyped-def]
        return report.plot_latency_cdf(self.metrics)

    def plot_latency_over_time(self):  # type: ignore[no-untyped-def]
        return report.plot_latency_over_time(self.metrics)

    def plot_fairness(self):  # type: ignore[no-untyped-def]
        return report.plot_fairness(self.metrics)

    def plot_timeline(self):  # type: ignore[no-untyped-def]
        return report.plot_timeline(self.events, self.metrics, self.meta.get("windows", ()))


@contextlib.contextmanager
def in_process_server(kind: str, options: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """Start the reference server, its asyncio twin or the naive server on a free port; yield its address."""
    if kind == "reference":
        from chatlab.server import ChatServer

        server: Any = ChatServer(host="127.0.0.1", port=0, **options)
    elif kind == "asyncio":
        from chatlab.aserver import AsyncChatServer

        server = AsyncChatServer(host="127.0.0.1", port=0, **options)
    elif kind == "naive":
        from chatlab.naive import NaiveServer

        server = NaiveServer(host="127.0.0.1", port=0)
    else:
        raise ScenarioError(f"unknown server {kind!r}: use one of {', '.join(SERVERS)}")
    with server:
        yield server.address


def _drain_check(events: list[Event]) -> bool:
    """True when no delivery that is due is still missing."""
    return checker.check(events, drain_end_ns=time.monotonic_ns()).violations.get(checker.LOST) is None


def run(
    scenario: str | Path | Scenario,
    *,
    bots: int | None = None,
    duration: float | None = None,
    ramp_up: float | None = None,
    seed: int = 0,
    server: str = "reference",
    target: tuple[str, int] | None = None,
    rate: float | None = None,
    workers: int = 0,
    out: str | Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> SwarmRun:
    """Run a scenario against an in-process ``server`` or an outside ``target``; judge it.

    With ``out``, the report (events.csv, summary.json, charts, report.html) is
    written to that folder. With ``workers`` above 0 the bots run in that many
    separate processes (for hundreds of bots: one process cannot read for them all);
    ``scenario`` must then be a file, which each worker loads.
    """
    if workers and isinstance(scenario, Scenario):
        raise ScenarioError("bots in worker processes need a scenario file, not a Scenario object")
    if isinstance(scenario, Scenario):
        loaded, scenario_name = scenario, "scenario"
    else:
        loaded, scenario_name = load_scenario(scenario), Path(scenario).stem
    if target is not None:
        address_context: contextlib.AbstractContextManager[tuple[str, int]] = contextlib.nullcontext(target)
        server_label = f"{target[0]}:{target[1]}"
    else:
        address_context = in_process_server(server, {} if server == "naive" else loaded.server_options)
        server_label = server
    with address_context as address:
        if workers:
            raw: RawRun = run_bots_in_workers(
                str(scenario), address, workers=workers, bots=bots, duration=duration, ramp_up=ramp_up,
                seed=seed, rate=rate, drain_done=_drain_check, progress=progress,
            )
        else:
            raw = run_bots(
                loaded, address, bots=bots, duration=duration, ramp_up=ramp_up, seed=seed, rate=rate,
                drain_done=_drain_check, progress=progress,
            )
    result = checker.check(raw.events, drain_end_ns=raw.drain_end_ns)
    steady_s = (raw.timeline.steady_end_ns - raw.timeline.steady_start_ns) / 1e9
    figures = metrics.compute(raw.events, result.deliveries, duration_s=steady_s)
    meta = {
        "scenario": scenario_name,
        "description": (loaded.description or "").strip(),
        "seed": seed,
        "bots": raw.bots,
        "personas": raw.labels,
        "duration_s": steady_s,
        "ramp_up_s": (raw.timeline.steady_start_ns - raw.timeline.start_ns) / 1e9,
        "server": server_label,
        "rate": rate,
        "workers": workers,
        "connections_asked": raw.connections_asked,
        "start_ns": raw.timeline.start_ns,
        "drain_end_ns": raw.drain_end_ns,
    }
    swarm_run = SwarmRun(meta, raw.events, result, figures)
    if out is not None:
        swarm_run.report_dir = report.write_report(Path(out), raw.events, result, figures, meta)
    return swarm_run
