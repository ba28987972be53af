"""Checks for exercise 4: private messages and their errors, over real sockets.

Each message carries its own words, and each requirement looks for the line with
those words, so one failure does not spill into the next.
"""

from __future__ import annotations

from chatlab import protocol
from chatlab.exercises.kit import Checklist, CheckResult


def private(context) -> CheckResult:
    checklist = Checklist("private messages")
    with context.server() as server, checklist.people(server) as people:
        alice, bob, carol = people.join("alice"), people.join("bob"), people.join("carol")
        alice.lines_until_quiet(0.2)
        bob.lines_until_quiet(0.2)
        with checklist.requirement("@bob reaches bob") as requirement:
            alice.send("@bob  see you at five ")
            requirement.expect_line_about(bob, "see you at five", protocol.private_message("alice", "see you at five"))
        with checklist.requirement("...and nobody else") as requirement:
            carol.send("marker")  # alice must see carol's line and nothing private before it
            requirement.expect_equal(alice.wait_for(lambda line: "see you" in line or line == "carol: marker"), "carol: marker")
            leaked = [line for line in carol.lines_until_quiet(0.3) if "see you" in line]
            requirement.expect(not leaked, "carol receives nothing of it", leaked)
        with checklist.requirement("names match whatever their case") as requirement:
            carol.send("@ALICE lunch?")
            requirement.expect_line_about(alice, "lunch?", protocol.private_message("carol", "lunch?"))
        with checklist.requirement("a private message to oneself is delivered") as requirement:
            bob.send("@bob note to self")
            requirement.expect_line_about(bob, "note to self", protocol.private_message("bob", "note to self"))
        with checklist.requirement("a name nobody holds is answered, as typed") as requirement:
            alice.send("@Nobody hello?")
            requirement.expect_line_about(alice, "Nobody", protocol.no_such_user("Nobody"))
        for line in ("@bob", "@bob   ", "@ hi", "@"):
            with checklist.requirement(f"{line!r} gets the usage line") as requirement:
                alice.send(line)
                requirement.expect_line_about(alice, "usage", protocol.USAGE_PRIVATE)
        with checklist.requirement("...and those lines reach nobody") as requirement:
            alice.send("end")
            got = bob.wait_for(lambda line: line.startswith("alice: "))
            requirement.expect_equal(got, "alice: end")
    return checklist.result()
