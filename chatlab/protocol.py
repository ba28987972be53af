"""The chatlab wire protocol, v1, as pure logic: bytes and strings in, decisions out, no I/O.

This module is the single source of truth for PROTOCOL.md. It imports neither
``socket`` nor ``threading`` (a test checks that), so the same rules can drive the
threaded reference server, an asyncio server, the bots and the exercises, and can be
tested without a network.

Read it top to bottom:

1. constants and the exact texts the server sends;
2. framing: :class:`LineBuffer` turns a byte stream into lines;
3. sanitizing and names;
4. what a joined client's line means (:func:`parse_command`);
5. the room: :class:`Roster` and the decisions :func:`admit`, :func:`route`,
   :func:`depart`, which say who receives which line;
6. reading server lines, for clients and bots (:func:`parse_server_line`);
7. the flood limit (:class:`TokenBucket`).

Two kinds of error live here. Our own misuse (a bug in the caller) raises, as usual.
The peer misbehaving (a line too long, bad UTF-8, a bad name) is not an exception: it
is an ordinary value, such as :class:`LineTooLong`, that the caller answers and then
goes on serving everyone else.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

# ---------------------------------------------------------------------------
# 1. Constants and texts
# ---------------------------------------------------------------------------

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1234  # as in the original classroom assignment
ENCODING = "utf-8"

MAX_LINE = 4096  # bytes per client line, LF included
MAX_NAME_LENGTH = 24  # characters
NAME_TIMEOUT = 30.0  # seconds a new connection may take to send its name
OUTBOX_LIMIT = 1024 * 1024  # bytes queued for one client before it counts as too slow
MAX_CLIENTS = 1000  # open connections, named or not
SHUTDOWN_FLUSH = 5.0  # seconds, in all, to flush outboxes when the server stops

# Characters that no name may hold; they are what the server line grammar uses.
GRAMMAR_CHARACTERS = " *!:@/()"

WELCOME = "* Welcome to chatlab! Enter your name:"
SERVER_FULL = "! server full"
INVALID_NAME = "! invalid name: use 1-24 letters, digits, _ or -"
NAME_TIMED_OUT = "! timed out waiting for a name"
INVALID_UTF8 = "! invalid UTF-8, line dropped"
USAGE_PRIVATE = "! usage: @name message"
TOO_SLOW = "! too slow, disconnecting"
SLOW_DOWN = "! slow down, message dropped"
SHUTTING_DOWN = "* server shutting down"
HELP = "* Commands: /users, /quit, /help. @name message sends privately; // starts a line with /."


def line_too_long(max_line: int) -> str:
    """The answer to a client line longer than ``max_line`` bytes."""
    return f"! line too long (max {max_line} bytes)"


def name_taken(name: str) -> str:
    """The refusal of a name someone else already holds (``name`` as the client sent it)."""
    return f"! name taken: {name}"


def greeting(name: str, others: list[str]) -> str:
    """The line that accepts ``name``; ``others`` are the users already online, sorted."""
    if not others:
        return f"* Hi {name}! You are the first one here."
    return f"* Hi {name}! Online: {', '.join(others)}"


def joined(name: str) -> str:
    """The notice everyone else receives when ``name`` joins."""
    return f"* {name} joined"


def left(name: str) -> str:
    """The notice everyone else receives when ``name`` leaves, however it leaves."""
    return f"* {name} left"


def bye(name: str) -> str:
    """The last line a user who typed /quit receives."""
    return f"* Bye, {name}!"


def online(names: list[str]) -> str:
    """The answer to /users: everyone online, the asker included, sorted."""
    return f"* Online ({len(names)}): {', '.join(names)}"


def no_such_user(target: str) -> str:
    """The answer to a private message for a name nobody holds (``target`` as typed)."""
    return f"! no such user: {target}"


def unknown_command(word: str) -> str:
    """The answer to a /word the server does not know (``word`` as sent)."""
    return f"! unknown command: {word} (try /help)"


def public_message(sender: str, text: str) -> str:
    """A broadcast as every other user receives it."""
    return f"{sender}: {text}"


def private_message(sender: str, text: str) -> str:
    """A private message as its one recipient receives it."""
    return f"{sender} (private): {text}"


def encode_line(line: str) -> bytes:
    """One line ready for the wire: UTF-8 with its LF."""
    return (line + "\n").encode(ENCODING)


# ---------------------------------------------------------------------------
# 2. Framing: a byte stream in, lines out
# ---------------------------------------------------------------------------
#
# TCP delivers a stream of bytes, not messages. One recv() may return half a line,
# or three lines and the start of a fourth, or stop in the middle of a multi-byte
# UTF-8 character. The original assignment treated each recv(1024) as one message;
# that is its worst bug. A LineBuffer keeps the bytes after the last LF until the
# rest of the line arrives, and only then decodes them.


@dataclass(frozen=True)
class Line:
    """One complete line from the peer."""

    text: str  #: the decoded line, without its LF and without a CR right before the LF


@dataclass(frozen=True)
class LineTooLong:
    """The peer sent a line longer than the limit; its bytes up to the next LF are dropped."""

    limit: int  #: the limit in bytes, LF included


@dataclass(frozen=True)
class InvalidUtf8:
    """The peer sent a complete line that is not valid UTF-8; the line is dropped."""

    data: bytes  #: the raw bytes of the line, for logs and tests


Frame = Line | LineTooLong | InvalidUtf8


def decode_line(data: bytes) -> Line | InvalidUtf8:
    """Decode one line's bytes (without the LF), dropping a CR right before the LF."""
    if data.endswith(b"\r"):
        data = data[:-1]
    try:
        return Line(data.decode(ENCODING))
    except UnicodeDecodeError:
        return InvalidUtf8(data)


class LineBuffer:
    """Turns chunks of a byte stream into complete lines, whatever the chunk boundaries.

    Feed it every chunk ``recv()`` returns; it gives back the frames completed so far::

        >>> buffer = LineBuffer(max_line=16)
        >>> buffer.feed(b"hel")
        []
        >>> buffer.feed(b"lo\\nwor")
        [Line(text='hello')]
        >>> buffer.feed(b"ld\\r\\n")
        [Line(text='world')]

    A line longer than ``max_line`` bytes (LF included) yields one :class:`LineTooLong`
    as soon as it is known to be too long, and the rest of it, up to the next LF, is
    dropped. Memory stays bounded by ``max_line`` however much a peer sends.
    ``max_line=None`` means no limit (what a client uses for the server's lines).

    Bytes after the last LF when the stream ends are simply never returned: an
    unfinished line is not a line.
    """

    def __init__(self, max_line: int | None = MAX_LINE) -> None:
        if max_line is not None and max_line < 2:
            raise ValueError("max_line must leave room for at least one byte and the LF")
        self.max_line = max_line
        self._partial = bytearray()  # bytes of the current line received so far
        self._discarding = False  # True while skipping the rest of an over-long line

    def feed(self, data: bytes) -> list[Frame]:
        """Add one chunk of the stream; return the frames it completes, in order."""
        frames: list[Frame] = []
        start = 0
        while (newline := data.find(b"\n", start)) != -1:
            piece = data[start:newline]
            start = newline + 1
            if self._discarding:
                self._discarding = False  # the over-long line ends here
                continue
            if self._too_long(len(self._partial) + len(piece) + 1):
                frames.append(LineTooLong(self.max_line))
            else:
                frames.append(decode_line(bytes(self._partial) + piece))
            self._partial.clear()
        if not self._discarding:
            self._partial += data[start:]
            # Without its LF the line already holds max_line bytes: with the LF it
            # will be longer still, so say so now rather than buffer it all.
            if self._too_long(len(self._partial) + 1):
                frames.append(LineTooLong(self.max_line))
                self._partial.clear()
                self._discarding = True
        return frames

    def _too_long(self, size_with_lf: int) -> bool:
        return self.max_line is not None and size_with_lf > self.max_line

    @property
    def pending(self) -> int:
        """How many bytes of an unfinished line are held."""
        return len(self._partial)


# ---------------------------------------------------------------------------
# 3. Sanitizing and names
# ---------------------------------------------------------------------------

_REMOVED_CHARACTERS = [
    *range(0x00, 0x20),  # C0 controls: ESC starts terminal escape sequences, CR moves the cursor
    0x7F,  # DEL
    *range(0x80, 0xA0),  # C1 controls
    0x2028,  # line separator
    0x2029,  # paragraph separator
    *range(0x202A, 0x202F),  # bidirectional embeddings and overrides
    *range(0x2066, 0x206A),  # bidirectional isolates
]
_SANITIZE_TABLE = {code: None for code in _REMOVED_CHARACTERS}
_SANITIZE_TABLE[0x09] = " "  # TAB is kept, as a space


def sanitize(text: str) -> str:
    """Make a client's line safe to show on other people's terminals.

    Control characters are removed, not escaped: ``"\\x1b[31mred"`` becomes
    ``"[31mred"``, harmless text. Without this, one user could clear everyone's
    screen, or send a CR and overwrite the start of the line to pose as someone else.
    TAB becomes a space, and surrounding whitespace is trimmed. An empty result
    means the line is ignored.
    """
    return text.translate(_SANITIZE_TABLE).strip()


def normalize_name(text: str) -> str:
    """The name a client meant: whitespace trimmed, Unicode in NFC form.

    NFC makes ``"e" + U+0301`` and the single character ``"é"`` the same name.
    """
    return unicodedata.normalize("NFC", text.strip())


def is_valid_name(name: str) -> bool:
    """True for 1 to 24 characters, each ``_``, ``-`` or a letter or digit (any script)."""
    return 1 <= len(name) <= MAX_NAME_LENGTH and all(
        character in "_-" or character.isalnum() for character in name
    )


def name_key(name: str) -> str:
    """The key under which names are unique: Alice, alice and ALICE are one name."""
    return name.casefold()


def sort_names(names: list[str]) -> list[str]:
    """Names in the order every listing uses: by their casefolded form."""
    return sorted(names, key=name_key)


# ---------------------------------------------------------------------------
# 4. What a joined client's line means
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    """A broadcast: everyone else receives ``sender: text``."""

    text: str  #: the text, already sanitized (a leading ``//`` has lost one ``/``)


@dataclass(frozen=True)
class Whisper:
    """A private message: only ``target`` receives ``sender (private): text``."""

    target: str  #: the name as typed after ``@``
    text: str  #: the message, trimmed, never empty


@dataclass(frozen=True)
class BadWhisper:
    """An ``@`` line without a target or without text; answered with the usage line."""


@dataclass(frozen=True)
class ListUsers:
    """``/users``."""


@dataclass(frozen=True)
class Help:
    """``/help``."""


@dataclass(frozen=True)
class Quit:
    """``/quit``: say goodbye, then close the connection."""


@dataclass(frozen=True)
class UnknownCommand:
    """A ``/word`` the protocol does not define."""

    word: str  #: the command word as sent, slash included


Command = Say | Whisper | BadWhisper | ListUsers | Help | Quit | UnknownCommand

_COMMANDS: dict[str, Command] = {"/users": ListUsers(), "/help": Help(), "/quit": Quit()}


def parse_command(text: str) -> Command:
    """What a joined client's line asks for; ``text`` must be sanitized and not empty.

    >>> parse_command("hello")
    Say(text='hello')
    >>> parse_command("@bob  see you")
    Whisper(target='bob', text='see you')
    >>> parse_command("//shrug")
    Say(text='/shrug')
    """
    if not text:
        raise ValueError("an empty line is ignored, not parsed")
    if text.startswith("//"):
        return Say(text[1:])
    if text.startswith("/"):
        word = text.split(" ", 1)[0]
        return _COMMANDS.get(word.casefold(), UnknownCommand(word))
    if text.startswith("@"):
        target, _, message = text[1:].partition(" ")
        message = message.strip()
        if not target or not message:
            return BadWhisper()
        return Whisper(target, message)
    return Say(text)


# ---------------------------------------------------------------------------
# 5. The room: who is online, and who receives what
# ---------------------------------------------------------------------------
#
# The decisions below return deliveries, (member, line) pairs, instead of sending
# anything. The threaded server calls them while holding its registry lock and puts
# each line in the member's outbox before releasing it; the actual socket writes
# happen later, outside the lock. Deciding and queueing under one lock is what
# gives every user the same order of events: nobody can receive "bob: hi" before
# "* bob joined".

Member = TypeVar("Member")


class Roster(Generic[Member]):
    """The users online: each name, unique under casefold, with a member object.

    The member is whatever the server needs to reach that user (a connection, an
    outbox); the roster never looks inside it. A Roster is not thread-safe: a
    threaded server holds its own lock around every call.
    """

    def __init__(self) -> None:
        self._by_key: dict[str, tuple[str, Member]] = {}  # name_key(name) -> (name, member)

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, name: str) -> bool:
        return name_key(name) in self._by_key

    def add(self, name: str, member: Member) -> bool:
        """Register ``name``; False if the name (under casefold) is taken."""
        key = name_key(name)
        if key in self._by_key:
            return False
        self._by_key[key] = (name, member)
        return True

    def remove(self, name: str) -> Member | None:
        """Free ``name``; return its member, or None if it was not online."""
        entry = self._by_key.pop(name_key(name), None)
        return None if entry is None else entry[1]

    def find(self, name: str) -> tuple[str, Member] | None:
        """The online name and member matching ``name`` under casefold, if any."""
        return self._by_key.get(name_key(name))

    def names(self) -> list[str]:
        """Everyone online, sorted by casefold."""
        return sort_names([name for name, _ in self._by_key.values()])

    def members(self) -> list[Member]:
        """Every member, in joining order."""
        return [member for _, member in self._by_key.values()]


@dataclass
class Outcome(Generic[Member]):
    """What one decision asks the server to do: queue these lines, maybe close."""

    deliveries: list[tuple[Member, str]] = field(default_factory=list)  #: in sending order
    close: bool = False  #: close the acting client's connection after its lines are sent
    name: str | None = None  #: for admit(): the accepted name, or None if refused


def admit(roster: Roster[Member], frame: Frame, member: Member) -> Outcome[Member]:
    """Decide on a new connection's name line; on success the name is added to ``roster``.

    Exactly one line answers the name, queued before anything else can reach the
    newcomer; then everyone else learns that it joined.
    """
    if not isinstance(frame, Line):
        return Outcome([(member, INVALID_NAME)], close=True)
    name = normalize_name(frame.text)
    if not is_valid_name(name):
        return Outcome([(member, INVALID_NAME)], close=True)
    others = roster.names()
    if not roster.add(name, member):
        return Outcome([(member, name_taken(name))], close=True)
    deliveries = [(member, greeting(name, others))]
    deliveries += [(other, joined(name)) for other in roster.members() if other is not member]
    return Outcome(deliveries, name=name)


def route(roster: Roster[Member], sender: str, command: Command) -> Outcome[Member]:
    """Decide who receives what when the joined user ``sender`` sends ``command``."""
    found = roster.find(sender)
    if found is None:
        raise ValueError(f"{sender!r} is not online")
    _, sender_member = found
    match command:
        case Say(text):
            line = public_message(sender, text)
            return Outcome([(m, line) for m in roster.members() if m is not sender_member])
        case Whisper(target, text):
            recipient = roster.find(normalize_name(target))
            if recipient is None:
                return Outcome([(sender_member, no_such_user(target))])
            return Outcome([(recipient[1], private_message(sender, text))])
        case BadWhisper():
            return Outcome([(sender_member, USAGE_PRIVATE)])
        case ListUsers():
            return Outcome([(sender_member, online(roster.names()))])
        case Help():
            return Outcome([(sender_member, HELP)])
        case Quit():
            return Outcome([(sender_member, bye(sender))], close=True)
        case UnknownCommand(word):
            return Outcome([(sender_member, unknown_command(word))])
    raise TypeError(f"not a command: {command!r}")


def depart(roster: Roster[Member], name: str) -> Outcome[Member]:
    """Free ``name`` and tell everyone else it left; nothing if it was not online.

    The name is removed first, so it is free again before anyone reads the notice.
    """
    if roster.remove(name) is None:
        return Outcome()
    return Outcome([(member, left(name)) for member in roster.members()])


def batch_deliveries(deliveries: list[tuple[Member, str]]) -> dict[Member, bytes]:
    """Group deliveries by recipient: each recipient's lines, in order, as one piece of bytes.

    A server that handles several lines from one read (a pasted paragraph, a client
    sending fast) can then write to each recipient once instead of once per line:
    one system call instead of many. Each distinct line is encoded only once, even
    when a broadcast sends it to hundreds of recipients. Members must be hashable.
    """
    encoded: dict[str, bytes] = {}
    pieces: dict[Member, list[bytes]] = {}
    for member, line in deliveries:
        data = encoded.get(line)
        if data is None:
            data = encoded[line] = encode_line(line)
        pieces.setdefault(member, []).append(data)
    return {member: b"".join(parts) for member, parts in pieces.items()}


# ---------------------------------------------------------------------------
# 6. Reading server lines (for clients and bots)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """A ``* ...`` line: welcome, greeting, joins, leaves, listings, goodbyes."""

    text: str  #: the notice without its leading ``* ``

    @property
    def joined(self) -> str | None:
        """The name in ``* name joined``, else None."""
        return _subject(self.text, " joined")

    @property
    def left(self) -> str | None:
        """The name in ``* name left``, else None."""
        return _subject(self.text, " left")


@dataclass(frozen=True)
class ErrorLine:
    """A ``! ...`` line: the server refusing or warning about something."""

    text: str  #: the error without its leading ``! ``


@dataclass(frozen=True)
class Message:
    """A chat message from another user, public or private."""

    sender: str
    text: str
    private: bool = False


@dataclass(frozen=True)
class Unparsed:
    """A line that fits none of the v1 forms (a broken server may send these)."""

    text: str


ServerLine = Notice | ErrorLine | Message | Unparsed


def _subject(text: str, suffix: str) -> str | None:
    if text.endswith(suffix):
        name = text[: -len(suffix)]
        if is_valid_name(name):
            return name
    return None


def parse_server_line(line: str) -> ServerLine:
    """Classify one line from the server.

    No name holds a space, ``*``, ``!`` or ``:``, so the first word decides:

    >>> parse_server_line("* bob joined").joined
    'bob'
    >>> parse_server_line("bob (private): psst")
    Message(sender='bob', text='psst', private=True)
    """
    if line.startswith("* "):
        return Notice(line[2:])
    if line.startswith("! "):
        return ErrorLine(line[2:])
    first, _, rest = line.partition(" ")
    if first.endswith(":") and is_valid_name(first[:-1]):
        return Message(first[:-1], rest)
    if is_valid_name(first) and rest.startswith("(private): "):
        return Message(first, rest[len("(private): ") :], private=True)
    return Unparsed(line)


# ---------------------------------------------------------------------------
# 7. The flood limit
# ---------------------------------------------------------------------------


class TokenBucket:
    """Allows bursts of up to ``burst`` lines, refilled at ``rate`` lines per second.

    Picture a bucket that holds ``burst`` tokens and drips in ``rate`` new ones per
    second; each line takes a token, and a line that finds the bucket empty is
    dropped. A chatty user can type several lines at once, but nobody can keep up
    more than ``rate`` lines per second. (Not to be confused with a leaky bucket
    queue, which delays lines instead of dropping them.)

    ``clock`` returns seconds; tests pass a fake one to step time by hand.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def allow(self) -> bool:
        """Take a token if there is one: True means the line may pass."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
