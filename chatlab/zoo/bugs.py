"""The bug zoo: servers with exactly one planted bug each, every one seen in real student code.

Each class below is :class:`~chatlab.zoo.base.ZooServer` with one method replaced by
a copy that differs in one place, marked ``BUG``. Its docstring says what goes
wrong, how it shows on the wire, and which category of ``chatlab grade`` catches
it (``category``). The same servers are the targets of the bug-hunt exercise
(``exercises/10_bug_hunt``), where students write bot scenarios to catch them.

Run one with ``python -m chatlab.zoo NAME --port 1234``; ``--list`` shows them all.
The zoo's command line makes Python switch threads every microsecond
(``sys.setswitchinterval``), so race bugs show up in seconds instead of weeks.
"""

from __future__ import annotations

import contextlib

from chatlab import protocol
from chatlab.protocol import Frame, InvalidUtf8, Line, name_key
from chatlab.zoo.base import Client, ZooServer, log


class UnlockedRoster(ZooServer):
    """A race on the user list: broadcasts walk the live dict without the lock.

    The student reasoned that reading needs no lock, only writing does. But while one
    reader walks ``self.users``, another thread adds or removes a user, and Python
    raises "dictionary changed size during iteration" in the middle of a broadcast:
    the rest of the room never gets the line, and the innocent sender is
    disconnected. Only under churn, and only sometimes: a race.
    Caught by: concurrency (a churn-and-broadcast swarm).
    """

    category = "concurrency"
    description = "a race on the user list: broadcasts iterate it without the lock"

    def handle(self, client: Client, frame: Frame) -> bool:
        if isinstance(frame, Line) and (text := self.clean(frame.text)):
            command = protocol.parse_command(text)
            if isinstance(command, protocol.Say):
                assert client.name is not None
                # BUG: no `with self.room():` here. broadcast() iterates self.users while
                # other readers add and remove users under the lock this one skipped.
                self.broadcast(client, protocol.public_message(client.name, command.text))
                return True
        return super().handle(client, frame)


class NoLineBuffer(ZooServer):
    """No partial-line buffer: every recv() is taken to end at a line boundary.

    Lines are split at LF inside each chunk, and whatever follows the last LF is
    taken as a whole line instead of being kept for the next read. A line that
    arrives in two pieces becomes two messages. Works on localhost with short lines
    typed by hand, which is why students believe it.
    Caught by: framing.
    """

    category = "framing"
    description = "no partial-line buffer: each recv() is cut into lines on its own"

    def frames(self, client: Client, data: bytes) -> list[Frame]:
        # BUG: no buffer kept between reads; an unfinished last piece counts as a line.
        pieces = data.split(b"\n")
        if pieces[-1] == b"":
            pieces.pop()
        return [protocol.decode_line(piece) for piece in pieces]


class RacyNames(ZooServer):
    """A collision check that is not atomic: check the name, release the lock, then take it.

    Both steps are under the lock, so it looks safe. But between them another
    reader can check the same name, find it free too, and both clients are accepted
    as ``alice``. Check-then-act must be one critical section.
    Caught by: concurrency (many clients racing for one name).
    """

    category = "concurrency"
    description = "the name check and the name registration are two separate critical sections"

    def admit(self, client: Client, name: str) -> bool:
        with self.room():
            taken = name_key(name) in self.users
        # BUG: the lock is released here; another reader may take the name right now,
        # while this one writes its log line (a system call: other threads run meanwhile).
        if taken:
            with self.room():
                self.put(client, protocol.name_taken(name))
            return False
        log.info("%s is joining as %s", client.peer, name)
        with self.room():
            self.put(client, protocol.greeting(name, self.online()))
            self.users[name_key(name)] = client
            client.name = name
            self.broadcast(client, protocol.joined(name))
        return True


class SendUnderLock(ZooServer):
    """Sending while holding the lock: a broadcast writes to each socket inside the critical section.

    ``sendall()`` blocks when a client stops reading and its socket buffers fill
    up. This one blocks while holding the lock that every other thread needs, so one
    frozen client freezes the whole room.
    Caught by: slow readers.
    """

    category = "slow_readers"
    description = "broadcasts call sendall() on every socket while holding the lock"

    def broadcast(self, sender: Client, line: str) -> None:
        for user in self.users.values():
            if user is not sender:
                # BUG: socket I/O under the lock (the caller holds it), instead of self.put().
                with contextlib.suppress(OSError):
                    user.sock.sendall(protocol.encode_line(line))


class SilentReset(ZooServer):
    """No leave notice on a reset: a connection reset frees the name but tells nobody.

    The student handled ``ConnectionResetError`` in its own ``except`` branch and
    only cleaned up there. A client that quits or closes is announced; one whose
    machine crashes or whose network drops just vanishes from everyone's view.
    Caught by: departures.
    """

    category = "departures"
    description = "a connection reset frees the name but sends no leave notice"

    def on_reset(self, client: Client) -> None:
        assert client.name is not None
        # BUG: the name is freed, but the `* name left` notice is never sent.
        if self.users.get(name_key(client.name)) is client:
            del self.users[name_key(client.name)]


class LeakyPrivate(ZooServer):
    """A private message leaking to all: the private branch falls through to the broadcast.

    The ``@name`` branch delivers to the target and then, missing its ``return``,
    carries on into the code that broadcasts the line. The target gets it twice in
    different forms and everyone else reads a secret.
    Caught by: private messages.
    """

    category = "private"
    description = "a private message is delivered, then broadcast to everyone as well"

    def whisper(self, sender: Client, target: str, text: str) -> None:
        assert sender.name is not None
        super().whisper(sender, target, text)
        # BUG: no return after the private delivery: the line is broadcast too.
        self.broadcast(sender, protocol.public_message(sender.name, f"@{target} {text}"))


class NoSanitizer(ZooServer):
    """A missing sanitizer: control characters are relayed as they came.

    Only surrounding whitespace is trimmed. ``ESC[2J`` clears everyone's screen, and
    a CR followed by another name lets one user pose as another.
    Caught by: robustness.
    """

    category = "robustness"
    description = "control characters and escapes are relayed unchanged"

    def clean(self, text: str) -> str:
        return text.strip()  # BUG: protocol.sanitize() is never called


class Echo(ZooServer):
    """An echo: the broadcast goes to everyone, the sender included.

    ``for user in users: send(line)`` is the first broadcast everybody writes; the
    client then prints its own line twice.
    Caught by: broadcast.
    """

    category = "broadcast"
    description = "a broadcast is echoed to its own sender"

    def broadcast(self, sender: Client, line: str) -> None:
        for user in self.users.values():
            self.put(user, line)  # BUG: no `if user is not sender`


class CaseSensitiveNames(ZooServer):
    """Names compared exactly instead of under casefold: ``alice`` and ``ALICE`` both get in.

    The uniqueness check compares the names as typed; the second one then overwrites
    the first in the dict, which silently stops receiving anything.
    Caught by: handshake.
    """

    category = "handshake"
    description = "name uniqueness ignores casefold"

    def admit(self, client: Client, name: str) -> bool:
        with self.room():
            # BUG: compares names as typed; PROTOCOL.md says unique under str.casefold().
            if any(user.name == name for user in self.users.values()):
                self.put(client, protocol.name_taken(name))
                return False
            self.put(client, protocol.greeting(name, self.online()))
            self.users[name_key(name)] = client
            client.name = name
            self.broadcast(client, protocol.joined(name))
        return True


class DoubleLeave(ZooServer):
    """Two leave notices for one /quit: once in the /quit branch, once in the cleanup.

    The student announced the departure where ``/quit`` is handled, and the common
    cleanup at the end of the thread announces it again.
    Caught by: departures.
    """

    category = "departures"
    description = "/quit announces the departure twice"

    def route(self, client: Client, command: object) -> bool:
        if isinstance(command, protocol.Quit):
            assert client.name is not None
            self.put(client, protocol.bye(client.name))
            self.broadcast(client, protocol.left(client.name))  # BUG: finish() announces it again
            return False
        return super().route(client, command)


class CrashOnBadUtf8(ZooServer):
    """Bad UTF-8 disconnects its sender: the decode error is not answered, it ends the reader.

    The student decoded every line with ``.decode()`` and let the exception reach the
    thread's ``except``, which closes the connection. PROTOCOL.md says: answer
    ``! invalid UTF-8, line dropped`` and keep the connection.
    Caught by: robustness.
    """

    category = "robustness"
    description = "a line that is not UTF-8 disconnects its sender"

    def handle(self, client: Client, frame: Frame) -> bool:
        if isinstance(frame, InvalidUtf8):
            frame.data.decode("utf-8")  # BUG: raises UnicodeDecodeError; the reader ends
        return super().handle(client, frame)


class UsersWithoutSelf(ZooServer):
    """``/users`` leaves out the one who asks.

    The student reused the broadcast's "everyone but the sender" loop to list names.
    Caught by: commands.
    """

    category = "commands"
    description = "/users does not list the user who asks"

    def route(self, client: Client, command: object) -> bool:
        if isinstance(command, protocol.ListUsers):
            # BUG: the asker is skipped, and the count is one short.
            names = [name for name in self.online() if name_key(name) != name_key(client.name or "")]
            self.put(client, protocol.online(names))
            return True
        return super().route(client, command)


class NoLengthLimit(ZooServer):
    """No line length limit: any line is buffered whole and relayed, however long.

    One client sending megabytes without an LF grows the server's memory without
    bound, and an over-long line is relayed instead of refused with
    ``! line too long``.
    Caught by: robustness.
    """

    category = "robustness"
    description = "over-long lines are relayed instead of refused"

    def frames(self, client: Client, data: bytes) -> list[Frame]:
        client.buffer.max_line = None  # BUG: the limit of PROTOCOL.md is switched off
        return client.buffer.feed(data)


ZOO: dict[str, type[ZooServer]] = {
    "unlocked-roster": UnlockedRoster,
    "no-line-buffer": NoLineBuffer,
    "racy-names": RacyNames,
    "send-under-lock": SendUnderLock,
    "silent-reset": SilentReset,
    "leaky-private": LeakyPrivate,
    "no-sanitizer": NoSanitizer,
    "echo": Echo,
    "case-sensitive-names": CaseSensitiveNames,
    "double-leave": DoubleLeave,
    "crash-on-bad-utf8": CrashOnBadUtf8,
    "users-without-self": UsersWithoutSelf,
    "no-length-limit": NoLengthLimit,
}
"""Every zoo server by name. ``correct`` (the keeper, no bug) is not in it."""
