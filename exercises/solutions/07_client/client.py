"""Exercise 7, solved: a receiver thread, an input loop, a clean exit.

What changed: the receiver frames what it reads (exercise 1) and sets an Event at
the end of the stream. The input loop stops at /quit, at the end of input (then it
sends /quit itself) or when that Event is set. Then the client waits, with a
timeout, for the server to close, shuts the socket down itself if it must (which
wakes the receiver's recv()), joins the receiver and closes the socket: nothing is
left running, and nothing waits for one more line.

The full terminal client is ``chatlab/terminal.py``; ``chatlab/client.py`` is the
programmatic one.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable

from chatlab.protocol import Line, LineBuffer, encode_line

JOIN_TIMEOUT = 5.0  # seconds to wait for the server to close after /quit


def run_client(host: str, port: int, name: str, typed: Iterable[str], show: Callable[[str], None]) -> None:
    """Connect as ``name``, send each typed line, show each received one; return once done."""
    sock = socket.create_connection((host, port), timeout=5)
    sock.settimeout(None)
    server_closed = threading.Event()  # set by the receiver at the end of the stream

    def receive() -> None:
        buffer = LineBuffer(None)
        try:
            while data := sock.recv(65536):
                for frame in buffer.feed(data):
                    if isinstance(frame, Line):
                        show(frame.text)
        except OSError:
            pass  # reset, or we shut the socket down: the end either way
        finally:
            server_closed.set()

    receiver = threading.Thread(target=receive, name=f"receiver-{name}")
    receiver.start()
    try:
        sock.sendall(encode_line(name))
        quit_sent = False
        for line in typed:
            if server_closed.is_set():
                break
            sock.sendall(encode_line(line))
            if line.strip().casefold() == "/quit":
                quit_sent = True
                break
        if not quit_sent and not server_closed.is_set():
            sock.sendall(encode_line("/quit"))  # typed ended (Ctrl-D): leave politely
    except OSError:
        pass  # the server is gone; the receiver has seen it too
    finally:
        if not server_closed.wait(JOIN_TIMEOUT):  # the server answers /quit and closes
            try:
                sock.shutdown(socket.SHUT_RDWR)  # it did not: wake the receiver ourselves
            except OSError:
                pass
        receiver.join(JOIN_TIMEOUT)
        sock.close()
