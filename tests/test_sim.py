"""The network simulator end to end: real sockets on 127.0.0.1 through the proxy, and swarms over it."""

from __future__ import annotations

import contextlib
import dataclasses
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatlab.client import ChatClient
from chatlab.protocol import Message
from chatlab.sim import Impairment, Network, NetworkSimulator, Shaper, simulate
from chatlab.sim.network import PROFILES, describe_profiles
from chatlab.swarm import checker
from chatlab.swarm import events as ev
from chatlab.swarm.engine import load_scenario, plan_networks
from chatlab.swarm.runner import run
from chatlab.swarm.scenario import Bot, Scenario, constant, task

BOTS = Path(__file__).resolve().parent.parent / "bots"
TIMEOUT = 10.0


# -- a bare upstream: one socket to play the server by hand --------------------------------


@contextlib.contextmanager
def upstream() -> Iterator[socket.socket]:
    """A listening socket on a free port of 127.0.0.1, standing in for a server."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)
        yield listener


@contextlib.contextmanager
def relayed(network: Network, **options) -> Iterator[tuple[socket.socket, socket.socket, NetworkSimulator]]:
    """(client, the upstream's side, the simulator): one connection through ``network``."""
    with upstream() as listener, simulate(listener.getsockname(), network, **options) as simulator:
        client = socket.create_connection(simulator.address, timeout=TIMEOUT)
        server, _ = listener.accept()
        server.settimeout(TIMEOUT)
        with client, server:
            yield client, server, simulator


def read_to_end(sock: socket.socket) -> tuple[bytes, str]:
    """Everything until the stream ends, and how it ended: "closed" or "reset"."""
    received = bytearray()
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return bytes(received), "reset"
        if not data:
            return bytes(received), "closed"
        received += data


def prove_relay(client: socket.socket, server: socket.socket) -> None:
    """Wait until both directions carry a byte: the relay is up (and no earlier event can race this one)."""
    client.sendall(b"?")
    assert server.recv(1) == b"?"
    server.sendall(b"!")
    assert client.recv(1) == b"!"


def reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- byte streams ------------------------------------------------------------------------------


ms = st.floats(0, 0.003)
mixes = st.builds(
    Impairment,
    latency=ms,
    jitter=ms,
    jitter_distribution=st.sampled_from(["uniform", "normal"]),
    fragment=st.one_of(st.just((0, 0)), st.tuples(st.integers(1, 64), st.integers(64, 2000))),
    fragment_gap=st.tuples(st.just(0.0), st.floats(0, 0.0005)),
    cut_before_lf=st.floats(0, 1),
    cut_in_char=st.floats(0, 1),
    coalesce=st.one_of(st.just(0.0), ms),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(up=mixes, down=mixes, sent_up=st.binary(max_size=6000), sent_down=st.binary(max_size=6000), seed=st.integers(0, 99))
def test_both_byte_streams_come_through_intact(up, down, sent_up, sent_down, seed):
    with relayed(Network("mix", up, down), seed=seed) as (client, server, _):
        client.sendall(sent_up)
        client.shutdown(socket.SHUT_WR)
        server.sendall(sent_down)
        server.shutdown(socket.SHUT_WR)
        assert read_to_end(server) == (sent_up, "closed")
        assert read_to_end(client) == (sent_down, "closed")


def test_chat_lines_survive_a_fragmenting_network_to_the_reference_server(server):
    with simulate(server.address, "fragmenting", seed=5) as network:
        host, port = network.address
        with ChatClient.connect(host, port, "Жанна") as zhanna, ChatClient.connect(host, port, "bob") as bob:
            lines = ["привет, bob", "a line, then another word", "☃ " * 200]
            for line in lines:
                zhanna.say(line)
            for line in lines:
                assert bob.expect(lambda got: isinstance(got, Message), timeout=TIMEOUT) == Message("Жанна", line.strip(), False)


def test_latency_is_never_less_than_configured():
    network = Network("slow", Impairment(latency=0.03, jitter=0.01), Impairment(latency=0.05, jitter=0.02, jitter_distribution="normal"))
    with relayed(network, seed=1) as (client, server, _):
        for _ in range(3):
            sent_at = time.monotonic()
            client.sendall(b"ping\n")
            assert server.recv(100) == b"ping\n"
            assert time.monotonic() - sent_at >= 0.03
            sent_at = time.monotonic()
            server.sendall(b"pong\n")
            assert client.recv(100) == b"pong\n"
            assert time.monotonic() - sent_at >= 0.05


def test_each_connection_runs_in_named_threads_that_end_with_it():
    with relayed(Network("plain"), seed=1) as (client, server, simulator):
        prove_relay(client, server)
        names = {thread.name for thread in threading.enumerate()}
        assert {"sim-accept", "sim-up-0", "sim-down-0"} <= names
        client.close()
        assert read_to_end(server) == (b"", "closed")
        server.close()
    assert not {thread.name for thread in threading.enumerate()} & {"sim-accept", "sim-up-0", "sim-down-0"}
    assert [event.kind for event in simulator.events()] == ["open", "close"]


# -- how connections end -----------------------------------------------------------------------


def test_a_half_close_reaches_the_server_and_the_other_direction_goes_on():
    with relayed(PROFILES["lan"]) as (client, server, _):
        client.sendall(b"last words\n")
        client.shutdown(socket.SHUT_WR)
        assert read_to_end(server) == (b"last words\n", "closed")
        server.sendall(b"* you left\n")
        server.close()
        assert read_to_end(client) == (b"* you left\n", "closed")


@pytest.mark.parametrize("who", ["client", "server"])
def test_a_reset_reaches_the_other_side(who):
    with relayed(PROFILES["lan"]) as (client, server, simulator):
        prove_relay(client, server)
        resetter, other = (client, server) if who == "client" else (server, client)
        reset(resetter)
        assert read_to_end(other) == (b"", "reset")
    assert simulator.events()[-1].detail == "reset", simulator.events()


def test_a_reset_fault_strikes_after_exactly_its_bytes():
    network = Network("cut", up=Impairment(fault="reset", fault_after=(100, 100)))
    payload = bytes(range(256)) * 2
    with relayed(network, seed=1) as (client, server, simulator):
        client.sendall(payload)
        assert read_to_end(server) == (payload[:100], "reset")
        assert read_to_end(client) == (b"", "reset")
    assert [event.kind for event in simulator.events() if event.direction == "up"] == ["reset"]


def test_a_half_close_fault_ends_one_direction_only():
    network = Network("half", up=Impairment(fault="half-close", fault_after=(6, 6)))
    with relayed(network, seed=1) as (client, server, _):
        client.sendall(b"hello world\n")
        assert read_to_end(server) == (b"hello ", "closed")
        server.sendall(b"still here\n")
        assert client.recv(100) == b"still here\n"


def test_a_mid_line_close_leaves_the_server_half_a_line():
    lines = b"one\ntwo\nthree\n"
    network = Network("mid", up=Impairment(fault="mid-line", fault_after=(4, 4)))  # right after the first LF
    with relayed(network, seed=1) as (client, server, _):
        client.sendall(lines)
        received, how = read_to_end(server)
        assert how == "closed" and lines.startswith(received) and not received.endswith(b"\n")
        assert read_to_end(client) == (b"", "closed")


def test_each_connection_can_have_a_network_of_its_own():
    doomed = Network("doomed", up=Impairment(fault="reset", fault_after=(3, 3)))
    with upstream() as listener, simulate(listener.getsockname(), "lan",
                                          network_for=lambda number, _: doomed if number == 1 else "lan") as simulator:
        for number in range(3):
            with socket.create_connection(simulator.address, timeout=TIMEOUT) as client:
                server, _ = listener.accept()
                server.settimeout(TIMEOUT)
                with server:
                    client.sendall(b"hello\n")
                    client.shutdown(socket.SHUT_WR)
                    assert read_to_end(server) == ((b"hel", "reset") if number == 1 else (b"hello\n", "closed"))
    assert [event.detail for event in simulator.events() if event.kind == "open"] == ["lan", "doomed", "lan"]


class FrozenClock:
    """A clock that moves only when the test says so (the simulator's ``clock``)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fill(sock: socket.socket, limit: int) -> int:
    """Send until the socket stays full (nobody reads at the other end) or ``limit`` bytes went; how many went.

    "Stays full" means no room for 0.2 s after it filled up: against a reader that
    has stopped for good this ends however loaded the machine, and against one that
    still reads the loop goes on to ``limit``.
    """
    sock.setblocking(False)
    sent, chunk = 0, b"x" * 65536
    while sent < limit:
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            _, writable, _ = select.select([], [sock], [], 0.2)
            if not writable:
                break
    return sent


def test_a_slow_consumer_stops_reading_from_the_server_and_then_reads_again():
    # The clock is frozen, and nothing is delivered before 1000 s: whatever the proxy
    # reads stays in its (huge) queue, so the server's sends can only block if the
    # proxy stops reading.
    down = Impairment(latency=1000.0, slow_every=1.0, slow_for=(5.0, 5.0))
    clock = FrozenClock(100.0)
    twin = Shaper(down, "0/0/down", origin=100.0)  # the same seed as connection 0's down direction
    pause = twin.windows_until(200.0)[0]
    with relayed(Network("slow", down=down), clock=clock, max_buffer=1 << 30) as (client, server, _):
        clock.now = pause.start + 0.001
        sent = fill(server, limit=64 << 20)
        assert sent < 64 << 20, "the server never blocked: the proxy kept reading during the pause"
        clock.now = pause.end + 0.001
        _, writable, _ = select.select([], [server], [], TIMEOUT)
        assert writable, "the proxy did not read again after the pause"


def test_a_missing_upstream_is_reported_and_the_client_turned_away():
    with upstream() as listener:
        address = listener.getsockname()
    with simulate(address, "lan") as simulator:
        try:
            with socket.create_connection(simulator.address, timeout=TIMEOUT) as client:
                assert read_to_end(client)[0] == b""
        except ConnectionResetError:
            pass  # the reset came before connect() had looked: turned away all the same
    assert [event.kind for event in simulator.events()] == ["upstream-failed"]


# -- swarms over simulated networks ----------------------------------------------------------------


SMALL = {"bots": 5, "duration": 1.0, "ramp_up": 0.5}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_loses_nothing_on_the_reference_server(profile):
    result = run(BOTS / "broadcast.py", seed=2, server="reference", network=profile, **SMALL)
    assert result.ok, result.summary_table()
    assert result.metrics.expected > 0
    assert result.meta["networks"] == {label: profile for label in result.meta["personas"]}


def test_under_fragmenting_the_naive_server_breaks_framing_and_the_reference_server_does_not():
    broadcast = dataclasses.replace(load_scenario(BOTS / "broadcast.py"), drain=1.5)  # the naive server's losses never arrive
    naive = run(broadcast, seed=4, server="naive", network="fragmenting", bots=6, duration=1.0)
    reference = run(BOTS / "broadcast.py", seed=4, server="reference", network="fragmenting", bots=6, duration=1.0)
    assert checker.MISATTRIBUTED in naive.violations, naive.summary_table()
    assert reference.ok, reference.summary_table()


def test_stalls_become_events_of_their_bots_and_shaded_windows():
    stalling = Network("stalling", down=Impairment(stall_every=0.3, stall_for=(0.1, 0.2)))
    result = run(BOTS / "broadcast.py", seed=6, server="reference", network=stalling, **SMALL)
    assert result.ok, result.summary_table()
    stalls = [event for event in result.events if event.kind == ev.NETWORK]
    assert stalls and all(event.text == "stall down (stalling)" for event in stalls)
    assert {event.bot for event in stalls} <= set(result.meta["personas"])
    assert all(event.planned_ns > event.t_ns for event in stalls)
    windows = result.meta["windows"]
    assert windows and {label for _, _, label in windows} == {"stall (stalling)"}
    assert all(start < end for start, end, _ in windows)


class Chatty(Bot):
    wait_time = constant(0.5)

    @task()
    def chat(self):
        self.say()


class Wired(Chatty):
    network = "lan"


def test_a_scenario_puts_a_share_of_its_bots_on_a_network():
    scenario = Scenario(mix={Chatty: 9, Wired: 1}, bots=20, networks={"mobile": 0.1})
    networks = plan_networks(scenario, None, seed=3, network="wifi")
    assert networks.count("lan") == 2 and networks.count("mobile") == 2 and networks.count("wifi") == 16
    assert networks == plan_networks(scenario, None, seed=3, network="wifi")
    assert plan_networks(scenario, None, seed=3).count("") == 16


# -- the command line ------------------------------------------------------------------------------


def chatlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chatlab", *args], capture_output=True, text=True, timeout=60)


def test_sim_list_prints_every_profile_exactly():
    result = chatlab("sim", "--list")
    assert result.returncode == 0
    assert result.stdout.strip() == describe_profiles()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "speed=3"], "unknown setting 'speed'"),
        (["--fragment", "9,1"], "LOW <= HIGH"),
        (["--profile", "dialup"], "invalid choice"),
        (["--upstream", "nowhere"], "HOST:PORT"),
    ],
)
def test_sim_usage_errors_exit_2_without_a_traceback(args, message):
    result = chatlab("sim", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_swarm_refuses_an_unknown_network():
    result = chatlab("swarm", str(BOTS / "broadcast.py"), "--network", "dialup", "--quiet", "--bots", "2")
    assert result.returncode == 2
    assert "no network profile 'dialup'" in result.stderr and "Traceback" not in result.stderr


def test_sim_command_relays_a_chat(server):
    host, port = server.address
    process = subprocess.Popen(
        [sys.executable, "-m", "chatlab", "sim", "--listen", "127.0.0.1:0", "--upstream", f"{host}:{port}",
         "--profile", "fragmenting", "--seed", "3"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        ready, _, _ = select.select([process.stderr], [], [], TIMEOUT)
        assert ready, "chatlab sim did not say where it listens"
        first = process.stderr.readline()
        assert first.startswith("chatlab sim: 127.0.0.1:") and f"-> {host}:{port}" in first
        sim_port = int(first.split()[2].rpartition(":")[2])
        with ChatClient.connect("127.0.0.1", sim_port, "alice") as alice, ChatClient.connect("127.0.0.1", sim_port, "bob") as bob:
            alice.say("through the simulator")
            assert bob.expect(lambda line: isinstance(line, Message), timeout=TIMEOUT).text == "through the simulator"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 0
        process.stderr.close()
