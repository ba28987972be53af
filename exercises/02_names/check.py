"""Checks for exercise 2: names over real sockets, one person at a time."""

from __future__ import annotations

from chatlab import protocol
from chatlab.exercises.kit import Checklist, CheckResult

VALID = ["alice", "Маша", "x", "a" * 24, "under_score", "da-sh", "R2D2"]
INVALID = ["", "a" * 25, "bob smith", "star*", "at@", "colon:", "(paren)", "slash/"]


def names(context) -> CheckResult:
    module = context.load()
    checklist = Checklist("names")
    with checklist.requirement("valid_name() accepts 1-24 letters, digits, _ or -") as requirement:
        wrong = [name for name in VALID if not module.valid_name(name)]
        wrong += [name for name in INVALID if module.valid_name(name)]
        requirement.expect(not wrong, "the right answer for every name", f"wrong for {wrong!r}")
    with context.server() as server, checklist.people(server) as people:
        with checklist.requirement("the first user is greeted alone") as requirement:
            alice = people.connect("alice")
            requirement.expect_line(alice, protocol.greeting("alice", []))
        with checklist.requirement("an invalid name is refused and the connection closed") as requirement:
            bad = people.connect("bob smith")
            requirement.expect_line(bad, protocol.INVALID_NAME)
            requirement.expect_closed(bad)
        with checklist.requirement("an empty name is refused") as requirement:
            empty = people.connect("")
            requirement.expect_line(empty, protocol.INVALID_NAME)
            requirement.expect_closed(empty)
        with checklist.requirement("a name differing only in case is refused, as sent") as requirement:
            shouting = people.connect("ALICE")
            requirement.expect_line(shouting, protocol.name_taken("ALICE"))
            requirement.expect_closed(shouting)
        with checklist.requirement("a name is trimmed and normalized to NFC") as requirement:
            emile = people.connect("  e\u0301mile  ", label="émile")
            requirement.expect_line(emile, protocol.greeting("\u00e9mile", ["alice"]))
        with checklist.requirement("any script works, and the greeting lists who is online") as requirement:
            masha = people.connect("Маша")
            requirement.expect_line(masha, protocol.greeting("Маша", ["alice", "\u00e9mile"]))
        with checklist.requirement("the others hear who joined") as requirement:
            requirement.expect(alice.wait_for(protocol.joined("Маша")) is not None, protocol.joined("Маша"), "no such line")
    return checklist.result()
