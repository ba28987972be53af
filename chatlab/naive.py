"""The naive server: the original classroom chat server, bugs and all, speaking protocol v1.

This is the seed: the ``server.py`` of the original assignment (in Russian, see the
course material), rewritten line by line with the English v1 texts so that chatlab's
clients and bots can talk to it. Its design is kept on purpose, mistakes included,
so that students can watch each mistake happen and then fix it. The reference
server, ``chatlab/server.py``, is the corrected version; exercises walk from here
to there one bug at a time.

Read it next to the seed: ``broadcast``, ``handle_client`` and ``start_server`` are
the seed's three functions, in the seed's order, statement for statement. The only
changes are the ones protocol v1 needs:

- the v1 texts instead of the seed's Russian ones and its ANSI colours
  (``* Welcome to chatlab! Enter your name:``, ``! name taken: NAME``,
  ``* NAME joined``, ``* NAME left``, ``NAME: text``, ``NAME (private): text``,
  ``! no such user: NAME``);
- the v1 accept line (``* Hi NAME! Online: a, b``), which the seed did not have,
  built from the same unlocked dict and sent right after the name is registered
  (so on a busy server another user's line can reach the newcomer first);
- an LF after every line the server sends, and one trailing newline (an LF, and a
  CR right before it) stripped from every chunk it reads;
- its ``print()`` calls, in English, through the ``chatlab.naive`` logger.

Everything else is the seed's, including the way it fails.

The seed's bugs
===============

Scripted bots confirmed these, and ``tests/test_naive.py`` reproduces each one (a
change that fixes one by accident fails the build). Each is marked ``BUG n`` in
the code below.

1. A clean disconnect leaves the user registered: no leave notice, and the name is
   never free again. Where: ``handle_client``, ``if not message: break`` leaves the
   loop without ``del self.users[user_name]`` and without a leave notice.
2. A dead recipient during a broadcast raises "dictionary changed size during
   iteration": later recipients miss the message, and the innocent sender is kicked
   and announced as left. Where: ``broadcast``, ``del self.users[user]`` inside
   ``for user, client_socket in self.users.items()``; the RuntimeError reaches the
   bare ``except:`` of the sender's ``handle_client``.
3. ``@bob`` with no text raises in the split and disconnects the sender. Where:
   ``handle_client``, ``target_user, personal_message = text.split(" ", 1)``.
4. ``@ text`` (an empty target) is broadcast to everyone: a private message leaks.
   Where: ``broadcast``, ``if target_user:`` is false for ``""``, so the private
   line falls through to the loop that sends to everyone.
5. No framing: lines sent back to back merge into one message, one line split over
   two sends arrives as two, a 3000-byte line as three. Where: ``handle_client``,
   ``message = client_socket.recv(1024)`` takes whatever one ``recv`` returns as
   one message.
6. A line over 1 KiB of Cyrillic, or a UTF-8 character split across two sends,
   raises UnicodeDecodeError and disconnects its sender. Where: ``handle_client``,
   ``message.decode("utf-8")`` on a chunk that may end in the middle of a character.
7. A name and the first message sent together merge into one name. Where:
   ``handle_client``, ``user_name = ...recv(1024)...`` takes the whole chunk as the name.
8. One client that stops reading freezes delivery to everyone after it in the dict,
   and when it dies the senders stuck on it are kicked too. Where: ``broadcast``,
   ``client_socket.send(message)`` blocks the sender's own thread once the slow
   reader's socket buffers are full.
9. No lock: concurrent joins and leaves kick innocent chatters (KeyError, "dictionary
   changed size during iteration"). Where: ``self.users``, created in ``__init__``
   with no lock, changed by ``self.users[user_name] = client_socket`` and the ``del``
   statements while other threads iterate it in ``broadcast``.
10. Control characters pass through: ANSI escapes clear other users' screens, and CR
    plus erase-line let one user pose as another. Where: ``handle_client``,
    ``public_message(user_name, text)`` relays the text exactly as it came.
11. No name timeout: every silent connection holds a thread forever. Where:
    ``handle_client``, the name's ``client_socket.recv(1024)`` on a socket with no
    timeout.
12. A connection that closes before naming itself registers the empty name and
    announces it; its dead socket later kicks a sender. Where: ``handle_client``,
    ``if user_name in self.users:`` is the only check, and ``recv`` returning
    ``b""`` (end of stream) reads as the name ``""``.
13. The join notice is sent outside the ``try``: when it fails, the joiner's thread
    dies and leaves a "zombie" that still receives but whose lines are never
    relayed. Where: ``handle_client``, ``self.broadcast(encode_line(joined(...)))``
    before ``while True: try:``.
14. No TCP_NODELAY: Nagle's algorithm with delayed ACKs adds 20 to 40 ms at light
    load. Where: ``start_server``, the accepted ``client_socket`` is used with the
    default options.

The reference server, ``chatlab/server.py``, fixes all of them.

The harness
===========

The seed runs one server per process, forever, on port 1234. To start and stop
several in one test run, the seed's functions are methods of :class:`NaiveServer`
(``self.users`` is the seed's global ``users``), and a small harness, marked
*harness* wherever it appears, adds what the seed lacks::

    with NaiveServer(port=0) as server:       # port 0: any free port
        host, port = server.address            # where it actually listens
        ...                                    # connect clients, watch the bugs

- :meth:`NaiveServer.start` binds, listens, starts the accept thread
  (``naive-accept``) and returns the server; each client gets a thread named
  ``naive-client-<client port>``.
- :meth:`NaiveServer.stop` closes the listener, shuts down every socket the server
  ever accepted so that threads stuck in ``recv()`` or ``send()`` wake up, and
  joins the threads, all within a timeout.
- :meth:`NaiveServer.serve_forever` is for the command line and stops on Ctrl-C.
- A client thread killed by an exception the seed never catches is logged with its
  traceback, as Python would print it, and recorded in :attr:`NaiveServer.crashes`
  (see :meth:`NaiveServer.wait_for_crashes`), so that tests can see it happen.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from dataclasses import dataclass

from chatlab.protocol import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    WELCOME,
    encode_line,
    greeting,
    joined,
    left,
    name_taken,
    no_such_user,
    private_message,
    public_message,
    sort_names,
)

log = logging.getLogger(__name__)


def strip_newline(text: str) -> str:
    """Drop one trailing LF, and a CR right before it: the only change v1 makes to what is read."""
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    return text


@dataclass(frozen=True)
class Crash:
    """Harness: a client thread that died of an exception the seed never catches."""

    thread_name: str  #: ``naive-client-<client port>``
    client_address: tuple[str, int]  #: the client's (host, port), as accept() returned it
    error: BaseException  #: what killed the thread


class NaiveServer:
    """The seed's chat server, bugs included; see the module docstring for the list.

    ``NaiveServer(host, port)`` does nothing until :meth:`start`; use it as a context
    manager to be sure it stops.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        # The seed's global ``users``: name -> socket.
        # BUG 9 (no lock): every client thread reads and changes this dict and nothing
        # guards it. Fixed in the reference server, chatlab/server.py, where one lock
        # guards the registry.
        self.users: dict[str, socket.socket] = {}

        # -- harness ----------------------------------------------------------
        self.host = host
        self.port = port
        self._lock = threading.Lock()  # harness: guards _connections, _threads and crashes
        self._crashed = threading.Condition(self._lock)  # notified when a Crash is added
        self._connections: list[socket.socket] = []  # every socket ever accepted
        self._threads: list[threading.Thread] = []  # every client thread ever started
        self.crashes: list[Crash] = []  #: client threads killed by an uncaught exception
        self._address: tuple[str, int] | None = None
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wakeup_reader: socket.socket | None = None  # readable once stop() is called
        self._wakeup_writer: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------------
    # The seed, function by function
    # ------------------------------------------------------------------------

    def broadcast(
        self, message: bytes, sender_socket: socket.socket | None = None, target_user: str | None = None
    ) -> None:
        """Send ``message`` to ``target_user`` alone, or else to everyone but ``sender_socket``."""
        # BUG 4 (an empty target leaks a private message): "@ text" gives the target
        # "", which is false here, so the private line falls through to the loop
        # below and reaches everyone. Fixed in the reference server, chatlab/server.py.
        if target_user:
            target_socket = self.users.get(target_user)
            if target_socket:
                try:
                    target_socket.send(message)
                except:  # noqa: E722  (the seed's bare except, kept on purpose)
                    target_socket.close()
                    del self.users[target_user]
                    log.warning("error sending a message to %s", target_user)
            else:
                log.info("user %s not found", target_user)
                sender_socket.send(encode_line(no_such_user(target_user)))
            return

        # BUG 9 (no lock): another thread may add or delete a user while this loop
        # walks the dict; its next step then raises RuntimeError ("dictionary changed
        # size during iteration"), which kicks whoever is sending. Each send() below
        # lets other threads run, so this happens often. Fixed in the reference server.
        for user, client_socket in self.users.items():
            if client_socket != sender_socket:
                try:
                    # BUG 8 (a slow reader freezes everyone after it): send() blocks this,
                    # the sender's, thread while the recipient's buffers are full, and
                    # the users after it in the dict wait too. When that reader dies,
                    # send() fails (BUG 2), or returns having sent only part of the
                    # message (nobody checks), and the loop's next step finds that the
                    # dict changed meanwhile (BUG 9): either way the stuck sender is
                    # kicked. Fixed in the reference server, where each client has an
                    # outbox and one sender thread writes without ever blocking.
                    client_socket.send(message)
                except:  # noqa: E722  (the seed's bare except, kept on purpose)
                    client_socket.close()
                    # BUG 2 (a dead recipient kicks the sender): deleting from the dict
                    # that the for loop is walking makes its next step raise
                    # RuntimeError. The users after this one miss the message, and the
                    # exception reaches handle_client's bare except, which disconnects
                    # the innocent sender. Fixed in the reference server, chatlab/server.py.
                    del self.users[user]

    def handle_client(self, client_socket: socket.socket, client_address: tuple[str, int]) -> None:
        """Ask for a name, register it, then relay everything this client sends."""
        log.info("new connection: %s", client_address)

        client_socket.send(encode_line(WELCOME))
        # BUG 11 (no name timeout): this recv() waits forever, so every silent
        # connection holds a thread. Fixed in the reference server (--name-timeout).
        # BUG 7 (name and message merge): whatever this one recv() returns is the name,
        # "alice\nhello" included, when a client sends both at once.
        user_name = strip_newline(client_socket.recv(1024).decode("utf-8"))
        # BUG 12 (the empty name): this is the only check on the name. A connection
        # that closed before naming itself made recv() return b"", so it registers as
        # "" and is announced as "*  joined"; its dead socket stays in the dict (see
        # BUG 1) until a broadcast trips over it (BUG 2). Fixed in the reference server,
        # which validates names.
        if user_name in self.users:
            client_socket.send(encode_line(name_taken(user_name)))
            client_socket.close()
            return
        others = sort_names(list(self.users))  # v1 (not in the seed): who is online, read unlocked
        self.users[user_name] = client_socket
        client_socket.send(encode_line(greeting(user_name, others)))  # v1: the accept line

        # BUG 13 (zombies): the join notice is sent outside the try below. When the
        # broadcast raises (BUG 2, BUG 9), this thread dies with the user still in the
        # dict: it keeps receiving, but nobody reads what it sends. Fixed in the
        # reference server, chatlab/server.py.
        self.broadcast(encode_line(joined(user_name)), client_socket)

        while True:
            try:
                # BUG 5 (no framing): one recv() is taken as one message, though TCP
                # delivers a stream: two lines may come in one chunk, one line in two,
                # and a line longer than 1024 bytes always comes in several. Fixed in
                # the reference server with a line buffer (chatlab.protocol.LineBuffer).
                message = client_socket.recv(1024)
                if not message:
                    # BUG 1 (a clean disconnect is never cleaned up): this leaves the
                    # loop without deleting the user and without a leave notice, so the
                    # name stays taken forever and the dead socket stays in the dict.
                    # Fixed in the reference server, chatlab/server.py.
                    break
                # BUG 6 (split characters): a chunk may end in the middle of a UTF-8
                # character (at byte 1024, or where the client's send ended), and
                # decode() then raises UnicodeDecodeError, which disconnects the sender.
                # (The seed decodes the same bytes three times; once is the same.)
                text = strip_newline(message.decode("utf-8"))
                log.info("%s: %s", user_name, text)

                if text.startswith("@"):
                    # BUG 3 ("@bob" without text): split() returns one piece, the
                    # unpacking raises ValueError, and the except below disconnects the
                    # sender. Fixed in the reference server (! usage: @name message).
                    target_user, personal_message = text.split(" ", 1)
                    target_user = target_user[1:]
                    self.broadcast(
                        encode_line(private_message(user_name, personal_message)),
                        client_socket,
                        target_user=target_user,
                    )
                else:
                    # BUG 10 (control characters): the text is relayed exactly as it
                    # came, escape sequences and carriage returns included. Fixed in the
                    # reference server (chatlab.protocol.sanitize).
                    self.broadcast(encode_line(public_message(user_name, text)), client_socket)
            except:  # noqa: E722  (the seed's bare except, kept on purpose)
                client_socket.close()
                del self.users[user_name]
                self.broadcast(encode_line(left(user_name)))
                break

    def start_server(self) -> None:
        """Accept connections forever, one new thread each (runs in the thread ``naive-accept``)."""
        # The seed creates, binds and listens here; the harness does that in start(),
        # so that the bound address is known before this thread runs.
        while True:
            accepted = self._accept()  # harness: the seed calls server_socket.accept()
            if accepted is None:
                return  # harness: stop() was called
            client_socket, client_address = accepted
            # BUG 14 (no TCP_NODELAY): the socket keeps Nagle's algorithm, which holds
            # back a small line until the previous one is acknowledged; with delayed
            # ACKs that adds 20 to 40 ms. Fixed in the reference server, chatlab/server.py.
            client_thread = threading.Thread(
                target=self._run_client,  # harness: handle_client, plus a record if it crashes
                args=(client_socket, client_address),
                name=f"naive-client-{client_address[1]}",
                # Harness: the seed's threads are not daemons. These are, so that a
                # thread stuck in this buggy code can never keep the process alive;
                # stop() still wakes and joins them.
                daemon=True,
            )
            with self._lock:  # harness: remember it, so that stop() can wake it
                self._connections.append(client_socket)
                self._threads.append(client_thread)
            client_thread.start()

    # ------------------------------------------------------------------------
    # The harness: not in the seed
    # ------------------------------------------------------------------------

    def start(self) -> NaiveServer:
        """Bind, listen and start the accept thread; return the server itself."""
        if self._listener is not None:
            raise RuntimeError("a NaiveServer can be started only once")
        server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            server_socket.bind((self.host, self.port))
            server_socket.listen()
            # accept() runs only when the selector says a connection waits, so the
            # accept thread can also wait for stop() at the same time.
            server_socket.setblocking(False)
        except BaseException:
            server_socket.close()
            raise
        self._listener = server_socket
        self._address = server_socket.getsockname()[:2]
        self._wakeup_reader, self._wakeup_writer = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wakeup_reader, selectors.EVENT_READ)
        self._accept_thread = threading.Thread(target=self.start_server, name="naive-accept")
        self._accept_thread.start()
        log.info("naive server listening on %s:%d", *self._address)
        return self

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the server is bound to; with port 0 the port the system chose."""
        if self._address is None:
            raise RuntimeError("the server is not started")
        return self._address

    @property
    def connections(self) -> list[socket.socket]:
        """Every socket the server has accepted so far (closed ones included), oldest first."""
        with self._lock:
            return list(self._connections)

    def _accept(self) -> tuple[socket.socket, tuple[str, int]] | None:
        """Wait for a connection or for stop(): return what accept() returns, or None to stop."""
        assert self._selector is not None and self._listener is not None
        while True:
            ready = [key.fileobj for key, _events in self._selector.select()]
            if self._wakeup_reader in ready or self._stopping.is_set():
                return None
            try:
                client_socket, client_address = self._listener.accept()
            except BlockingIOError:
                continue  # the connection left between select() and accept()
            client_socket.setblocking(True)  # as in the seed: plain blocking sockets
            return client_socket, client_address

    def _run_client(self, client_socket: socket.socket, client_address: tuple[str, int]) -> None:
        """The body of a client thread: handle_client, and a record if it crashes."""
        try:
            self.handle_client(client_socket, client_address)
        except Exception as error:
            # In the seed this exception escapes and Python prints it; the thread ends.
            # Here it is logged the same way and recorded; the thread ends just the same.
            name = threading.current_thread().name
            log.exception("exception in thread %s; it dies", name)
            with self._crashed:
                self.crashes.append(Crash(name, client_address, error))
                self._crashed.notify_all()

    def wait_for_crashes(self, count: int = 1, timeout: float = 5.0) -> list[Crash]:
        """Wait until at least ``count`` client threads have crashed; return all the crashes.

        Raises :class:`TimeoutError` if that does not happen within ``timeout`` seconds.
        """
        with self._crashed:
            if not self._crashed.wait_for(lambda: len(self.crashes) >= count, timeout):
                raise TimeoutError(f"{len(self.crashes)} of {count} crashes within {timeout} s")
            return list(self.crashes)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, wake every client thread and join them all, within ``timeout`` seconds.

        Safe to call more than once. The seed's threads would wait forever in recv(),
        or in send() to a client that stopped reading; shutting down their sockets
        wakes them: recv() returns b"" and send() fails.
        """
        if self._accept_thread is None or self._stopping.is_set():
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        assert self._wakeup_writer is not None and self._selector is not None and self._listener is not None
        self._wakeup_writer.send(b"\0")  # wakes the accept thread's select()
        self._accept_thread.join(timeout)
        self._selector.close()
        self._listener.close()
        self._wakeup_reader.close()
        self._wakeup_writer.close()

        with self._lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its thread, or already reset by the peer
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for connection in connections:
            connection.close()
        stuck = [thread.name for thread in threads + [self._accept_thread] if thread.is_alive()]
        if stuck:
            log.warning("naive server stopped, but these threads did not end: %s", ", ".join(stuck))
        else:
            log.info("naive server stopped")

    def serve_forever(self) -> None:
        """Start (if needed) and serve until Ctrl-C, then stop cleanly: for the command line."""
        if self._accept_thread is None:
            self.start()
        try:
            self._stopping.wait()  # only stop() or Ctrl-C ends this
        except KeyboardInterrupt:
            log.info("interrupted")
        finally:
            self.stop()

    def __enter__(self) -> NaiveServer:
        if self._accept_thread is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


if __name__ == "__main__":
    # As the seed ends with start_server(): serve on 127.0.0.1:1234 until Ctrl-C.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(threadName)s %(message)s")
    NaiveServer().serve_forever()
