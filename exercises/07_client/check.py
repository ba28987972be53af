"""Checks for exercise 7: the client against the reference server, typed lines fed by the check."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

from chatlab import protocol
from chatlab.exercises.kit import Checklist, CheckResult, Patience, People
from chatlab.server import ChatServer

_END = None  # what Keyboard yields no more after: Ctrl-D


class Keyboard:
    """What the user types: lines put by the check, read by the client as if from input()."""

    def __init__(self, transcript: list[str]) -> None:
        self._typed: queue.Queue[str | None] = queue.Queue()
        self.transcript = transcript

    def type(self, line: str | None) -> None:
        self.transcript.append(f"you type> {line}" if line is not None else "you type> (Ctrl-D)")
        self._typed.put(line)

    def __iter__(self) -> Iterator[str]:
        while (line := self._typed.get(timeout=60)) is not _END:
            yield line


class Screen:
    """What the client shows, with a way to wait for a line."""

    def __init__(self, transcript: list[str], patience: Patience) -> None:
        self.transcript = transcript
        self.patience = patience
        self._lines: queue.Queue[str] = queue.Queue()

    def show(self, line: str) -> None:
        self.transcript.append(f"screen: {line}")
        self._lines.put(line)

    def wait_for(self, wanted: str) -> bool:
        try:
            while self._lines.get(timeout=self.patience.wait) != wanted:
                pass
            return True
        except queue.Empty:
            self.patience.lost = True
            return False


@contextlib.contextmanager
def uncaught_exceptions() -> Iterator[list[str]]:
    """Collect exceptions that end threads, instead of printing their tracebacks."""
    found: list[str] = []
    before = threading.excepthook
    threading.excepthook = lambda args: found.append(f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}")
    try:
        yield found
    finally:
        threading.excepthook = before


def _session(context, checklist: Checklist, how_to_end: str) -> None:
    module = context.load()
    before = set(threading.enumerate())
    with uncaught_exceptions() as crashes:
        with ChatServer(host="127.0.0.1", port=0) as server:
            _converse(module, server, checklist, how_to_end, before)
        # The server has stopped: a receiver the student forgot to join sees the end of its stream.
        for thread in set(threading.enumerate()) - before:
            thread.join(5.0)
    with checklist.requirement(f"[{how_to_end}] no thread of the client dies of an exception") as requirement:
        requirement.expect(not crashes, "none", "; ".join(crashes))


def _converse(module, server: ChatServer, checklist: Checklist, how_to_end: str, before: set[threading.Thread]) -> None:
    """bob and the student's client chat, then the client leaves in the way ``how_to_end`` says."""
    people = People(server.address, checklist.transcript, checklist.patience)
    keyboard, screen = Keyboard(checklist.transcript), Screen(checklist.transcript, checklist.patience)
    host, port = server.address
    client = threading.Thread(target=module.run_client, args=(host, port, "me", keyboard, screen.show), name="student-client")
    try:
        bob = people.join("bob")
        client.start()
        with checklist.requirement(f"[{how_to_end}] lines from others appear while you type nothing") as requirement:
            requirement.expect(screen.wait_for(protocol.greeting("me", ["bob"])), "the greeting on screen, as one line", "not shown")
            requirement.expect(bob.wait_for(protocol.joined("me")) is not None, "bob sees '* me joined'", "he did not")
            bob.send("hi there")
            bob.send_bytes(b"two lines\nin one packet\n", "two lines in one packet")
            for line in ("bob: hi there", "bob: two lines", "bob: in one packet"):
                requirement.expect(screen.wait_for(line), f"the screen shows {line!r}", "it did not")
        with checklist.requirement(f"[{how_to_end}] what you type reaches the others") as requirement:
            keyboard.type("hello bob")
            requirement.expect(bob.wait_for("me: hello bob") is not None, "bob receives 'me: hello bob'", "he did not")
        with checklist.requirement(f"[{how_to_end}] the client leaves cleanly and returns") as requirement:
            if how_to_end == "/quit":
                keyboard.type("/quit")
            elif how_to_end == "end of input":
                keyboard.type(_END)
            else:
                server.stop()
                keyboard.type("anyone there?")  # a blocked input() only returns on the next line
            client.join(checklist.patience.wait)
            requirement.expect(not client.is_alive(), "run_client() returns", "it is still running")
            still_running = [
                thread.name
                for thread in set(threading.enumerate()) - before - {client}
                if thread.is_alive() and not thread.name.startswith(("reader-", "writer-", "accept", "sender"))
            ]
            requirement.expect(not still_running, "no thread of the client left running", still_running)
            if how_to_end != "the server stops":
                requirement.expect(bob.wait_for(protocol.left("me")) is not None, "bob sees '* me left'", "he did not")
    finally:
        keyboard.type(_END)
        people.close_all()


def client(context) -> CheckResult:
    checklist = Checklist("the client")
    for how in ("/quit", "end of input", "the server stops"):
        _session(context, checklist, how)
    return checklist.result()
