"""Scripted raw clients for the autograder's direct checks: one line at a time, every wait bounded.

A check talks to the server under test through :class:`Peer` objects that it gets
from a :class:`Probe`. Everything that can wait has a timeout, and a wait that
runs out raises :class:`CheckFailed` with a sentence that says what was expected
and what came instead, so a student reads *why* a check failed::

    probe = Probe(("127.0.0.1", 1234))
    alice = probe.join("alice")                 # welcome, name, greeting
    bob = probe.join("bob")
    alice.expect("* bob joined")
    alice.send("hello")
    bob.expect("alice: hello")
    probe.close()                               # close every connection of the check

Proving that something did *not* happen needs no timing: PROTOCOL.md promises
that each sender's lines reach each receiver in sending order. So after the line
that must not be echoed, the sender asks ``/users``; the very next line it reads
must be the answer, or an echo came first (:meth:`Peer.fence`).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections import deque

from chatlab import protocol
from chatlab.protocol import Line, LineBuffer

WAIT = 4.0  # seconds to wait for one expected line before the check fails
CLOSE_WAIT = 2.0  # seconds for the server to close a connection that quit


class CheckFailed(Exception):
    """A check found the server breaking PROTOCOL.md; the message says how, in plain words."""


class Peer:
    """One raw connection to the server under test, read line by line."""

    def __init__(self, probe: Probe, label: str, receive_buffer: int | None = None) -> None:
        self.probe = probe
        self.label = label  #: how messages name this connection ("alice", or "connection 3")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(WAIT)
        try:
            self.sock.connect(probe.address)
        except OSError as error:
            self.sock.close()
            raise CheckFailed(f"could not connect to {probe.address[0]}:{probe.address[1]}: {error}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = LineBuffer(max_line=None)
        self._lines: deque[str] = deque()
        self.closed = False  #: the server ended the stream
        self.joined = False
        self._named = False  # the first line sent is the name; the probe claims it
        self.received: list[str] = []  #: every line read so far, for transcripts

    # -- sending -------------------------------------------------------------------------

    def send(self, text: str) -> None:
        """Send one line (its LF is added)."""
        self.send_bytes(protocol.encode_line(text))

    def send_bytes(self, data: bytes) -> None:
        if not self._named:
            self._named = True
            self.probe.claim(data.split(b"\n", 1)[0].decode("utf-8", "replace"))
        try:
            self.sock.sendall(data)
        except OSError as error:
            raise CheckFailed(f"{self.label}: the server stopped taking data ({error})") from None

    def send_in_pieces(self, data: bytes, cuts: list[int], pause: float = 0.03) -> None:
        """Send ``data`` cut at the given byte offsets, pausing so that the server reads each piece apart."""
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            self.send_bytes(data[start:end])
            time.sleep(pause)  # not a synchronization: it makes the pieces arrive as separate reads

    # -- reading ---------------------------------------------------------------------------

    def line(self, wanted: str = "a line", timeout: float = WAIT) -> str:
        """The next line from the server; fails if none comes within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._lines:
            if self.closed:
                raise CheckFailed(f"{self.label} expected {wanted}, but the server closed the connection")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CheckFailed(f"{self.label} expected {wanted}, but nothing arrived within {timeout:g} s")
            self._read(remaining)
        line = self._lines.popleft()
        self.received.append(line)
        return line

    def _read(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        for frame in self._buffer.feed(data):
            text = frame.text if isinstance(frame, Line) else frame.data.decode("utf-8", "replace")
            if not self.probe.about_someone_else(text):
                self._lines.append(text)

    def expect(self, wanted: str, timeout: float = WAIT) -> None:
        """The next line must be exactly ``wanted``."""
        got = self.line(repr(wanted), timeout)
        if got != wanted:
            raise CheckFailed(f"{self.label} expected {wanted!r}, got {got!r}")

    def expect_start(self, prefix: str, timeout: float = WAIT) -> str:
        """The next line must start with ``prefix``; returns it."""
        got = self.line(f"a line starting with {prefix!r}", timeout)
        if not got.startswith(prefix):
            raise CheckFailed(f"{self.label} expected a line starting with {prefix!r}, got {got!r}")
        return got

    def expect_closed(self, timeout: float = CLOSE_WAIT) -> None:
        """The server must close the connection (after no further line)."""
        deadline = time.monotonic() + timeout
        while not self.closed and not self._lines:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CheckFailed(f"{self.label}: the server should have closed the connection, but it stayed open")
            self._read(remaining)
        if self._lines:
            raise CheckFailed(f"{self.label}: expected the connection to close, got {self._lines[0]!r}")

    def fence(self, what: str) -> None:
        """Ask /users and require the answer as the very next line: proves nothing else came before.

        ``what`` names what must not have arrived, for the failure message.
        """
        self.send("/users")
        got = self.line("the answer to /users")
        if not got.startswith("* Online ("):
            raise CheckFailed(f"{self.label} received {got!r}, but {what}")

    def leave(self, how: str) -> None:
        """End the connection: ``quit`` (and wait for the close), ``close``, ``reset`` or ``half-close``."""
        if how == "quit":
            self.send("/quit")
            return
        if how == "half-close":
            self.sock.shutdown(socket.SHUT_WR)
            return
        if how == "reset":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def abort(self) -> None:
        """From another thread: shut the socket down, waking a send or a read stuck on it."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def quit(self, timeout: float = CLOSE_WAIT) -> None:
        """Send /quit and read (ignoring what comes) until the server closes, for at most ``timeout``."""
        with contextlib.suppress(CheckFailed):
            self.send("/quit")
        self.drain_until_closed(time.monotonic() + timeout)
        self.joined = False

    def drain_until_closed(self, deadline: float) -> None:
        """Read and drop lines until the stream ends or ``deadline`` (a monotonic time) passes."""
        while not self.closed and time.monotonic() < deadline:
            self._lines.clear()
            self._read(deadline - time.monotonic())

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()


class Probe:
    """The connections of one check: it opens them and closes every one at the end."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        # _lock guards _peers and _names: the check's threads add to them, and the
        # grader's thread may abort() the peers when the check hangs.
        self._lock = threading.Lock()
        self._peers: list[Peer] = []
        self._names: set[str] = set()  # casefolded names this check asked for (also under _lock)
        self._count = 0

    def claim(self, name: str) -> None:
        """Note a name this check asked for: notices about other names are not its business."""
        with self._lock:
            self._names.add(protocol.name_key(protocol.normalize_name(name)))

    def about_someone_else(self, line: str) -> bool:
        """True for ``* X joined`` or ``* X left`` about a name this check never asked for.

        Checks share a server with the checks and swarms before them, whose users
        leave when those end; their leave notices may still be on the way. Each check
        uses names of its own, so it can tell those notices apart and skip them.
        """
        parsed = protocol.parse_server_line(line)
        if not isinstance(parsed, protocol.Notice):
            return False
        subject = parsed.joined or parsed.left
        if subject is None:
            return False
        with self._lock:
            return protocol.name_key(subject) not in self._names

    def connect(self, label: str | None = None, receive_buffer: int | None = None) -> Peer:
        """A new connection whose welcome line has been read and checked."""
        with self._lock:
            self._count += 1
            label = label or f"connection {self._count}"
        peer = Peer(self, label, receive_buffer)
        with self._lock:
            self._peers.append(peer)
        peer.expect(protocol.WELCOME)
        return peer

    def join(self, name: str, receive_buffer: int | None = None) -> Peer:
        """A connection that has joined as ``name``; fails unless the server says ``* Hi name!``."""
        peer = self.connect(name, receive_buffer)
        peer.send(name)
        peer.expect_start(f"* Hi {name}! ")
        peer.joined = True
        return peer

    def close(self) -> None:
        """End every connection of the check (each check uses names of its own, so no need to wait)."""
        with self._lock:
            peers = list(self._peers)
        for peer in peers:
            peer.close()

    def abort(self) -> None:
        """From another thread: shut every socket down, so that a hung check wakes up and ends."""
        with self._lock:
            peers = list(self._peers)
        for peer in peers:
            peer.abort()
