"""A programmatic chat client for tests, notebooks, bots and exercises.

:class:`ChatClient` is one user: a socket, a receiver thread that splits the server's
byte stream into lines, and a queue of what arrived. The thread that owns the client
sends with :meth:`ChatClient.say` and friends, and waits for what it expects with a
timeout::

    with ChatClient.connect("127.0.0.1", port, "alice") as alice:
        alice.say("hello")
        line = alice.next_line(timeout=5)      # a parsed ServerLine
        alice.expect(lambda line: isinstance(line, Message), timeout=5)

Every wait takes a timeout and raises :class:`TimeoutError` when it passes, so a
broken server makes a test fail with a message instead of hanging it.
"""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chatlab.protocol import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ENCODING,
    ErrorLine,
    Line,
    LineBuffer,
    ServerLine,
    encode_line,
    parse_server_line,
)

DEFAULT_TIMEOUT = 5.0


class ConnectionClosed(Exception):
    """The server closed the connection while we were waiting for a line."""


class NameRefused(Exception):
    """The server answered our name with an error line (taken, invalid, full...)."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line  #: the server's refusal, e.g. ``! name taken: alice``


@dataclass(frozen=True)
class Received:
    """One line as it arrived, with the moment it arrived."""

    text: str  #: the raw line, without its LF
    at: float  #: ``time.monotonic()`` when the receiver thread split it off


_CLOSED = object()  # put on the queue when the server's stream ends


class ChatClient:
    """One scripted chat user. Use :meth:`connect` to create one.

    The receiver thread only reads and queues; it never sends, so a test can never
    deadlock on a client that is busy writing. Lines the server sends after the
    connection closes are impossible, so the queue ends with a "closed" mark.
    """

    def __init__(self, sock: socket.socket, label: str = "client") -> None:
        self.sock = sock
        self.name: str | None = None  #: our name once the server accepted it
        self.greeting: str | None = None  #: the line that answered our name
        self.transcript: list[Received] = []  #: every line received, in order
        self._lines: queue.Queue[object] = queue.Queue()  # Received items, then _CLOSED
        self._closed_seen = False  # the owner's thread has taken _CLOSED off the queue
        self._receiver = threading.Thread(target=self._receive, name=f"receiver-{label}")
        self._receiver.start()

    # -- creating ------------------------------------------------------------

    @classmethod
    def open(
        cls, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, timeout: float = DEFAULT_TIMEOUT, label: str = "client"
    ) -> ChatClient:
        """Connect without sending a name (to test the handshake by hand)."""
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.settimeout(None)  # the receiver blocks; waits are bounded on the queue instead
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, label)

    @classmethod
    def connect(
        cls, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, name: str = "bot", *, timeout: float = DEFAULT_TIMEOUT
    ) -> ChatClient:
        """Connect, answer the welcome with ``name``, and wait to be accepted.

        Raises :class:`NameRefused` (and closes) if the server answers with an error.
        """
        client = cls.open(host, port, timeout=timeout, label=name)
        try:
            client.next_line(timeout)  # the welcome
            client.send_line(name)
            answer = client.next_line(timeout)
        except BaseException:
            client.close()
            raise
        if isinstance(answer, ErrorLine):
            client.close()
            raise NameRefused("! " + answer.text)
        client.name = name
        client.greeting = "* " + getattr(answer, "text", "")
        return client

    # -- sending -------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        """Write raw bytes, exactly as given (for framing and bad-input tests)."""
        self.sock.sendall(data)

    def send_line(self, text: str) -> None:
        """Write one line of text with its LF."""
        self.sock.sendall(encode_line(text))

    def say(self, text: str) -> None:
        """Broadcast ``text`` to everyone else."""
        self.send_line(text)

    def whisper(self, target: str, text: str) -> None:
        """Send ``text`` privately to ``target``."""
        self.send_line(f"@{target} {text}")

    def command(self, command: str) -> None:
        """Send a command such as ``/users`` (the slash is added if missing)."""
        self.send_line(command if command.startswith("/") else "/" + command)

    # -- receiving -----------------------------------------------------------

    def next_received(self, timeout: float = DEFAULT_TIMEOUT) -> Received:
        """The next raw line with its arrival time; raises on timeout or close."""
        if self._closed_seen:
            raise ConnectionClosed("the server closed the connection")
        try:
            item = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no line from the server within {timeout} s") from None
        if item is _CLOSED:
            self._closed_seen = True
            raise ConnectionClosed("the server closed the connection")
        assert isinstance(item, Received)
        return item

    def next_line(self, timeout: float = DEFAULT_TIMEOUT) -> ServerLine:
        """The next line from the server, parsed."""
        return parse_server_line(self.next_received(timeout).text)

    def expect(self, wanted: Callable[[ServerLine], bool] | str, timeout: float = DEFAULT_TIMEOUT) -> ServerLine:
        """Skip lines until one matches; ``wanted`` is a predicate or an exact raw line.

        The timeout covers the whole wait, not each line.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                received = self.next_received(remaining)
            except TimeoutError:
                raise TimeoutError(f"no line matching {wanted!r} within {timeout} s") from None
            line = parse_server_line(received.text)
            if (received.text == wanted) if isinstance(wanted, str) else wanted(line):
                return line

    def drain(self, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """Every raw line until the server closes the connection."""
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                lines.append(self.next_received(max(0.0, deadline - time.monotonic())).text)
            except ConnectionClosed:
                return lines

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """Wait for the server to close the connection; return the lines before that."""
        return self.drain(timeout)

    @property
    def is_closed(self) -> bool:
        """True once the receiver thread has seen the end of the stream."""
        return not self._receiver.is_alive()

    # -- leaving -------------------------------------------------------------

    def quit(self, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """Send /quit and wait for the server to close; return the lines received meanwhile."""
        self.command("/quit")
        lines = self.wait_closed(timeout)
        self.close()
        return lines

    def reset(self) -> None:
        """Leave abruptly: close with SO_LINGER 0, so the server sees a connection reset."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            self.sock.shutdown(socket.SHUT_RD)  # wakes the receiver without sending a FIN
        except OSError:
            pass  # already closed by the peer
        self._receiver.join(DEFAULT_TIMEOUT)
        self.sock.close()  # linger 0: the kernel sends RST instead of FIN

    def close(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Close the connection and join the receiver thread."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the receiver's recv()
        except OSError:
            pass  # already closed by the peer: nothing to shut down
        self._receiver.join(timeout)
        self.sock.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the receiver thread ---------------------------------------------------

    def _receive(self) -> None:
        buffer = LineBuffer(max_line=None)  # the server's lines have no length limit
        try:
            while data := self.sock.recv(65536):
                now = time.monotonic()
                for frame in buffer.feed(data):
                    text = frame.text if isinstance(frame, Line) else frame.data.decode(ENCODING, "replace")
                    received = Received(text, now)
                    self.transcript.append(received)
                    self._lines.put(received)
        except OSError:
            pass  # a reset or our own close(): either way the stream has ended
        finally:
            self._lines.put(_CLOSED)
