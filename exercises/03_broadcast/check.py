"""Checks for exercise 3: the broadcast, and a slow reader that must not freeze the server.

The race check (a churn-and-broadcast swarm under a tiny switch interval) is a
``swarm`` check in exercises.toml.
"""

from __future__ import annotations

import select
import socket

from chatlab import protocol
from chatlab.exercises.kit import Checklist, CheckResult

LINE = "x" * 3000  # long lines fill a socket's buffers quickly


def broadcast(context) -> CheckResult:
    checklist = Checklist("broadcast")
    with context.server() as server, checklist.people(server) as people:
        alice, bob, carol = people.join("alice"), people.join("bob"), people.join("carol")
        with checklist.requirement("a line reaches everyone else") as requirement:
            alice.send("hello all")
            for person in (bob, carol):
                requirement.expect(
                    person.wait_for(protocol.public_message("alice", "hello all")) is not None,
                    f"{person.label} receives 'alice: hello all'",
                    "it never came",
                )
        with checklist.requirement("the sender gets no echo") as requirement:
            bob.send("ping")  # alice's next line from the server, if any, must be bob's
            got = alice.wait_for(lambda line: "hello all" in line or line == "bob: ping")
            requirement.expect_equal(got, "bob: ping")
    return checklist.result()


def no_send_under_the_lock(context) -> CheckResult:
    """A client that stops reading blocks whoever sends to it; it must not block a newcomer."""
    checklist = Checklist("sending outside the lock")
    with context.server() as server, checklist.people(server) as people:
        people.join("frozen", receive_buffer=4096)  # never reads again
        talker = people.join("talker")
        with checklist.requirement("while a send to a stuck client blocks, a newcomer still gets its greeting") as requirement:
            _fill_until_stuck(talker.sock)
            requirement.transcript.append("talker> (thousands of 3000-byte lines, until the server stops reading them)")
            newcomer = people.connect("newcomer")
            got = newcomer.next_line()
            requirement.expect(
                got is not None and got.startswith("* Hi newcomer!"),
                "* Hi newcomer! ... (the lock is free: nobody holds it while sending)",
                got or "nothing came: someone holds the lock while blocked in send()",
            )
    return checklist.result()


def _fill_until_stuck(sock: socket.socket, limit: int = 64 * 1024 * 1024) -> None:
    """Write lines until the server stops taking them for half a second (or ``limit`` bytes)."""
    data = (LINE + "\n").encode()
    sock.setblocking(False)
    sent = 0
    try:
        while sent < limit:
            try:
                sent += sock.send(data)
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], 0.5)
                if not writable:
                    return  # the server's reader for this client is stuck in a send
    finally:
        sock.setblocking(True)
        sock.settimeout(5)
