"""The reference chat server: the seed's thread-per-client design, made correct and fast.

Read this after ``chatlab/naive.py``: same idea, one thread reading each client,
but every bug of the original assignment is fixed, each in one visible place.

Architecture
============

Every connection has a reader thread and an outbox; one flusher thread serves them all::

    client socket --recv--> reader thread --route()--> outboxes of the recipients
                                 |                         |
                                 +--send(MSG_DONTWAIT)-----+  (reader sends at once)
                                                           |
    flusher thread: waits in select() for sockets that were full, sends what is left

* The **reader thread** (``reader-alice``) owns the handshake and every line the
  client sends. It frames the byte stream with :class:`~chatlab.protocol.LineBuffer`,
  asks the pure protocol module what each line means and who receives what, and
  appends those lines to the recipients' outboxes. Then it *tries* to send each
  touched outbox at once, with a send that never blocks (``MSG_DONTWAIT``).
* The **outbox** (:class:`Outbox`) holds the bytes not yet accepted by a client's
  socket, bounded in size. It also holds a *baton*: only the thread holding it may
  write to that socket, so two senders never interleave their bytes, and lines go
  out in the order they were queued.
* When a socket's kernel buffer is full (the client reads slowly), the rest is left
  in the outbox and the outbox is *parked* with the **flusher thread** (``flusher``),
  which waits in ``select()`` until the socket takes more. Nobody else waits: a slow
  reader costs its senders nothing. When the outbox overflows, the client is
  disconnected as too slow.

Why not a writer thread per client? That is the simple design (and the previous
version of this file): a reader puts a line in a queue and wakes the recipient's
writer thread, which sends it. It is correct, but every line then costs a hand-off
between threads per recipient: a wake-up, a context switch, a fight for the GIL.
With 200 clients chatting that is 200,000 hand-offs a second, and latency grows to
tens of milliseconds. Here the common case (the socket has room) costs one system
call in the reader's own thread, and a hand-off happens only for the rare socket
that is full. ``chatlab bench`` measures both designs against an asyncio twin.

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
from collections.abc import Callable
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


# -- the outbox and its baton ------------------------------------------------------


class Outbox:
    """The bytes waiting to be written to one client, bounded in size, and who may write them.

    Any reader thread, holding the registry lock, calls :meth:`put` to append lines;
    nothing is sent then. After releasing the lock it calls :meth:`flush`, which sends
    at once what the socket takes, without ever blocking.

    The *baton* (``_busy``) is what keeps bytes in order when several threads want to
    send to the same client: whoever finds the baton free takes it, sends, and before
    handing it back sends whatever others appended meanwhile. A thread that finds the
    baton taken just leaves: its lines are already queued, and the holder will send
    them. If the socket is full, the holder *parks* the outbox with the flusher thread,
    which keeps the baton until the socket has taken everything.

    Think of a mailbox with a fixed size: a letter that does not fit means the owner
    has not emptied it for too long, and the post office gives up on them.
    """

    def __init__(self, sock: socket.socket, limit: int, flusher: Flusher) -> None:
        self.sock = sock
        self.limit = limit
        self._flusher = flusher
        # _lock guards every attribute below. _settled is notified (under _lock)
        # whenever the baton is handed back or the outbox breaks.
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._chunks: list[bytes] = []  # queued, not yet taken by the baton holder
        self._head_started = False  # _chunks[0] is the rest of a line the socket has half taken
        self._size = 0  # bytes queued or in the hands of the baton holder, not yet sent
        self._busy = False  # the baton: a thread is sending, or the flusher holds it parked
        self._parked = False  # the flusher holds the baton until the socket takes more
        self._closed = False  # put() accepts nothing more; what is queued still goes out
        self._retired = False  # the socket is about to close: nobody may send any more
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
            if self._size + len(data) > self.limit:
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
        """Accept nothing more, after an optional last line (call :meth:`flush` to send it)."""
        with self._lock:
            if self._closed:
                return
            if last_line is not None:
                data = encode_line(last_line)
                self._chunks.append(data)
                self._size += len(data)
            self._closed = True

    def flush(self) -> None:
        """Send what is queued, now, without blocking; park the rest with the flusher."""
        with self._lock:
            if self._busy or self._retired or not self._chunks:
                return  # the baton holder will send our lines, or there is nothing to do
            self._busy = True
        while self.send_some():
            pass

    def send_some(self) -> bool:
        """Baton holder only: one non-blocking send; True if there is more to send now.

        Returns False when the baton has been handed back (all sent, or retired, or
        broken) or when the socket is full; in that case the outbox is parked with
        the flusher, which holds the baton from then on.
        """
        with self._lock:
            if self._retired or self.broken or not self._chunks:
                self._hand_back()
                return False
            data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
            self._chunks.clear()
            self._head_started = False
        try:
            sent = self.sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError as error:
            # The peer is gone (reset, broken pipe) or stop() shut the socket. Wake the
            # reader, so that the departure is handled in one place, its _finish.
            log.debug("send failed: %s", error)
            try:
                self.sock.shutdown(socket.SHUT_RDWR)  # safe: holding the baton, nobody closes it
            except OSError:
                pass
            with self._lock:
                self.broken = True
                self._chunks.clear()
                self._size = 0
                self._hand_back()
            return False
        with self._lock:
            self._size -= sent
            if sent == len(data):
                return True  # loop: others may have appended meanwhile
            rest = data[sent:]
            if self.overflowed:
                rest = _first_line(rest)  # only finish the line; the notice follows it
            self._chunks.insert(0, rest)
            self._head_started = True
            if self._parked:
                return False  # the flusher already holds it: it waits for the socket again
            self._parked = True
        self._flusher.park(self)
        return False

    def _hand_back(self) -> None:
        """Give the baton back. Caller must hold ``self._lock``."""
        self._busy = False
        self._parked = False
        self._settled.notify_all()

    def is_parked(self) -> bool:
        """Whether the flusher should (still) be waiting for this socket."""
        with self._lock:
            return self._parked and not self._retired

    def release(self) -> None:
        """Flusher only: give the baton back without sending (the outbox was retired)."""
        with self._lock:
            self._hand_back()

    def wait_drained(self, timeout: float) -> bool:
        """Wait until everything queued has been sent (or the client is gone)."""
        with self._lock:
            return self._settled.wait_for(lambda: self.broken or (not self._chunks and not self._busy), timeout)

    def retire(self, timeout: float) -> bool:
        """Stop all sending and wait for the baton, so that the socket can be closed safely.

        Closing a socket while another thread is inside ``send()`` on it is a real
        bug: the file descriptor number can be reused by a new connection at once, and
        the late send would go to the wrong client. So the closer waits for the baton.
        """
        with self._lock:
            self._retired = True
            self._closed = True
            self._chunks.clear()
            parked = self._parked
        if parked:
            self._flusher.unpark(self)
        with self._lock:
            return self._settled.wait_for(lambda: not self._busy, timeout)


def _first_line(data: bytes) -> bytes:
    """``data`` up to and including its first LF (all of it if there is none)."""
    end = data.find(b"\n")
    return data if end < 0 else data[: end + 1]


class Flusher:
    """One thread that finishes sending to every client whose socket was full.

    A socket's kernel buffer fills up when its client reads slower than others write
    to it. Instead of blocking (and delaying everyone behind), the sender parks the
    outbox here. The flusher waits in ``select()`` for any parked socket to become
    writable and sends more, without blocking either; a client that never reads
    again just stays parked until its outbox overflows and it is disconnected.
    """

    def __init__(self) -> None:
        # _lock guards _requests: (action, outbox) pairs from other threads, handled
        # by the flusher thread in order. Only the flusher thread touches the selector.
        self._lock = threading.Lock()
        self._requests: list[tuple[str, Outbox]] = []
        self._stopping = threading.Event()
        self._wakeup_receive, self._wakeup_send = socket.socketpair()
        self._wakeup_send.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="flusher")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the flusher thread (every outbox must be retired by now) and join it."""
        self._stopping.set()
        self._wake()
        self._thread.join(JOIN_TIMEOUT)
        self._wakeup_receive.close()
        self._wakeup_send.close()

    def park(self, outbox: Outbox) -> None:
        """Take over the baton of ``outbox`` until its socket has taken everything."""
        self._ask("park", outbox)

    def unpark(self, outbox: Outbox) -> None:
        """Stop waiting for a retired outbox and give its baton back."""
        self._ask("unpark", outbox)

    def _ask(self, action: str, outbox: Outbox) -> None:
        with self._lock:
            self._requests.append((action, outbox))
        self._wake()

    def _wake(self) -> None:
        try:
            self._wakeup_send.send(b"x")
        except BlockingIOError:
            pass  # the wake-up pipe is full: the flusher is awake anyway

    def _run(self) -> None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._wakeup_receive, selectors.EVENT_READ)
                parked: set[Outbox] = set()  # registered in the selector; only this thread uses it
                while not self._stopping.is_set():
                    for key, _ in selector.select():
                        if key.fileobj is self._wakeup_receive:
                            self._wakeup_receive.recv(4096)
                            self._handle_requests(selector, parked)
                        elif not self._send_parked(key.data):
                            selector.unregister(key.fileobj)
                            parked.discard(key.data)
        except Exception:
            log.exception("flusher crashed")

    def _handle_requests(self, selector: selectors.BaseSelector, parked: set[Outbox]) -> None:
        with self._lock:
            requests, self._requests = self._requests, []
        for action, outbox in requests:
            if action == "park" and outbox not in parked and outbox.is_parked():
                selector.register(outbox.sock, selectors.EVENT_WRITE, outbox)
                parked.add(outbox)
            elif action == "unpark":
                if outbox in parked:
                    selector.unregister(outbox.sock)  # found by identity even if the socket is closed
                    parked.discard(outbox)
                outbox.release()

    def _send_parked(self, outbox: Outbox) -> bool:
        """The socket has room again: send; True if the outbox stays parked."""
        while outbox.send_some():
            pass
        return outbox.is_parked()


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

    ``start()`` binds, listens and starts the accept and flusher threads; ``stop()``
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
        self._flusher = Flusher()
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
        self._flusher.start()
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
            connection.outbox.flush()
        deadline = self.clock() + self.shutdown_flush
        for connection in connections:
            connection.outbox.wait_drained(max(0.0, deadline - self.clock()))
        for connection in connections:
            connection.shutdown()  # wakes every reader in recv(); each then runs _finish
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                log.error("thread %s did not stop", thread.name)
        self._flusher.stop()
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
        connection = Connection(sock, peer, Outbox(sock, self.outbox_limit, self._flusher))
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
        outbox.flush()
        if not self._stopping.is_set():  # stop() has its own, shared, time budget
            outbox.wait_drained(FAREWELL_TIMEOUT)  # let those last lines go out
        if not outbox.retire(JOIN_TIMEOUT):
            log.error("%s: a sender kept the socket; closing it anyway", connection.peer)
        connection.shutdown()
        connection.sock.close()

    # -- delivery: the one place that queues and sends lines to clients ---------------

    def _send_to_one(self, connection: Connection, line: str) -> None:
        """Queue one line for one client and send it (used before it has a name)."""
        if connection.outbox.put(encode_line(line)):
            connection.outbox.flush()
        else:
            self._send_queued({}, [connection])

    def _queue(self, batch: dict[Connection, bytes]) -> list[Connection]:
        """Append each recipient's bytes to its outbox; return the recipients found too slow.

        Caller must hold ``self._lock``: the order of appends is the order everyone
        sees. Appending never blocks, so holding the lock here is cheap.
        """
        return [recipient for recipient, data in batch.items() if not recipient.outbox.put(data)]

    def _send_queued(self, batch: dict[Connection, bytes], too_slow: list[Connection]) -> None:
        """After the lock: send to each recipient now, and disconnect the too slow."""
        for recipient in batch:
            recipient.outbox.flush()
        for connection in too_slow:
            if connection.leave_reason != "too slow":
                log.info("%s is too slow, disconnecting", connection.name or connection.peer)
            connection.outbox.flush()  # the too-slow notice, where the socket still takes it
            connection.kick("too slow")
