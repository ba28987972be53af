"""The asyncio twin of the reference server: the same protocol core, one thread, an event loop.

``chatlab/server.py`` and this file obey the same PROTOCOL.md and pass the same
tests. Both are thin shells around ``chatlab/protocol.py``, which decides everything
that matters (framing, names, who receives which line); only the I/O differs. That
is the point of keeping the protocol free of I/O: one core, two shells. Compare them
side by side with ``chatlab bench``.

How it differs from the threaded server
=======================================

* **One thread for everything.** The event loop runs in one thread
  (``asyncio-loop``). Each connection is a coroutine, :meth:`AsyncChatServer._serve`,
  that reads like the threaded reader: ``await reader.read()`` waits for bytes the
  way ``recv()`` does, but instead of blocking a thread it lets the loop run other
  coroutines meanwhile.
* **No lock.** Coroutines only switch at an ``await``. Routing a line and queueing
  it for every recipient has no ``await`` in it, so no other coroutine can run in
  between: that section is atomic without a lock. (Put an ``await`` in the middle
  and you would have the race back.)
* **No sender thread and no outbox class.** ``writer.write()`` never blocks: it
  sends at once what the socket takes and keeps the rest in the transport's buffer,
  which the loop sends when the socket has room. That buffer *is* the outbox; a
  client whose buffer passes the limit is disconnected as too slow.
"""

from __future__ import annotations

import asyncio
import logging
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

log = logging.getLogger("chatlab.aserver")

FAREWELL_TIMEOUT = 2.0  # seconds a leaving client's buffer gets to drain its last lines
START_TIMEOUT = 10.0  # seconds start() waits for the loop thread to be listening
RECV_SIZE = 65536  # bytes asked for at a time; framing makes the size irrelevant to correctness


@dataclass(eq=False)
class Client:
    """One connection: its streams, who it is, and whether it may still be written to."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str  #: "host:port" of the client, for logs
    limit: int  #: bytes the transport may buffer before the client counts as too slow
    name: str | None = None
    bucket: TokenBucket | None = None
    leave_reason: str = "closed"
    closing: bool = False  #: True once nothing more may be queued for it

    def deliver(self, data: bytes) -> bool:
        """Queue ``data`` (sent at once if the socket has room); False if the client is too slow."""
        if self.closing:
            return True  # it is leaving: the line is dropped, as in the threaded server
        self.writer.write(data)
        return self.writer.transport.get_write_buffer_size() <= self.limit

    def kick(self, reason: str) -> None:
        """End this connection: its coroutine sees end of input and runs its departure."""
        self.leave_reason = reason
        self.closing = True
        self.reader.feed_eof()


class AsyncChatServer:
    """The asyncio twin: ``with AsyncChatServer(port=0) as server: host, port = server.address``.

    It takes the same options as :class:`chatlab.server.ChatServer` and can be used
    the same way from ordinary threaded code: ``start()`` runs the event loop in a
    thread of its own and returns once the server listens; ``stop()`` says goodbye to
    everyone, flushes for at most ``shutdown_flush`` seconds, closes, and joins that thread.
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
        self.send_buffer = send_buffer
        self.verbose = verbose
        self.clock = clock

        # Touched only by the loop thread, between awaits: no lock needed.
        self._roster: Roster[Client] = Roster()
        self._clients: set[Client] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()  # set by the loop thread once listening (or failed)
        self._stopped = threading.Event()  # set by stop(), or by a failing start
        self._start_error: BaseException | None = None
        self._address: tuple[str, int] | None = None

    # -- starting and stopping, from any thread ------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound; with ``port=0`` the kernel picked the port."""
        if self._address is None:
            raise RuntimeError("the server is not started")
        return self._address

    def start(self) -> AsyncChatServer:
        """Start the loop thread and wait until it listens; returns self. Raises OSError if the port is taken."""
        self._thread = threading.Thread(target=self._run_loop, name="asyncio-loop")
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("the event loop did not start listening in time")
        if self._start_error is not None:
            self._thread.join(START_TIMEOUT)
            self._thread = None
            raise self._start_error
        log.info("listening on %s:%d", *self.address)
        return self

    def serve_forever(self) -> None:
        """Block until :meth:`stop` is called from another thread (or Ctrl-C), then stop."""
        try:
            self._stopped.wait()
        finally:
            self.stop()

    def stop(self) -> None:
        """Say goodbye to everyone, flush for at most ``shutdown_flush`` s, close, join."""
        self._stopped.set()
        if self._thread is None:
            return
        assert self._loop is not None and self._stop_requested is not None
        self._loop.call_soon_threadsafe(self._stop_requested.set)
        self._thread.join(self.shutdown_flush + 2 * FAREWELL_TIMEOUT + START_TIMEOUT)
        if self._thread.is_alive():
            log.error("the event loop thread did not stop")
        self._thread = None
        log.info("stopped")

    def sockets(self) -> list[socket.socket]:
        """The sockets of the open connections (for tests and labs: read-only use)."""
        clients = list(self._clients)  # a copy; the set may change in the loop thread meanwhile
        return [client.writer.get_extra_info("socket") for client in clients]

    def __enter__(self) -> AsyncChatServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the loop thread -----------------------------------------------------------

    def _run_loop(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as error:  # only a failed start gets here; _main handles the rest
            self._start_error = error
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        listener = await asyncio.start_server(self._serve, self.host, self.port, backlog=128)
        self._address = listener.sockets[0].getsockname()[:2]
        self._ready.set()
        await self._stop_requested.wait()
        self._stopping = True
        listener.close()
        await self._say_goodbye()
        await listener.wait_closed()

    async def _say_goodbye(self) -> None:
        """Tell everyone, flush for at most ``shutdown_flush`` s in all, then close every socket."""
        clients = list(self._clients)
        for client in clients:
            client.deliver(encode_line(protocol.SHUTTING_DOWN))
            client.closing = True
        flushes = [self._drained(client) for client in clients]
        if flushes:
            await asyncio.wait([asyncio.ensure_future(flush) for flush in flushes], timeout=self.shutdown_flush)
        for client in clients:
            client.writer.transport.abort()  # ends each _serve; they skip leave notices now
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=FAREWELL_TIMEOUT)

    async def _drained(self, client: Client) -> None:
        """Wait until everything written to ``client`` has gone to its socket."""
        client.writer.transport.set_write_buffer_limits(high=0)  # drain() now waits for empty
        try:
            await client.writer.drain()
        except ConnectionError:
            pass  # it left meanwhile: nothing more to flush

    # -- one connection -----------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Handshake, then chat, then clean up: the life of one connection."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # asyncio does it too; said here for the reader
        if self.send_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        host, port = writer.get_extra_info("peername")[:2]
        client = Client(reader, writer, f"{host}:{port}", self.outbox_limit)
        if self.rate is not None and self.burst is not None:
            client.bucket = TokenBucket(self.rate, self.burst, self.clock)
        if len(self._clients) >= self.max_clients or self._stopping:
            log.info("%s refused: server full", client.peer)
            writer.write(encode_line(protocol.SERVER_FULL))
            writer.close()
            self._tasks.discard(task)
            return
        self._clients.add(client)
        log.info("%s connected", client.peer)
        try:
            buffer = LineBuffer(self.max_line)
            frames = await self._handshake(client, buffer)
            if frames is not None:
                await self._chat(client, buffer, frames)
        except (ConnectionResetError, BrokenPipeError):
            client.leave_reason = "reset"
        except OSError as error:
            client.leave_reason = f"socket error: {error}"
        except Exception:
            log.exception("%s: connection crashed", client.peer)
            client.leave_reason = "server error"
        finally:
            await self._finish(client)
            self._tasks.discard(task)

    async def _handshake(self, client: Client, buffer: LineBuffer) -> list[Frame] | None:
        """Ask for a name and wait for it; return the frames that came after it, or None."""
        self._send({client: encode_line(protocol.WELCOME)})
        deadline = self.clock() + self.name_timeout
        frames: list[Frame] = []
        while not frames:
            remaining = deadline - self.clock()
            if remaining <= 0:
                self._send({client: encode_line(protocol.NAME_TIMED_OUT)})
                client.leave_reason = "no name in time"
                return None
            try:
                data = await asyncio.wait_for(client.reader.read(RECV_SIZE), remaining)
            except asyncio.TimeoutError:
                continue  # the loop condition sends the timeout notice
            if not data:
                client.leave_reason = "left before naming itself"
                return None
            frames = buffer.feed(data)
        outcome = admit(self._roster, frames[0], client)  # no await from check to add: atomic
        self._send(batch_deliveries(outcome.deliveries))
        if outcome.name is None:
            client.leave_reason = "name refused"
            return None
        client.name = outcome.name
        log.info("%s joined as %s", client.peer, outcome.name)
        return frames[1:]

    async def _chat(self, client: Client, buffer: LineBuffer, frames: list[Frame]) -> None:
        """Handle the joined client's lines until it quits or the stream ends."""
        while True:
            if frames and not self._handle(client, frames):
                client.leave_reason = "quit"
                return
            data = await client.reader.read(RECV_SIZE)
            if not data:
                return  # EOF: the client closed, or kick() ended our input
            frames = buffer.feed(data)

    def _handle(self, client: Client, frames: list[Frame]) -> bool:
        """Act on the frames of one read; False once the client has quit. No await: atomic."""
        assert client.name is not None
        deliveries: list[tuple[Client, str]] = []
        for frame in frames:
            request: Command | str
            if client.bucket is not None and not client.bucket.allow():
                request = protocol.SLOW_DOWN
            elif isinstance(frame, LineTooLong):
                request = protocol.line_too_long(frame.limit)
            elif isinstance(frame, InvalidUtf8):
                request = protocol.INVALID_UTF8
            elif text := sanitize(frame.text):
                if self.verbose:
                    log.info("%s: %s", client.name, text)
                request = parse_command(text)
            else:
                continue
            if isinstance(request, str):
                deliveries.append((client, request))
                continue
            outcome = route(self._roster, client.name, request)
            deliveries += outcome.deliveries
            if outcome.close:
                self._send(batch_deliveries(deliveries))
                return False  # lines after /quit are ignored
        self._send(batch_deliveries(deliveries))
        return True

    async def _finish(self, client: Client) -> None:
        """The one place every connection ends: leave notice, drain, close."""
        self._clients.discard(client)
        if client.name is not None and not self._stopping:
            self._send(batch_deliveries(depart(self._roster, client.name).deliveries))
        if client.name is not None:
            log.info("%s (%s) left: %s", client.name, client.peer, client.leave_reason)
        else:
            log.info("%s closed: %s", client.peer, client.leave_reason)
        client.closing = True
        if not self._stopping:
            try:
                await asyncio.wait_for(self._drained(client), FAREWELL_TIMEOUT)
            except asyncio.TimeoutError:
                pass  # it does not read: close anyway
        client.writer.transport.abort()

    def _send(self, batch: dict[Client, bytes]) -> None:
        """Write each recipient's bytes; disconnect those whose buffer passed the limit."""
        for recipient, data in batch.items():
            if not recipient.deliver(data):
                if recipient.leave_reason != "too slow":
                    log.info("%s is too slow, disconnecting", recipient.name or recipient.peer)
                recipient.deliver(encode_line(protocol.TOO_SLOW))
                recipient.kick("too slow")
