"""Checks for exercise 8: what a hostile or careless client sends must not hurt anyone."""

from __future__ import annotations

from chatlab import protocol
from chatlab.exercises.kit import Checklist, CheckResult


def hardening(context) -> CheckResult:
    checklist = Checklist("hardening")
    with context.server(max_line=64) as server, checklist.people(server) as people:
        alice, bob = people.join("alice"), people.join("bob")
        alice.lines_until_quiet(0.2)
        with checklist.requirement("terminal escapes and control characters are removed") as requirement:
            alice.send("\x1b[2J\x1b[31mred\x1b[0m\rfake\x07 \u202eevil\ttab")
            requirement.expect_line(bob, "alice: [2J[31mred[0mfake evil tab")
        with checklist.requirement("a line that is only control characters is ignored") as requirement:
            alice.send("\x1b\x07\x00")
            alice.send("after")
            requirement.expect_line(bob, "alice: after")
        with checklist.requirement("an over-long line is answered, dropped, and the connection kept") as requirement:
            alice.send("z" * 200)
            requirement.expect_line(alice, protocol.line_too_long(64))
            alice.send("still here")
            requirement.expect_line(bob, "alice: still here")
        with checklist.requirement("a line that is not UTF-8 is answered and dropped") as requirement:
            alice.send_bytes(b"caf\xc3(\n", "bytes that are not UTF-8")
            requirement.expect_line(alice, protocol.INVALID_UTF8)
    with context.server(rate=0.001, burst=3) as server, checklist.people(server) as people:
        alice, bob = people.join("alice"), people.join("bob")
        alice.lines_until_quiet(0.2)
        with checklist.requirement("beyond the burst, lines are refused with '! slow down'") as requirement:
            alice.sock.sendall(b"".join(f"line {number}\n".encode() for number in range(6)))
            requirement.transcript.append("alice> (6 lines at once: line 0 ... line 5)")
            for number in range(3):
                requirement.expect_line(bob, f"alice: line {number}")
            for _ in range(3):
                requirement.expect_line(alice, protocol.SLOW_DOWN)
            requirement.expect_equal(bob.lines_until_quiet(0.3), [])
    with context.server(name_timeout=0.3) as server, checklist.people(server) as people:
        with checklist.requirement("a connection that sends no name is told and closed") as requirement:
            silent = people.connect(None, label="silent")
            requirement.expect_line(silent, protocol.NAME_TIMED_OUT)
            requirement.expect_closed(silent)
    return checklist.result()
