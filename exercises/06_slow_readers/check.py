"""Checks for exercise 6: a client that stops reading costs the others nothing, and is cut off.

The swarm version (bots/slow_reader.py) is a ``swarm`` check in exercises.toml.
"""

from __future__ import annotations

import threading

from chatlab import protocol
from chatlab.exercises.kit import Checklist, CheckResult

OPTIONS = {"outbox_limit": 64 * 1024, "send_buffer": 16 * 1024}
LINES = 200
TEXT = "y" * 2000


def slow_reader(context) -> CheckResult:
    checklist = Checklist("a slow reader")
    with context.server(**OPTIONS) as server, checklist.people(server) as people:
        people.join("frozen", receive_buffer=4096)  # reads nothing from now on
        reader = people.join("reader")
        talker = people.join("talker")
        reader.lines_until_quiet(0.2)
        frozen_left = False
        with checklist.requirement(f"while one client reads nothing, another gets all {LINES} long lines") as requirement:
            requirement.transcript.append(f"talker> ({LINES} lines of 2 KB, each read by reader before the next)")
            for number in range(LINES):
                talker.sock.sendall(f"{number} {TEXT}\n".encode())
                got = reader.wait_for(lambda line: line.startswith("talker: ") or line == protocol.left("frozen"))
                if got == protocol.left("frozen"):
                    frozen_left = True
                    got = reader.wait_for(lambda line: line.startswith("talker: "))
                requirement.expect(
                    got == f"talker: {number} {TEXT}",
                    f"line {number} of {LINES}",
                    "nothing came (the talker's thread is stuck sending to the frozen client?)"
                    if got is None else got[:40] + "...",
                )
        with checklist.requirement("the frozen client is cut off and announced as left") as requirement:
            frozen_left = frozen_left or reader.wait_for(protocol.left("frozen")) is not None
            requirement.expect(frozen_left, protocol.left("frozen"), "no leave notice came")
        with checklist.requirement("each client has a writer thread") as requirement:
            writers = {thread.name for thread in threading.enumerate() if thread.name.startswith("writer-")}
            requirement.expect(
                {"writer-reader", "writer-talker"} <= writers, "threads writer-reader and writer-talker", sorted(writers) or "none"
            )
    return checklist.result()
