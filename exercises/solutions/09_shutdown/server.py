"""Exercise 9 (shutdown), solved: stop everything cleanly, no thread left.

What changed: shutdown_clients() sets _stopping (so depart() sends no leave
notices), closes every outbox with the shutting-down line, joins the writers with
a timeout (a flush with a bounded budget), tells unnamed connections without
blocking, and then shuts every socket down so that every reader wakes and ends.
The harness joins the readers: no thread is left.

The model answer for the whole road is ``chatlab/server.py``: the same design,
made faster. Instead of a writer thread per client it has one sender thread that
writes every outbox with non-blocking sends, and watches full sockets with select().
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

from chatlab import protocol
from chatlab.exercises.harness import ServerHarness
from chatlab.protocol import Frame, InvalidUtf8, Line, LineBuffer, LineTooLong, TokenBucket, encode_line

FAREWELL = 2.0  # seconds a leaving client's writer gets to send its last lines


def valid_name(name: str) -> bool:
    """1 to 24 characters, each a letter or digit (any script), ``_`` or ``-``."""
    return 1 <= len(name) <= protocol.MAX_NAME_LENGTH and all(c.isalnum() or c in "_-" for c in name)


def clean(text: str) -> str:
    """Exercise 8: remove what could harm other people's terminals, then trim (see PROTOCOL.md)."""
    return protocol.sanitize(text)


class Outbox:
    """The bytes waiting to be written to one client, bounded: a mailbox of fixed size.

    Anyone may :meth:`put` (it never blocks); only the client's writer thread
    :meth:`take` s. A put that does not fit means the client has not read for too
    long: the queued lines are replaced by the too-slow notice and the outbox closes.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # _lock guards _chunks, _size, _closed and overflowed; _changed is notified
        # (under _lock) whenever one of them changes.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._chunks: list[bytes] = []
        self._size = 0
        self._closed = False
        self.overflowed = False

    def put(self, line: str) -> bool:
        """Queue one line; False if it does not fit (the client is too slow)."""
        data = encode_line(line)
        with self._lock:
            if self._closed:
                return not self.overflowed
            if self._size + len(data) > self.limit:
                self.overflowed = True
                self._chunks = [encode_line(protocol.TOO_SLOW)]
                self._closed = True
                self._changed.notify_all()
                return False
            self._chunks.append(data)
            self._size += len(data)
            self._changed.notify_all()
            return True

    def close(self, last_line: str | None = None) -> None:
        """Accept nothing more, after an optional last line; the writer ends once all is sent."""
        with self._lock:
            if not self._closed:
                if last_line is not None:
                    self._chunks.append(encode_line(last_line))
                self._closed = True
                self._changed.notify_all()

    def take(self) -> bytes | None:
        """Writer only: wait for queued bytes and take them all; None once closed and empty."""
        with self._lock:
            self._changed.wait_for(lambda: self._chunks or self._closed)
            if not self._chunks:
                return None
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            return data


class Client:
    """One joined user: name, socket, outbox and the writer thread that empties it."""

    def __init__(self, name: str, sock: socket.socket, outbox_limit: int) -> None:
        self.name = name
        self.sock = sock
        self.outbox = Outbox(outbox_limit)
        self.writer = threading.Thread(target=self._write, name=f"writer-{name}")

    def send(self, line: str) -> None:
        """Queue a line (never blocks); a client found too slow is woken to leave."""
        if not self.outbox.put(line):
            try:
                self.sock.shutdown(socket.SHUT_RD)  # its reader's recv() returns b"": it departs
            except OSError:
                pass

    def _write(self) -> None:
        """The writer thread: the only one that writes to this socket once joined."""
        try:
            while (data := self.outbox.take()) is not None:
                self.sock.sendall(data)
        except OSError:
            pass  # the client is gone; its reader notices and departs


class Server(ServerHarness):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_line: int = protocol.MAX_LINE,
        outbox_limit: int = protocol.OUTBOX_LIMIT,
        rate: float | None = None,
        burst: int | None = None,
        name_timeout: float = protocol.NAME_TIMEOUT,
        **options,
    ) -> None:
        super().__init__(host, port, **options)
        self.max_line = max_line
        self.outbox_limit = outbox_limit
        self.rate = rate
        self.burst = burst
        self.name_timeout = name_timeout
        # _lock guards _users (casefolded name -> Client). Deciding who receives a
        # line and putting it in the outboxes happen under it, so everyone sees
        # events in one order; putting never blocks, and no socket I/O happens under it.
        self._lock = threading.Lock()
        self._users: dict[str, Client] = {}
        self._stopping = threading.Event()  # set by shutdown_clients(): no more leave notices

    def frames(self, sock: socket.socket) -> Iterator[Frame]:
        """Every complete line the client sends, until it closes or resets."""
        buffer = LineBuffer(self.max_line)
        while True:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                raise  # the name timeout: handshake() answers it
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
        try:
            self.chat(client, frames)
        finally:
            self.depart(client)

    def handshake(self, sock: socket.socket, frames: Iterator[Frame]) -> Client | None:
        sock.settimeout(self.name_timeout)  # exercise 8: a silent connection cannot hold a thread forever
        try:
            frame = next(frames, None)
        except TimeoutError:
            sock.sendall(encode_line(protocol.NAME_TIMED_OUT))
            return None
        sock.settimeout(None)
        if frame is None or self._stopping.is_set():
            return None
        name = protocol.normalize_name(frame.text) if isinstance(frame, Line) else ""
        if not valid_name(name):
            sock.sendall(encode_line(protocol.INVALID_NAME))
            return None
        client = Client(name, sock, self.outbox_limit)
        client.writer.start()  # from now on only the writer writes to this socket
        with self._lock:
            key = name.casefold()
            taken = key in self._users
            if not taken:
                others = protocol.sort_names([other.name for other in self._users.values()])
                client.send(protocol.greeting(name, others))  # queued first: nothing can overtake it
                for other in self._users.values():
                    other.send(protocol.joined(name))
                self._users[key] = client
        if taken:
            client.outbox.close(protocol.name_taken(name))
            client.writer.join(FAREWELL)
            return None
        return client

    def chat(self, client: Client, frames: Iterator[Frame]) -> None:
        bucket = TokenBucket(self.rate, self.burst) if self.rate and self.burst else None
        for frame in frames:
            if bucket is not None and not bucket.allow():
                client.send(protocol.SLOW_DOWN)
                continue
            if isinstance(frame, LineTooLong):
                client.send(protocol.line_too_long(frame.limit))
                continue
            if isinstance(frame, InvalidUtf8):
                client.send(protocol.INVALID_UTF8)
                continue
            text = clean(frame.text)
            if not text:
                continue
            match protocol.parse_command(text):
                case protocol.Say(text):
                    self.broadcast(client, protocol.public_message(client.name, text))
                case protocol.Whisper(target, text):
                    self.whisper(client, target, text)
                case protocol.BadWhisper():
                    client.send(protocol.USAGE_PRIVATE)
                case protocol.ListUsers():
                    with self._lock:
                        client.send(protocol.online(protocol.sort_names([u.name for u in self._users.values()])))
                case protocol.Help():
                    client.send(protocol.HELP)
                case protocol.Quit():
                    client.send(protocol.bye(client.name))
                    return
                case protocol.UnknownCommand(word):
                    client.send(protocol.unknown_command(word))

    def broadcast(self, sender: Client, line: str) -> None:
        with self._lock:
            for recipient in self._users.values():
                if recipient is not sender:
                    recipient.send(line)  # a put, not a send: safe under the lock

    def whisper(self, sender: Client, target: str, text: str) -> None:
        with self._lock:
            recipient = self._users.get(protocol.normalize_name(target).casefold())
            if recipient is None:
                sender.send(protocol.no_such_user(target))
            else:
                recipient.send(protocol.private_message(sender.name, text))

    def depart(self, client: Client) -> None:
        """Free the name, tell the others once (unless stopping), flush, close, join the writer."""
        with self._lock:
            if self._users.get(client.name.casefold()) is client:
                del self._users[client.name.casefold()]
                if not self._stopping.is_set():
                    for recipient in self._users.values():
                        recipient.send(protocol.left(client.name))
        client.outbox.close()
        client.writer.join(FAREWELL)
        try:
            client.sock.shutdown(socket.SHUT_RDWR)  # also ends a writer stuck on a client that stopped reading
        except OSError:
            pass
        client.writer.join(FAREWELL)

    def shutdown_clients(self) -> None:
        """Exercise 9: goodbye to every connection, a bounded flush, then every socket shut."""
        self._stopping.set()
        with self._lock:
            clients = list(self._users.values())
        joined = {client.sock for client in clients}
        for sock in self.accepted_sockets():
            if sock not in joined:  # not named yet: nobody else writes to it
                try:
                    sock.send(encode_line(protocol.SHUTTING_DOWN), socket.MSG_DONTWAIT)
                except OSError:
                    pass
        for client in clients:
            client.outbox.close(protocol.SHUTTING_DOWN)
        for client in clients:
            client.writer.join(FAREWELL)  # their outboxes are closed: each ends once flushed
        for sock in self.accepted_sockets():
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes every reader; each departs, silently
            except OSError:
                pass
