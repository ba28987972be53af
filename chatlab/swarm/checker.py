"""The swarm's oracle: it judges a run from the event log alone and says what went wrong.

The bots only record what they did and saw (:mod:`chatlab.swarm.events`); this module
reads that log afterwards and checks it against the guarantees of PROTOCOL.md. It
does no I/O, starts no thread and reads no clock, so a test can feed it a log written
by hand and see what it finds. Call :func:`check`::

    result = check(events, drain_end_ns=run.drain_end_ns)
    if not result.ok:
        for violation in result.violations.values():
            print(violation.kind, violation.count, violation.explanation)

Sessions
========

A *session* is one connection of one bot that the server accepted: from its JOINED
event (the greeting arrived) until its departure. The departure begins with the bot's
LEAVE event (``quit``, ``close``, ``reset``, ``half-close``, ``mid-line``), or, when
the bot did not choose to leave, with its CLOSED event or ``! too slow,
disconnecting`` (the server cut it off). A session whose connection is still open
when the run stops listening (``drain_end_ns``) stayed to the end; so did one that
received ``* server shutting down`` (a shutdown sends no leave notices).

Who had to receive what
=======================

Bots run in threads, so the log only says when each bot *noticed* something, never
when the server did it. The checker therefore only counts what a correct server
cannot avoid. For a broadcast ``m`` that A sends, a receiver B is a **certain member**
when:

1. B's JOINED came before ``m`` was sent. The greeting arrived before, so the server
   had admitted B before it could read ``m``; and
2. B stayed until it must have received ``m``: B stayed to the end of the run, or B
   received a later message of the same sender session, or A's ``* A left`` (or
   ``m`` itself). The server reads A's lines in order and routes each one to whoever
   is a member at that moment; so if B got A's later line (or A's leave notice,
   which comes after all of A's lines), B was still a member when ``m`` was routed.

Everyone else is *uncertain*: neither required nor forbidden to receive ``m``::

    time ─────────────────────────────────────────────────────────────────▶
                              A sends m        A sends m2
                                  │                │
    B  ──[JOINED]─────────────────┼────────────────┼───────────── (open)  certain
    C  ──[JOINED]─────────────────┼────────────────┼── RECV m2 ─ [LEAVE]  certain
    D  ──[JOINED]─────────────────┼──── [LEAVE]    │                      uncertain
    E                             │ [JOINED]───────┼────────────── (open)  uncertain
    F  ──[JOINED]── [LEAVE]       │                │                      not a member

D may have left before the server routed ``m``, and E may have joined before it: no
log can tell, so neither counts. A private message is judged the same way, with its
target as the only possible receiver (the target's name matched under casefold).

A sender must itself be joined: a line sent before JOINED, or after the bot began
leaving, is uncertain for everyone.

Senders that vanish
-------------------

When A ends abruptly (``reset``, ``mid-line``, or cut off by the server), the lines
it sent just before may never have been read: a reset can discard them, and a server
that cut A off stops reading. A correct server must be allowed to pass, so such a
sender's message ``m`` counts only when the log *proves* the server read it: somebody
(anybody) received ``m`` or a later message of A. This needs no timing threshold. A
clean departure (``quit``, ``close``, ``half-close``) makes the server read every line
before it notices the end, so all of that sender's lines count.

Lines a correct server never relays are expected nowhere: longer than the default
limit (``MAX_LINE``), empty once sanitized, or a command. And a sender that received
``! slow down, message dropped`` (the flood limit) lost some lines on purpose, with
no way to tell which: its lines count only where somebody received them.

Leave notices
-------------

When D's session ends, a receiver B must get exactly one ``* D left`` if B stayed to
the end and either B joined before D began leaving (D's LEAVE event), or B was told D
was online (D in B's greeting, or ``* D joined`` received). When the server cut D off
there is no LEAVE, so only the second reason applies.

Which session a name notice means
---------------------------------

Names come back: after ``* alice left`` another bot may take ``alice``. The checker
keeps, per receiver, what it was told: the greeting names the sessions holding those
names when the receiver joined (the last one with that name that joined before),
each ``* alice joined`` means the next session called exactly alice (in joining
order), each ``* alice left`` the one the receiver last knew. If two sessions swap one
name in the very instant a receiver joins, this guess can be off; it never matters
for names that are not reused. (Exact names, not casefolded ones: a broken server
that accepts ``Bob`` and ``BOB`` together still sends notices that tell them apart.)

The checks
==========

========================  ==================================================================
``lost``                  a certain member never received a message
``duplicated``            a receiver got one message id more than once
``echo``                  a sender got its own broadcast back
``reordered``             a receiver got two lines of one sender out of sending order
``private_leak``          a private message reached someone other than its target
``join_after_message``    a message arrived before the receiver knew its sender had joined
``message_after_leave``   a message arrived after the receiver got its sender's leave notice
``missing_leave``         a departure was not announced to a certain member
``duplicate_leave``       a departure was announced more than once to one receiver
``ghost_user``            ``/users`` lists someone who had left, or its count is wrong
``name_collision``        two sessions held one name at once, or a name was refused wrongly
``malformed``             a received line fits none of the protocol's forms
``misattributed``         a message's sender, text or kind differs from what was sent
``connect_failed``        a connection was not made or the server never answered it
========================  ==================================================================

Each kind comes with a count and its smallest example (fewest events, then earliest).

What comes out
==============

A :class:`CheckResult`: the violations by kind, and :attr:`CheckResult.deliveries`, one
:class:`Delivery` per (message, receiver session) that was due (``certain``) or that
happened, with the send and receive events, so that :mod:`chatlab.swarm.metrics` can
compute latency and loss without matching lines again.

Cost: every index is a dict keyed by message id or by session; the only loop over
pairs is message x members-at-that-moment, which is the size of the answer anyway.
"""

from __future__ import annotations

import heapq
import math
import re
from bisect import bisect_left
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

from chatlab import protocol
from chatlab.protocol import ListUsers, Message, Notice, Say, Unparsed, Whisper, name_key, parse_server_line
from chatlab.swarm.events import (
    CLOSED,
    COMMAND,
    CONNECT,
    CONNECT_FAILED,
    JOINED,
    LEAVE,
    NAME,
    NETWORK,
    RECV,
    REFUSED,
    SEND,
    STALL,
    WHISPER,
    Event,
    find_tag,
)

# ---------------------------------------------------------------------------
# 1. What the checker reports
# ---------------------------------------------------------------------------

LOST = "lost"
DUPLICATED = "duplicated"
ECHO = "echo"
REORDERED = "reordered"
PRIVATE_LEAK = "private_leak"
JOIN_AFTER_MESSAGE = "join_after_message"
MESSAGE_AFTER_LEAVE = "message_after_leave"
MISSING_LEAVE = "missing_leave"
DUPLICATE_LEAVE = "duplicate_leave"
GHOST_USER = "ghost_user"
NAME_COLLISION = "name_collision"
MALFORMED = "malformed"
MISATTRIBUTED = "misattributed"
CONNECT_FAILED_KIND = "connect_failed"  # the same word as the event kind CONNECT_FAILED

VIOLATION_KINDS = (
    LOST,
    DUPLICATED,
    ECHO,
    REORDERED,
    PRIVATE_LEAK,
    JOIN_AFTER_MESSAGE,
    MESSAGE_AFTER_LEAVE,
    MISSING_LEAVE,
    DUPLICATE_LEAVE,
    GHOST_USER,
    NAME_COLLISION,
    MALFORMED,
    MISATTRIBUTED,
    CONNECT_FAILED_KIND,
)

ABRUPT_LEAVES = ("reset", "mid-line")  # LEAVE texts after which the last lines may be lost


@dataclass(frozen=True)
class Violation:
    """Everything the checker found of one kind."""

    kind: str  #: one of VIOLATION_KINDS
    count: int  #: how many times it happened
    example: list[Event]  #: the smallest instance: the few events that show it
    explanation: str  #: one sentence saying what the example shows


@dataclass(frozen=True)
class Delivery:
    """One (message, receiver session) pair: a delivery that was due, that happened, or both.

    ``certain`` is True when the receiver was certainly a member (see the module
    docstring), so the delivery was due: ``received is None`` then means the message
    was lost. ``certain`` is False for a delivery that happened to a receiver that was
    joining or leaving at the time: a latency sample, but never a loss. Echoes and
    leaks are not deliveries (they are violations), and a duplicate counts once, with
    its first arrival.
    """

    msg_id: str  #: the message's id tag (``b007-12``)
    sender: str  #: the sending bot's label (``sent.bot``; its connection is ``sent.conn``)
    receiver: str  #: the receiving bot's label
    receiver_conn: int  #: the receiving connection (with ``receiver``, it names the session)
    sent: Event  #: the SEND or WHISPER event (``t_ns``: actual send, ``planned_ns``: the schedule)
    received: Event | None  #: the first RECV of it by this receiver session, or None
    certain: bool  #: the receiver was certainly a member, so the delivery was due

    @property
    def key(self) -> tuple[str, str, int]:
        """``(msg_id, receiver, receiver_conn)``: unique among a result's deliveries."""
        return (self.msg_id, self.receiver, self.receiver_conn)


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one run."""

    violations: dict[str, Violation]  #: kind -> what was found, only kinds that occurred, in VIOLATION_KINDS order
    deliveries: list[Delivery]  #: due or observed deliveries, sorted by send time, then id, receiver
    counts: dict[str, int]  #: plain counts about the run (see :meth:`summary`)

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.violations

    def by_key(self) -> dict[tuple[str, str, int], Delivery]:
        """The deliveries keyed by ``(msg_id, receiver bot, receiver conn)``."""
        return {delivery.key: delivery for delivery in self.deliveries}

    def summary(self) -> dict[str, object]:
        """Plain numbers for ``summary.json``: the counts, the deliveries, the violations.

        ``expected`` counts due deliveries, ``delivered`` the due ones that arrived,
        ``lost`` the due ones that did not, ``uncertain_delivered`` the arrivals at
        receivers that were joining or leaving.
        """
        expected = sum(1 for delivery in self.deliveries if delivery.certain)
        delivered = sum(1 for delivery in self.deliveries if delivery.certain and delivery.received)
        uncertain = sum(1 for delivery in self.deliveries if not delivery.certain)
        return {
            "ok": self.ok,
            **self.counts,
            "expected": expected,
            "delivered": delivered,
            "lost": expected - delivered,
            "uncertain_delivered": uncertain,
            "violations": {kind: violation.count for kind, violation in self.violations.items()},
        }


def check(events: list[Event], *, drain_end_ns: int | None = None) -> CheckResult:
    """Judge a run from its events, in any order as long as each bot's own are in order.

    ``drain_end_ns`` is when the run stopped listening (default: the last event's
    time). A connection still open then stayed to the end.
    """
    return _Judge(events, drain_end_ns).run()


# ---------------------------------------------------------------------------
# 2. The log, indexed: connections, sessions, sent messages
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Session:
    """One accepted connection: a user, from its greeting to its departure (compared by identity)."""

    bot: str
    conn: int
    name: str  #: the accepted name (the name asked for, trimmed and in NFC)
    name_event: Event | None  #: the NAME event that asked for it
    joined: Event  #: the JOINED event; its text is the greeting
    events: list[Event]  #: the connection's events after JOINED, in order
    leave: Event | None  #: the LEAVE event, if the bot began leaving
    cut_off: Event | None  #: the CLOSED event, or the RECV of ``! too slow`` if that came first
    departure: Event | None = None  #: LEAVE or cut_off, the first, when the session ended before the run did
    saw_shutdown: bool = False  #: it received ``* server shutting down``
    throttled: bool = False  #: it received ``! slow down, message dropped``
    heard_until_ns: int = 0  #: the server still counted it as a member at some time after this
    key: str = field(init=False)  #: the name under casefold, the key that must be unique

    def __post_init__(self) -> None:
        self.key = name_key(self.name)

    @property
    def abrupt(self) -> bool:
        """It ended without letting the server read all it had sent."""
        if self.departure is None:
            return False
        return self.departure is not self.leave or self.departure.text in ABRUPT_LEAVES

    def __str__(self) -> str:
        return f"{self.name} ({self.bot}/{self.conn})"


@dataclass(eq=False)
class _Sent:
    """One message a bot sent, SEND or WHISPER."""

    event: Event
    session: _Session | None  #: the session of the connection it went out on, if it ever joined
    index: int  #: its place among the messages of that connection: 0, 1, 2, ...
    in_session: bool  #: sent after JOINED and before the bot began leaving
    text: str  #: what receivers should see after ``name: ``
    target_key: str  #: for whispers, the casefolded target; else ""
    private: bool  #: a whisper, as the server reads the line
    relayed: bool  #: the server relays such a line at all (not too long, not empty, not a command)

    @property
    def msg_id(self) -> str:
        return self.event.msg_id


def _greeting_names(greeting: str) -> list[str]:
    """The names in ``* Hi alice! Online: bob, carol`` (none in ``You are the first one here``)."""
    listed = greeting.partition("! Online: ")[2]
    return [name for name in listed.split(", ") if name]


def _what_arrives(event: Event) -> tuple[str, str, bool, bool]:
    """For a SEND or WHISPER: (text receivers see, casefolded target or "", private, relayed).

    The server sanitizes the line and parses it as any client line, so the checker
    does the same with the line the bot sent. A line over the length limit, or one
    that is empty or a command once sanitized, is relayed to nobody.
    """
    line = protocol.sanitize(event.text)
    command = protocol.parse_command(line) if line else None
    fits = len(protocol.encode_line(event.text)) <= protocol.MAX_LINE
    if isinstance(command, Whisper):
        return command.text, name_key(protocol.normalize_name(command.target)), True, fits
    if isinstance(command, Say):
        return command.text, "", False, fits
    target_key = name_key(protocol.normalize_name(event.peer)) if event.peer else ""
    return line, target_key, event.kind == WHISPER, False


_ONLINE = re.compile(r"Online \((\d+)\): (.*)")


# ---------------------------------------------------------------------------
# 3. Collecting violations, keeping the smallest example of each kind
# ---------------------------------------------------------------------------


class _Findings:
    """Counts violations per kind and keeps the smallest example (fewest events, then earliest)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._best: dict[str, tuple[tuple, list[Event], str]] = {}  # kind -> (sort key, example, explanation)

    def add(self, kind: str, events: list[Event], explanation: str) -> None:
        self.counts[kind] += 1
        key = (len(events), [(e.t_ns, e.bot, e.conn, e.kind, e.msg_id, e.text) for e in events], explanation)
        if kind not in self._best or key < self._best[kind][0]:
            self._best[kind] = (key, events, explanation)

    def violations(self) -> dict[str, Violation]:
        return {
            kind: Violation(kind, self.counts[kind], self._best[kind][1], self._best[kind][2])
            for kind in VIOLATION_KINDS
            if self.counts[kind]
        }


# ---------------------------------------------------------------------------
# 4. The judge
# ---------------------------------------------------------------------------


class _View:
    """What one receiver session has been told about who is online, line by line."""

    def __init__(self) -> None:
        self.present: dict[str, _Session | None] = {}  # name -> the session it stands for now
        self.latest: dict[str, int] = {}  # name -> index (in named) of the last session heard of
        self.departed: set[_Session] = set()  # sessions whose leave notice arrived
        self.left_at: dict[str, int] = {}  # name -> position of its `left`, until a `joined`


class _Judge:
    """Reads the log once into indexes, then runs one method per check."""

    def __init__(self, events: list[Event], drain_end_ns: int | None) -> None:
        self.events = [event for event in events if event.kind not in (STALL, NETWORK)]  # not the bots' doing
        if drain_end_ns is None:
            drain_end_ns = max((event.t_ns for event in self.events), default=0)
        self.drain_end_ns = drain_end_ns
        self.found = _Findings()

        # One list per connection, in the bot's own order.
        self.connections: dict[tuple[str, int], list[Event]] = defaultdict(list)
        for event in self.events:
            self.connections[(event.bot, event.conn)].append(event)

        self.sessions: list[_Session] = []
        self.sent: dict[str, _Sent] = {}  # msg_id -> the message
        self.lines_before_joining: list[Event] = []  # RECV events outside any session
        for conn_events in self.connections.values():
            self._read_connection(conn_events)
        sends = [event for event in self.events if event.kind in (SEND, WHISPER)]
        self.every_line_tagged = all(event.msg_id for event in sends)

        # Sessions by name, in joining order: the holders of each name, one after another.
        # A correct server never has two under one casefolded name; a broken one may
        # accept ``Bob`` and ``BOB`` at once, and notices tell those apart by the exact
        # name, so name notices are matched by the exact name.
        self.holders: dict[str, list[_Session]] = defaultdict(list)  # casefolded name -> sessions
        self.named: dict[str, list[_Session]] = defaultdict(list)  # exact name -> sessions
        for session in sorted(self.sessions, key=lambda s: (s.joined.t_ns, s.bot, s.conn)):
            self.holders[session.key].append(session)
            self.named[session.name].append(session)
        self.named_join_ns = {name: [s.joined.t_ns for s in group] for name, group in self.named.items()}

        # Filled while reading each receiver's lines (section 5).
        self.receipts: dict[tuple[str, _Session], Event] = {}  # (msg_id, receiver) -> first RECV
        self.highest_received: dict[tuple[_Session, _Session], tuple[int, Event, _Sent]] = {}
        self.highest_read: dict[_Session, int] = {}  # sender -> highest index anybody received
        self.relayed: set[str] = set()  # ids of the messages that reached anybody at all
        self.leave_notices: dict[tuple[_Session, _Session], list[Event]] = defaultdict(list)  # (receiver, leaver)
        self.knew: dict[_Session, set[_Session]] = defaultdict(set)  # session -> receivers told it was online

    def _read_connection(self, conn_events: list[Event]) -> None:
        """Make a session of a connection that joined, and index the messages it sent."""
        name_event = joined = leave = closed = too_slow = None
        for event in conn_events:
            if event.kind == NAME and joined is None:
                name_event = event
            elif event.kind == JOINED and joined is None:
                joined = event
            elif event.kind == LEAVE and leave is None:
                leave = event
            elif event.kind == CLOSED and closed is None:
                closed = event
            elif event.kind == RECV and event.text == protocol.TOO_SLOW and too_slow is None:
                too_slow = event
        session = None
        if joined is None:
            self.lines_before_joining += [event for event in conn_events if event.kind == RECV]
        else:
            # The session's lines start right after the greeting. Lines that arrived in
            # the same chunk as the greeting are recorded before JOINED, and belong to it.
            start = conn_events.index(joined)
            greeting_at = start
            for at in range(start - 1, -1, -1):
                if conn_events[at].kind == RECV and conn_events[at].text == joined.text:
                    greeting_at = at
                    break
            self.lines_before_joining += [event for event in conn_events[: greeting_at + 1] if event.kind == RECV]
            lines = [event for event in conn_events[greeting_at + 1 :] if event is not joined]
            ends = [end for end in (closed, too_slow) if end is not None]
            cut_off = min(ends, key=lambda end: end.t_ns) if ends else None
            asked = name_event.name if name_event is not None else joined.name
            name = protocol.normalize_name(asked)
            session = _Session(joined.bot, joined.conn, name, name_event, joined, lines, leave, cut_off)
            self.sessions.append(session)
        index = 0
        in_session = False
        for event in conn_events:
            if event is joined:
                in_session = True
            elif event is leave:
                in_session = False
            elif event.kind in (SEND, WHISPER) and event.msg_id not in self.sent:
                self.sent[event.msg_id] = _Sent(event, session, index, in_session, *_what_arrives(event))
                index += 1

    # -- the whole run -------------------------------------------------------------------

    def run(self) -> CheckResult:
        for event in self.lines_before_joining:
            self._parse(event)
        for session in self.sessions:
            self._read_lines_of(session)
        for session in self.sessions:
            session.departure = self._departure(session)
        deliveries = self._find_lost()
        self._find_missing_leaves()
        self._find_duplicate_leaves()
        self._find_name_collisions()
        self._find_connect_failures()
        deliveries.sort(key=lambda d: (d.sent.t_ns, d.msg_id, d.receiver, d.receiver_conn))
        counts = {
            "events": len(self.events),
            "bots": len({bot for bot, _ in self.connections}),
            "connections": len(self.connections),
            "sessions": len(self.sessions),
            "departures": sum(1 for session in self.sessions if session.departure is not None),
            "broadcasts": sum(1 for sent in self.sent.values() if not sent.private),
            "whispers": sum(1 for sent in self.sent.values() if sent.private),
            "lines_received": sum(1 for event in self.events if event.kind == RECV),
        }
        return CheckResult(self.found.violations(), deliveries, counts)

    def _departure(self, session: _Session) -> Event | None:
        """The event that began the session's end, or None if it stayed to the end of the run."""
        ends = [session.leave]
        if not session.saw_shutdown:  # a shutdown ends everyone at once: it is not a departure
            ends.append(session.cut_off)
        ends = [end for end in ends if end is not None and end.t_ns < self.drain_end_ns]
        return min(ends, key=lambda end: end.t_ns) if ends else None

    # ---------------------------------------------------------------------------
    # 5. One receiver's lines, in order: messages, notices, /users answers
    # ---------------------------------------------------------------------------

    def _read_lines_of(self, receiver: _Session) -> None:
        view = _View()
        for name in _greeting_names(receiver.joined.text):
            index = self._holder_at_join(name, receiver, listed=True)
            view.latest[name] = index
            view.present[name] = self.named[name][index] if index >= 0 else None
            if index >= 0:
                self.knew[self.named[name][index]].add(receiver)
        users_requests: deque[tuple[int, Event]] = deque()  # /users sent, not answered yet
        for position, event in enumerate(receiver.events):
            if event.kind == COMMAND and self._asks_users(event.text):
                users_requests.append((position, event))
            if event.kind != RECV:
                continue
            if event.text == protocol.SLOW_DOWN:
                receiver.throttled = True
            line = self._parse(event)
            if isinstance(line, Message):
                self._on_message(receiver, view, event, line)
            elif isinstance(line, Notice):
                if line.joined is not None:
                    self._on_joined(receiver, view, line.joined)
                elif line.left is not None:
                    self._on_left(receiver, view, line.left, position, event)
                elif line.text.startswith("Online ("):
                    request = users_requests.popleft() if users_requests else None
                    self._check_users_answer(receiver, view, event, line.text, request)
                elif event.text == protocol.SHUTTING_DOWN:
                    receiver.saw_shutdown = True

    @staticmethod
    def _asks_users(text: str) -> bool:
        line = protocol.sanitize(text)
        return bool(line) and isinstance(protocol.parse_command(line), ListUsers)

    def _holder_at_join(self, name: str, receiver: _Session, *, listed: bool) -> int:
        """Which session called ``name`` the receiver knew of when it joined (index in named, -1: none).

        It is the last one that joined before the receiver. If the name was not in
        the greeting, that one must have left already; if it had not even begun
        leaving, it was in fact admitted after the receiver (its bot just noticed
        first), so the one before it is meant.
        """
        holders = self.named.get(name, [])
        if not holders:
            return -1
        index = bisect_left(self.named_join_ns[name], receiver.joined.t_ns) - 1
        if listed:
            return max(index, 0)
        if index >= 0 and not self._began_leaving_before(holders[index], receiver.joined.t_ns):
            index -= 1
        return index

    @staticmethod
    def _began_leaving_before(session: _Session, t_ns: int) -> bool:
        return any(end is not None and end.t_ns < t_ns for end in (session.leave, session.cut_off))

    def _latest(self, receiver: _Session, view: _View, name: str) -> int:
        if name not in view.latest:
            view.latest[name] = self._holder_at_join(name, receiver, listed=False)
        return view.latest[name]

    def _on_joined(self, receiver: _Session, view: _View, name: str) -> None:
        index = self._latest(receiver, view, name) + 1  # the next session with that name
        holders = self.named.get(name, [])
        view.latest[name] = index
        newcomer = holders[index] if index < len(holders) else None
        view.present[name] = newcomer
        view.left_at.pop(name, None)
        if newcomer is not None:
            self.knew[newcomer].add(receiver)

    def _on_left(self, receiver: _Session, view: _View, name: str, position: int, event: Event) -> None:
        leaver = view.present.pop(name, None)
        if leaver is None:  # not online as far as it knew: a repeat, or an unannounced session
            index = self._latest(receiver, view, name)
            holders = self.named.get(name, [])
            leaver = holders[index] if 0 <= index < len(holders) else None
        view.left_at[name] = position
        if leaver is not None:
            self.leave_notices[(receiver, leaver)].append(event)
            view.departed.add(leaver)

    def _on_message(self, receiver: _Session, view: _View, event: Event, line: Message) -> None:
        """Everything one received chat line can show: echo, leak, duplicate, order, attribution, framing."""
        msg_id = find_tag(event.text)
        if msg_id is None:
            if self.every_line_tagged:
                self.found.add(MISATTRIBUTED, [event], f"{receiver} received a chat line with no id tag.")
            return
        sent = self.sent.get(msg_id)
        if sent is None:
            self.found.add(MISATTRIBUTED, [event], f"{receiver} received a line tagged {msg_id}, an id nobody sent.")
            return
        sender = sent.session
        # Any arrival at all proves the server read the line and had the receiver as a member.
        self.relayed.add(msg_id)
        if sender is not None:
            self.highest_read[sender] = max(self.highest_read.get(sender, -1), sent.index)
        receiver.heard_until_ns = max(receiver.heard_until_ns, sent.event.t_ns)

        if sent.private and receiver.key != sent.target_key:
            self.found.add(
                PRIVATE_LEAK,
                [sent.event, event],
                f"{receiver} received {msg_id}, a private message for {sent.event.peer or 'nobody (no target)'}.",
            )
            return
        if not sent.private and receiver is sender:
            self.found.add(ECHO, [sent.event, event], f"{receiver} received its own broadcast {msg_id}.")
            return
        first = self.receipts.get((msg_id, receiver))
        if first is not None:
            self.found.add(DUPLICATED, [sent.event, first, event], f"{receiver} received {msg_id} more than once.")
            return
        self.receipts[(msg_id, receiver)] = event

        problem = self._misattribution(sent, line)
        if problem is not None:
            self.found.add(MISATTRIBUTED, [sent.event, event], f"{receiver} received a line that {problem}.")
        if sender is None:
            return
        self._check_order(receiver, sender, sent, event)
        if problem is None and sender is not receiver:
            self._check_framing(receiver, view, sender, sent, event)

    def _misattribution(self, sent: _Sent, line: Message) -> str | None:
        """Why a received line is not the message its tag names, or None if it is."""
        sender = sent.session
        if sender is None:
            return f"carries {sent.msg_id}, sent on a connection that never joined"
        if line.sender != sender.name:
            return f"carries {sent.msg_id}, which {sender} sent, but names {line.sender} as its sender"
        if line.private != sent.private:
            kinds = ("a private message", "a broadcast") if sent.private else ("a broadcast", "a private message")
            return f"carries {sent.msg_id}, {kinds[0]}, as {kinds[1]}"
        if line.text != sent.text:
            return f"carries {sent.msg_id} with a text other than the one sent (corrupted, cut or merged)"
        return None

    def _check_order(self, receiver: _Session, sender: _Session, sent: _Sent, event: Event) -> None:
        pair = (receiver, sender)
        highest = self.highest_received.get(pair)
        if highest is None or sent.index > highest[0]:
            self.highest_received[pair] = (sent.index, event, sent)
            return
        _, later_event, later_sent = highest
        self.found.add(
            REORDERED,
            [sent.event, later_sent.event, later_event, event],
            f"{receiver} received {later_sent.msg_id} before {sent.msg_id}, "
            f"although {sender} sent them the other way round.",
        )

    def _check_framing(self, receiver: _Session, view: _View, sender: _Session, sent: _Sent, event: Event) -> None:
        """Guarantee 2: the sender's join notice before its messages, its leave notice after."""
        if view.present.get(sender.name) is sender:
            return
        if sender in view.departed:
            notice = self.leave_notices[(receiver, sender)][0]
            self.found.add(
                MESSAGE_AFTER_LEAVE,
                [sent.event, notice, event],
                f"{receiver} received {sent.msg_id} from {sender.name} after `* {sender.name} left`.",
            )
            return
        self.found.add(
            JOIN_AFTER_MESSAGE,
            [receiver.joined, sent.event, event],
            f"{receiver} received {sent.msg_id} from {sender.name} before being told {sender.name} had joined.",
        )

    def _check_users_answer(
        self, receiver: _Session, view: _View, event: Event, text: str, request: tuple[int, Event] | None
    ) -> None:
        """No ghosts: a /users answer must not list a name whose leave notice came before the request."""
        match = _ONLINE.fullmatch(text)
        if match is None:
            return
        names = [name for name in match.group(2).split(", ") if name]
        if int(match.group(1)) != len(names):
            self.found.add(
                GHOST_USER,
                [event],
                f"{receiver} got a /users answer that counts {match.group(1)} but lists {len(names)}.",
            )
        if request is None:
            return
        asked_at, asked = request
        for name in names:
            left_at = view.left_at.get(name)
            if left_at is not None and left_at < asked_at:
                notice = receiver.events[left_at]
                self.found.add(
                    GHOST_USER,
                    [notice, asked, event],
                    f"{receiver} asked /users after `* {name} left` and was told {name} is online.",
                )

    # ---------------------------------------------------------------------------
    # 6. Who had to receive what: lost messages, and the deliveries for metrics
    # ---------------------------------------------------------------------------

    def _find_lost(self) -> list[Delivery]:
        """Sweep the messages in sending order, keeping the set of joined sessions, and match receipts."""
        by_join = sorted(self.sessions, key=lambda s: (s.joined.t_ns, s.bot, s.conn))
        departures: list[tuple[int, int, _Session]] = []  # heap of (departure time, tie-breaker, session)
        active: dict[_Session, None] = {}  # joined before the message and not yet begun leaving
        next_join = 0
        deliveries: list[Delivery] = []
        due: set[tuple[str, _Session]] = set()
        messages = sorted(self.sent.values(), key=lambda s: (s.event.t_ns, s.event.bot, s.msg_id))
        for message in messages:
            sent_ns = message.event.t_ns
            while next_join < len(by_join) and by_join[next_join].joined.t_ns < sent_ns:
                session = by_join[next_join]
                active[session] = None
                if session.departure is not None:
                    heapq.heappush(departures, (session.departure.t_ns, next_join, session))
                next_join += 1
            while departures and departures[0][0] <= sent_ns:
                active.pop(heapq.heappop(departures)[2], None)
            if not self._sender_certain(message):
                continue
            for receiver in self._possible_receivers(message, active):
                proof = self._stayed_for(receiver, message)
                if proof is None:
                    continue
                received = self.receipts.get((message.msg_id, receiver))
                deliveries.append(self._delivery(message, receiver, received, certain=True))
                due.add((message.msg_id, receiver))
                if received is None:
                    self._report_lost(message, receiver, proof)
        for (msg_id, receiver), received in self.receipts.items():
            if (msg_id, receiver) not in due:
                deliveries.append(self._delivery(self.sent[msg_id], receiver, received, certain=False))
        return deliveries

    def _sender_certain(self, message: _Sent) -> bool:
        """The sender was joined, and the server surely read and relayed the line.

        See "Senders that vanish" in the module docstring; a sender that was told
        ``! slow down`` (the flood limit) had some lines dropped on purpose, and
        which ones no log can say, so its lines count only when somebody got them.
        """
        sender = message.session
        if sender is None or not message.in_session or not message.relayed:
            return False
        if message.event.t_ns >= self.drain_end_ns:
            return False
        if sender.throttled:
            return message.msg_id in self.relayed
        return not sender.abrupt or self.highest_read.get(sender, -1) >= message.index

    def _possible_receivers(self, message: _Sent, active: dict[_Session, None]) -> list[_Session]:
        if message.private:
            return [session for session in self.holders.get(message.target_key, []) if session in active]
        return [session for session in active if session is not message.session]

    def _stayed_for(self, receiver: _Session, message: _Sent) -> list[Event] | None:
        """The events proving the receiver stayed long enough to get ``message``, or None if unsure."""
        if receiver.departure is None:
            return []  # stayed to the end of the run
        if (message.msg_id, receiver) in self.receipts:
            return []  # it got the message: it was a member when the server routed it
        sender = message.session
        assert sender is not None
        highest = self.highest_received.get((receiver, sender))
        if highest is not None and highest[0] > message.index:
            return [highest[1]]  # it received a later line of the same sender
        notices = self.leave_notices.get((receiver, sender))
        if notices:
            return [notices[0]]  # it received the sender's leave notice
        return None

    @staticmethod
    def _delivery(message: _Sent, receiver: _Session, received: Event | None, *, certain: bool) -> Delivery:
        sent = message.event
        return Delivery(sent.msg_id, sent.bot, receiver.bot, receiver.conn, sent, received, certain)

    def _report_lost(self, message: _Sent, receiver: _Session, proof: list[Event]) -> None:
        why = "stayed to the end" if not proof else "was still there later"
        what = "private message" if message.private else "broadcast"
        self.found.add(
            LOST,
            [receiver.joined, message.event, *proof],
            f"{receiver} was joined before {message.session} sent the {what} {message.msg_id} "
            f"and {why}, but never received it.",
        )

    # ---------------------------------------------------------------------------
    # 7. Departures: one leave notice each, to everyone who was certainly there
    # ---------------------------------------------------------------------------

    def _find_missing_leaves(self) -> None:
        stayers = sorted(
            (s for s in self.sessions if s.departure is None), key=lambda s: (s.joined.t_ns, s.bot, s.conn)
        )
        stayer_join_ns = [s.joined.t_ns for s in stayers]
        for leaver in self.sessions:
            if leaver.departure is None:
                continue
            owed = {receiver for receiver in self.knew.get(leaver, ()) if receiver.departure is None}
            if leaver.departure is leaver.leave:  # the bot chose to leave: the server noticed after LEAVE
                owed.update(stayers[: bisect_left(stayer_join_ns, leaver.departure.t_ns)])
            owed.discard(leaver)
            for receiver in owed:
                if (receiver, leaver) not in self.leave_notices:
                    how = leaver.departure.text if leaver.departure is leaver.leave else "cut off"
                    self.found.add(
                        MISSING_LEAVE,
                        [receiver.joined, leaver.departure],
                        f"{receiver} was online from before {leaver} left ({how}) to the end, "
                        f"but never got `* {leaver.name} left`.",
                    )

    def _find_duplicate_leaves(self) -> None:
        for (receiver, leaver), notices in self.leave_notices.items():
            for extra in notices[1:]:
                self.found.add(
                    DUPLICATE_LEAVE,
                    [notices[0], extra],
                    f"{receiver} got `* {leaver.name} left` more than once for one departure.",
                )

    # ---------------------------------------------------------------------------
    # 8. Names: one winner each, and only taken names refused
    # ---------------------------------------------------------------------------

    def _find_name_collisions(self) -> None:
        for holders in self.holders.values():
            self._find_two_winners(holders)
        first_notice_ns: dict[_Session, int] = {}  # leaver -> when anybody first read its leave notice
        for (_, leaver), notices in self.leave_notices.items():
            first_notice_ns[leaver] = min(first_notice_ns.get(leaver, math.inf), notices[0].t_ns)
        for conn_events in self.connections.values():
            self._check_refusal(conn_events, first_notice_ns)

    def _held_until_ns(self, session: _Session) -> int:
        """A time at which the server surely still counted the session as a member."""
        if session.departure is None:
            return self.drain_end_ns
        left_ns = session.leave.t_ns if session.departure is session.leave else session.joined.t_ns
        return max(left_ns, session.heard_until_ns)

    def _find_two_winners(self, holders: list[_Session]) -> None:
        """Two sessions with one name whose memberships certainly overlapped.

        Each session was surely a member from its JOINED to :meth:`_held_until_ns`
        (admitted before the one, still there after the other). The holders are in
        joining order, so the next one overlaps if it joined before that time.
        """
        for first_index, first in enumerate(holders):
            held_until_ns = self._held_until_ns(first)
            for second in holders[first_index + 1 :]:
                if second.joined.t_ns >= held_until_ns:
                    break
                self.found.add(
                    NAME_COLLISION,
                    [first.joined, second.joined],
                    f"{first} and {second} were both accepted and held one name at the same time.",
                )

    def _check_refusal(self, conn_events: list[Event], first_notice_ns: dict[_Session, float]) -> None:
        """A name refused as taken must have been held by somebody; a loser gets `! name taken`."""
        asked = next((event for event in conn_events if event.kind == NAME), None)
        refused = next((event for event in conn_events if event.kind == REFUSED), None)
        if asked is None or refused is None or refused.text == protocol.SERVER_FULL:
            return
        name = protocol.normalize_name(asked.name)
        if not protocol.is_valid_name(name):
            return
        if refused.text != protocol.name_taken(name):
            self.found.add(
                NAME_COLLISION,
                [asked, refused],
                f"{asked.bot}/{asked.conn} asked for the valid name {name} and got {refused.text!r} "
                f"instead of `{protocol.name_taken(name)}`.",
            )
            return
        for holder in self.holders.get(name_key(name), []):
            holder_asked_ns = holder.name_event.t_ns if holder.name_event is not None else holder.joined.t_ns
            if holder_asked_ns < refused.t_ns and first_notice_ns.get(holder, math.inf) > asked.t_ns:
                return  # the holder may have held it while this one asked
        self.found.add(
            NAME_COLLISION,
            [asked, refused],
            f"{asked.bot}/{asked.conn} was refused {name} as taken while nobody held it.",
        )

    # ---------------------------------------------------------------------------
    # 9. Lines and connections
    # ---------------------------------------------------------------------------

    def _parse(self, event: Event) -> protocol.ServerLine:
        """Parse a received line; one that fits no form of the protocol is malformed."""
        line = parse_server_line(event.text)
        if isinstance(line, Unparsed):
            self.found.add(
                MALFORMED, [event], f"{event.bot}/{event.conn} received a line that fits no form of the protocol."
            )
        return line

    def _find_connect_failures(self) -> None:
        """Connections not made, refused as full, or never answered: a server that stopped answering shows here."""
        for conn_events in self.connections.values():
            kinds = {event.kind for event in conn_events}
            first = conn_events[0]
            where = f"{first.bot}/{first.conn}"
            for event in conn_events:
                if event.kind == CONNECT_FAILED:
                    self.found.add(CONNECT_FAILED_KIND, [event], f"{where} could not connect: {event.text}.")
                elif event.kind in (RECV, REFUSED) and event.text == protocol.SERVER_FULL:
                    self.found.add(CONNECT_FAILED_KIND, [event], f"{where} was turned away: the server was full.")
                    break
            if CONNECT not in kinds or kinds & {JOINED, REFUSED, LEAVE}:
                continue
            if RECV not in kinds:
                self.found.add(CONNECT_FAILED_KIND, conn_events[:2], f"{where} connected but was never welcomed.")
            elif NAME in kinds:
                asked = next(event for event in conn_events if event.kind == NAME)
                self.found.add(CONNECT_FAILED_KIND, [asked], f"{where} sent its name and never got an answer.")
