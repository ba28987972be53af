"""Test the tester: the checker, fed event logs written by hand, finds each fault and nothing else."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter, defaultdict, deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatlab import protocol
from chatlab.swarm import checker
from chatlab.swarm.checker import CheckResult, check
from chatlab.swarm.events import (
    CLOSED,
    COMMAND,
    CONNECT,
    CONNECT_FAILED,
    JOINED,
    LEAVE,
    NAME,
    RECV,
    REFUSED,
    SEND,
    WHISPER,
    Event,
    message_id,
    tag_text,
)

# ---------------------------------------------------------------------------
# A log written like a story
# ---------------------------------------------------------------------------


class Script:
    """Writes a swarm event log by hand, one bot action at a time.

    The clock ticks 1 microsecond per event, in the order the script is written.
    By default the script plays a correct server: ``join`` and ``leave`` tell every
    other user, ``hear`` delivers a message to everyone it is for. To plant a fault,
    pass ``tell=[...]`` or hear a message explicitly, with the wrong bots or twice::

        s = Script()
        s.join("b1", "alice")
        s.join("b2", "bob")              # b1 receives "* bob joined"
        hello = s.say("b1", "hello")
        s.hear(hello)                    # b2 receives "alice: hello [b1-0]"
        s.leave("b2", "quit")            # b1 receives "* bob left"
        result = check(s.events)
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._t_ns = 0
        self._conn: dict[str, int] = {}  # bot -> its current connection
        self._name: dict[str, str] = {}  # bot -> the name its current connection asked for
        self.online: dict[str, str] = {}  # bot -> name, of everyone joined, in joining order
        self._seq: Counter[str] = Counter()  # bot -> messages sent so far

    def record(self, bot: str, kind: str, **fields: object) -> Event:
        self._t_ns += 1000
        event = Event(self._t_ns, bot, kind, self._conn.get(bot, 0), self._name.get(bot, ""), **fields)  # type: ignore[arg-type]
        self.events.append(event)
        return event

    # -- joining and leaving ------------------------------------------------------------

    def connect(self, bot: str, name: str) -> None:
        """A new connection that reads the welcome and sends its name."""
        self._conn[bot] = self._conn.get(bot, -1) + 1
        self._name[bot] = name
        self.record(bot, CONNECT)
        self.recv(bot, protocol.WELCOME)
        self.record(bot, NAME)

    def join(self, bot: str, name: str, *, tell: list[str] | None = None) -> Event:
        """Connect and be accepted; ``tell`` (default: everyone online) receives ``* name joined``."""
        self.connect(bot, name)
        return self.accept(bot, tell=tell)

    def accept(self, bot: str, *, tell: list[str] | None = None) -> Event:
        """The server accepts the name ``bot`` asked for (after ``connect``)."""
        name = self._name[bot]
        greeting = protocol.greeting(name, protocol.sort_names(list(self.online.values())))
        self.recv(bot, greeting)
        joined = self.record(bot, JOINED, text=greeting)
        others = list(self.online) if tell is None else tell
        self.online[bot] = name
        for other in others:
            self.recv(other, protocol.joined(name))
        return joined

    def refuse(self, bot: str, name: str, answer: str | None = None) -> Event:
        """Connect and be refused, by default with ``! name taken: name``."""
        self.connect(bot, name)
        answer = protocol.name_taken(name) if answer is None else answer
        self.recv(bot, answer)
        refused = self.record(bot, REFUSED, text=answer)
        self.record(bot, CLOSED, text="refused")
        return refused

    def leave(self, bot: str, how: str = "quit", *, tell: list[str] | None = None) -> Event:
        """Leave ``how``; ``tell`` (default: everyone else online) receives ``* name left``."""
        leave = self.record(bot, LEAVE, text=how)
        name = self.online.pop(bot)
        if how == "quit":
            self.recv(bot, protocol.bye(name))
        self.record(bot, CLOSED, text=f"we left ({how})")
        for other in list(self.online) if tell is None else tell:
            self.recv(other, protocol.left(name))
        return leave

    def cut_off(self, bot: str, *, tell: list[str] | None = None) -> Event:
        """The server disconnects a slow reader; returns the ``! too slow`` line it got."""
        name = self.online.pop(bot)
        too_slow = self.recv(bot, protocol.TOO_SLOW)
        self.record(bot, CLOSED, text="server closed")
        for other in list(self.online) if tell is None else tell:
            self.recv(other, protocol.left(name))
        return too_slow

    # -- talking ------------------------------------------------------------------------

    def say(self, bot: str, text: str) -> Event:
        """Send a tagged broadcast."""
        msg_id = message_id(bot, self._next(bot))
        return self.record(bot, SEND, msg_id=msg_id, text=tag_text(text, msg_id), planned_ns=self._t_ns)

    def whisper(self, bot: str, target: str, text: str) -> Event:
        """Send a tagged private message to ``target`` (as typed)."""
        msg_id = message_id(bot, self._next(bot))
        line = f"@{target} {tag_text(text, msg_id)}"
        return self.record(bot, WHISPER, peer=target, msg_id=msg_id, text=line, planned_ns=self._t_ns)

    def _next(self, bot: str) -> int:
        self._seq[bot] += 1
        return self._seq[bot] - 1

    @staticmethod
    def line(sent: Event) -> str:
        """The line a correct server delivers for this SEND or WHISPER (sanitized, then parsed)."""
        command = protocol.parse_command(protocol.sanitize(sent.text))
        assert isinstance(command, protocol.Say | protocol.Whisper), "not a chat line"
        if isinstance(command, protocol.Whisper):
            return protocol.private_message(sent.name, command.text)
        return protocol.public_message(sent.name, command.text)

    def hear(self, sent: Event, *bots: str) -> list[Event]:
        """``bots`` receive the message; by default everyone it is for (the others, or the target)."""
        if not bots:
            if sent.kind == WHISPER:
                key = protocol.name_key(sent.peer)
                bots = tuple(bot for bot, name in self.online.items() if protocol.name_key(name) == key)
            else:
                bots = tuple(bot for bot in self.online if bot != sent.bot)
        return [self.recv(bot, self.line(sent)) for bot in bots]

    def recv(self, bot: str, line: str) -> Event:
        return self.record(bot, RECV, text=line)

    def users(self, bot: str, answer: str | None = None) -> Event:
        """Ask /users and get the answer (by default the right one)."""
        self.record(bot, COMMAND, text="/users")
        names = protocol.sort_names(list(self.online.values()))
        return self.recv(bot, protocol.online(names) if answer is None else answer)


def kinds(result: CheckResult) -> dict[str, int]:
    return {kind: violation.count for kind, violation in result.violations.items()}


def three_friends() -> Script:
    """alice (b1), bob (b2) and carol (b3), joined one after the other."""
    s = Script()
    s.join("b1", "alice")
    s.join("b2", "bob")
    s.join("b3", "carol")
    return s


def clean_log() -> Script:
    """A little of everything a correct server does."""
    s = three_friends()
    s.hear(s.say("b1", "Good morning."))
    s.hear(s.say("b2", "Morning!"))
    s.hear(s.whisper("b3", "alice", "Psst."))
    s.hear(s.whisper("b1", "alice", "Note to self."))  # a whisper to oneself reaches oneself
    s.hear(s.whisper("b2", "CAROL", "Hi there."))  # targets match under casefold
    s.whisper("b1", "zed", "Anyone?")
    s.recv("b1", protocol.no_such_user("zed"))
    s.users("b2")
    s.refuse("b4", "Bob")  # a collision with one winner: bob keeps the name
    s.join("b4", "dave")
    s.hear(s.say("b4", "Hello, I am new."))
    s.leave("b3", "quit")
    s.users("b1")
    s.join("b5", "Carol")  # the name is free again
    s.hear(s.say("b5", "Carol again."))
    s.leave("b2", "reset")
    s.hear(s.say("b1", "Still here."))
    s.hear(s.say("b5", "Bye bob."))
    return s


# ---------------------------------------------------------------------------
# A correct server's log
# ---------------------------------------------------------------------------


def test_a_clean_log_has_no_violation() -> None:
    result = check(clean_log().events)
    assert result.violations == {}
    assert result.ok


def test_the_deliveries_of_a_clean_log_are_all_due_and_all_arrived() -> None:
    s = three_friends()
    hello = s.say("b1", "Hello.")
    arrivals = s.hear(hello)
    psst = s.whisper("b2", "Carol", "Psst.")
    whispered = s.hear(psst)
    result = check(s.events)
    by_key = result.by_key()
    assert set(by_key) == {("b1-0", "b2", 0), ("b1-0", "b3", 0), ("b2-0", "b3", 0)}
    assert by_key[("b1-0", "b2", 0)].sent == hello
    assert by_key[("b1-0", "b2", 0)].received == arrivals[0]
    assert by_key[("b2-0", "b3", 0)].received == whispered[0]
    assert by_key[("b2-0", "b3", 0)].sender == "b2"
    assert all(delivery.certain for delivery in result.deliveries)
    summary = result.summary()
    assert summary["ok"] is True
    assert (summary["expected"], summary["delivered"], summary["lost"]) == (3, 3, 0)
    assert summary["sessions"] == 3
    assert summary["violations"] == {}


# ---------------------------------------------------------------------------
# Each fault, alone, is found, and nothing else is
# ---------------------------------------------------------------------------


def test_lost() -> None:
    s = three_friends()
    hello = s.say("b1", "Hello.")
    s.hear(hello, "b2")  # b3 never gets it
    result = check(s.events)
    assert kinds(result) == {checker.LOST: 1}
    assert hello in result.violations[checker.LOST].example
    (lost,) = [d for d in result.deliveries if d.received is None]
    assert (lost.msg_id, lost.receiver, lost.certain) == ("b1-0", "b3", True)
    assert result.summary()["lost"] == 1


def test_lost_private_message() -> None:
    s = three_friends()
    psst = s.whisper("b1", "bob", "Psst.")
    s.users("b3")  # the log goes on: a message sent at the very end could not have arrived
    result = check(s.events)
    assert kinds(result) == {checker.LOST: 1}
    assert psst in result.violations[checker.LOST].example


def test_duplicated() -> None:
    s = three_friends()
    hello = s.say("b1", "Hello.")
    s.hear(hello)
    again = s.hear(hello, "b2")[0]
    result = check(s.events)
    assert kinds(result) == {checker.DUPLICATED: 1}
    assert again in result.violations[checker.DUPLICATED].example


def test_echo() -> None:
    s = three_friends()
    hello = s.say("b1", "Hello.")
    s.hear(hello)
    echo = s.hear(hello, "b1")[0]
    result = check(s.events)
    assert kinds(result) == {checker.ECHO: 1}
    assert result.violations[checker.ECHO].example == [hello, echo]


def test_reordered() -> None:
    s = three_friends()
    first = s.say("b1", "One.")
    second = s.whisper("b1", "bob", "Two.")  # order holds across broadcasts and whispers
    s.hear(first, "b3")
    late = s.hear(second, "b2")[0]
    early = s.hear(first, "b2")[0]
    result = check(s.events)
    assert kinds(result) == {checker.REORDERED: 1}
    assert {late, early} <= set(result.violations[checker.REORDERED].example)


def test_private_leak() -> None:
    s = three_friends()
    psst = s.whisper("b1", "bob", "Psst.")
    s.hear(psst)
    leaked = s.hear(psst, "b3")[0]
    result = check(s.events)
    assert kinds(result) == {checker.PRIVATE_LEAK: 1}
    assert result.violations[checker.PRIVATE_LEAK].example == [psst, leaked]


def test_join_after_message() -> None:
    s = Script()
    s.join("b1", "alice")
    s.join("b2", "bob", tell=[])  # alice is never told that bob joined
    hello = s.say("b2", "Hello.")
    arrived = s.hear(hello)[0]
    result = check(s.events)
    assert kinds(result) == {checker.JOIN_AFTER_MESSAGE: 1}
    assert arrived in result.violations[checker.JOIN_AFTER_MESSAGE].example


def test_message_after_leave() -> None:
    s = three_friends()
    last = s.say("b3", "Bye.")
    s.hear(last, "b1")
    s.leave("b3", "quit")  # b2 gets "* carol left" ...
    too_late = s.hear(last, "b2")[0]  # ... and only then carol's message
    result = check(s.events)
    assert kinds(result) == {checker.MESSAGE_AFTER_LEAVE: 1}
    assert too_late in result.violations[checker.MESSAGE_AFTER_LEAVE].example


@pytest.mark.parametrize("how", ["quit", "close", "reset", "half-close", "mid-line", "cut off"])
def test_missing_leave(how: str) -> None:
    s = three_friends()
    if how == "cut off":
        departure = s.cut_off("b3", tell=["b1"])
    else:
        departure = s.leave("b3", how, tell=["b1"])  # bob never hears
    result = check(s.events)
    assert kinds(result) == {checker.MISSING_LEAVE: 1}
    example = result.violations[checker.MISSING_LEAVE].example
    assert departure in example
    assert any(event.bot == "b2" and event.kind == JOINED for event in example)


def test_duplicate_leave() -> None:
    s = three_friends()
    s.leave("b3", "close")
    again = s.recv("b1", "* carol left")
    result = check(s.events)
    assert kinds(result) == {checker.DUPLICATE_LEAVE: 1}
    assert again in result.violations[checker.DUPLICATE_LEAVE].example


def test_ghost_user_after_departure() -> None:
    s = three_friends()
    s.leave("b3", "quit")
    answer = s.users("b1", "* Online (3): alice, bob, carol")
    result = check(s.events)
    assert kinds(result) == {checker.GHOST_USER: 1}
    example = result.violations[checker.GHOST_USER].example
    assert answer in example
    assert any(event.text == "* carol left" for event in example)


def test_ghost_user_count() -> None:
    s = three_friends()
    answer = s.users("b1", "* Online (4): alice, bob, carol")
    result = check(s.events)
    assert kinds(result) == {checker.GHOST_USER: 1}
    assert result.violations[checker.GHOST_USER].example == [answer]


def test_a_name_taken_again_is_no_ghost() -> None:
    s = three_friends()
    s.leave("b3", "quit")
    s.join("b4", "carol")
    s.users("b1")
    assert check(s.events).ok


def test_name_collision_two_winners() -> None:
    s = three_friends()
    second = s.join("b4", "ALICE")  # alice is online: it must be refused
    result = check(s.events)
    assert kinds(result) == {checker.NAME_COLLISION: 1}
    assert second in result.violations[checker.NAME_COLLISION].example


def test_name_collision_two_winners_of_a_race() -> None:
    s = three_friends()
    s.connect("b4", "erin")
    s.connect("b5", "Erin")  # both ask at the same instant ...
    first = s.accept("b4")
    second = s.accept("b5")  # ... and both are accepted
    result = check(s.events)
    assert kinds(result) == {checker.NAME_COLLISION: 1}
    assert result.violations[checker.NAME_COLLISION].example == [first, second]


def test_name_collision_refused_while_free() -> None:
    s = three_friends()
    refused = s.refuse("b4", "dave")  # nobody holds dave
    result = check(s.events)
    assert kinds(result) == {checker.NAME_COLLISION: 1}
    assert refused in result.violations[checker.NAME_COLLISION].example


def test_name_collision_no_winner_among_racers() -> None:
    s = three_friends()
    for bot in ("b4", "b5", "b6"):
        s.refuse(bot, "erin")
    result = check(s.events)
    assert kinds(result) == {checker.NAME_COLLISION: 3}


def test_name_collision_loser_without_name_taken() -> None:
    s = three_friends()
    s.refuse("b4", "bob", answer=protocol.INVALID_NAME)
    result = check(s.events)
    assert kinds(result) == {checker.NAME_COLLISION: 1}


def test_malformed() -> None:
    s = three_friends()
    garbage = s.recv("b2", "alice says hi")
    result = check(s.events)
    assert kinds(result) == {checker.MALFORMED: 1}
    assert result.violations[checker.MALFORMED].example == [garbage]


@pytest.mark.parametrize(
    "line",
    [
        "bob: Hello. [b1-0]",  # the tag is alice's, the name is bob's
        "alice: Hello world. [b1-0]",  # the text differs from what was sent
        "alice (private): Hello. [b1-0]",  # a broadcast turned private
        "alice: Hello.",  # no tag, although every bot tags its lines
        "alice: Hello. [b9-3]",  # an id nobody sent
    ],
)
def test_misattributed(line: str) -> None:
    s = three_friends()
    hello = s.say("b1", "Hello.")
    s.hear(hello, "b2")
    wrong = s.recv("b3", line)
    if line.endswith("Hello.") or "b9" in line:
        s.hear(hello, "b3")  # the real one arrives too: only the extra line is wrong
    result = check(s.events)
    assert kinds(result) == {checker.MISATTRIBUTED: 1}
    assert wrong in result.violations[checker.MISATTRIBUTED].example


def test_merged_lines_are_misattributed_and_lose_the_first() -> None:
    s = three_friends()
    one = s.say("b1", "One.")
    two = s.say("b1", "Two.")
    s.hear(one, "b2")
    s.hear(two, "b2")
    s.recv("b3", s.line(one) + s.line(two))  # no framing: two lines arrive as one
    result = check(s.events)
    assert kinds(result) == {checker.LOST: 1, checker.MISATTRIBUTED: 1}


def test_connect_failed() -> None:
    s = three_friends()
    failed = s.record("b4", CONNECT_FAILED, text="Connection refused")
    result = check(s.events)
    assert kinds(result) == {checker.CONNECT_FAILED_KIND: 1}
    assert result.violations[checker.CONNECT_FAILED_KIND].example == [failed]


def test_connect_failed_when_the_server_stops_answering() -> None:
    s = three_friends()
    s.record("b4", CONNECT)  # never welcomed
    s.record("b4", CLOSED, text="server closed")
    s.connect("b5", "erin")  # welcomed, but its name is never answered
    s.record("b5", CLOSED, text="server closed")
    s.record("b6", CONNECT)
    s.recv("b6", protocol.SERVER_FULL)
    s.record("b6", REFUSED, text=protocol.SERVER_FULL)
    result = check(s.events)
    assert kinds(result) == {checker.CONNECT_FAILED_KIND: 3}


def test_every_kind_has_a_test() -> None:
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    for kind in checker.VIOLATION_KINDS:
        assert any(name == kind or name.startswith(kind + "_") for name in tested), f"no test for {kind}"


# ---------------------------------------------------------------------------
# Uncertain members are neither required nor forbidden to receive
# ---------------------------------------------------------------------------


def test_joining_and_leaving_around_a_message_is_uncertain() -> None:
    s = three_friends()
    hello = s.say("b1", "Hello.")
    s.join("b4", "dave")  # joined after the send: may or may not get it
    s.leave("b3", "quit")  # began leaving before receiving it: may or may not get it
    s.hear(hello, "b2")
    s.hear(hello, "b4")  # got it anyway: fine, and an uncertain delivery
    result = check(s.events)
    assert result.ok
    by_key = result.by_key()
    assert by_key[("b1-0", "b2", 0)].certain
    assert not by_key[("b1-0", "b4", 0)].certain
    assert ("b1-0", "b3", 0) not in by_key


def test_a_leaver_that_got_a_later_message_was_a_certain_member() -> None:
    s = three_friends()
    first = s.say("b1", "One.")
    second = s.say("b1", "Two.")
    s.hear(first, "b2")
    s.hear(second)  # b3 gets the second but never the first ...
    s.leave("b3", "quit")  # ... and then leaves: the first was lost all the same
    result = check(s.events)
    assert kinds(result) == {checker.LOST: 1}
    assert first in result.violations[checker.LOST].example


def test_a_leaver_that_got_the_senders_leave_notice_was_a_certain_member() -> None:
    s = three_friends()
    last = s.say("b1", "Bye.")
    s.hear(last, "b2")
    s.leave("b1", "quit")  # b3 gets "* alice left" but never alice's last line
    s.leave("b3", "close")
    result = check(s.events)
    assert kinds(result) == {checker.LOST: 1}


@pytest.mark.parametrize("how", ["reset", "mid-line", "cut off"])
def test_the_last_lines_of_an_abrupt_sender_are_uncertain(how: str) -> None:
    s = three_friends()
    s.say("b1", "Maybe.")
    if how == "cut off":
        s.cut_off("b1")
    else:
        s.leave("b1", how)
    assert check(s.events).ok


def test_an_abrupt_senders_line_counts_once_a_later_one_arrived() -> None:
    s = three_friends()
    first = s.say("b1", "One.")
    second = s.say("b1", "Two.")
    s.hear(second)  # the server read both: the first is lost, not uncertain
    s.leave("b1", "reset")
    result = check(s.events)
    assert kinds(result) == {checker.LOST: 2}
    assert first in result.violations[checker.LOST].example


def test_a_clean_senders_last_line_is_certain() -> None:
    s = three_friends()
    s.say("b1", "Bye.")
    s.leave("b1", "quit")
    assert kinds(check(s.events)) == {checker.LOST: 2}


def test_a_session_open_at_drain_end_stayed_to_the_end() -> None:
    s = three_friends()
    hello = s.say("b1", "Hello.")
    s.hear(hello, "b2")
    drain_end = s.events[-1].t_ns + 1
    s.leave("b3", "close")  # the harness closes connections after the run
    result = check(s.events, drain_end_ns=drain_end)
    assert kinds(result) == {checker.LOST: 1}
    assert result.summary()["departures"] == 0


def test_lines_that_arrive_with_the_greeting_belong_to_the_session() -> None:
    s = Script()
    s.join("b1", "alice")
    s.connect("b2", "bob")
    greeting = s.recv("b2", protocol.greeting("bob", ["alice"]))
    s.join("b3", "carol", tell=["b1"])
    s.recv("b2", protocol.joined("carol"))  # came in the greeting's chunk: recorded before JOINED
    s.record("b2", JOINED, text=greeting.text)
    s.online["b2"] = "bob"
    s.hear(s.say("b3", "Hi all."))
    assert check(s.events).ok


def test_lines_a_correct_server_never_relays_are_not_expected() -> None:
    s = three_friends()
    s.say("b1", "x" * protocol.MAX_LINE)
    s.recv("b1", protocol.line_too_long(protocol.MAX_LINE))
    s.say("b1", "//users")  # a broadcast of "/users" ...
    s.hear(s.say("b1", "\x1b[1mBold\tmove."))  # ... and control characters are removed, TAB is a space
    s.users("b3")
    result = check(s.events)
    assert kinds(result) == {checker.LOST: 2}  # only "//users" was due, and it never came
    assert {d.msg_id for d in result.deliveries if d.received is None} == {"b1-1"}


def test_a_throttled_senders_lines_count_only_where_they_arrived() -> None:
    s = three_friends()
    s.hear(s.say("b1", "One."))
    s.say("b1", "Two.")
    s.recv("b1", protocol.SLOW_DOWN)  # the flood limit dropped one line
    s.hear(s.say("b1", "Three."))
    s.users("b3")
    assert check(s.events).ok


def test_a_shutdown_is_not_a_departure() -> None:
    s = three_friends()
    for bot in ("b1", "b2", "b3"):
        s.recv(bot, protocol.SHUTTING_DOWN)
    for bot in ("b1", "b2", "b3"):
        s.record(bot, CLOSED, text="server closed")
    s.record("b4", CONNECT_FAILED, text="Connection refused")
    result = check(s.events)
    assert kinds(result) == {checker.CONNECT_FAILED_KIND: 1}


def test_whispers_to_oneself_and_to_a_casefold_name_are_fine() -> None:
    s = three_friends()
    s.hear(s.whisper("b1", "alice", "Me."))
    s.hear(s.whisper("b2", "ALICE", "You."))
    s.hear(s.whisper("b3", "Bob", "Him."))
    result = check(s.events)
    assert result.ok
    assert result.summary()["delivered"] == 3


def test_a_reused_name_is_told_apart() -> None:
    s = three_friends()
    s.leave("b3", "quit")
    s.join("b4", "Carol")
    late = s.say("b4", "Me again.")
    s.hear(late)
    s.leave("b4", "close", tell=["b2"])  # b1 misses the second carol's departure only
    result = check(s.events)
    assert kinds(result) == {checker.MISSING_LEAVE: 1}
    assert any(event.bot == "b4" for event in result.violations[checker.MISSING_LEAVE].example)


# ---------------------------------------------------------------------------
# The order of the log does not matter, as long as each bot's own events keep theirs
# ---------------------------------------------------------------------------


def faulty_log() -> Script:
    """Several faults at once, so that examples have to be chosen."""
    s = clean_log()
    one = s.say("b1", "One.")
    two = s.say("b1", "Two.")
    s.hear(two, "b4")
    s.hear(one, "b4")
    s.hear(one, "b4")
    s.recv("b5", "alice: Two. [b1-11]")
    s.recv("b5", "garbage line")
    s.leave("b4", "close", tell=[])
    s.users("b1", "* Online (3): alice, dave, Carol")
    return s


def interleave(events: list[Event], rng: random.Random) -> list[Event]:
    """The same events in a random order that keeps each bot's events in their order."""
    queues: dict[str, deque[Event]] = defaultdict(deque)
    for event in events:
        queues[event.bot].append(event)
    mixed = []
    while queues:
        bot = rng.choice(sorted(queues))
        mixed.append(queues[bot].popleft())
        if not queues[bot]:
            del queues[bot]
    return mixed


def coarse(events: list[Event]) -> list[Event]:
    """The same events on a clock that ticks every 5 microseconds: many bots share a time."""
    return [dataclasses.replace(event, t_ns=event.t_ns // 5000 * 5000) for event in events]


@pytest.mark.parametrize("log", [clean_log, faulty_log])
@pytest.mark.parametrize("clock", [list, coarse])
@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=25, deadline=None)
def test_the_order_of_bots_in_the_log_does_not_change_the_result(log, clock, seed: int) -> None:
    events = clock(log().events)
    expected = check(events)
    shuffled = check(interleave(events, random.Random(seed)))
    assert shuffled == expected
    assert not expected.ok or log is clean_log
