"""Checks for exercise 5: every way of leaving, one leave notice each, the name free at once.

A churn swarm with several ways of leaving is a ``swarm`` check in exercises.toml.
"""

from __future__ import annotations

import socket

from chatlab import protocol
from chatlab.exercises.kit import Checklist, CheckResult


def departures(context) -> CheckResult:
    checklist = Checklist("departures")
    with context.server() as server, checklist.people(server) as people:
        witness = people.join("witness")
        ways = {
            "/quit": lambda person: person.send("/quit"),
            "a clean close": lambda person: person.close(),
            "a half-close (shutdown of the write side)": lambda person: (
                person.transcript.append(f"{person.label}> (shuts its write side)"),
                person.sock.shutdown(socket.SHUT_WR),
            ),
            "a connection reset": lambda person: person.reset(),
        }
        for number, (way, leave) in enumerate(ways.items()):
            name = f"leaver{number}"
            with checklist.requirement(f"{way}: exactly one '* {name} left' and the name is free again") as requirement:
                leaver = people.join(name)
                requirement.expect(witness.wait_for(protocol.joined(name)) is not None, protocol.joined(name), "no such line")
                leaver.send("bye now")
                leave(leaver)
                if way == "/quit":
                    requirement.expect_line(leaver, protocol.bye(name))
                requirement.expect(witness.wait_for(protocol.left(name)) is not None, protocol.left(name), "no leave notice came")
                again = people.connect(name, label=f"{name}-again")
                got = again.next_line()
                requirement.expect(got is not None and got.startswith(f"* Hi {name}!"), f"* Hi {name}! ...", got)
                again.send("/quit")
                requirement.expect(witness.wait_for(protocol.left(name)) is not None, protocol.left(name), "no leave notice")
        with checklist.requirement("no leave notice twice, none for someone who never joined") as requirement:
            silent = people.connect(None, label="unnamed")
            silent.close()
            late = [line for line in witness.lines_until_quiet(0.3) if line.endswith(" left")]
            requirement.expect(not late, "no more leave notices", late)
    return checklist.result()
