"""The part of every exercise server that is not the lesson: listen, accept, a thread per client, stop.

An exercise server subclasses :class:`ServerHarness` and writes
:meth:`~ServerHarness.handle_client`, which runs in its own thread for each
connection (the seed's design: one thread per client)::

    class Server(ServerHarness):
        def handle_client(self, sock):
            sock.sendall(b"* hello\\n")

    with Server(port=0) as server:      # port 0: any free port
        host, port = server.address     # where it listens, known before anyone connects

The harness binds and listens in :meth:`start`, before it returns, so a check can
connect at once: no "server not listening yet" race. :meth:`stop` stops accepting,
calls :meth:`shutdown_clients` (which exercise 9 rewrites), and joins every client
thread within a timeout; :attr:`left_running` names the threads that did not end.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time

log = logging.getLogger("chatlab.exercises")

JOIN_TIMEOUT = 5.0  # seconds stop() waits, in all, for the client threads


class ServerHarness:
    """Listening, accepting and stopping, for servers written in the exercises.

    ``send_buffer`` sets SO_SNDBUF on every accepted socket (checks make it small so
    that a client that stops reading fills the server's buffers after kilobytes).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, send_buffer: int | None = None) -> None:
        self.host = host
        self.port = port
        self.send_buffer = send_buffer
        # _harness_lock guards _client_threads, _accepted and crashes.
        self._harness_lock = threading.Lock()
        self._client_threads: list[threading.Thread] = []  # every client thread started
        self._accepted: list[socket.socket] = []  # every socket accepted, for force_close()
        self._listener: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._wakeup_receive: socket.socket | None = None
        self._wakeup_send: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._accepting = threading.Event()  # cleared by stop(): no new connections
        self.left_running: list[str] = []  #: after stop(): names of client threads that did not end
        self.crashes: list[str] = []  #: "ExceptionType: message" of each client thread that died of one

    # -- what the exercises write ------------------------------------------------

    def handle_client(self, sock: socket.socket) -> None:
        """The life of one connection; runs in its own thread. Subclasses write it."""
        raise NotImplementedError

    def shutdown_clients(self) -> None:
        """Make every client thread end (called by :meth:`stop` once accepting has stopped).

        By default every accepted socket is shut down, so that each thread blocked
        in ``recv()`` wakes with end-of-stream and leaves. Exercise 9 does better.
        """
        for sock in self.accepted_sockets():
            _shutdown(sock)

    # -- the harness ---------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) bound; with ``port=0`` the kernel picked the port."""
        if self._address is None:
            raise RuntimeError("the server is not started")
        return self._address

    def accepted_sockets(self) -> list[socket.socket]:
        """Every socket accepted so far, oldest first (closed ones included)."""
        with self._harness_lock:
            return list(self._accepted)

    def start(self):  # type: ignore[no-untyped-def]
        """Bind and listen (before returning), then accept in the thread ``accept``."""
        listener = socket.create_server((self.host, self.port), backlog=128)
        listener.setblocking(False)
        self._listener = listener
        self._address = listener.getsockname()[:2]
        self._wakeup_receive, self._wakeup_send = socket.socketpair()
        self._accepting.set()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="accept")
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, ask every client thread to end, and join them all."""
        if self._accept_thread is None:
            return
        self._accepting.clear()
        assert self._wakeup_send is not None
        self._wakeup_send.send(b"x")
        self._accept_thread.join(JOIN_TIMEOUT)
        self._accept_thread = None
        try:
            self.shutdown_clients()
        finally:
            self.left_running = self._join_clients(JOIN_TIMEOUT)
            for sock in (self._listener, self._wakeup_receive, self._wakeup_send):
                if sock is not None:
                    sock.close()

    def force_close(self) -> list[str]:
        """For checks cleaning up after a broken server: shut every socket, join, say who is stuck."""
        for sock in self.accepted_sockets():
            _shutdown(sock)
        return self._join_clients(JOIN_TIMEOUT)

    def _join_clients(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        with self._harness_lock:
            threads = list(self._client_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread.name for thread in threads if thread.is_alive()]

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wakeup_receive is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wakeup_receive, selectors.EVENT_READ)
            while self._accepting.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._listener and self._accepting.is_set():
                        self._accept_one()

    def _accept_one(self) -> None:
        assert self._listener is not None
        try:
            sock, address = self._listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        sock.setblocking(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.send_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        thread = threading.Thread(target=self._run_client, args=(sock,), name=f"client-{address[1]}")
        with self._harness_lock:
            self._accepted.append(sock)
            self._client_threads = [t for t in self._client_threads if t.is_alive()]
            self._client_threads.append(thread)
        thread.start()

    def _run_client(self, sock: socket.socket) -> None:
        """One client thread: the exercise's handle_client, errors logged, the socket closed."""
        try:
            self.handle_client(sock)
        except Exception as error:
            log.exception("client thread %s crashed", threading.current_thread().name)
            with self._harness_lock:
                self.crashes.append(f"{type(error).__name__}: {error}")
        finally:
            sock.close()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed, or the peer is gone
