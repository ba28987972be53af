"""Tests for chatlab.swarm.report: the run folder, the offline page, the charts and the text summary."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from chatlab.swarm.checker import Delivery
from chatlab.swarm.events import CONNECT, JOINED, LEAVE, RECV, SEND, STALL, Event, read_csv
from chatlab.swarm.metrics import Metrics, compute
from chatlab.swarm.report import (
    CHARTS,
    figure_summary,
    plot_fairness,
    plot_latency_cdf,
    plot_latency_over_time,
    plot_timeline,
    summary_table,
    write_report,
)

MS = 1_000_000
S = 1_000_000_000


@dataclass(frozen=True)
class Violation:
    """A stand-in for checker.Violation."""

    kind: str
    count: int
    example: list[Event]
    explanation: str


@dataclass
class CheckResult:
    """A stand-in for checker.CheckResult."""

    violations: dict[str, Violation] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> dict[str, Any]:
        return {"ok": self.ok, "violations": {kind: found.count for kind, found in self.violations.items()}}


def small_run(bots: int = 4, messages: int = 12) -> tuple[list[Event], list[Delivery]]:
    """Bots join, take turns broadcasting every 100 ms (one delivery lost), then leave."""
    labels = [f"b{number:03}" for number in range(bots)]
    events = [Event(t_ns=0, bot=bot, kind=CONNECT) for bot in labels]
    events += [Event(t_ns=(number + 1) * MS, bot=bot, kind=JOINED, name=bot) for number, bot in enumerate(labels)]
    deliveries = []
    for seq in range(messages):
        sender = labels[seq % bots]
        planned = S + seq * 100 * MS
        sent = Event(
            t_ns=planned + 50_000, bot=sender, kind=SEND, msg_id=f"{sender}-{seq}", text="hi", planned_ns=planned
        )
        events.append(sent)
        for number, receiver in enumerate(labels):
            if receiver == sender:
                continue
            received = None
            if (seq, receiver) != (5, labels[-1]):  # the one lost delivery
                received = Event(
                    t_ns=planned + (number + 1) * MS, bot=receiver, kind=RECV, text=f"{sender}: hi [{sent.msg_id}]"
                )
                events.append(received)
            deliveries.append(Delivery(sent.msg_id, sender, receiver, 0, sent, received, True))
    events.append(Event(t_ns=2 * S, bot="harness", kind=STALL, planned_ns=2 * S - MS))
    events += [Event(t_ns=3 * S, bot=bot, kind=LEAVE, text="quit") for bot in labels]
    return sorted(events, key=lambda event: event.t_ns), deliveries


@pytest.fixture
def run() -> tuple[list[Event], CheckResult, Metrics]:
    events, deliveries = small_run()
    lost = deliveries[5 * 3 + 2]
    hostile = Event(t_ns=S, bot="b001", kind=RECV, text="\x1b[31m<script>alert(1)</script>")
    result = CheckResult(
        {
            "lost": Violation("lost", 1, [lost.sent], "a certain member never received the message"),
            "malformed": Violation("malformed", 2, [hostile], "a line that parses as nothing in the grammar"),
        }
    )
    return events, result, compute(events, deliveries)


def test_write_report_creates_every_file(tmp_path: Path, run: tuple[list[Event], CheckResult, Metrics]) -> None:
    events, result, metrics = run
    meta = {"scenario": "broadcast.py", "seed": 7, "bots": 4, "windows": [(1.5, 2.0, "100 ms delay")]}
    folder = write_report(tmp_path / "run", events, result, metrics, meta)

    assert folder == tmp_path / "run"
    for name in ["events.csv", "summary.json", "report.html", *CHARTS]:
        assert (tmp_path / "run" / name).stat().st_size > 0, name
    assert read_csv(tmp_path / "run" / "events.csv") == events


def test_summary_json_holds_meta_violations_and_metrics(
    tmp_path: Path, run: tuple[list[Event], CheckResult, Metrics]
) -> None:
    events, result, metrics = run
    write_report(tmp_path, events, result, metrics, {"scenario": "broadcast.py", "seed": 7})
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))

    assert summary["meta"] == {"scenario": "broadcast.py", "seed": 7}
    assert summary["check"]["ok"] is False
    violations = summary["check"]["violations"]
    assert violations["malformed"]["count"] == 2
    assert violations["malformed"]["example"][0]["text"].startswith("\x1b[31m")
    assert violations["lost"]["example"][0]["kind"] == SEND
    assert summary["metrics"]["latency"]["lost"] == 1


def test_report_html_is_self_contained(tmp_path: Path, run: tuple[list[Event], CheckResult, Metrics]) -> None:
    events, result, metrics = run
    write_report(tmp_path, events, result, metrics, {"scenario": "broadcast.py"})
    page = (tmp_path / "report.html").read_text(encoding="utf-8")

    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?://""", page, re.IGNORECASE)
    assert "<script" not in page.lower()  # the hostile line is shown, escaped, not run
    assert "&lt;script&gt;" in page and "\\x1b" in page
    assert page.count('src="data:image/png;base64,') == len(CHARTS)
    # Violations come first, then latency, then fairness, then the charts.
    positions = [page.index(heading) for heading in ("<h2>Violations", "<h2>Latency", "<h2>Fairness", "<h2>Charts")]
    assert positions == sorted(positions)
    assert "malformed" in page and "a line that parses as nothing" in page


def test_a_clean_run_reports_no_violations(tmp_path: Path, run: tuple[list[Event], CheckResult, Metrics]) -> None:
    events, _, metrics = run
    write_report(tmp_path, events, CheckResult(), metrics, {})
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "None found" in page
    assert json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))["check"]["violations"] == {}


@pytest.mark.parametrize(
    "plot",
    [
        lambda events, metrics: plot_latency_cdf(metrics),
        lambda events, metrics: plot_latency_over_time(metrics, windows=[(1.0, 1.5, "loss 5 %")]),
        lambda events, metrics: plot_fairness(metrics),
        lambda events, metrics: plot_timeline(events, metrics, windows=[(1.0, 1.5, "loss 5 %")]),
    ],
    ids=["cdf", "over_time", "fairness", "timeline"],
)
def test_plot_helpers_return_labelled_figures(plot: Any, run: tuple[list[Event], CheckResult, Metrics]) -> None:
    events, _, metrics = run
    figure = plot(events, metrics)
    assert isinstance(figure, Figure)
    assert figure.canvas.manager is None  # never registered with pyplot: no window, nothing to close
    for axes in figure.axes:
        assert axes.get_title()
        assert axes.get_ylabel()
    assert any(axes.get_xlabel() for axes in figure.axes)
    assert any(axes.get_legend() is not None for axes in figure.axes)


def test_plots_of_an_empty_run_do_not_fail() -> None:
    metrics = compute([], [])
    for figure in (
        plot_latency_cdf(metrics),
        plot_latency_over_time(metrics),
        plot_fairness(metrics),
        plot_timeline([], metrics),
    ):
        assert isinstance(figure, Figure)


def test_summary_table_puts_violations_first(run: tuple[list[Event], CheckResult, Metrics]) -> None:
    _, result, metrics = run
    text = summary_table(result, metrics)
    assert text.index("Violations") < text.index("Latency") < text.index("Fairness")
    assert "malformed" in text and "\\x1b" in text
    assert "1 lost" in text and "counted as loss, not as latency" in text
    assert text.splitlines()[-1] == figure_summary(result, metrics)


def test_figure_summary_is_one_line_of_figures(run: tuple[list[Event], CheckResult, Metrics]) -> None:
    _, result, metrics = run
    line = figure_summary(result, metrics)
    assert "\n" not in line
    assert line.startswith("4 bots, 35 deliveries, 1 lost, p99 ")
    assert line.endswith("3 violations (2 kinds)")
    assert figure_summary(CheckResult(), metrics).endswith("0 violations")
    assert figure_summary(None, metrics).endswith("not checked")


def test_a_report_from_the_real_checker(tmp_path: Path) -> None:
    """End to end on a hand-written log: check() -> compute() -> write_report(), and the figures agree."""
    from chatlab import protocol
    from chatlab.swarm.checker import check
    from chatlab.swarm.events import NAME, tag_text

    names = {"a": "alice", "b": "bob", "c": "carol"}
    events: list[Event] = []
    for number, bot in enumerate(names):  # each joins 10 ms after the one before; earlier ones see the notice
        start = number * 10 * MS
        earlier = list(names)[:number]
        events += [
            Event(t_ns=start, bot=bot, kind=CONNECT),
            Event(t_ns=start + MS, bot=bot, kind=NAME, name=names[bot]),
            Event(
                t_ns=start + 2 * MS,
                bot=bot,
                kind=JOINED,
                name=names[bot],
                text=protocol.greeting(names[bot], sorted(names[other] for other in earlier)),
            ),
        ]
        events += [
            Event(t_ns=start + 3 * MS, bot=other, kind=RECV, name=names[other], text=protocol.joined(names[bot]))
            for other in earlier
        ]
    for seq in range(3):  # alice says hello three times; carol misses the second
        planned, text = S + seq * 100 * MS, tag_text("hello there", f"a-{seq}")
        events.append(
            Event(t_ns=planned + MS, bot="a", kind=SEND, name="alice", msg_id=f"a-{seq}", text=text, planned_ns=planned)
        )
        for receiver, delay in (("b", 3), ("c", 5)):
            if (seq, receiver) != (1, "c"):
                line = protocol.public_message("alice", text)
                events.append(
                    Event(t_ns=planned + delay * MS, bot=receiver, kind=RECV, name=names[receiver], text=line)
                )
    events.sort(key=lambda event: event.t_ns)

    result = check(events)
    metrics = compute(events, result.deliveries)
    assert set(result.violations) == {"lost"}
    assert (metrics.expected, metrics.lost) == (result.summary()["expected"], result.summary()["lost"]) == (6, 1)
    assert metrics.latency.values_ns.tolist() == [3 * MS, 3 * MS, 3 * MS, 5 * MS, 5 * MS]  # from the plan, not the send
    assert metrics.fairness.latency_worst_bot == "c"

    folder = write_report(tmp_path, events, result, metrics, {"scenario": "hand-written"})
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["check"]["violations"]["lost"]["count"] == 1
    assert "carol" in (folder / "report.html").read_text(encoding="utf-8")
    assert (
        figure_summary(result, metrics) == "3 bots, 5 deliveries, 1 lost, p99 5.00 ms, Jain 0.941, 1 violation (1 kind)"
    )
