"""Checks for exercise 9: stop() says goodbye to everyone, closes everything, and joins every thread."""

from __future__ import annotations

import threading

from chatlab import protocol
from chatlab.exercises.kit import Checklist, CheckResult, People, run_in_thread


def shutdown(context) -> CheckResult:
    module = context.load()
    checklist = Checklist("shutdown")
    before = set(threading.enumerate())
    server = module.Server(host="127.0.0.1", port=0)
    server.start()
    people = People(server.address, checklist.transcript, checklist.patience)
    try:
        alice, bob = people.join("alice"), people.join("bob")
        unnamed = people.connect(None, label="unnamed")
        alice.send("last words")
        bob.wait_for("alice: last words")
        alice.lines_until_quiet(0.2)
        checklist.transcript.append("(the server's stop() is called)")
        finished, error = run_in_thread(server.stop, "student-stop", 15.0)
        with checklist.requirement("stop() returns") as requirement:
            requirement.expect(finished and not isinstance(error, Exception), "stop() returns", error or "still running after 15 s")
        for person in (alice, bob, unnamed):
            with checklist.requirement(f"{person.label} is told '{protocol.SHUTTING_DOWN}', then closed") as requirement:
                requirement.expect_line(person, protocol.SHUTTING_DOWN)
                requirement.expect_closed(person)
        with checklist.requirement("no leave notices during a shutdown") as requirement:
            leaves = [line for line in checklist.transcript if line.endswith(" left")]
            requirement.expect(not leaves, "none", leaves)
        with checklist.requirement("no thread of the server left running") as requirement:
            left = [thread.name for thread in set(threading.enumerate()) - before if thread.is_alive() and thread.name != "student-stop"]
            requirement.expect(not left, "none", left)
    finally:
        people.close_all()
        server.force_close()
        for thread in set(threading.enumerate()) - before:
            thread.join(5.0)
    return checklist.result()
