"""The naive client: the original classroom chat client, kept with its bug, speaking protocol v1.

This is the seed's ``client.py`` (see the course material), statement for statement,
with two changes for v1: every line the user types is sent with an LF, and the
host and port are parameters. Run it against any chatlab server::

    python -m chatlab.naive_client --port 1234

The first line you type is your name; then every line is a message, ``@name text``
is a private message, and ``exit`` is meant to leave.

The bug: ``exit`` does not let the program end
==============================================

Typing ``exit`` closes the socket and ends the input loop, but the program keeps
running until the next line arrives from the server; then it prints that line,
prints ``Error``, and only then exits. If nobody says anything, it waits forever.

Why: two threads share one socket. The receiver thread is blocked in ``recv()``.
The main thread calls ``close()``, which on Linux does not wake it: ``close()``
only removes the file descriptor from the process's table, while the ``recv()``
already in progress holds its own reference to the socket and goes on waiting
(nor is a FIN sent: the connection stays open as long as that reference lives).
When the next line arrives, ``recv()`` returns it; the receiver prints it, calls
``recv()`` again on the now closed socket, gets ``OSError: Bad file descriptor``,
prints ``Error`` and ends. Python waits for every non-daemon thread before the
process exits, so until then the process cannot end.

The fix is ``shutdown(socket.SHUT_RDWR)`` before ``close()``: shutdown acts on the
connection itself, so it wakes a ``recv()`` blocked in any thread (it returns
``b""``) and sends the FIN. ``chatlab/client.py`` does exactly that in
``ChatClient.close()``. (Making the receiver a daemon thread would hide the hang,
but the server would still not learn that we left until the next line.)

The seed has the same flaw at end of input: ``input()`` raises EOFError, the main
thread dies, and the receiver keeps the process alive in the same way. It is kept.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading

from chatlab.protocol import DEFAULT_HOST, DEFAULT_PORT


def receive_messages(client_socket: socket.socket) -> None:
    """Print whatever the server sends, until it closes the connection or recv() fails."""
    while True:
        try:
            message = client_socket.recv(1024).decode("utf-8")
            if message:
                # v1 lines end in LF already (the seed's print added the newline).
                print(message, end="", flush=True)
            else:
                break
        except:  # noqa: E722  (the seed's bare except, kept on purpose)
            # After ``exit`` this is where the receiver finally notices: the socket was
            # closed under it, so its next recv() fails with "Bad file descriptor".
            print("Error", flush=True)
            client_socket.close()
            break


def start_client(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Connect, start the receiver thread, and send each line typed until ``exit``."""
    client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client_socket.connect((host, port))

    receive_thread = threading.Thread(target=receive_messages, args=(client_socket,))
    receive_thread.start()

    while True:
        message = input()
        if message.lower() == "exit":
            break
        client_socket.send((message + "\n").encode("utf-8"))  # v1: one line, one LF

    # THE BUG: close() does not wake the receiver thread blocked in recv() (see the
    # module docstring). Fixed in chatlab/client.py, which calls
    # shutdown(socket.SHUT_RDWR) first.
    client_socket.close()


def main(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
    """Run the naive client; returns 0 once the input loop ends (the receiver may still be running)."""
    start_client(host, port)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The seed's chat client, bug included.")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    arguments = parser.parse_args()
    sys.exit(main(arguments.host, arguments.port))
