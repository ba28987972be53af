"""``python -m chatlab.zoo NAME --port N``: run one zoo server; ``--list`` shows them all.

Python switches threads every microsecond in this process (``--switch-interval``),
so that a race bug shows itself within seconds of churn instead of once a month.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from chatlab import protocol
from chatlab.zoo import CORRECT, ZOO, server_class

SWITCH_INTERVAL = 1e-6  # seconds between two forced thread switches (Python's default is 0.005)


def _listing() -> str:
    width = max(len(name) for name in [CORRECT, *ZOO])
    rows = [f"{CORRECT:<{width}}  {'-':<12}  no bug: the correct server the others start from"]
    rows += [f"{name:<{width}}  {cls.category:<12}  {cls.description}" for name, cls in ZOO.items()]
    return f"{'name':<{width}}  {'caught by':<12}  the planted bug\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatlab.zoo", description="Run a chat server with one planted bug.")
    parser.add_argument("name", nargs="?", help="which zoo server (see --list)")
    parser.add_argument("--list", action="store_true", help="list the zoo servers and the category that catches each")
    parser.add_argument("--host", default=protocol.DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=protocol.DEFAULT_PORT)
    parser.add_argument("--outbox", type=int, default=protocol.OUTBOX_LIMIT, help="bytes queued per client before it is too slow")
    parser.add_argument("--send-buffer", type=int, help="SO_SNDBUF per client in bytes (default: the system's)")
    parser.add_argument("--switch-interval", type=float, default=SWITCH_INTERVAL, help="sys.setswitchinterval (default %(default)s s)")
    args = parser.parse_args(argv)
    if args.list:
        print(_listing())
        return 0
    if args.name is None:
        parser.print_usage(sys.stderr)
        print("python -m chatlab.zoo: name a zoo server, or use --list", file=sys.stderr)
        return 2
    try:
        cls = server_class(args.name)
    except KeyError:
        print(f"python -m chatlab.zoo: no zoo server called {args.name!r}; --list shows them", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535 or args.switch_interval <= 0 or args.outbox < 1:
        print("python -m chatlab.zoo: --port must be 0-65535, --outbox and --switch-interval positive", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    sys.setswitchinterval(args.switch_interval)
    server = cls(args.host, args.port, outbox_limit=args.outbox, send_buffer=args.send_buffer)
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.set())  # before listening: no early SIGTERM is lost
    try:
        server.start()
    except OSError as error:
        print(f"python -m chatlab.zoo: cannot listen on {args.host}:{args.port}: {error.strerror or error}", file=sys.stderr)
        return 1
    try:
        stop_requested.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
