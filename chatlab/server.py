"""The reference chat server: the seed's thread-per-client design, made correct and fast.

Read this after ``chatlab/naive.py``: same idea, one thread reading each client,
but every bug of the original assignment is fixed, each in one visible place.

Architecture
============

Every connection has a reader thread and an outbox; one sender thread writes to all::

    client socket --recv--> reader thread --route()--> outboxes of the recipients
                                                              |
    sender thread: send(MSG_DONTWAIT) of each touched outbox  <+
                   select() for the few sockets that were full

* The **reader thread** (``reader-alice``) owns the handshake and every line the
  client sends. It frames the byte stream with :class:`~chatlab.protocol.LineBuffer`,
  asks the pure protocol module what each line means and who receives what, and
  appends those lines to the recipients' outboxes. It never writes to a socket:
  it tells the sender thread which outboxes it touched and goes back to ``recv()``.
* The **outbox** (:class:`Outbox`) holds the bytes not yet accepted by a client's
  socket, bounded in size. When it overflows, the client is disconnected as too slow.
* The **sender thread** (``sender``, :class:`Sender`) is the only thread that writes
  to client sockets, so bytes never interleave and always leave in queued order. It
  writes each touched outbox with one ``send()`` that never blocks. A socket whose
  buffer is full keeps the rest in its outbox and is watched with ``select()`` until
  it takes more; nobody waits for it, so a slow reader delays no one.

Why one sender thread, and not a writer thread per client, or readers that send?
``chatlab bench`` measured all three. A writer per client is the simple design, and it
is correct, but every line costs one hand-off between threads *per recipient*: a
wake-up, a context switch, a fight for the GIL; with 200 clients chatting that is
200,000 hand-offs a second, and latency grows to tens of milliseconds. Readers that
send themselves avoid hand-offs but make a hundred threads fight over the GIL and
the same sockets at once. One sender costs one hand-off per line, whatever the
number of recipients, and it gets better as load grows: while it writes, lines pile
up in the outboxes, so one ``send()`` carries the lines of many senders at once.
That is how this threaded server keeps up with its asyncio twin (``aserver.py``).

One lock, ``ChatServer._lock``, guards the registry: the roster of named users and
the set of open connections. Deciding who receives a line and appending it to the
outboxes happen under that lock, so every user sees events in one consistent order
(nobody reads "bob: hi" before "* bob joined"). No socket I/O ever happens under it:
appending is a memory operation, and the sends happen after the lock is released.

Every departure, however it happens (``/quit``, EOF, a reset, too slow, a name
timeout), ends in the same place: the reader thread's ``_finish``, which frees the
name, announces the leave once, lets the outbox drain, and closes the socket. Other
threads that want a client gone only wake its reader (``Connection.kick``).
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from chatlab import protocol
from chatlab.protocol import (
    Command,
    Frame,
    InvalidUtf8,
    LineBuffer,
    LineTooLong,
    Roster,
    TokenBucket,
    admit,
    batch_deliveries,
    depart,
    encode_line,
    parse_command,
    route,
    sanitize,
)

log = logging.getLogger("chatlab.server")

THREAD_STACK_SIZE = 256 * 1024  # bytes; Python code needs little C stack, and 2,000 threads fit easily
FAREWELL_TIMEOUT = 2.0  # seconds a leaving client's outbox gets to drain its last lines
JOIN_TIMEOUT = 5.0  # seconds to wait for a thread that should end at once
RECV_SIZE = 65536  # bytes asked of recv() at a time; framing makes the size irrelevant to correctness


# -- the outbox and the sender thread ------------------------------------------------


class Outbox:
    """The bytes waiting to be written to one client, bounded in size.

    Reader threads append lines with :meth:`put` while holding the registry lock, so
    every outbox receives lines in the one order the registry decided. Only the
    sender thread takes bytes out (:meth:`take`) and writes them to the socket,
    then says how much the socket accepted (:meth:`sent`); the rest goes back to the
    front, so bytes always leave in the order they were queued.

    Think of a mailbox with a fixed size: a letter that does not fit means the owner
    has not emptied it for too long, and the post office gives up on them.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # _lock guards every attribute below. _settled is notified (under _lock)
        # whenever the outbox becomes empty, breaks, or the sender lets go of it.
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._chunks: list[bytes] = []  # queued, not yet taken by the sender
        self._head_started = False  # _chunks[0] is the rest of a line the socket has half taken
        self._size = 0  # bytes in _chunks
        self._in_flight = 0  # bytes the sender has taken and is writing right now
        self._closed = False  # put() accepts nothing more; what is queued still goes out
        self._retired = False  # the socket is about to close: take() hands out nothing more
        self.overflowed = False  #: True once a put() did not fit: the client is too slow
        self.broken = False  #: True once a send failed: the client is gone

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
            if self._size + self._in_flight + len(data) > self.limit:
                self.overflowed = True
                # The queued lines are dropped, except the rest of a line the socket
                # has half taken: the notice must not land in the middle of a line.
                unfinished = [_first_line(self._chunks[0])] if self._head_started else []
                self._chunks = unfinished + [encode_line(protocol.TOO_SLOW)]
                self._size = sum(map(len, self._chunks))
                self._closed = True
                return False
            self._chunks.append(data)
            self._size += len(data)
            return True

    def close(self, last_line: str | None = None) -> None:
        """Accept nothing more, after an optional last line."""
        with self._lock:
            if self._closed:
                return
            if last_line is not None:
                data = encode_line(last_line)
                self._chunks.append(data)
                self._size += len(data)
            self._closed = True

    def take(self) -> bytes:
        """Sender thread only: everything queued, in one piece (``b""`` if nothing)."""
        with self._lock:
            if self._retired or self.broken or not self._chunks:
                return b""
            data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
            self._chunks.clear()
            self._head_started = False
            self._size = 0
            self._in_flight = len(data)
            return data

    def sent(self, data: bytes, count: int) -> None:
        """Sender thread only: the socket took ``count`` bytes of ``data``; the rest goes back in front."""
        with self._lock:
            self._in_flight = 0
            if count < len(data) and not self._retired:
                rest = data[count:]
                if self.overflowed:
                    rest = _first_line(rest)  # only finish the line; the notice follows it
                self._chunks.insert(0, rest)
                self._size += len(rest)
                self._head_started = True
            if not self._chunks or self._retired:
                self._settled.notify_all()

    def fail(self) -> None:
        """Sender thread only: a send failed, the client is gone; drop everything."""
        with self._lock:
            self.broken = True
            self._in_flight = 0
            self._chunks.clear()
            self._size = 0
            self._settled.notify_all()

    def wait_drained(self, timeout: float) -> bool:
        """Wait until everything queued has been sent (or the client is gone)."""
        with self._lock:
            return self._settled.wait_for(lambda: self.broken or (not self._chunks and not self._in_flight), timeout)

    def retire(self, timeout: float) -> bool:
        """Hand out nothing more, and wait until the sender is not writing to the socket.

        Closing a socket while another thread is inside ``send()`` on it is a real
        bug: the file descriptor number can be reused by a new connection at once, and
        the late send would go to the wrong client. So the closer waits for the sender.
        """
        with self._lock:
            self._retired = True
            self._closed = True
            self._chunks.clear()
            self._size = 0
            return self._settled.wait_for(lambda: not self._in_flight, timeout)


def _first_line(data: bytes) -> bytes:
    """``data`` up to and including its first LF (all of it if there is none)."""
    end = data.find(b"\n")
    return data if end < 0 else data[: end + 1]


class Sender:
    """The one thread that writes to every client's socket.

    Readers never send. They append lines to outboxes and call :meth:`notify` with
    the connections they touched; the sender thread wakes up and writes each
    touched outbox with one non-blocking ``send()``. While it is busy, more lines
    pile up in the outboxes, so under load one ``send()`` carries the lines of many
    senders at once: the busier the room, the fewer system calls per line.

    A socket whose kernel buffer is full (its client reads slowly) keeps the rest in
    its outbox and is watched with ``select()`` until it takes more. Nobody waits
    for it: a slow reader costs the others nothing, and when its outbox overflows
    it is disconnected as too slow.
    """

    def __init__(self) -> None:
        # _lock guards _touched, _leaving, _sleeping and _stopping: requests from
        # other threads. Only the sender thread touches the selector and the sockets.
        self._lock = threading.Lock()
        self._touched: dict[Connection, None] = {}  # outboxes with new lines, in order (a dict as an ordered set)
        self._leaving: list[tuple[Connection, threading.Event]] = []  # sockets to forget before they close
        self._sleeping = False  # the sender thread is (about to be) waiting in select()
        self._stopping = False
        self._wakeup_receive, self._wakeup_send = socket.socketpair()
        self._wakeup_send.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="sender")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the sender thread (every connection must be forgotten by now) and join it."""
        with self._lock:
            self._stopping = True
        self._wake()
        self._thread.join(JOIN_TIMEOUT)
        self._wakeup_receive.close()
        self._wakeup_send.close()

    def notify(self, connections: Iterable[Connection]) -> None:
        """These connections' outboxes have new bytes: send them soon. Never call under the registry lock."""
        with self._lock:
            self._touched.update(dict.fromkeys(connections))
            wake, self._sleeping = self._sleeping, False
        if wake:
            self._wake()

    def forget(self, connection: Connection, timeout: float) -> bool:
        """Stop writing to ``connection`` for good, so that its socket can be closed safely."""
        connection.outbox.retire(timeout)
        forgotten = threading.Event()
        with self._lock:
            self._leaving.append((connection, forgotten))
        self._wake()
        return forgotten.wait(timeout)

    def _wake(self) -> None:
        try:
            self._wakeup_send.send(b"x")
        except BlockingIOError:
            pass  # the wake-up pipe is full: the sender is awake anyway

    def _run(self) -> None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._wakeup_receive, selectors.EVENT_READ)
                full: set[Connection] = set()  # sockets being watched until they take more
                while True:
                    with self._lock:
                        touched, self._touched = self._touched, {}
                        leaving, self._leaving = self._leaving, []
                        stopping = self._stopping
                        self._sleeping = not touched and not leaving
                        idle = self._sleeping
                    for connection, forgotten in leaving:
                        if connection in full:
                            selector.unregister(connection.sock)  # found by identity even if closed
                            full.discard(connection)
                        forgotten.set()
                    if stopping:
                        return
                    for connection in touched:
                        if connection not in full and not self._send(connection):
                            selector.register(connection.sock, selectors.EVENT_WRITE, connection)
                            full.add(connection)
                    for key, _ in selector.select(None if idle else 0):
                        if key.data is None:
                            self._wakeup_receive.recv(4096)
                        elif self._send(key.data):
                            selector.unregister(key.fileobj)
                            full.discard(key.data)
        except Exception:
            log.exception("sender crashed")

    @staticmethod
    def _send(connection: Connection) -> bool:
        """Write what the outbox holds without blocking; False if the socket is full."""
        outbox = connection.outbox
        data = outbox.take()
        if not data:
            return True
        try:
            sent = connection.sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError as error:
            # The peer is gone (reset, broken pipe) or stop() shut the socket. Wake the
            # reader, so that the departure is handled in one place, its _finish.
            log.debug("send failed: %s", error)
            outbox.fail()
            connection.shutdown()
            return True
        outbox.sent(data, sent)
        return sent == len(data)


# -- connections -------------------------------------------------------------------


@dataclass(eq=False)
class Connection:
    """One client connection: its socket, its outbox, its reader thread, and who it is."""

    sock: socket.socket
    peer: str  #: "host:port" of the client, for logs
    outbox: Outbox
    name: str | None = None  #: set once the name is accepted; only the reader thread writes it
    bucket: TokenBucket | None = None  #: the flood limit, if the server has one
    #: why the connection ended, for the log only; written by the reader thread, or by
    #: kick() from another thread (no lock: a stale reason costs nothing but a log word)
    leave_reason: str = "closed"
    reader: threading.Thread | None = None

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


# -- the server ----------------------------------------------------------------------


class ChatServer:
    """The reference server: ``with ChatServer(port=0) as server: host, port = server.address``.

    ``start()`` binds, listens and starts the accept and sender threads; ``stop()``
    tells every connection ``* server shutting down``, flushes outboxes for at most
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
        self._sender = Sender()
        # Readers still running, to join on stop. Only the accept thread changes this
        # list, and stop() reads it after joining that thread: no lock.
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
        self._sender.start()
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
        self._sender.notify(connections)
        deadline = self.clock() + self.shutdown_flush
        for connection in connections:
            connection.outbox.wait_drained(max(0.0, deadline - self.clock()))
        for connection in connections:
            connection.shutdown()  # wakes every reader in recv(); each then runs _finish
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                log.error("thread %s did not stop", thread.name)
        self._sender.stop()
        if self._listener is not None:
            self._listener.close()
        self._wakeup_receive.close()
        self._wakeup_send.close()
        log.info("stopped")

    def sockets(self) -> list[socket.socket]:
        """The sockets of the open connections (for tests and labs: read-only use)."""
        with self._lock:
            return [connection.sock for connection in self._connections]

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
        sock.setblocking(True)  # the reader blocks in recv(); sends pass MSG_DONTWAIT instead
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
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        self._threads.append(connection.reader)
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
        self._send_to_one(connection, protocol.WELCOME)
        deadline = self.clock() + self.name_timeout
        frames: list[Frame] = []
        while not frames:
            remaining = deadline - self.clock()
            if remaining <= 0:
                self._send_to_one(connection, protocol.NAME_TIMED_OUT)
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
            batch = batch_deliveries(outcome.deliveries)
            too_slow = self._queue(batch)
        self._send_queued(batch, too_slow)
        if outcome.name is None:
            connection.leave_reason = "name refused"
            return None
        connection.name = outcome.name
        threading.current_thread().name = f"reader-{outcome.name}"
        log.info("%s joined as %s", connection.peer, outcome.name)
        return frames[1:]

    def _chat(self, connection: Connection, buffer: LineBuffer, frames: list[Frame]) -> None:
        """Handle the joined client's lines until it quits or the stream ends.

        All the lines of one ``recv()`` are handled together: routed under the lock
        one by one, then sent with one ``send()`` per recipient. When a client sends
        fast, this turns a hundred small sends into one.
        """
        while True:
            if frames and not self._handle(connection, frames):
                connection.leave_reason = "quit"
                return
            data = connection.sock.recv(RECV_SIZE)
            if not data:
                return  # EOF: the client closed, or kick() shut our read side
            frames = buffer.feed(data)

    def _handle(self, connection: Connection, frames: list[Frame]) -> bool:
        """Act on the frames of one read from a joined client; False once it has quit."""
        assert connection.name is not None
        # First, without the lock, what each line asks for: a command, or a reply to the sender.
        requests: list[Command | str] = []
        for frame in frames:
            if connection.bucket is not None and not connection.bucket.allow():
                requests.append(protocol.SLOW_DOWN)
            elif isinstance(frame, LineTooLong):
                requests.append(protocol.line_too_long(frame.limit))
            elif isinstance(frame, InvalidUtf8):
                requests.append(protocol.INVALID_UTF8)
            elif text := sanitize(frame.text):
                if self.verbose:
                    log.info("%s: %s", connection.name, text)
                requests.append(parse_command(text))
        # Then, under the lock, who receives what, in one order that everybody sees.
        still_here = True
        with self._lock:
            deliveries: list[tuple[Connection, str]] = []
            for request in requests:
                if isinstance(request, str):
                    deliveries.append((connection, request))
                    continue
                outcome = route(self._roster, connection.name, request)
                deliveries += outcome.deliveries
                if outcome.close:
                    still_here = False
                    break  # lines after /quit are ignored
            batch = batch_deliveries(deliveries)
            too_slow = self._queue(batch)
        self._send_queued(batch, too_slow)
        return still_here

    def _finish(self, connection: Connection) -> None:
        """The one place every connection ends: leave notice, drain, close."""
        with self._lock:
            self._connections.discard(connection)
            if connection.name is not None and not self._stopping.is_set():
                batch = batch_deliveries(depart(self._roster, connection.name).deliveries)
                too_slow = self._queue(batch)
            else:
                batch, too_slow = {}, []
        self._send_queued(batch, too_slow)
        if connection.name is not None:
            log.info("%s (%s) left: %s", connection.name, connection.peer, connection.leave_reason)
        else:
            log.info("%s closed: %s", connection.peer, connection.leave_reason)
        outbox = connection.outbox
        outbox.close()  # after the lines already queued (bye, refusal, too slow...)
        if not self._stopping.is_set():  # stop() has its own, shared, time budget
            outbox.wait_drained(FAREWELL_TIMEOUT)  # let those last lines go out
        if not self._sender.forget(connection, JOIN_TIMEOUT):
            log.error("%s: the sender kept the socket; closing it anyway", connection.peer)
        connection.shutdown()
        connection.sock.close()

    # -- delivery: the one place that queues and sends lines to clients ---------------

    def _send_to_one(self, connection: Connection, line: str) -> None:
        """Queue one line for one client and send it (used before it has a name)."""
        if connection.outbox.put(encode_line(line)):
            self._sender.notify([connection])
        else:
            self._send_queued({}, [connection])

    def _queue(self, batch: dict[Connection, bytes]) -> list[Connection]:
        """Append each recipient's bytes to its outbox; return the recipients found too slow.

        Caller must hold ``self._lock``: the order of appends is the order everyone
        sees. Appending never blocks, so holding the lock here is cheap.
        """
        return [recipient for recipient, data in batch.items() if not recipient.outbox.put(data)]

    def _send_queued(self, batch: dict[Connection, bytes], too_slow: list[Connection]) -> None:
        """After the lock: have the sender thread send to each recipient, and disconnect the too slow."""
        self._sender.notify(batch)
        if too_slow:
            self._sender.notify(too_slow)  # the too-slow notice, where the socket still takes it
        for connection in too_slow:
            if connection.leave_reason != "too slow":
                log.info("%s is too slow, disconnecting", connection.name or connection.peer)
            connection.kick("too slow")
