"""The zoo's keeper: a small, correct chat server that every zoo server changes in one place.

The reference server (``chatlab/server.py``) is tuned for speed, which makes it
long. The zoo needs something else: a server short enough that a one-line bug
stands out. :class:`ZooServer` is the classic correct design, the one students
reach at the end of the exercises:

* one **reader thread** per connection (``reader-<port>``) does the handshake and
  reads, frames and routes every line the client sends;
* one **writer thread** per connection (``writer-<port>``) is the only one that
  writes to that socket; it takes lines from the client's bounded :class:`Outbox`;
* one **lock**, ``ZooServer._lock``, guards the room: the users by name and the set
  of open connections. Deciding who receives a line and putting it in the outboxes
  happen under it, so everybody sees one order of events. No socket I/O ever happens
  under it: putting a line in an outbox is a memory operation.

It keeps every promise of PROTOCOL.md except the optional flood limit (off by
default there too). Each zoo server in :mod:`chatlab.zoo.bugs` subclasses it and
overrides exactly one of the small methods below (``frames``, ``clean``,
``admit``, ``broadcast``, ``route``, ``depart``, ``on_reset``...) with a copy that has
one planted bug. Read a bug next to the method it replaces: the difference is
the lesson.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from chatlab import protocol
from chatlab.protocol import (
    BadWhisper,
    Frame,
    Help,
    InvalidUtf8,
    Line,
    LineBuffer,
    LineTooLong,
    ListUsers,
    Quit,
    Say,
    UnknownCommand,
    Whisper,
    encode_line,
    is_valid_name,
    name_key,
    normalize_name,
    parse_command,
    sanitize,
    sort_names,
)

log = logging.getLogger("chatlab.zoo")

RECV_SIZE = 65536  # bytes per recv(); framing makes the size irrelevant to correctness
FAREWELL_TIMEOUT = 2.0  # seconds a leaving client's writer gets to send its last lines
JOIN_TIMEOUT = 5.0  # seconds to wait for a thread that should end at once


class Outbox:
    """Lines waiting for one client's writer thread, bounded in bytes.

    Readers :meth:`put` lines (never blocking); the writer :meth:`take`\\ s everything
    queued at once. When a put would pass the limit, the client reads too slowly:
    the queued lines are replaced by ``! too slow, disconnecting`` and the outbox
    closes, so the writer sends that notice and stops.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # _lock guards _lines, _size, closed and overflowed; _ready is notified when
        # a line arrives or the outbox closes.
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._lines: deque[bytes] = deque()
        self._size = 0
        self.closed = False  #: nothing more is accepted; the writer ends once it sent the rest
        self.overflowed = False  #: the client was too slow

    def put(self, line: str) -> bool:
        """Queue one line; False if the client is (now) too slow."""
        data = encode_line(line)
        with self._lock:
            if self.overflowed:
                return False
            if self.closed:
                return True  # the client is leaving: the line is dropped quietly
            if self._size + len(data) > self.limit:
                self.overflowed = self.closed = True
                self._lines = deque([encode_line(protocol.TOO_SLOW)])
                self._ready.notify()
                return False
            self._lines.append(data)
            self._size += len(data)
            self._ready.notify()
            return True

    def close(self) -> None:
        """Accept nothing more; the writer sends what is queued, then ends."""
        with self._lock:
            self.closed = True
            self._ready.notify()

    def take(self) -> bytes | None:
        """Writer only: wait for lines and take them all; None once closed and empty."""
        with self._lock:
            self._ready.wait_for(lambda: self._lines or self.closed)
            if not self._lines:
                return None
            data = b"".join(self._lines)
            self._lines.clear()
            self._size = 0
            return data


@dataclass(eq=False)
class Client:
    """One connection: its socket, its outbox, its two threads, and its name once accepted."""

    sock: socket.socket
    peer: str
    outbox: Outbox
    buffer: LineBuffer
    name: str | None = None  #: set by admit(), under the lock
    reader: threading.Thread | None = None
    writer: threading.Thread | None = None
    pending: list[Frame] = field(default_factory=list)  #: lines that came right behind the name

    def kick(self) -> None:
        """Wake the reader (its recv() returns b"") so that it runs the departure."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)


class ZooServer:
    """A correct thread-per-client server: ``with ZooServer(port=0) as server: server.address``."""

    description = "the correct server every zoo server starts from"  #: one line for ``--list``
    category = ""  #: the ``chatlab grade`` category that catches the planted bug (none here)

    def __init__(
        self,
        host: str = protocol.DEFAULT_HOST,
        port: int = protocol.DEFAULT_PORT,
        *,
        max_clients: int = protocol.MAX_CLIENTS,
        max_line: int = protocol.MAX_LINE,
        outbox_limit: int = protocol.OUTBOX_LIMIT,
        send_buffer: int | None = None,
        name_timeout: float = protocol.NAME_TIMEOUT,
    ) -> None:
        self.host, self.port = host, port
        self.max_clients = max_clients
        self.max_line = max_line
        self.outbox_limit = outbox_limit
        self.send_buffer = send_buffer  # SO_SNDBUF per client, None for the system's default
        self.name_timeout = name_timeout
        # _lock guards users (name_key -> Client), clients (every open connection)
        # and _overflowed (clients found too slow while the lock was held).
        self._lock = threading.Lock()
        self.users: dict[str, Client] = {}
        self.clients: set[Client] = set()
        self._overflowed: list[Client] = []
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._wakeup_receive, self._wakeup_send = socket.socketpair()
        self._accept_thread: threading.Thread | None = None
        self._readers: list[threading.Thread] = []  # only the accept thread changes it; stop() reads it after joining that thread

    # -- starting and stopping ----------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            raise RuntimeError("the server is not started")
        return self._listener.getsockname()[:2]

    def start(self) -> ZooServer:
        self._listener = socket.create_server((self.host, self.port), backlog=128)
        self._accept_thread = threading.Thread(target=self._accept_loop, name="accept")
        self._accept_thread.start()
        log.info("%s listening on %s:%d", type(self).__name__, *self.address)
        return self

    def stop(self) -> None:
        """Tell everyone the server stops, let the writers flush briefly, close, join."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wakeup_send.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(JOIN_TIMEOUT)
        with self._lock:
            clients = list(self.clients)
        for client in clients:
            client.outbox.put(protocol.SHUTTING_DOWN)
            client.outbox.close()
        for client in clients:
            if client.writer is not None:
                client.writer.join(protocol.SHUTDOWN_FLUSH / max(1, len(clients)))
            with contextlib.suppress(OSError):
                client.sock.shutdown(socket.SHUT_RDWR)  # wakes its reader and a stuck writer
        for reader in self._readers:
            reader.join(JOIN_TIMEOUT)
        if self._listener is not None:
            self._listener.close()
        self._wakeup_receive.close()
        self._wakeup_send.close()

    def __enter__(self) -> ZooServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wakeup_receive, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._listener:
                        self._accept_one()

    def _accept_one(self) -> None:
        assert self._listener is not None
        try:
            sock, address = self._listener.accept()
        except OSError as error:
            log.error("accept failed: %s", error)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.send_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        client = Client(sock, f"{address[0]}:{address[1]}", Outbox(self.outbox_limit), LineBuffer(self.max_line))
        with self._lock:
            full = len(self.clients) >= self.max_clients
            if not full:
                self.clients.add(client)
        if full:
            with contextlib.suppress(OSError):
                sock.settimeout(1.0)
                sock.sendall(encode_line(protocol.SERVER_FULL))
            sock.close()
            return
        client.writer = threading.Thread(target=self._write, args=(client,), name=f"writer-{address[1]}")
        client.reader = threading.Thread(target=self._serve, args=(client,), name=f"reader-{address[1]}")
        client.writer.start()
        client.reader.start()
        self._readers = [reader for reader in self._readers if reader.is_alive()] + [client.reader]

    # -- the writer thread ------------------------------------------------------------

    def _write(self, client: Client) -> None:
        """Send whatever the outbox holds until it closes; the only writer of this socket."""
        try:
            while (data := client.outbox.take()) is not None:
                client.sock.sendall(data)
        except OSError:
            client.kick()  # the peer is gone: let the reader run the departure
        if client.outbox.overflowed:
            client.kick()

    # -- the lock and the outboxes -------------------------------------------------------

    @contextlib.contextmanager
    def room(self) -> Iterator[None]:
        """Hold the lock to change the room and queue lines; kick the too slow once it is released."""
        with self._lock:
            yield
            overflowed, self._overflowed = self._overflowed, []
        for client in overflowed:
            client.kick()

    def put(self, client: Client, line: str) -> None:
        """Queue ``line`` for ``client``. Caller must be inside ``with self.room()``."""
        if not client.outbox.put(line):
            self._overflowed.append(client)

    def online(self) -> list[str]:
        """Everyone online, sorted. Caller must be inside ``with self.room()``."""
        return sort_names([user.name for user in self.users.values() if user.name is not None])

    # -- the reader thread: one connection's life ----------------------------------------

    def _serve(self, client: Client) -> None:
        reset = False
        try:
            if self.handshake(client):
                self.chat(client)
        except ConnectionResetError:
            reset = True
        except OSError:
            pass  # the socket was shut down under us: the client is leaving either way
        except Exception:
            log.exception("%s: reader crashed", client.peer)
        finally:
            self.finish(client, reset=reset)

    def read_frames(self, client: Client) -> list[Frame] | None:
        """The frames completed by one recv(); None at the end of the stream."""
        data = client.sock.recv(RECV_SIZE)
        if not data:
            return None
        return self.frames(client, data)

    def frames(self, client: Client, data: bytes) -> list[Frame]:
        """Framing: bytes in, complete lines out; the client's LineBuffer keeps the rest."""
        return client.buffer.feed(data)

    def clean(self, text: str) -> str:
        """Sanitizing: what is left of a line once control characters are removed."""
        return sanitize(text)

    def handshake(self, client: Client) -> bool:
        """Welcome, wait for a name (with a timeout), admit or refuse it; True once joined."""
        with self.room():
            self.put(client, protocol.WELCOME)
        client.sock.settimeout(self.name_timeout)
        frames: list[Frame] = []
        while not frames:
            try:
                got = self.read_frames(client)
            except TimeoutError:
                with self.room():
                    self.put(client, protocol.NAME_TIMED_OUT)
                return False
            if got is None:
                return False
            frames = got
        client.sock.settimeout(None)
        first, client.pending = frames[0], frames[1:]
        name = normalize_name(first.text) if isinstance(first, Line) else ""
        if not is_valid_name(name):
            with self.room():
                self.put(client, protocol.INVALID_NAME)
            return False
        return self.admit(client, name)

    def admit(self, client: Client, name: str) -> bool:
        """Take the name if nobody holds it (under casefold): check and take in one locked step."""
        with self.room():
            if name_key(name) in self.users:
                self.put(client, protocol.name_taken(name))
                return False
            self.put(client, protocol.greeting(name, self.online()))
            self.users[name_key(name)] = client
            client.name = name
            self.broadcast(client, protocol.joined(name))
        return True

    def chat(self, client: Client) -> None:
        """Handle the joined client's lines until /quit or the end of the stream."""
        frames: list[Frame] | None = client.pending
        while frames is not None:
            for frame in frames:
                if not self.handle(client, frame):
                    return
            frames = self.read_frames(client)

    def handle(self, client: Client, frame: Frame) -> bool:
        """One line from a joined client; False once it quit."""
        if isinstance(frame, LineTooLong):
            return self.reply(client, protocol.line_too_long(frame.limit))
        if isinstance(frame, InvalidUtf8):
            return self.reply(client, protocol.INVALID_UTF8)
        text = self.clean(frame.text)
        if not text:
            return True
        with self.room():
            return self.route(client, parse_command(text))

    def reply(self, client: Client, line: str) -> bool:
        with self.room():
            self.put(client, line)
        return True

    def route(self, client: Client, command: object) -> bool:
        """Who receives what. Caller must be inside ``with self.room()``; False after /quit."""
        assert client.name is not None
        match command:
            case Say(text):
                self.broadcast(client, protocol.public_message(client.name, text))
            case Whisper(target, text):
                self.whisper(client, target, text)
            case BadWhisper():
                self.put(client, protocol.USAGE_PRIVATE)
            case ListUsers():
                self.put(client, protocol.online(self.online()))
            case Help():
                self.put(client, protocol.HELP)
            case Quit():
                self.put(client, protocol.bye(client.name))
                return False
            case UnknownCommand(word):
                self.put(client, protocol.unknown_command(word))
        return True

    def broadcast(self, sender: Client, line: str) -> None:
        """Queue ``line`` for every user but ``sender``. Caller must be inside ``with self.room()``."""
        for user in self.users.values():
            if user is not sender:
                self.put(user, line)

    def whisper(self, sender: Client, target: str, text: str) -> None:
        """A private line for ``target`` alone. Caller must be inside ``with self.room()``."""
        assert sender.name is not None
        recipient = self.users.get(name_key(normalize_name(target)))
        if recipient is None:
            self.put(sender, protocol.no_such_user(target))
        else:
            self.put(recipient, protocol.private_message(sender.name, text))

    def depart(self, client: Client) -> None:
        """Free the name, then tell everyone else. Caller must be inside ``with self.room()``."""
        assert client.name is not None
        if self.users.get(name_key(client.name)) is client:
            del self.users[name_key(client.name)]
            self.broadcast(client, protocol.left(client.name))

    def on_reset(self, client: Client) -> None:
        """A connection reset is a departure like any other. Caller must be inside ``with self.room()``."""
        self.depart(client)

    def finish(self, client: Client, *, reset: bool) -> None:
        """The one way out: announce the leave, let the writer send its last lines, close."""
        with self.room():
            self.clients.discard(client)
            if client.name is not None and not self._stopping.is_set():
                if reset:
                    self.on_reset(client)
                else:
                    self.depart(client)
        client.outbox.close()
        assert client.writer is not None
        client.writer.join(FAREWELL_TIMEOUT)
        with contextlib.suppress(OSError):
            client.sock.shutdown(socket.SHUT_RDWR)  # unblocks a writer stuck on a client that never reads
        client.writer.join(JOIN_TIMEOUT)
        client.sock.close()
