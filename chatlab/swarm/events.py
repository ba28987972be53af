"""The swarm's event log: everything bots did and saw, as plain records.

A swarm run produces one list of :class:`Event`, and everything after the run (the
checker, the metrics, the charts, ``events.csv``) is computed from that list alone.
That separation is the point: the bots only record, and the judging can be tested
by feeding it hand-written logs.

Who is who
==========

``bot`` is the bot's label, unique in a run (``b007``). A bot may connect several
times (a churner does); ``conn`` counts its connections from 0, and all events of
one connection share it. ``name`` is the chat name that connection asked for; the
server may refuse it (a name collision), so the name alone does not identify a bot.

Message ids
===========

Every chat line a bot sends ends with an id tag, ``[b007-12]``: the bot's label and a
sequence number that counts all its messages in the run. The tag is what lets the
checker match a received line to the send that caused it::

    >>> tag_text("Nice weather today.", "b007-12")
    'Nice weather today. [b007-12]'
    >>> find_tag("alice: Nice weather today. [b007-12]")
    'b007-12'
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

# -- kinds of event ---------------------------------------------------------------
# Times are time.monotonic_ns() of the process that ran the bot.

CONNECT = "connect"  #: the TCP connection is made (t: when connect() returned); text: the bot's local HOST:PORT
CONNECT_FAILED = "connect_failed"  #: the connection could not be made; text: the error
NAME = "name"  #: the name line was sent; name: the name asked for
JOINED = "joined"  #: the name was accepted; text: the greeting line
REFUSED = "refused"  #: the name was refused; text: the server's error line
SEND = "send"  #: a broadcast was sent; msg_id, text (the line without LF), planned_ns
WHISPER = "whisper"  #: a private message was sent; peer: target as typed, msg_id, text, planned_ns
COMMAND = "command"  #: a command was sent (``/users``); text: the line
RAW = "raw"  #: deliberately bad bytes were sent (hostile bots); text: what, in words
RECV = "recv"  #: one line arrived; text: the raw line without its LF
LEAVE = "leave"  #: the bot starts leaving; text: how (quit, close, reset, half-close, mid-line)
CLOSED = "closed"  #: the connection has ended; text: why (server closed, reset, we closed)
STALL = "stall"  #: the harness itself woke late; planned_ns: when it meant to wake (bot: "harness")
#: the simulated network impaired this connection (chatlab.sim); text: what, which way and the profile
#: ("stall down (mobile)", "reset down (flaky)"); t_ns..planned_ns: the window (equal for a fault)
NETWORK = "network"

KINDS = (CONNECT, CONNECT_FAILED, NAME, JOINED, REFUSED, SEND, WHISPER, COMMAND, RAW, RECV, LEAVE, CLOSED, STALL, NETWORK)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a bot did or saw."""

    t_ns: int  #: when it happened (for sends: just before the bytes were handed to the socket)
    bot: str  #: the bot's label, unique in the run
    kind: str  #: one of KINDS
    conn: int = 0  #: which of the bot's connections (0, 1, ...)
    name: str = ""  #: the chat name this connection asked for
    peer: str = ""  #: for WHISPER: the target as typed
    msg_id: str = ""  #: for SEND and WHISPER: the id tag of the message
    text: str = ""  #: the line sent or received, or a description (see KINDS)
    planned_ns: int = 0  #: for SEND, WHISPER and STALL: when the schedule wanted it to happen


# -- id tags ------------------------------------------------------------------------

_TAG = re.compile(r" \[([A-Za-z0-9_]+-\d+)\]$")


def tag_text(text: str, msg_id: str) -> str:
    """``text`` with its id tag appended."""
    return f"{text} [{msg_id}]"


def find_tag(line: str) -> str | None:
    """The id tag at the end of a line, or None."""
    match = _TAG.search(line)
    return match.group(1) if match else None


def message_id(bot: str, seq: int) -> str:
    """The id of the ``seq``-th message of ``bot``."""
    return f"{bot}-{seq}"


def sender_of(msg_id: str) -> str:
    """The label of the bot that sent the message with this id."""
    return msg_id.rsplit("-", 1)[0]


# -- events.csv ------------------------------------------------------------------------

FIELDS = [field.name for field in fields(Event)]


def write_csv(events: Iterable[Event], path: Path) -> None:
    """Write events to a CSV file with a header row, one event a row."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(FIELDS)
        writer.writerows([getattr(event, name) for name in FIELDS] for event in events)


def read_csv(path: Path) -> list[Event]:
    """Read events written by :func:`write_csv`."""
    with open(path, newline="", encoding="utf-8") as file:
        return [
            Event(
                t_ns=int(row["t_ns"]),
                bot=row["bot"],
                kind=row["kind"],
                conn=int(row["conn"]),
                name=row["name"],
                peer=row["peer"],
                msg_id=row["msg_id"],
                text=row["text"],
                planned_ns=int(row["planned_ns"]),
            )
            for row in csv.DictReader(file)
        ]
