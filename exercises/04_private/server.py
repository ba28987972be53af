"""Exercise 4 (private messages): ``@name text`` reaches one user, and its errors.

The seed's design: the harness (chatlab/exercises/harness.py) accepts connections
and runs ``handle_client`` in one thread per client. Exercise 1's line reader is
``chatlab.protocol.LineBuffer`` here. Read the README of this folder first, then
look for ``TODO``. ``chatlab ex check`` tells you what still fails.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

from chatlab import protocol
from chatlab.exercises.harness import ServerHarness
from chatlab.protocol import Frame, Line, LineBuffer, encode_line


def valid_name(name: str) -> bool:
    """1 to 24 characters, each a letter or digit (any script), ``_`` or ``-``."""
    return 1 <= len(name) <= protocol.MAX_NAME_LENGTH and all(c.isalnum() or c in "_-" for c in name)


class Client:
    """One joined user: the name and the socket, and a lock for writing to that socket."""

    def __init__(self, name: str, sock: socket.socket) -> None:
        self.name = name
        self.sock = sock
        # send_lock guards writes to sock: two threads never interleave their bytes. It
        # is the only lock held during socket I/O, and only for this one socket. Order:
        # a thread holding it may take the server's lock, never the other way round.
        self.send_lock = threading.Lock()

    def send(self, line: str) -> None:
        """Send one line; a client that is gone is simply skipped (its own thread cleans up)."""
        with self.send_lock:
            try:
                self.sock.sendall(encode_line(line))
            except OSError:
                pass


class Server(ServerHarness):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, **options) -> None:
        super().__init__(host, port, **options)
        # _lock guards _users (casefolded name -> Client). Never send while holding it.
        self._lock = threading.Lock()
        self._users: dict[str, Client] = {}

    def frames(self, sock: socket.socket) -> Iterator[Frame]:
        """Every complete line the client sends, until it closes (exercise 1's line reader)."""
        buffer = LineBuffer(protocol.MAX_LINE)
        while True:
            try:
                data = sock.recv(4096)
            except OSError:
                return  # a reset: the same as an end of stream for us
            if not data:
                return
            yield from buffer.feed(data)

    def handle_client(self, sock: socket.socket) -> None:
        sock.sendall(encode_line(protocol.WELCOME))
        frames = self.frames(sock)
        client = self.handshake(sock, frames)
        if client is None:
            return
        if self.chat(client, frames):  # True after /quit
            self.depart(client)

    def handshake(self, sock: socket.socket, frames: Iterator[Frame]) -> Client | None:
        """Read the name, refuse it or register it; the joined Client, or None."""
        frame = next(frames, None)
        if frame is None:
            return None  # left before naming itself: nobody is told
        name = protocol.normalize_name(frame.text) if isinstance(frame, Line) else ""
        if not valid_name(name):
            sock.sendall(encode_line(protocol.INVALID_NAME))
            return None
        client = Client(name, sock)
        # Holding the newcomer's send_lock until its greeting is out means nobody can
        # write to it before its greeting, even once it is in _users.
        with client.send_lock:
            with self._lock:
                key = name.casefold()
                taken = key in self._users
                if not taken:
                    others = protocol.sort_names([other.name for other in self._users.values()])
                    recipients = list(self._users.values())
                    self._users[key] = client
            if taken:
                sock.sendall(encode_line(protocol.name_taken(name)))
                return None
            sock.sendall(encode_line(protocol.greeting(name, others)))
        for other in recipients:
            other.send(protocol.joined(name))
        return client

    def chat(self, client: Client, frames: Iterator[Frame]) -> bool:
        """Relay the client's lines until it quits (True) or its stream ends (False)."""
        for frame in frames:
            if not isinstance(frame, Line) or not frame.text.strip():
                continue
            command = protocol.parse_command(frame.text.strip())
            match command:
                case protocol.Say(text):
                    self.broadcast(client, protocol.public_message(client.name, text))
                case protocol.Whisper(target, text):
                    self.whisper(client, target, text)
                case protocol.BadWhisper():
                    pass  # TODO: "@bob" or "@ hi": answer the sender with protocol.USAGE_PRIVATE
                case protocol.ListUsers():
                    with self._lock:
                        names = protocol.sort_names([user.name for user in self._users.values()])
                    client.send(protocol.online(names))
                case protocol.Help():
                    client.send(protocol.HELP)
                case protocol.Quit():
                    client.send(protocol.bye(client.name))
                    return True
                case protocol.UnknownCommand(word):
                    client.send(protocol.unknown_command(word))
        return False

    def broadcast(self, sender: Client, line: str) -> None:
        """Send ``line`` to everyone but ``sender``: snapshot under the lock, send after."""
        with self._lock:
            recipients = [user for user in self._users.values() if user is not sender]
        for recipient in recipients:
            recipient.send(line)

    def whisper(self, sender: Client, target: str, text: str) -> None:
        """Send ``text`` to ``target`` alone, or tell the sender nobody has that name."""
        # TODO: find the one user whose name matches ``target`` (under casefold, after
        # normalize_name) and send them ``sender (private): text``; if nobody holds the
        # name, tell the sender ``! no such user: target``. For now, like the seed, the
        # line goes to everyone: a private message leaks.
        self.broadcast(sender, protocol.public_message(sender.name, f"@{target} {text}"))

    def depart(self, client: Client) -> None:
        """Free the name first, then tell everyone else, exactly once."""
        with self._lock:
            del self._users[client.name.casefold()]
            recipients = list(self._users.values())
        for recipient in recipients:
            recipient.send(protocol.left(client.name))
        with client.send_lock:  # nobody is inside sendall() on it when it closes
            try:
                client.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
