"""Exercise 2 (names), solved: the handshake, name validation, case-insensitive uniqueness, refusal.

What changed: valid_name() checks length and characters; the name is trimmed and
NFC-normalized; the dict is keyed by name.casefold(), so Alice and alice collide; a
refused name gets its one error line and the harness closes the connection.
Still missing: a lock (exercise 3).

The model answer for the whole road is ``chatlab/server.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

from chatlab import protocol
from chatlab.exercises.harness import ServerHarness
from chatlab.protocol import Frame, Line, LineBuffer, encode_line


def valid_name(name: str) -> bool:
    """1 to 24 characters, each a letter or digit (any script), ``_`` or ``-``."""
    return 1 <= len(name) <= protocol.MAX_NAME_LENGTH and all(c.isalnum() or c in "_-" for c in name)


class Client:
    """One joined user: the name and the socket."""

    def __init__(self, name: str, sock: socket.socket) -> None:
        self.name = name
        self.sock = sock

    def send(self, line: str) -> None:
        """Send one line; a client that is gone is simply skipped (its own thread cleans up)."""
        try:
            self.sock.sendall(encode_line(line))
        except OSError:
            pass


class Server(ServerHarness):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, **options) -> None:
        super().__init__(host, port, **options)
        # The users online: casefolded name -> Client. Every client thread reads and
        # changes this dict.
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
        key = name.casefold()
        if key in self._users:
            sock.sendall(encode_line(protocol.name_taken(name)))
            return None
        others = protocol.sort_names([other.name for other in self._users.values()])
        self._users[key] = client
        sock.sendall(encode_line(protocol.greeting(name, others)))
        self.broadcast(client, protocol.joined(name))
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
                    client.send(protocol.USAGE_PRIVATE)
                case protocol.ListUsers():
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
        for recipient in self._users.values():
            if recipient is not sender:
                recipient.send(line)

    def whisper(self, sender: Client, target: str, text: str) -> None:
        """Send ``text`` to ``target`` alone, or tell the sender nobody has that name."""
        recipient = self._users.get(protocol.normalize_name(target).casefold())
        if recipient is None:
            sender.send(protocol.no_such_user(target))
        else:
            recipient.send(protocol.private_message(sender.name, text))

    def depart(self, client: Client) -> None:
        """Free the name first, then tell everyone else, exactly once."""
        del self._users[client.name.casefold()]
        recipients = list(self._users.values())
        for recipient in recipients:
            recipient.send(protocol.left(client.name))
        try:
            client.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
