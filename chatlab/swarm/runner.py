"""One call for a whole swarm run: server, bots, checker, metrics, report.

For notebooks and tests::

    from chatlab.swarm.runner import run

    result = run("bots/broadcast.py", bots=50, duration=5, seed=7, server="reference")
    result.ok               # True when the checker found nothing
    result.violations       # kind -> Violation (count, smallest example, explanation)
    result.summary          # the figures of summary.json, as a dict
    result.plot_latency_cdf()   # a matplotlib Figure

``chatlab swarm`` on the command line is a thin shell around :func:`run`.

Simulated networks
==================

With ``network="mobile"`` (``--network mobile``) every bot connects through a
:class:`chatlab.sim.NetworkSimulator` running that profile in front of the server;
a scenario can also put a share of its bots on a network
(``Scenario(networks={"mobile": 0.1})``) or a persona on one (``network = "flaky"``
on the bot class). One simulator runs per profile in use, seeded from the run's
seed. What the simulators did (stalls, slow-consumer pauses, resets, half-closes,
lines cut mid-way) becomes NETWORK events of the bot concerned, and the spans are
shaded on the time charts (``meta["windows"]``), so a latency spike can be seen
next to its cause. A shaded span means *some* bot was stalled (or paused, or
reset) then: the spans of all bots are merged per kind, and ``events.csv`` says who. Each connection's impairments are seeded by the order in which
the simulator accepted it, which the ramp-up mostly fixes but the OS may shuffle
when bots connect at the same instant.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatlab.swarm import checker, metrics, report
from chatlab.swarm import events as ev
from chatlab.swarm.engine import RawRun, ScenarioError, load_scenario, plan_networks, run_bots, run_bots_in_workers
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
        return report.plot_latency_over_time(self.metrics, self.meta.get("windows", ()))

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


INSTANT_WIDTH_S = 0.1  # seconds a fault (an instant) is shaded on the charts, so it can be seen


@contextlib.contextmanager
def network_simulators(names: set[str], address: tuple[str, int], seed: int,
                       known: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """One running simulator per network in ``names``, in front of ``address``; yields name -> simulator.

    A name is a profile's, or one of ``known`` (name -> :class:`chatlab.sim.Network`).
    """
    from chatlab.sim import NetworkError, NetworkSimulator, get_profile

    known = known or {}
    try:
        profiles = {name: known[name] if name in known else get_profile(name) for name in sorted(names)}
    except NetworkError as error:
        raise ScenarioError(str(error)) from None
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(NetworkSimulator(address, profile, seed=f"{seed}/{name}"))
            for name, profile in profiles.items()
        }


def network_events(simulators: dict[str, Any], events: list[Event]) -> list[Event]:
    """What the simulators did, as NETWORK events of the bots they did it to.

    A simulator knows a connection by the client's address; the bot's CONNECT event
    records its local address, so the two meet there (the CONNECT nearest in time,
    as a port can be used again later in a run).
    """
    connects: dict[str, list[Event]] = {}
    for event in events:
        if event.kind == ev.CONNECT and event.text:
            connects.setdefault(event.text, []).append(event)
    found = []
    for name, simulator in simulators.items():
        recorded = simulator.events()
        opened = {item.connection: item.start for item in recorded if item.kind == "open"}
        for item in recorded:
            if item.kind in ("open", "close"):
                continue
            start_ns, end_ns = int(item.start * 1e9), int(item.end * 1e9)
            candidates = connects.get(f"{item.client[0]}:{item.client[1]}", [])
            opened_ns = int(opened.get(item.connection, item.start) * 1e9)
            bot = min(candidates, key=lambda connect: abs(connect.t_ns - opened_ns), default=None)
            if bot is None:
                continue  # no bot recorded this connection (it never got as far as CONNECT)
            where = f" {item.direction}" if item.direction else ""
            found.append(Event(start_ns, bot.bot, ev.NETWORK, bot.conn, bot.name,
                               text=f"{item.kind}{where} ({name})", planned_ns=end_ns))
    return found


def shaded_windows(events: list[Event], t0_ns: int) -> list[tuple[float, float, str]]:
    """NETWORK events as (start_s, end_s, label) spans since ``t0_ns``; overlapping spans of one label merged."""
    spans: dict[str, list[list[float]]] = {}
    for event in sorted((event for event in events if event.kind == ev.NETWORK), key=lambda event: event.t_ns):
        label = event.text.replace(" up", "").replace(" down", "")  # "stall (mobile)": which way is in the log
        start = (event.t_ns - t0_ns) / 1e9
        end = max((event.planned_ns - t0_ns) / 1e9, start + INSTANT_WIDTH_S)
        merged = spans.setdefault(label, [])
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return sorted(((start, end, label) for label, items in spans.items() for start, end in items), key=lambda span: span[0])


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
    network: Any = None,
) -> SwarmRun:
    """Run a scenario against an in-process ``server`` or an outside ``target``; judge it.

    With ``out``, the report (events.csv, summary.json, charts, report.html) is
    written to that folder. With ``workers`` above 0 the bots run in that many
    separate processes (for hundreds of bots: one process cannot read for them all);
    ``scenario`` must then be a file, which each worker loads. ``network`` (a
    profile's name, or a :class:`chatlab.sim.Network` of your own) is the simulated
    network of every bot whose scenario does not place it on one itself (see
    "Simulated networks" above).
    """
    known = {} if network is None or isinstance(network, str) else {network.name: network}
    network = network if network is None or isinstance(network, str) else network.name
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
    planned_networks = plan_networks(loaded, bots, seed, network or "")
    with address_context as address, network_simulators(set(planned_networks) - {""}, address, seed, known) as simulators:
        routes = {name: simulator.address for name, simulator in simulators.items()}
        if workers:
            raw: RawRun = run_bots_in_workers(
                str(scenario), address, workers=workers, bots=bots, duration=duration, ramp_up=ramp_up,
                seed=seed, rate=rate, drain_done=_drain_check, progress=progress, network=network or "", routes=routes,
            )
        else:
            raw = run_bots(
                loaded, address, bots=bots, duration=duration, ramp_up=ramp_up, seed=seed, rate=rate,
                drain_done=_drain_check, progress=progress, network=network or "", routes=routes,
            )
    if simulators:  # stopped by now: every window and fault is recorded
        raw.events = sorted(raw.events + network_events(simulators, raw.events), key=lambda event: event.t_ns)
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
        "network": network or "",
        "networks": {f"b{index:03d}": name for index, name in enumerate(planned_networks) if name},
        "windows": shaded_windows(raw.events, figures.t0_ns),
    }
    swarm_run = SwarmRun(meta, raw.events, result, figures)
    if out is not None:
        swarm_run.report_dir = report.write_report(Path(out), raw.events, result, figures, meta)
    return swarm_run
