"""Exercise 7 (the client): a receiver thread, an input loop, a clean exit.

``run_client`` is a chat client without the terminal: it reads what the user types
from ``typed`` (any iterable of lines; it may block, like ``input()``) and shows
every line from the server with ``show``. Read this folder's README, then look for
``TODO``; ``chatlab ex check 7`` says what still fails.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable


def run_client(host: str, port: int, name: str, typed: Iterable[str], show: Callable[[str], None]) -> None:
    """Connect as ``name``, send each typed line, show each received one; return once done.

    The client is done when the user types ``/quit`` (the server answers and closes),
    when ``typed`` ends (Ctrl-D: send ``/quit``), or when the server closes.
    """
    sock = socket.create_connection((host, port), timeout=5)
    sock.settimeout(None)
    sock.sendall((name + "\n").encode())

    def receive() -> None:
        # TODO: one recv() is not one line (exercise 1): buffer the bytes, show each
        # complete line without its LF, and stop at the end of the stream.
        while True:
            data = sock.recv(1024)
            if not data:
                break
            show(data.decode("utf-8").rstrip("\n"))

    receiver = threading.Thread(target=receive, name="receiver", daemon=True)
    receiver.start()
    for line in typed:
        sock.sendall((line + "\n").encode())
        if line == "/quit":
            break
    # TODO: this returns at once, with the receiver still running (the seed's client
    # even hangs until one more line arrives). Once the user is done (after /quit, or
    # when typed ends, in which case send /quit), wait for the server to close the
    # connection, join the receiver thread, and close the socket. If the server
    # closes first, the input loop must stop too (check a threading.Event between
    # lines). Name the thread and do not make it a daemon.
    sock.close()
