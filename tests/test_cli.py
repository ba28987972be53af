"""The ``chatlab`` command line, run as a real process: servers, errors, the demo."""

from __future__ import annotations

import io
import re
import signal
import socket
import subprocess
import sys

import pytest

from chatlab import demo, protocol
from chatlab.client import ChatClient

TIMEOUT = 15.0


def chatlab(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run ``chatlab ARGS`` to completion and capture what it prints."""
    return subprocess.run(
        [sys.executable, "-m", "chatlab", *args], capture_output=True, text=True, timeout=TIMEOUT, **kwargs
    )


class ServerProcess:
    """``chatlab server --port 0`` in a child process; learns the port from its log."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatlab", "server", "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        first = self.process.stderr.readline()  # blocks until the server logs; the test timeout bounds it
        match = re.search(r"listening on ([\d.]+):(\d+)", first)
        assert match, f"unexpected first log line: {first!r}"
        self.address = (match.group(1), int(match.group(2)))

    def stop(self, signum: int) -> tuple[int, str]:
        self.process.send_signal(signum)
        _, stderr = self.process.communicate(timeout=TIMEOUT)
        return self.process.returncode, stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_server_process_serves_then_stops_cleanly_on_a_signal(signum):
    server = ServerProcess()
    try:
        with ChatClient.connect(*server.address, "alice", timeout=TIMEOUT) as alice:
            with ChatClient.connect(*server.address, "bob", timeout=TIMEOUT) as bob:
                alice.say("hello from a real process")
                assert bob.next_received(TIMEOUT).text == "alice: hello from a real process"
                status, log = server.stop(signum)
                assert bob.wait_closed(TIMEOUT) == [protocol.SHUTTING_DOWN]
            assert alice.wait_closed(TIMEOUT)[-1] == protocol.SHUTTING_DOWN
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate(timeout=TIMEOUT)
    assert status == 0
    assert "alice joined" not in log and "joined as alice" in log  # joins are logged...
    assert "hello from a real process" not in log  # ...message texts only with -v
    assert "Traceback" not in log


def test_verbose_server_logs_message_texts():
    server = ServerProcess("-v")
    try:
        with ChatClient.connect(*server.address, "alice", timeout=TIMEOUT) as alice:
            alice.say("for the log")
            alice.command("/users")  # answered after the broadcast was logged
            alice.next_received(TIMEOUT)
    finally:
        status, log = server.stop(signal.SIGTERM)
    assert status == 0
    assert "alice: for the log" in log


def test_naive_server_process_runs_and_stops():
    server = ServerProcess("--impl", "naive")
    try:
        with ChatClient.connect(*server.address, "alice", timeout=TIMEOUT) as alice:
            assert alice.greeting == "* Hi alice! You are the first one here."
    finally:
        status, log = server.stop(signal.SIGTERM)
    assert status == 0
    assert "Traceback" not in log


@pytest.mark.parametrize(
    "args, message",
    [
        (["server", "--port", "70000"], "between 0 and 65535"),
        (["server", "--port", "http"], "not a number"),
        (["server", "--max-clients", "0"], "at least 1"),
        (["server", "--rate", "5"], "--rate and --burst go together"),
        (["server", "--impl", "fancy"], "invalid choice"),
        (["server", "--name-timeout", "-1"], "more than 0"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_say_what_is_wrong_and_exit_non_zero(args, message):
    result = chatlab(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_port_is_a_clear_error():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = chatlab("server", "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_command_prints_help_and_exits_non_zero():
    result = chatlab()
    assert result.returncode == 2
    assert "server" in result.stderr and "client" in result.stderr and "demo" in result.stderr


def test_demo_command_prints_a_chat():
    result = chatlab("demo", "--users", "3", "--rounds", "1")
    assert result.returncode == 0, result.stderr
    assert "joins" in result.stdout and "(private):" in result.stdout and "left" in result.stdout
    assert "stopped cleanly" in result.stdout


def test_demo_is_reproducible_from_its_seed_and_shows_every_guarantee():
    def transcript(seed: int) -> str:
        out = io.StringIO()
        assert demo.run(users=4, rounds=2, seed=seed, out=out) == 0
        return re.sub(r"127\.0\.0\.1:\d+", "ADDRESS", out.getvalue())

    first = transcript(7)
    assert transcript(7) == first
    assert transcript(8) != first
    assert "! name taken:" in first
    # each join is announced to everyone already there, each leave to everyone still there
    assert len(re.findall(r"<- \* \S+ joined$", first, re.MULTILINE)) == 4 * 3 // 2
    assert len(re.findall(r"<- \* \S+ left$", first, re.MULTILINE)) == 4 * 3 // 2
    assert "* Online (4):" in first
