"""The bot swarm end to end: every scenario in bots/ against real servers on 127.0.0.1.

Against the reference server every scenario must pass the checker. Against the naive
server the scenarios that target a seed bug must find it: if one of these starts to
pass, a seed bug was fixed by accident (or the checker went blind).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chatlab.server import ChatServer
from chatlab.swarm import events as ev
from chatlab.swarm.engine import load_scenario, run_bots
from chatlab.swarm.runner import run

BOTS = Path(__file__).resolve().parent.parent / "bots"
SCENARIOS = sorted(path.stem for path in BOTS.glob("*.py"))
SMALL = {"bots": 8, "duration": 1.0}  # CI sizes: a few seconds per run


def test_every_required_scenario_is_shipped():
    required = {"joins", "broadcast", "private", "collisions", "disconnects", "slow_reader", "flood", "hostile", "classroom"}
    assert required <= set(SCENARIOS)


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_passes_against_the_reference_server(name):
    result = run(BOTS / f"{name}.py", seed=11, server="reference", **SMALL)
    assert result.ok, result.summary_table()
    assert result.metrics.expected > 0 or name == "collisions"


@pytest.mark.parametrize("name", ["broadcast", "disconnects", "slow_reader", "hostile"])
def test_the_asyncio_twin_passes_the_hardest_scenarios(name):
    result = run(BOTS / f"{name}.py", seed=11, server="asyncio", **SMALL)
    assert result.ok, result.summary_table()
    assert result.meta["server"] == "asyncio"


# Each scenario aimed at a seed bug, and the violation kinds it must find in the naive server.
NAIVE_FINDINGS = {
    "disconnects": {"missing_leave"},  # bug 1: a clean close is never announced
    "private": {"private_leak"},  # bug 4: "@ text" goes to everyone
    "hostile": {"misattributed"},  # bugs 5 and 6: no framing, split characters
    "slow_reader": {"misattributed"},  # bug 5: 2 KB lines arrive cut into recv(1024) pieces
}


@pytest.mark.parametrize("name", sorted(NAIVE_FINDINGS))
def test_scenarios_find_the_seed_bugs_in_the_naive_server(name):
    result = run(BOTS / f"{name}.py", seed=11, server="naive", **SMALL)
    assert not result.ok
    assert NAIVE_FINDINGS[name] <= set(result.violations), result.summary_table()


def test_the_slow_reader_is_cut_off_and_the_others_lose_nothing():
    result = run(BOTS / "slow_reader.py", seed=5, server="reference", bots=8, duration=2.0)
    assert result.ok, result.summary_table()
    frozen = {event.name for event in result.events if event.kind == ev.JOINED and result.meta["personas"][event.bot] == "frozen"}
    assert len(frozen) == 1
    leave_notices = {event.text for event in result.events if event.kind == ev.RECV and event.text == f"* {next(iter(frozen))} left"}
    assert leave_notices, "the server never cut off the bot that stopped reading"


def _schedule(seed: int) -> tuple[list[str], list[tuple[str, str, int]]]:
    """Names asked for, and (bot, text, planned offset) of the first sends, for one run."""
    scenario = dataclasses.replace(load_scenario(BOTS / "private.py"), drain=0.5)
    with ChatServer(host="127.0.0.1", port=0) as server:
        raw = run_bots(scenario, server.address, bots=5, duration=1.0, seed=seed)
    names = [event.name for event in raw.events if event.kind == ev.NAME]
    sends = sorted(
        (event.bot, event.text, event.planned_ns - raw.timeline.start_ns)
        for event in raw.events
        if event.kind in (ev.SEND, ev.WHISPER) and event.planned_ns < raw.timeline.steady_end_ns
    )
    return sorted(names), sends


def test_a_run_is_reproducible_from_its_seed():
    first_names, first_sends = _schedule(seed=42)
    again_names, again_sends = _schedule(seed=42)
    other_names, other_sends = _schedule(seed=43)
    assert first_sends, "the run sent nothing"
    assert again_names == first_names and again_sends == first_sends
    assert other_names != first_names and other_sends != first_sends


# -- the command line ------------------------------------------------------------------------


def swarm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chatlab", "swarm", "--quiet", *args], capture_output=True, text=True, timeout=120
    )


def test_swarm_command_writes_a_report_and_exits_0_when_all_is_well(tmp_path):
    result = swarm(str(BOTS / "broadcast.py"), "--bots", "5", "--duration", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Violations" in result.stdout and "report:" in result.stdout
    for name in ("events.csv", "summary.json", "report.html"):
        assert (tmp_path / name).is_file()
    assert list(tmp_path.glob("*.png"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["meta"]["scenario"] == "broadcast" and summary["meta"]["seed"] == 0
    events = ev.read_csv(tmp_path / "events.csv")
    assert any(event.kind == ev.SEND for event in events)


def test_swarm_command_exits_1_on_violations(tmp_path):
    result = swarm(str(BOTS / "private.py"), "--server", "naive", "--bots", "6", "--duration", "1", "--out", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "none found" not in result.stdout


def test_swarm_command_reports_a_server_that_is_not_there(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    result = swarm(str(BOTS / "broadcast.py"), "--target", f"127.0.0.1:{port}", "--bots", "3", "--duration", "1", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "connect_failed" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["no/such/scenario.py"], "no such scenario file"),
        (["bots/broadcast.py", "--bots", "0"], "at least 1"),
        (["bots/broadcast.py", "--target", "nowhere"], "HOST:PORT"),
        (["bots/broadcast.py", "--server", "naive", "--target", "127.0.0.1:1"], "not allowed with"),
    ],
)
def test_swarm_command_usage_errors_exit_2(args, message):
    result = swarm(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bots_in_worker_processes_merge_into_one_checked_run():
    result = run(BOTS / "broadcast.py", seed=3, server="reference", workers=2, bots=6, duration=1.0)
    assert result.ok, result.summary_table()
    assert result.meta["bots"] == 6 and len(result.meta["personas"]) == 6
    senders = {event.bot for event in result.events if event.kind == ev.SEND}
    assert len(senders) > 1 and result.metrics.expected > 0
