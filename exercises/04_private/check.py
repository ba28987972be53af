"""Checks for exercise 4: private messages and their errors, over real sockets."""

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
            requirement.expect_line(bob, protocol.private_message("alice", "see you at five"))
        with checklist.requirement("...and nobody else") as requirement:
            carol.send("marker")  # alice and carol must see nothing before it
            requirement.expect_equal(alice.wait_for(lambda line: "see you" in line or line == "carol: marker"), "carol: marker")
            requirement.expect(bob.wait_for("carol: marker") is not None, "bob receives 'carol: marker'", "it never came")
            requirement.expect(
                all("see you" not in line for line in carol.lines_until_quiet(0.3)), "carol sees nothing private", "she did"
            )
        with checklist.requirement("names match whatever their case") as requirement:
            carol.send("@ALICE hi")
            requirement.expect_line(alice, protocol.private_message("carol", "hi"))
        with checklist.requirement("a private message to oneself is delivered") as requirement:
            bob.send("@bob note to self")
            requirement.expect_line(bob, protocol.private_message("bob", "note to self"))
        with checklist.requirement("a name nobody holds is answered, as typed") as requirement:
            alice.send("@Nobody hello?")
            requirement.expect_line(alice, protocol.no_such_user("Nobody"))
        for line in ("@bob", "@bob   ", "@ hi", "@"):
            with checklist.requirement(f"{line!r} gets the usage line and reaches nobody") as requirement:
                alice.send(line)
                requirement.expect_line(alice, protocol.USAGE_PRIVATE)
        with checklist.requirement("the usage errors leaked to nobody") as requirement:
            alice.send("end")
            requirement.expect_equal(bob.wait_for(lambda line: "hi" in line or line == "alice: end"), "alice: end")
    return checklist.result()
