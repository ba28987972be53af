"""Checks for exercise 7: the client against the reference server, typed lines fed by the check."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from chatlab import protocol
from chatlab.exercises.kit import Checklist, CheckResult, People
from chatlab.server import ChatServer

_END = None


class Keyboard:
    """What the user types: lines put by the check, read by the client as if from input()."""

    def __init__(self, transcript: list[str]) -> None:
        self._typed: queue.Queue[str | None] = queue.Queue()
        self.transcript = transcript

    def type(self, line: str | None) -> None:
        self.transcript.append(f"you> {line}" if line is not None else "you> (Ctrl-D)")
        self._typed.put(line)

    def __iter__(self) -> Iterator[str]:
        while (line := self._typed.get(timeout=30)) is not _END:
            yield line


class Screen:
    """What the client shows, with a way to wait for a line."""

    def __init__(self, transcript: list[str]) -> None:
        self.transcript = transcript
        self._lines: queue.Queue[str] = queue.Queue()

    def show(self, line: str) -> None:
        self.transcript.append(f"screen: {line}")
        self._lines.put(line)

    def wait_for(self, wanted: str, timeout: float = 5.0) -> bool:
        try:
            while self._lines.get(timeout=timeout) != wanted:
                pass
            return True
        except queue.Empty:
            return False


def _session(context, checklist, how_to_end: str) -> None:
    module = context.load()
    before = set(threading.enumerate())
    with ChatServer(host="127.0.0.1", port=0) as server:
        people = People(server.address, checklist.transcript)
        keyboard, screen = Keyboard(checklist.transcript), Screen(checklist.transcript)
        host, port = server.address
        client = threading.Thread(
            target=module.run_client, args=(host, port, "me", keyboard, screen.show), name="student-client"
        )
        try:
            client.start()
            with checklist.requirement(f"[{how_to_end}] lines from others appear while you type nothing") as requirement:
                requirement.expect(screen.wait_for(protocol.greeting("me", [])), "the greeting on screen", "not shown")
                bob = people.join("bob")
                bob.send("hi there")
                bob.sock.sendall(b"two lines\nin one packet\n")
                for line in ("bob: hi there", "bob: two lines", "bob: in one packet"):
                    requirement.expect(screen.wait_for(line), f"screen shows {line!r}", "it never did")
            with checklist.requirement(f"[{how_to_end}] what you type reaches the others") as requirement:
                keyboard.type("hello bob")
                requirement.expect(bob.wait_for("me: hello bob") is not None, "bob receives 'me: hello bob'", "nothing")
            with checklist.requirement(f"[{how_to_end}] the client leaves cleanly and returns") as requirement:
                if how_to_end == "/quit":
                    keyboard.type("/quit")
                elif how_to_end == "end of input":
                    keyboard.type(_END)
                else:
                    server.stop()
                    keyboard.type("anyone there?")  # a blocked input() only returns on the next line
                client.join(5.0)
                requirement.expect(not client.is_alive(), "run_client returns", "still running after 5 s")
                left = [thread.name for thread in set(threading.enumerate()) - before - {client} if thread.is_alive()
                        and not thread.name.startswith(("reader-", "writer-", "accept", "flusher"))]
                requirement.expect(not left, "no thread of the client left running", left)
                if how_to_end != "the server stops":
                    requirement.expect(bob.wait_for(protocol.left("me")) is not None, "bob sees '* me left'", "he did not")
        finally:
            keyboard.type(_END)
            people.close_all()
    client.join(5.0)
    _join_leftovers(before)


def _join_leftovers(before: set[threading.Thread]) -> None:
    for thread in set(threading.enumerate()) - before:
        thread.join(5.0)  # a receiver the student forgot ends once its server is gone


def client(context) -> CheckResult:
    checklist = Checklist("the client")
    for how in ("/quit", "end of input", "the server stops"):
        _session(context, checklist, how)
    return checklist.result()
