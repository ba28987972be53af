"""The benchmark's load generator: many chat clients in one process, driven by one selector loop.

The bot swarm gives every bot a thread, which is right for checking behaviour and
wrong for measuring a server at 200,000 deliveries a second on two cores: the
harness would be slower than the server it measures. Here one process drives a few
hundred clients with non-blocking sockets and one ``select()`` loop, and does as
little per line as possible.

Open loop, and latency from the planned time
============================================

Each client's send times are planned before the run (Poisson arrivals, seeded). A
line carries its *planned* send time, and a receiver computes latency as arrival
minus planned time. If the server falls behind, or the harness does, lines are sent
late and that lateness counts as latency: measuring from the actual send time would
hide exactly the stalls a user feels ("coordinated omission"). The harness records
its own lateness separately, so a slow harness is reported instead of being blamed
on the server.

Probes and bulk readers
=======================

At 200,000 deliveries a second, reading every line the moment it lands would cost
the harness one ``recv()`` per line: more CPU than the server it measures. So only
a few clients, the *probes*, read as soon as data arrives and time every line; the
others, the *bulk readers*, are read every 20 ms (5 ms at saturation), in big
gulps, and only counted (they lose nothing, and they read often enough that no
socket buffer fills). Every probe receives every other client's lines, so the probes' latencies
are an unbiased sample of all deliveries.

Saturation is the exception: every client sends rounds of lines as fast as the
server takes them, with a window that keeps the deliveries in flight bounded, and
only deliveries per second are measured.
"""

from __future__ import annotations

import heapq
import random
import re
import selectors
import socket
import time
from array import array
from collections.abc import MutableSequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe

RECV_SIZE = 262144  # bytes per recv(); large, to keep the number of calls down
BULK_INTERVAL = {"poisson": 0.02, "saturate": 0.005, "idle": 0.02}  # seconds between two reads of the bulk readers
CONNECT_TIMEOUT = 20.0  # seconds for every client of a worker to connect and be greeted
SharedCounters = MutableSequence[int]  # a multiprocessing.Array("q", ...) in practice
_PLANNED = re.compile(rb": (\d{10,}) ")  # the planned time (ns) right after "sender: "
# Every benchmark line is padded with "x" up to its size, and no server notice ends
# in "x" (names here are c0, c1...), so counting this counts chat lines, not joins.
CHAT_LINE_END = b"x\n"
SETTLE_QUIET = 0.3  # seconds without data that mean every join notice has arrived
SETTLE_TIMEOUT = 60.0  # seconds at most to wait for that


@dataclass
class Plan:
    """What one worker process must do; sent to it through a pipe."""

    address: tuple[str, int]
    names: list[str]
    mode: str  #: "poisson" (lines at random moments), "saturate" or "idle"
    rate: float  #: lines per second per client (poisson)
    duration: float  #: seconds of steady load
    line_size: int  #: bytes of each line's text
    seed: int
    window: int = 0  #: saturate: deliveries allowed in flight across all workers
    round_lines: int = 4  #: saturate: lines per client per round
    probes: list[bool] = field(default_factory=list)  #: per name: read at once and time every line


@dataclass
class Outcome:
    """What one worker measured; sent back through the pipe."""

    connected: int = 0
    sent: int = 0
    received: int = 0  #: chat lines received by this worker's clients
    received_in_steady: int = 0  #: of those, received before the steady phase ended
    latencies_ns: bytes = b""  #: array('q') of arrival minus planned time, one per received line
    lateness_ns: bytes = b""  #: array('q') of actual minus planned send time, one per sent line
    cpu_seconds: float = 0.0  #: this process's CPU time during the steady phase
    steady_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    disconnected: int = 0  #: clients whose connection the server closed or reset


class _Client:
    """One benchmark client: a non-blocking socket, what is left to send, and a partial line."""

    __slots__ = ("sock", "name", "probe", "pending", "tail", "open")

    def __init__(self, sock: socket.socket, name: str, probe: bool) -> None:
        self.sock = sock
        self.name = name
        self.probe = probe  # read at once and time every line, or read in bulk and count
        self.pending = b""  # bytes the socket did not take yet
        self.tail = b""  # the unfinished last line of the previous read
        self.open = True


def _connect_all(plan: Plan) -> list[_Client]:
    """Connect every client, send its name, and wait for its greeting (blocking, with a deadline)."""
    clients = []
    deadline = time.monotonic() + CONNECT_TIMEOUT
    for index, name in enumerate(plan.names):
        sock = socket.create_connection(plan.address, timeout=max(0.1, deadline - time.monotonic()))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(name.encode() + b"\n")
        clients.append(_Client(sock, name, plan.probes[index] if plan.probes else True))
    for client in clients:  # welcome, then greeting: two lines each
        data = b""
        while data.count(b"\n") < 2:
            client.sock.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = client.sock.recv(RECV_SIZE)
            if not chunk:
                raise ConnectionError(f"{client.name} was closed during the handshake: {data!r}")
            data += chunk
        answer = data.split(b"\n")[1]  # the line after the welcome answers the name
        if not answer.startswith(b"* Hi "):
            raise ConnectionError(f"{client.name} was refused: {answer.decode(errors='replace')}")
        client.sock.setblocking(False)
    return clients


def _schedule(plan: Plan, start_ns: int) -> list[tuple[int, int]]:
    """Every planned send as (time in ns, client index), in time order (Poisson per client)."""
    rng = random.Random(plan.seed)
    end_ns = start_ns + int(plan.duration * 1e9)
    heap: list[tuple[int, int]] = []
    for index in range(len(plan.names)):
        moment = start_ns + int(rng.expovariate(plan.rate) * 1e9)
        while moment < end_ns:
            heap.append((moment, index))
            moment += int(rng.expovariate(plan.rate) * 1e9)
    heapq.heapify(heap)
    return heap


class _Loop:
    """The selector loop shared by every mode: receive everything, count it, time the probes' lines."""

    def __init__(self, plan: Plan, clients: list[_Client]) -> None:
        self.plan = plan
        self.clients = clients
        self.selector = selectors.DefaultSelector()  # the probes: waited on
        self.bulk = selectors.DefaultSelector()  # the bulk readers: polled every BULK_INTERVAL
        self.next_bulk_ns = 0
        self.bulk_interval_ns = int(BULK_INTERVAL[plan.mode] * 1e9)
        for index, client in enumerate(clients):
            (self.selector if client.probe else self.bulk).register(client.sock, selectors.EVENT_READ, index)
        self.outcome = Outcome(connected=len(clients))
        self.latencies = array("q")
        self.lateness = array("q")
        self.measure_latency = plan.mode == "poisson"
        self.padding = b"x" * max(1, plan.line_size - 21)

    def receive(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the probes' data and read it; read the bulk readers when due."""
        now = time.monotonic_ns()
        if now >= self.next_bulk_ns:
            self.next_bulk_ns = now + self.bulk_interval_ns
            self._read(self.bulk.select(0))
        timeout = min(timeout, (self.next_bulk_ns - now) / 1e9)
        self._read(self.selector.select(max(0.0, timeout)))

    def _read(self, ready: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, _ in ready:
            client = self.clients[key.data]
            try:
                data = client.sock.recv(RECV_SIZE)
            except BlockingIOError:
                continue
            except OSError as error:
                self._lost(client, f"{client.name}: {error}")
                continue
            if not data:
                self._lost(client, f"{client.name}: closed by the server")
                continue
            now = time.monotonic_ns()
            data = client.tail + data
            end = data.rfind(b"\n") + 1
            client.tail = data[end:]
            if self.measure_latency and client.probe:
                planned = _PLANNED.findall(data, 0, end)
                self.outcome.received += len(planned)
                self.latencies.extend([now - int(moment) for moment in planned])
            else:
                self.outcome.received += data.count(CHAT_LINE_END, 0, end)

    def send(self, index: int, planned_ns: int) -> None:
        """Send one line planned for ``planned_ns`` (its text carries that time)."""
        client = self.clients[index]
        if not client.open:
            return
        line = b"%d %d %s\n" % (planned_ns, self.outcome.sent, self.padding)
        self.outcome.sent += 1
        self.lateness.append(time.monotonic_ns() - planned_ns)
        self._write(client, line)

    def _write(self, client: _Client, data: bytes) -> bool:
        """Send ``data`` after what is pending; keep what the socket does not take. False if full."""
        data = client.pending + data if client.pending else data
        try:
            sent = client.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as error:
            self._lost(client, f"{client.name}: {error}")
            return False
        client.pending = data[sent:]
        return not client.pending

    def flush_pending(self) -> None:
        for client in self.clients:
            if client.pending and client.open:
                self._write(client, b"")

    def _lost(self, client: _Client, reason: str) -> None:
        if client.open:
            client.open = False
            self.outcome.disconnected += 1
            if len(self.outcome.errors) < 5:
                self.outcome.errors.append(reason)
            (self.selector if client.probe else self.bulk).unregister(client.sock)

    def close(self) -> Outcome:
        self.selector.close()
        self.bulk.close()
        for client in self.clients:
            client.sock.close()
        self.outcome.latencies_ns = self.latencies.tobytes()
        self.outcome.lateness_ns = self.lateness.tobytes()
        return self.outcome


def _poisson(loop: _Loop, start_ns: int) -> None:
    heap = _schedule(loop.plan, start_ns)
    while heap:
        now = time.monotonic_ns()
        while heap and heap[0][0] <= now:
            planned, index = heapq.heappop(heap)
            loop.send(index, planned)
        loop.flush_pending()
        wait = (heap[0][0] - time.monotonic_ns()) / 1e9 if heap else 0
        loop.receive(max(0.0, wait))


def _saturate(loop: _Loop, start_ns: int, counters: SharedCounters, slot: int, total_clients: int) -> None:
    """Rounds of lines from every client, as long as the deliveries in flight fit the window.

    Workers share their counts of lines sent and received through ``counters`` (two
    slots per worker, each written only by its owner), so the window holds across
    processes: no recipient's outbox in the server grows past a few hundred kilobytes.
    """
    end_ns = start_ns + int(loop.plan.duration * 1e9)
    others = total_clients - 1
    round_lines = loop.plan.round_lines
    block = b"".join(b"%d %s\n" % (start_ns, loop.padding) for _ in range(round_lines))
    while time.monotonic_ns() < end_ns:
        counters[2 * slot] = loop.outcome.sent
        counters[2 * slot + 1] = loop.outcome.received
        sent_total = sum(counters[0::2])
        received_total = sum(counters[1::2])
        if sent_total * others - received_total < loop.plan.window:
            for client in loop.clients:
                if client.open and not client.pending and loop._write(client, block):
                    loop.outcome.sent += round_lines
        loop.flush_pending()
        loop.receive(0.001)


def _settle(loop: _Loop) -> None:
    """Read join notices until the line is quiet, so the steady phase starts on a calm server.

    Every join is announced to everyone already there: a thousand clients joining
    make half a million notices, which must not be mistaken for the load.
    """
    selector = selectors.DefaultSelector()
    for index, client in enumerate(loop.clients):
        selector.register(client.sock, selectors.EVENT_READ, index)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    with selector:
        while time.monotonic() < deadline:
            ready = selector.select(SETTLE_QUIET)
            if not ready:
                return
            for key, _ in ready:
                try:
                    if not loop.clients[key.data].sock.recv(RECV_SIZE):
                        selector.unregister(key.fileobj)  # closed: the steady phase will report it
                except BlockingIOError:
                    pass
                except OSError:
                    selector.unregister(key.fileobj)


def run_worker(pipe: Pipe, plan: Plan, counters: SharedCounters | None = None, slot: int = 0, total_clients: int = 0) -> None:
    """The body of one worker process: connect, report ready, run on "go", drain, report."""
    try:
        clients = _connect_all(plan)
    except (OSError, ConnectionError) as error:
        pipe.send(("failed", f"{type(error).__name__}: {error}"))
        return
    loop = _Loop(plan, clients)
    pipe.send(("connected", len(clients)))
    message, _ = pipe.recv()
    assert message == "settle"
    _settle(loop)
    pipe.send(("ready", len(clients)))
    message, start_ns = pipe.recv()
    assert message == "go"
    cpu_before = time.process_time()
    while time.monotonic_ns() < start_ns:
        loop.receive(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
    if plan.mode == "poisson":
        _poisson(loop, start_ns)
    elif plan.mode == "saturate":
        assert counters is not None
        _saturate(loop, start_ns, counters, slot, total_clients)
    else:
        end_ns = start_ns + int(plan.duration * 1e9)
        while time.monotonic_ns() < end_ns:
            loop.receive(max(0.0, (end_ns - time.monotonic_ns()) / 1e9))
    loop.outcome.cpu_seconds = time.process_time() - cpu_before
    loop.outcome.steady_seconds = (time.monotonic_ns() - start_ns) / 1e9
    loop.outcome.received_in_steady = loop.outcome.received
    pipe.send(("sent", loop.outcome.sent))
    message, expected, deadline_ns = pipe.recv()
    assert message == "expect"
    while loop.outcome.received < expected and time.monotonic_ns() < deadline_ns:
        loop.flush_pending()
        loop.receive(min(0.05, max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9)))
    pipe.send(("done", loop.close()))
