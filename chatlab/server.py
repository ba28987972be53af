"""The reference chat server: the seed's thread-per-client design, made correct.

Read this after ``chatlab/naive.py``: same idea, one thread reading each client,
but every bug of the original assignment is fixed, each in one visible place.

Architecture
============

For every connection there are two threads and one outbox::

    client socket --recv--> reader thread --route()--> outboxes of the recipients
                                                          |
    client socket <--sendall-- writer thread <------------+  (its own outbox)

* The **reader thread** (``reader-alice``) owns the handshake and every line the
  client sends. It frames the byte stream with :class:`~chatlab.protocol.LineBuffer`,
  asks the pure protocol module what a line means and who receives what, and puts
  those lines in the recipients' outboxes. It never writes to a socket.
* The **outbox** (:class:`Outbox`) is a queue of bytes bounded in size. Putting a line
  in it never blocks, so a sender can never be held up by a slow recipient.
* The **writer thread** (``writer-alice``) is the only one that writes to the client's
  socket. It takes everything queued at once and sends it with one ``sendall()``, so a
  burst of lines costs one system call. If the client stops reading, only this thread
  waits; when the outbox overflows, the client is disconnected as too slow.

One lock, ``ChatServer._lock``, guards the registry: the roster of named users and
the set of open connections. Deciding who receives a line and queueing it happen
under that lock, so every user sees events in one consistent order (nobody reads
"bob: hi" before "* bob joined"). No socket I/O ever happens under it: queueing is
a memory operation, and the writers send later, outside it.

Every departure, however it happens (``/quit``, EOF, a reset, too slow, a name
timeout), ends in the same place: the reader thread's ``_finish``, which frees the
name, announces the leave once, lets the writer flush, and closes the socket. Other
threads that want a client gone only wake its reader (``Connection.kick``).
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chatlab import protocol
from chatlab.protocol import (
    Frame,
    InvalidUtf8,
    Line,
    LineBuffer,
    LineTooLong,
    Roster,
    TokenBucket,
    admit,
    depart,
    encode_line,
    parse_command,
    route,
    sanitize,
)

log = logging.getLogger("chatlab.server")

THREAD_STACK_SIZE = 256 * 1024  # bytes; Python code needs little C stack, and 2,000 threads fit easily
FAREWELL_TIMEOUT = 2.0  # seconds a leaving client's writer gets to send its last lines
JOIN_TIMEOUT = 5.0  # seconds to wait for a thread that should end at once
RECV_SIZE = 65536  # bytes asked of recv() at a time; framing makes the size irrelevant to correctness


class Outbox:
    """The bytes waiting to be written to one client, bounded in size.

    A producer (any reader thread, holding the registry lock) calls :meth:`put`; the
    client's writer thread calls :meth:`take`, which waits until there is something
    to send. Think of a mailbox with a fixed size: a letter that does not fit means
    the owner has not emptied it for too long, and the post office gives up on them.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # _lock guards _chunks, _size, _closed and overflowed; _changed is signalled
        # (under _lock) whenever a chunk is added or the outbox is closed.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._chunks: list[bytes] = []
        self._size = 0
        self._closed = False
        self.overflowed = False  #: True once a put() did not fit: the client is too slow

    def put(self, data: bytes) -> bool:
        """Queue ``data``; False if it does not fit (now or earlier): the client is too slow.

        On overflow the queued lines are dropped, the too-slow notice becomes the last
        line, and the outbox closes. Data put in an outbox closed for another reason
        (the client is leaving) is silently dropped.
        """
        with self._lock:
            if self.overflowed:
                return False
            if self._closed:
                return True
            if self._size + len(data) > self.limit:
                self.overflowed = True
                self._chunks = [encode_line(protocol.TOO_SLOW)]
                self._closed = True
                self._changed.notify()
                return False
            self._chunks.append(data)
            self._size += len(data)
            self._changed.notify()
            return True

    def close(self, last_line: str | None = None) -> None:
        """Accept nothing more, after an optional last line; the writer ends once it is sent."""
        with self._lock:
            if self._closed:
                return
            if last_line is not None:
                self._chunks.append(encode_line(last_line))
            self._closed = True
            self._changed.notify()

    def take(self) -> bytes | None:
        """Wait for queued bytes and take them all; None once closed and empty."""
        with self._lock:
            while not self._chunks and not self._closed:
                self._changed.wait()
            if not self._chunks:
                return None
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            return data


@dataclass(eq=False)
class Connection:
    """One client connection: its socket, its outbox, its two threads, and who it is."""

    sock: socket.socket
    peer: str  #: "host:port" of the client, for logs
    outbox: Outbox
    name: str | None = None  #: set once the name is accepted; only the reader thread writes it
    bucket: TokenBucket | None = None  #: the flood limit, if the server has one
    #: why the connection ended, for the log only; written by the reader thread, or by
    #: kick() from another thread (no lock: a stale reason costs nothing but a log word)
    leave_reason: str = "closed"
    reader: threading.Thread | None = None
    writer: threading.Thread | None = None

    def deliver(self, line: str) -> bool:
        """Queue one line for this client; False if the client turned out too slow."""
        return self.outbox.put(encode_line(line))

    def kick(self, reason: str) -> None:
        """Make the reader thread end this connection, from any thread.

        Shutting down the read side wakes a reader blocked in ``recv()``, which then
        returns ``b""`` as if the client had closed; the reader's normal cleanup does
        the rest. Never call this while holding the registry lock.
        """
        self.leave_reason = reason
        self.shutdown(socket.SHUT_RD)

    def shutdown(self, how: int = socket.SHUT_RDWR) -> None:
        """Shut down the socket, ignoring a peer that is already gone."""
        try:
            self.sock.shutdown(how)
        except OSError:
            pass  # not connected any more: nothing left to shut down


class ChatServer:
    """The reference server: ``with ChatServer(port=0) as server: host, port = server.address``.

    ``start()`` binds, listens and starts the accept thread; ``stop()`` tells every
    connection ``* server shutting down``, flushes outboxes for at most
    ``shutdown_flush`` seconds in all, closes every socket and joins every thread.
    """

    def __init__(
        self,
        host: str = protocol.DEFAULT_HOST,
        port: int = protocol.DEFAULT_PORT,
        *,
        max_clients: int = protocol.MAX_CLIENTS,
        max_line: int = protocol.MAX_LINE,
        outbox_limit: int = protocol.OUTBOX_LIMIT,
        rate: float | None = None,
        burst: int | None = None,
        name_timeout: float = protocol.NAME_TIMEOUT,
        shutdown_flush: float = protocol.SHUTDOWN_FLUSH,
        send_buffer: int | None = None,
        verbose: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (rate is None) != (burst is None):
            raise ValueError("the flood limit needs both rate and burst")
        self.host = host
        self.port = port
        self.max_clients = max_clients
        self.max_line = max_line
        self.outbox_limit = outbox_limit
        self.rate = rate
        self.burst = burst
        self.name_timeout = name_timeout
        self.shutdown_flush = shutdown_flush
        # The kernel's send buffer per client (SO_SNDBUF), None for the system's
        # default. It comes on top of the outbox; labs make it small so that a
        # client that stops reading is cut off after kilobytes, not megabytes.
        self.send_buffer = send_buffer
        self.verbose = verbose  # log message texts too
        self.clock = clock

        # _lock guards _roster (the named users) and _connections (every open
        # connection, named or not). Hold it to decide and queue deliveries; never
        # do socket I/O while holding it.
        self._lock = threading.Lock()
        self._roster: Roster[Connection] = Roster()
        self._connections: set[Connection] = set()

        self._stopping = threading.Event()  # set once by stop(); readers then skip leave notices
        self._listener: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._wakeup_receive, self._wakeup_send = socket.socketpair()  # wakes the accept loop on stop
        self._accept_thread: threading.Thread | None = None
        # Readers and writers still running, to join on stop. Only the accept thread
        # changes this list, and stop() reads it after joining that thread: no lock.
        self._threads: list[threading.Thread] = []

    # -- starting and stopping -------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound; with ``port=0`` the kernel picked the port."""
        if self._address is None:
            raise RuntimeError("the server is not started")
        return self._address

    def start(self) -> ChatServer:
        """Bind, listen and start accepting; returns self. Raises OSError if the port is taken."""
        threading.stack_size(THREAD_STACK_SIZE)  # process-wide: applies to threads started from now on
        listener = socket.create_server((self.host, self.port), backlog=128, reuse_port=False)
        listener.setblocking(False)  # the accept loop waits in select(), not in accept()
        self._listener = listener
        self._address = listener.getsockname()[:2]
        self._accept_thread = threading.Thread(target=self._accept_loop, name="accept")
        self._accept_thread.start()
        log.info("listening on %s:%d", *self.address)
        return self

    def serve_forever(self) -> None:
        """Block until :meth:`stop` is called from another thread (or Ctrl-C), then stop."""
        try:
            self._stopping.wait()  # Ctrl-C interrupts this wait with KeyboardInterrupt
        finally:
            self.stop()

    def stop(self) -> None:
        """Say goodbye to everyone, flush for at most ``shutdown_flush`` s, close, join."""
        if self._stopping.is_set() and self._accept_thread is None:
            return
        self._stopping.set()
        self._wakeup_send.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(JOIN_TIMEOUT)
            self._accept_thread = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.outbox.close(protocol.SHUTTING_DOWN)
        deadline = self.clock() + self.shutdown_flush
        for connection in connections:
            if connection.writer is not None:
                connection.writer.join(max(0.0, deadline - self.clock()))
        for connection in connections:
            connection.shutdown()  # wakes readers in recv() and writers stuck in sendall()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                log.error("thread %s did not stop", thread.name)
        if self._listener is not None:
            self._listener.close()
        self._wakeup_receive.close()
        self._wakeup_send.close()
        log.info("stopped")

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- accepting ---------------------------------------------------------------

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
        except (BlockingIOError, ConnectionAbortedError):
            return  # the client gave up before we got to it
        except OSError as error:  # out of file descriptors, typically
            log.error("accept failed: %s", error)
            self._stopping.wait(0.1)  # back off instead of spinning on a persistent error
            return
        sock.setblocking(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small lines go out at once
        if self.send_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        peer = f"{address[0]}:{address[1]}"
        connection = Connection(sock, peer, Outbox(self.outbox_limit))
        if self.rate is not None and self.burst is not None:
            connection.bucket = TokenBucket(self.rate, self.burst, self.clock)
        with self._lock:
            full = len(self._connections) >= self.max_clients
            if not full:
                self._connections.add(connection)
        if full:
            log.info("%s refused: server full", peer)
            self._refuse_full(sock)
            return
        log.info("%s connected", peer)
        connection.reader = threading.Thread(target=self._serve, args=(connection,), name=f"reader-{address[1]}")
        connection.writer = threading.Thread(target=self._write, args=(connection,), name=f"writer-{address[1]}")
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        self._threads += [connection.reader, connection.writer]
        connection.writer.start()
        connection.reader.start()

    def _refuse_full(self, sock: socket.socket) -> None:
        """Tell a connection over the limit why it is closed, without a thread for it."""
        try:
            sock.settimeout(1.0)  # a fresh socket's buffer is empty: this cannot really block
            sock.sendall(encode_line(protocol.SERVER_FULL))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # it left already
        finally:
            sock.close()

    # -- the writer thread ---------------------------------------------------------

    def _write(self, connection: Connection) -> None:
        """Send whatever the outbox holds, until it is closed and empty."""
        try:
            while (data := connection.outbox.take()) is not None:
                connection.sock.sendall(data)
        except OSError as error:
            # The peer is gone (reset, broken pipe) or stop() shut the socket. Make sure
            # the reader notices too, so the departure is handled in one place.
            log.debug("%s: write failed: %s", connection.peer, error)
            connection.shutdown()
        except Exception:
            log.exception("%s: writer crashed", connection.peer)
            connection.shutdown()

    # -- the reader thread ---------------------------------------------------------

    def _serve(self, connection: Connection) -> None:
        """Handshake, then chat, then clean up: the life of one connection."""
        try:
            buffer = LineBuffer(self.max_line)
            frames = self._handshake(connection, buffer)
            if frames is not None:
                self._chat(connection, buffer, frames)
        except (ConnectionResetError, BrokenPipeError):
            connection.leave_reason = "reset"
        except OSError as error:
            connection.leave_reason = f"socket error: {error}"
        except Exception:
            log.exception("%s: reader crashed", connection.peer)
            connection.leave_reason = "server error"
        finally:
            self._finish(connection)

    def _handshake(self, connection: Connection, buffer: LineBuffer) -> list[Frame] | None:
        """Ask for a name and wait for it; return the frames that came after it, or None.

        Anything the client sent right behind its name (even in the same packet) is
        returned, so the first message is never glued to the name.
        """
        connection.deliver(protocol.WELCOME)
        deadline = self.clock() + self.name_timeout
        frames: list[Frame] = []
        while not frames:
            remaining = deadline - self.clock()
            if remaining <= 0:
                connection.deliver(protocol.NAME_TIMED_OUT)
                connection.leave_reason = "no name in time"
                return None
            connection.sock.settimeout(remaining)
            try:
                data = connection.sock.recv(RECV_SIZE)
            except TimeoutError:
                continue  # the loop condition sends the timeout notice
            if not data:
                connection.leave_reason = "left before naming itself"
                return None
            frames = buffer.feed(data)
        connection.sock.settimeout(None)

        with self._lock:
            outcome = admit(self._roster, frames[0], connection)
            too_slow = self._deliver(outcome.deliveries)
        self._kick_too_slow(too_slow)
        if outcome.name is None:
            connection.leave_reason = "name refused"
            return None
        connection.name = outcome.name
        threading.current_thread().name = f"reader-{outcome.name}"
        if connection.writer is not None:
            connection.writer.name = f"writer-{outcome.name}"
        log.info("%s joined as %s", connection.peer, outcome.name)
        return frames[1:]

    def _chat(self, connection: Connection, buffer: LineBuffer, frames: list[Frame]) -> None:
        """Handle the joined client's lines until it quits or the stream ends."""
        while True:
            for frame in frames:
                if not self._handle(connection, frame):
                    connection.leave_reason = "quit"
                    return
            data = connection.sock.recv(RECV_SIZE)
            if not data:
                return  # EOF: the client closed, or kick() shut our read side
            frames = buffer.feed(data)

    def _handle(self, connection: Connection, frame: Frame) -> bool:
        """Act on one frame from a joined client; False once it has quit."""
        assert connection.name is not None
        if connection.bucket is not None and not connection.bucket.allow():
            connection.deliver(protocol.SLOW_DOWN)
            return True
        if isinstance(frame, LineTooLong):
            connection.deliver(protocol.line_too_long(frame.limit))
            return True
        if isinstance(frame, InvalidUtf8):
            connection.deliver(protocol.INVALID_UTF8)
            return True
        assert isinstance(frame, Line)
        text = sanitize(frame.text)
        if not text:
            return True
        if self.verbose:
            log.info("%s: %s", connection.name, text)
        command = parse_command(text)
        with self._lock:
            outcome = route(self._roster, connection.name, command)
            too_slow = self._deliver(outcome.deliveries)
        self._kick_too_slow(too_slow)
        return not outcome.close

    def _finish(self, connection: Connection) -> None:
        """The one place every connection ends: leave notice, flush, close."""
        with self._lock:
            self._connections.discard(connection)
            if connection.name is not None and not self._stopping.is_set():
                outcome = depart(self._roster, connection.name)
                too_slow = self._deliver(outcome.deliveries)
            else:
                too_slow = []
        self._kick_too_slow(too_slow)
        if connection.name is not None:
            log.info("%s (%s) left: %s", connection.name, connection.peer, connection.leave_reason)
        else:
            log.info("%s closed: %s", connection.peer, connection.leave_reason)
        connection.outbox.close()  # after the lines already queued (bye, refusal, too slow...)
        if connection.writer is not None:
            connection.writer.join(FAREWELL_TIMEOUT)  # let those last lines go out
        connection.shutdown()  # unblocks a writer still stuck on a client that does not read
        if connection.writer is not None:
            connection.writer.join(JOIN_TIMEOUT)
        connection.sock.close()

    # -- delivery: the one place that queues lines for clients ---------------------

    def _deliver(self, deliveries: list[tuple[Connection, str]]) -> list[Connection]:
        """Queue each line in its recipient's outbox; return the recipients found too slow.

        Caller must hold ``self._lock``. Queueing never blocks, so holding the lock
        here is cheap; the too-slow recipients are kicked by the caller after
        releasing it.
        """
        too_slow = []
        for recipient, line in deliveries:
            if not recipient.deliver(line):
                too_slow.append(recipient)
        return too_slow

    def _kick_too_slow(self, connections: list[Connection]) -> None:
        """Disconnect recipients whose outbox overflowed. Call without the lock."""
        for connection in connections:
            if connection.leave_reason != "too slow":
                log.info("%s is too slow, disconnecting", connection.name or connection.peer)
            connection.kick("too slow")
