"""The autograder's checks: each one a promise of PROTOCOL.md, tested over real sockets.

A check is a function that gets a :class:`~chatlab.grade.probe.Probe` (raw scripted
connections to the server under test) and either returns a short note or raises
:class:`~chatlab.grade.probe.CheckFailed` with a sentence that says what was
expected and what came back. Checks are grouped in categories; the rubric
(``rubric.toml``) gives each one its points.

Two kinds of check live here:

* **direct checks** script two or three connections line by line (the welcome, a
  refused name, a private message that must not reach a third user...). They are
  quick and their failure messages are precise;
* **swarm checks** run a bot scenario from ``bots/`` (small and short) against the
  server, and fail when the swarm's checker finds a violation of the guarantees
  (lost, duplicated, reordered, leaked...) or when the server cut off a bot that
  did nothing wrong.

Only what PROTOCOL.md promises is tested, with the default settings it names, so
a correct server written by anyone gets full marks. Nothing here depends on
timing, except where a check must make the server read pieces separately
(framing) and in the bounded waits that decide a line is not coming.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chatlab import protocol
from chatlab.grade.probe import CheckFailed, Peer, Probe
from chatlab.swarm import checker
from chatlab.swarm import events as ev
from chatlab.swarm.engine import load_scenario, run_bots
from chatlab.swarm.scenario import Scenario, poisson

BOTS = Path(__file__).resolve().parent.parent.parent / "bots"  # the swarm's scenario files
CHECK_GRACE = 10.0  # seconds a hung check gets to end once its connections are shut down


@dataclass(frozen=True)
class Check:
    """One check: where it belongs, what it tests, how long it may take."""

    category: str
    name: str
    title: str  #: one sentence, shown on the scorecard
    run: Callable[[Probe, int], str | None]  #: (probe, seed) -> a note, or raises CheckFailed
    timeout: float  #: seconds before the grader declares it hung

    @property
    def key(self) -> str:
        return f"{self.category}.{self.name}"


CATEGORIES: dict[str, str] = {
    "handshake": "Handshake and names",
    "commands": "Commands",
    "broadcast": "Broadcast",
    "private": "Private messages",
    "departures": "Departures",
    "framing": "Framing",
    "robustness": "Robustness and hostile input",
    "slow_readers": "Slow readers",
    "concurrency": "Concurrency and races",
}
"""Every category, in the order the grader runs and prints them."""

CHECKS: list[Check] = []


def check(category: str, name: str, title: str, timeout: float = 20.0) -> Callable:
    """Register a check function under ``category.name``."""

    def register(function: Callable[[Probe, int], str | None]) -> Callable[[Probe, int], str | None]:
        CHECKS.append(Check(category, name, title, function, timeout))
        return function

    return register


def _names(seed: int, *bases: str) -> list[str]:
    """Names for one check, different from every other check's (a server that never frees names
    then fails only the checks about freeing names)."""
    return [f"{base}{seed % 1000}" for base in bases]


def _joined_trio(probe: Probe, seed: int) -> tuple[Peer, Peer, Peer]:
    """Three joined users, each having seen the later ones join."""
    a, b, c = _names(seed, "ann", "ben", "cy")
    first = probe.join(a)
    second = probe.join(b)
    first.expect(protocol.joined(b))
    third = probe.join(c)
    first.expect(protocol.joined(c))
    second.expect(protocol.joined(c))
    return first, second, third


def _pair(probe: Probe, seed: int) -> tuple[Peer, Peer]:
    a, b = _names(seed, "ann", "ben")
    first = probe.join(a)
    second = probe.join(b)
    first.expect(protocol.joined(b))
    return first, second


# ---------------------------------------------------------------------------
# Handshake and names
# ---------------------------------------------------------------------------


@check("handshake", "welcome", "every connection is greeted with the welcome line")
def _welcome(probe: Probe, seed: int) -> str:
    probe.connect()
    return f"got {protocol.WELCOME!r}"


@check("handshake", "greeting", "an accepted name gets '* Hi name!' with who is online; the others hear '* name joined'")
def _greeting(probe: Probe, seed: int) -> None:
    a, b = _names(seed, "zed", "amy")
    first = probe.connect(a)
    first.send(a)
    answer = first.expect_start(f"* Hi {a}! ")
    alone = f"* Hi {a}! You are the first one here."
    if answer != alone and not answer.startswith(f"* Hi {a}! Online: "):
        raise CheckFailed(f"{a} expected {alone!r} or '* Hi {a}! Online: ...', got {answer!r}")
    first.joined = True
    second = probe.connect(b)
    second.send(b)
    answer = second.expect_start(f"* Hi {b}! Online: ")
    listed = answer.split("Online: ", 1)[1].split(", ")
    if a not in listed:
        raise CheckFailed(f"{b}'s greeting should list {a}, who is online: got {answer!r}")
    if listed != protocol.sort_names(listed):
        raise CheckFailed(f"the names online should be sorted by casefold: got {answer!r}")
    second.joined = True
    first.expect(protocol.joined(b))


@check("handshake", "invalid_names", "invalid names are refused with the invalid-name line, then the connection is closed")
def _invalid_names(probe: Probe, seed: int) -> str:
    bad = ["", "two words", "x" * 25, "colon:name", "star*", "(paren)"]
    for name in bad:
        peer = probe.connect(f"a client naming itself {name!r}")
        peer.send(name)
        peer.expect(protocol.INVALID_NAME)
        peer.expect_closed()
    return f"refused {len(bad)} invalid names"


@check("handshake", "name_taken", "names are unique under casefold: a taken name is refused and the connection closed")
def _name_taken(probe: Probe, seed: int) -> None:
    (name,) = _names(seed, "alice")
    probe.join(name)
    for attempt in (name.upper(), f"  {name}  ", name.capitalize()):
        peer = probe.connect(f"a client naming itself {attempt!r}")
        peer.send(attempt)
        peer.expect(protocol.name_taken(attempt.strip()))
        peer.expect_closed()


@check("handshake", "unicode_names", "a name of letters from any script is accepted ('Маша')")
def _unicode_names(probe: Probe, seed: int) -> None:
    probe.join(f"Маша{seed % 1000}")


@check("handshake", "name_then_message", "a line sent right behind the name, in the same packet, is an ordinary chat line")
def _name_then_message(probe: Probe, seed: int) -> None:
    witness_name, name = _names(seed, "wit", "eager")
    witness = probe.join(witness_name)
    eager = probe.connect(name)
    eager.send_bytes(protocol.encode_line(name) + protocol.encode_line("hello right away"))
    eager.expect_start(f"* Hi {name}! ")
    eager.joined = True
    witness.expect(protocol.joined(name))
    witness.expect(protocol.public_message(name, "hello right away"))


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


@check("commands", "users", "/users answers '* Online (N): ...' with everyone, the asker included, sorted; /USERS works too")
def _users(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    for word in ("/users", "/USERS"):
        first.send(word)
        answer = first.expect_start("* Online (")
        count, _, listing = answer[len("* Online (") :].partition("): ")
        names = listing.split(", ")
        for name in (first.label, second.label):
            if name not in names:
                raise CheckFailed(f"{first.label} asked {word} and expected {name} in the list, got {answer!r}")
        if count != str(len(names)):
            raise CheckFailed(f"the count in {answer!r} does not match the {len(names)} names listed")
        if names != protocol.sort_names(names):
            raise CheckFailed(f"the names should be sorted by casefold: got {answer!r}")


@check("commands", "help", "/help answers the one help line")
def _help(probe: Probe, seed: int) -> None:
    first, _ = _pair(probe, seed)
    first.send("/help")
    first.expect(protocol.HELP)


@check("commands", "unknown", "an unknown /word is answered '! unknown command: /word (try /help)'")
def _unknown(probe: Probe, seed: int) -> None:
    first, _ = _pair(probe, seed)
    first.send("/dance wildly")
    first.expect(protocol.unknown_command("/dance"))


@check("commands", "quit", "/quit: '* Bye, name!', the connection closes, lines after /quit are ignored")
def _quit(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    first.send_bytes(b"/quit\nsent after quit\n")
    first.expect(protocol.bye(first.label))
    first.expect_closed()
    second.expect(protocol.left(first.label))


@check("commands", "double_slash", "'//text' is broadcast as '/text'")
def _double_slash(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    first.send("//shrug")
    second.expect(protocol.public_message(first.label, "/shrug"))


# ---------------------------------------------------------------------------
# Broadcast
# ---------------------------------------------------------------------------


@check("broadcast", "to_others", "a line reaches every other user as 'name: text', and is not echoed to its sender")
def _to_others(probe: Probe, seed: int) -> None:
    first, second, third = _joined_trio(probe, seed)
    first.send("hello everyone")
    line = protocol.public_message(first.label, "hello everyone")
    second.expect(line)
    third.expect(line)
    first.fence("a sender must not receive its own broadcast")


@check("broadcast", "in_order", "lines from one sender arrive exactly once, in sending order")
def _in_order(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    for number in range(30):
        first.send(f"line {number}")
    for number in range(30):
        second.expect(protocol.public_message(first.label, f"line {number}"))
    second.fence("every line should have arrived exactly once")


@check("broadcast", "swarm", "a swarm of chatting bots: nothing lost, duplicated, reordered or echoed", timeout=30.0)
def _broadcast_swarm(probe: Probe, seed: int) -> str:
    return run_swarm(probe.address, "broadcast", seed, bots=8, duration=1.0)


# ---------------------------------------------------------------------------
# Private messages
# ---------------------------------------------------------------------------


@check("private", "delivered", "'@name text' reaches only name, as 'sender (private): text'")
def _private_delivered(probe: Probe, seed: int) -> None:
    first, second, third = _joined_trio(probe, seed)
    first.send(f"@{second.label} a secret")
    second.expect(protocol.private_message(first.label, "a secret"))
    first.send("public after the secret")
    third.expect(protocol.public_message(first.label, "public after the secret"))  # a leak would have come first
    first.fence("a private message must not come back to its sender")


@check("private", "casefold_and_self", "private targets match under casefold, and a message to oneself is delivered")
def _private_casefold(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    first.send(f"@{second.label.upper()} shouting your name")
    second.expect(protocol.private_message(first.label, "shouting your name"))
    first.send(f"@{first.label} note to self")
    first.expect(protocol.private_message(first.label, "note to self"))


@check("private", "no_such_user", "'@nobody text' answers '! no such user: nobody' and delivers nothing")
def _no_such_user(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    first.send("@nobody_here hello?")
    first.expect(protocol.no_such_user("nobody_here"))
    first.send("marker")
    second.expect(protocol.public_message(first.label, "marker"))


@check("private", "usage", "'@name' without text, '@' and '@ text' answer the usage line and deliver nothing")
def _private_usage(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    for line in (f"@{second.label}", f"@{second.label}   ", "@", "@ hello"):
        first.send(line)
        first.expect(protocol.USAGE_PRIVATE)
    first.send("marker")
    second.expect(protocol.public_message(first.label, "marker"))  # anything leaked would have come first


@check("private", "swarm", "a swarm of whisperers: private lines reach their target and nobody else", timeout=30.0)
def _private_swarm(probe: Probe, seed: int) -> str:
    return run_swarm(probe.address, "private", seed, bots=8, duration=1.0)


# ---------------------------------------------------------------------------
# Departures
# ---------------------------------------------------------------------------


def _departure(probe: Probe, seed: int, how: str) -> None:
    """``how``: the leaver leaves; the witness gets one leave notice, and the name is free at once."""
    witness_name, name = _names(seed, "wit", f"gone{how.replace('-', '')}")
    witness = probe.join(witness_name)
    leaver = probe.join(name)
    witness.expect(protocol.joined(name))
    leaver.send("last words")
    witness.expect(protocol.public_message(name, "last words"))
    if how == "mid-line":
        leaver.send_bytes(b"and then the line just sto")
        leaver.leave("close")
    else:
        leaver.leave(how)
    if how == "quit":
        leaver.expect(protocol.bye(name))
    witness.expect(protocol.left(name))
    again = probe.join(name)  # PROTOCOL.md: the name is free before the notice is sent
    witness.expect(protocol.joined(name))  # a second leave notice, or a relayed half line, would have come first
    again.send("/quit")


@check("departures", "quit", "/quit: everyone else gets '* name left' exactly once, and the name is free at once")
def _leave_quit(probe: Probe, seed: int) -> None:
    _departure(probe, seed, "quit")


@check("departures", "close", "closing the connection: one '* name left', the name free at once")
def _leave_close(probe: Probe, seed: int) -> None:
    _departure(probe, seed, "close")


@check("departures", "reset", "a connection reset: one '* name left', the name free at once")
def _leave_reset(probe: Probe, seed: int) -> None:
    _departure(probe, seed, "reset")


@check("departures", "half_close", "a half-close (shutdown of the write side): one '* name left'")
def _leave_half_close(probe: Probe, seed: int) -> None:
    _departure(probe, seed, "half-close")


@check("departures", "mid_line", "closing in the middle of a line: the unfinished line is discarded, one '* name left'")
def _leave_mid_line(probe: Probe, seed: int) -> None:
    _departure(probe, seed, "mid-line")


@check("departures", "swarm", "churning bots leave in every way and come back: one leave notice each", timeout=30.0)
def _departures_swarm(probe: Probe, seed: int) -> str:
    return run_swarm(probe.address, "disconnects", seed, bots=8, duration=1.5)


# ---------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------


@check("framing", "pieces", "a line sent in several pieces arrives as one line")
def _pieces(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    data = protocol.encode_line("a line that arrives in five pieces")
    first.send_in_pieces(data, [3, 9, 17, 30])
    second.expect(protocol.public_message(first.label, "a line that arrives in five pieces"))


@check("framing", "several_in_one", "several lines in one packet are several messages")
def _several_in_one(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    first.send_bytes(b"one\ntwo\nthree\n")
    for word in ("one", "two", "three"):
        second.expect(protocol.public_message(first.label, word))


@check("framing", "split_utf8", "a UTF-8 character split between two packets arrives whole")
def _split_utf8(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    text = "Привет, как дела?"
    data = protocol.encode_line(text)
    first.send_in_pieces(data, [3, 11])  # both cuts fall inside two-byte characters
    second.expect(protocol.public_message(first.label, text))


@check("framing", "crlf", "a CR before the LF is dropped ('\\r\\n' works)")
def _crlf(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    first.send_bytes(b"windows line\r\n")
    second.expect(protocol.public_message(first.label, "windows line"))


@check("framing", "long_cyrillic", "a 1400-byte line of Cyrillic arrives whole (more than one small recv)")
def _long_cyrillic(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    text = "ж" * 700
    first.send_in_pieces(protocol.encode_line(text), [1001])
    second.expect(protocol.public_message(first.label, text))


# ---------------------------------------------------------------------------
# Robustness and hostile input
# ---------------------------------------------------------------------------


@check("robustness", "sanitize", "control characters are removed, TAB becomes a space, a line empty after that is ignored")
def _sanitize(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    cases = [
        ("\x1b[31mred\x1b[0m", "[31mred[0m"),
        ("a\tb", "a b"),
        ("fake\rben: i owe you", "fakeben: i owe you"),
        ("\u202eright to left", "right to left"),
        ("  padded  ", "padded"),
    ]
    for sent, relayed in cases:
        first.send(sent)
        second.expect(protocol.public_message(first.label, relayed))
    first.send_bytes(b"\x07\x1b\x7f\n")  # nothing left once sanitized: ignored
    first.send("after the empty line")
    second.expect(protocol.public_message(first.label, "after the empty line"))


@check("robustness", "long_line", "a line over 4096 bytes gets '! line too long (max 4096 bytes)', is dropped, and the connection stays")
def _long_line(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    first.send_bytes(b"x" * 10_000 + b"\n")
    first.expect(protocol.line_too_long(protocol.MAX_LINE))
    first.send("still here")
    second.expect(protocol.public_message(first.label, "still here"))  # the long line would have come first


@check("robustness", "invalid_utf8", "a line that is not UTF-8 gets '! invalid UTF-8, line dropped' and the connection stays")
def _invalid_utf8(probe: Probe, seed: int) -> None:
    first, second = _pair(probe, seed)
    first.send_bytes(b"caf\xc3 \xff\xfe\n")
    first.expect(protocol.INVALID_UTF8)
    first.send("still here")
    second.expect(protocol.public_message(first.label, "still here"))


@check("robustness", "silent_connections", "connections that never send a name hold nobody up")
def _silent(probe: Probe, seed: int) -> None:
    for _ in range(5):
        probe.connect()
    first, second = _pair(probe, seed)
    first.send("anyone there?")
    second.expect(protocol.public_message(first.label, "anyone there?"))


@check("robustness", "swarm", "hostile bots (long lines, bad UTF-8, escapes, dribbled lines) among polite ones", timeout=30.0)
def _hostile_swarm(probe: Probe, seed: int) -> str:
    return run_swarm(probe.address, "hostile", seed, bots=8, duration=1.0)


# ---------------------------------------------------------------------------
# Slow readers
# ---------------------------------------------------------------------------

FLOOD_LINES = 2000  # lines of FLOOD_LINE_BYTES: 8 MB, more than any outbox and kernel buffers hold
FLOOD_LINE_BYTES = 4000
FLOOD_WINDOW = 100  # lines the talker may be ahead of the listener: 400 KB, well within the listener's outbox


def _flood_past_a_frozen_reader(probe: Probe, seed: int) -> tuple[Peer, Peer, int]:
    """A frozen reader joins and stops reading; a talker sends 8 MB; a listener must get it all.

    Returns (listener, frozen, lines the listener got). A server that blocks on the
    frozen reader stops delivering to the listener too. The talker stays at most
    FLOOD_WINDOW lines ahead of the listener, so that the listener itself, a fast
    reader, is never the one found too slow.
    """
    talker_name, listener_name, frozen_name = _names(seed, "talker", "listener", "frozen")
    talker = probe.join(talker_name)
    listener = probe.join(listener_name)
    talker.expect(protocol.joined(listener_name))
    frozen = probe.join(frozen_name, receive_buffer=4096)  # from now on it reads nothing
    talker.expect(protocol.joined(frozen_name))
    listener.expect(protocol.joined(frozen_name))
    body = "z" * (FLOOD_LINE_BYTES - len(talker_name) - 20)
    progress = threading.Condition()  # guards got (lines the listener has received) and done
    got = 0
    done = False

    def talk() -> None:
        with contextlib.suppress(CheckFailed):
            for number in range(FLOOD_LINES):
                with progress:
                    allowed = number - FLOOD_WINDOW
                    if not progress.wait_for(lambda: done or got >= allowed, timeout=10.0) or done:  # noqa: B023
                        return
                talker.send(f"{number} {body}")

    sender = threading.Thread(target=talk, name="grade-talker")
    sender.start()
    try:
        while got < FLOOD_LINES:
            line = listener.line(f"line {got} of the talker's {FLOOD_LINES}", timeout=5.0)
            if line == protocol.left(frozen_name):
                continue
            if not line.startswith(f"{talker_name}: {got} "):
                raise CheckFailed(f"{listener_name} expected the talker's line {got}, got {line[:60]!r}")
            with progress:
                got += 1
                progress.notify()
    except CheckFailed as error:
        raise CheckFailed(
            f"while {frozen_name} read nothing, {listener_name} received only {got} of the {FLOOD_LINES} lines "
            f"the talker sent: a client that stops reading must not hold up the others ({error})"
        ) from None
    finally:
        with progress:
            done = True
            progress.notify()
        if sender.is_alive():
            talker.abort()  # a talker stuck in sendall() on a stalled server wakes with an error
        sender.join(10.0)
    return listener, frozen, got


@check("slow_readers", "others_unaffected", "one client stops reading: the others still get every line (8 MB of chat)", timeout=30.0)
def _others_unaffected(probe: Probe, seed: int) -> str:
    _, _, got = _flood_past_a_frozen_reader(probe, seed)
    return f"the listener got all {got} lines"


@check("slow_readers", "cut_off", "a client that stops reading is disconnected once its outbox is full, and announced as left", timeout=30.0)
def _cut_off(probe: Probe, seed: int) -> None:
    listener, frozen, _ = _flood_past_a_frozen_reader(probe, seed)
    notice = protocol.left(frozen.label)
    deadline = time.monotonic() + 5.0
    while notice not in listener.received and time.monotonic() < deadline:
        try:
            listener.line(repr(notice), timeout=max(0.1, deadline - time.monotonic()))
        except CheckFailed:
            break
    if notice not in listener.received:
        raise CheckFailed(f"{frozen.label} read nothing while 8 MB were sent to it, but was never disconnected as too slow")


# ---------------------------------------------------------------------------
# Concurrency and races
# ---------------------------------------------------------------------------

RACE_ROUNDS = 20
RACERS = 16


@check("concurrency", "name_race", "many clients ask for one name at the same instant: exactly one wins, every round", timeout=40.0)
def _name_race(probe: Probe, seed: int) -> str:
    failures = []
    for round_number in range(RACE_ROUNDS):
        (name,) = _names(seed, f"race{round_number}x")
        asked = [name.upper() if index % 2 else name for index in range(RACERS)]  # Race and RACE are one name
        racers = [probe.connect(f"a racer for {wanted!r}") for wanted in asked]
        for racer, wanted in zip(racers, asked, strict=True):  # as close together as one thread can send
            racer.send(wanted)
        winners = []
        for racer, wanted in zip(racers, asked, strict=True):
            answer = racer.line(f"an answer to the name {wanted!r}")
            if answer.startswith(f"* Hi {wanted}! "):
                winners.append(wanted)
                racer.joined = True
            elif answer != protocol.name_taken(wanted):
                raise CheckFailed(f"a racer asking for {wanted!r} expected a greeting or {protocol.name_taken(wanted)!r}, got {answer!r}")
        if len(winners) != 1:
            failures.append(f"round {round_number + 1}: {len(winners)} clients won the name {name!r}")
        for racer in racers:
            if racer.joined:  # leave cleanly, so that the name is free before the next round
                racer.quit()
            racer.close()
    if failures:
        raise CheckFailed(f"{len(failures)} of {RACE_ROUNDS} rounds went wrong: " + "; ".join(failures))
    return f"{RACE_ROUNDS} of {RACE_ROUNDS} rounds had exactly one winner among {RACERS} racers"


STORM_TALKERS = 3
STORM_LINES = 500  # per talker
STORM_CHURNERS = 4
STORM_CYCLES = 25  # joins and quits per churner


STORM_ROUNDS = 4  # a race shows up in most rounds; four make missing it very unlikely


@check("concurrency", "join_leave_storm", "users join and quit nonstop while others broadcast: no line lost, no talker cut off (4 rounds)", timeout=40.0)
def _join_leave_storm(probe: Probe, seed: int) -> str:
    """Talkers broadcast as fast as they can while churners join and /quit in a loop, a few rounds.

    A server whose user list is not protected (or is iterated while it changes)
    loses lines or kills a talker's thread here; two listeners, joined before and
    staying after, must receive every talker's every line, in order. A race does
    not show every time, so the storm is repeated and every round must pass.
    """
    failures = []
    for round_number in range(STORM_ROUNDS):
        try:
            _storm(probe, seed, round_number)
        except CheckFailed as error:
            failures.append(f"round {round_number + 1}: {error}")
    if failures:
        raise CheckFailed(f"{STORM_ROUNDS - len(failures)} of {STORM_ROUNDS} rounds passed\n" + "\n".join(failures))
    return (f"{STORM_ROUNDS} of {STORM_ROUNDS} rounds passed: {STORM_TALKERS * STORM_LINES} lines reached both "
            f"listeners while {STORM_CHURNERS * STORM_CYCLES} joins and quits went on, each round")


def _storm(probe: Probe, seed: int, round_number: int) -> None:
    suffix = f"r{round_number}"
    listeners = [probe.join(name + suffix) for name in _names(seed, "ear", "eye")]
    talkers = [probe.join(name + suffix) for name in _names(seed, "talka", "talkb", "talkc")[:STORM_TALKERS]]
    for index, listener in enumerate(listeners):  # everyone has heard everyone join before the storm
        for other in listeners[index + 1 :] + talkers:
            listener.expect(protocol.joined(other.label))
    errors: list[str] = []
    errors_lock = threading.Lock()  # guards errors, appended by every storm thread

    def talk(talker: Peer) -> None:
        try:
            for number in range(STORM_LINES):
                talker.send(f"storm {number}")
        except CheckFailed as error:
            with errors_lock:
                errors.append(str(error))

    def churn(name: str) -> None:
        try:
            for _ in range(STORM_CYCLES):
                churner = probe.connect(name)
                churner.send(name)
                churner.expect_start(f"* Hi {name}! ")
                churner.joined = True
                churner.quit()
                churner.close()
        except CheckFailed as error:
            with errors_lock:
                errors.append(str(error))

    threads = [threading.Thread(target=talk, args=(talker,), name=f"grade-talk-{talker.label}") for talker in talkers]
    threads += [threading.Thread(target=churn, args=(name + suffix,), name=f"grade-churn-{name}")
                for name in _names(seed, "chura", "churb", "churc", "churd")[:STORM_CHURNERS]]
    for thread in threads:
        thread.start()
    try:
        for listener in listeners:
            expected = {talker.label: 0 for talker in talkers}
            while any(count < STORM_LINES for count in expected.values()):
                so_far = sum(expected.values())
                line = listener.line(f"the rest of the talkers' lines ({so_far} of {STORM_TALKERS * STORM_LINES} so far)")
                sender, _, text = line.partition(": ")
                if sender not in expected:
                    if any(line == protocol.left(talker.label) for talker in talkers):
                        raise CheckFailed(f"{listener.label} received {line!r}: a talker was cut off in the middle of the storm")
                    continue  # churners joining and leaving
                if text != f"storm {expected[sender]}":
                    raise CheckFailed(f"{listener.label} expected '{sender}: storm {expected[sender]}', got {line!r}")
                expected[sender] += 1
    finally:
        for thread in threads:
            thread.join(CHECK_GRACE)
    if errors:
        raise CheckFailed("during the storm: " + "; ".join(errors[:3]))
    for peer in listeners + talkers:
        peer.quit()
        peer.close()


@check("concurrency", "churn", "a swarm of bots joins, chats and leaves all the time: nothing lost, no innocent sender cut off", timeout=40.0)
def _churn(probe: Probe, seed: int) -> str:
    return run_swarm(probe.address, "churn", seed, bots=12, duration=1.5)


@check("concurrency", "collisions", "a swarm races for three names: one winner each", timeout=30.0)
def _collisions_swarm(probe: Probe, seed: int) -> str:
    return run_swarm(probe.address, "collisions", seed, bots=12, duration=1.0)


# ---------------------------------------------------------------------------
# Swarm checks
# ---------------------------------------------------------------------------


def churn_scenario() -> Scenario:
    """Churners that leave in every way and come back, among bots that chat fast: races on the user list."""
    churners = load_scenario(BOTS / "disconnects.py")
    chatters = load_scenario(BOTS / "broadcast.py")
    churner = next(cls for cls in churners.mix if cls.persona == "churner")
    chatty = next(iter(chatters.mix))
    fast_churner = type("FastChurner", (churner,), {"wait_time": poisson(6.0)})
    fast_chatty = type("FastChatty", (chatty,), {"wait_time": poisson(10.0)})
    return Scenario(mix={fast_churner: 1, fast_chatty: 1}, bots=12, duration=1.5, ramp_up=0.2, drain=3.0,
                    description="churn and broadcast")


def load_grading_scenario(name: str) -> Scenario:
    """A scenario of ``bots/`` (or the churn mix), made short for grading."""
    scenario = churn_scenario() if name == "churn" else load_scenario(BOTS / f"{name}.py")
    return dataclasses.replace(scenario, ramp_up=min(scenario.ramp_up, 0.3), drain=5.0)


def run_swarm(address: tuple[str, int], name: str, seed: int, *, bots: int, duration: float) -> str:
    """Run a short swarm against ``address``; fail with the checker's findings, else return a figure line."""
    scenario = load_grading_scenario(name)
    raw = run_bots(scenario, address, bots=bots, duration=duration, seed=seed, drain_done=_nothing_missing)
    result = checker.check(raw.events, drain_end_ns=raw.drain_end_ns)
    problems = describe_violations(result)
    problems += unexpected_disconnects(raw.events) + users_answers_without_asker(raw.events)
    if problems:
        raise CheckFailed(f"the {name} swarm ({raw.bots} bots, seed {seed}) found:\n" + "\n".join(problems))
    counts = result.summary()
    return f"{name} swarm: {raw.bots} bots, {counts.get('delivered', 0)} of {counts.get('expected', 0)} due deliveries, no violation"


def _nothing_missing(events: list[ev.Event]) -> bool:
    return checker.check(events, drain_end_ns=time.monotonic_ns()).violations.get(checker.LOST) is None


def describe_violations(result: checker.CheckResult, examples: int = 4) -> list[str]:
    """The checker's findings in words: kind, count, explanation and the smallest example."""
    lines = []
    for violation in result.violations.values():
        lines.append(f"  {violation.kind} x{violation.count}: {violation.explanation}")
        for event in violation.example[:examples]:
            detail = event.text or event.msg_id
            lines.append(f"      {event.bot} ({event.name}) {event.kind}: {detail[:100]}")
    return lines


def unexpected_disconnects(events: list[ev.Event]) -> list[str]:
    """Joined bots that the server disconnected although they neither left nor read too slowly."""
    leaving: set[tuple[str, int]] = set()
    joined: set[tuple[str, int]] = set()
    too_slow: set[tuple[str, int]] = set()
    found: dict[tuple[str, int], str] = {}
    for event in events:
        session = (event.bot, event.conn)
        if event.kind == ev.JOINED:
            joined.add(session)
        elif event.kind == ev.LEAVE:
            leaving.add(session)
        elif event.kind == ev.RECV and event.text == protocol.TOO_SLOW:
            too_slow.add(session)
        elif event.kind == ev.RECV and event.text == protocol.SHUTTING_DOWN:
            leaving.add(session)
        elif (
            event.kind == ev.CLOSED
            and session in joined
            and session not in leaving
            and session not in too_slow
            and not event.text.startswith("bot error")
        ):
            found.setdefault(session, f"      {event.bot} ({event.name}) was disconnected by the server without a reason: {event.text}")
    if not found:
        return []
    return [f"  unexpected_disconnect x{len(found)}: the server closed joined connections that had done nothing wrong",
            *list(found.values())[:4]]


def users_answers_without_asker(events: list[ev.Event]) -> list[str]:
    """/users answers that leave out the bot that asked (PROTOCOL.md: "everyone, sender included")."""
    asked: dict[tuple[str, int], int] = {}  # session -> /users requests not answered yet
    found = []
    for event in events:
        session = (event.bot, event.conn)
        if event.kind == ev.COMMAND and protocol.sanitize(event.text).casefold().split(" ")[0] == "/users":
            asked[session] = asked.get(session, 0) + 1
        elif event.kind == ev.RECV and event.text.startswith("* Online (") and asked.get(session):
            asked[session] -= 1
            names = event.text.partition("): ")[2].split(", ")
            if event.name not in names:
                found.append(f"      {event.bot} ({event.name}) asked /users and got: {event.text[:100]}")
    if not found:
        return []
    return [f"  users_without_asker x{len(found)}: a /users answer did not list the user who asked", *found[:3]]


def by_key() -> dict[str, Check]:
    """Every check by ``category.name``."""
    return {item.key: item for item in CHECKS}
