"""The network simulator's proxy: a TCP relay that delivers bytes the way a real network would.

On 127.0.0.1 every ``send()`` tends to arrive as one ``recv()``, at once. That hides
the most common mistake in network code (taking one read for one message) until the
program meets a real network. :class:`NetworkSimulator` puts the real network back:
it listens on a port of its own, and for each client that connects it opens a
connection to the real server (the *upstream*) and relays the bytes both ways,
impaired as a :class:`~chatlab.sim.network.Network` says::

    client ──▶ [sim-up-3]   ──▶ server        up:   what the client writes
    client ◀── [sim-down-3] ◀── server        down: what the server writes

Use it from Python with ``with``::

    from chatlab.server import ChatServer
    from chatlab.sim import NetworkSimulator

    with ChatServer(port=0) as server, NetworkSimulator(server.address, "mobile", seed=7) as network:
        host, port = network.address        # connect clients here instead of to the server

or from the command line: ``chatlab sim --upstream 127.0.0.1:1234 --profile wifi``,
then ``chatlab client --port 1235`` or ``nc 127.0.0.1 1235``.

Threads
=======

One thread (``sim-accept``) accepts clients and connects each to the upstream (so
a slow upstream delays the next accept, by :data:`CONNECT_TIMEOUT` at most). Each
connection gets two threads, one per direction (``sim-up-N`` and ``sim-down-N``),
and each runs the same loop: hand
the sending side what its :class:`~chatlab.sim.shaper.Shaper` says is due, then wait
in ``select()`` until the next piece is due or more bytes arrive, and read them. A
direction reads nothing while its queue holds ``max_buffer`` bytes or during a
slow-consumer pause, so the sender's TCP window fills, as with a real slow reader.

The sockets are non-blocking. A thread with something scheduled wakes at least
every :data:`STEP` seconds to look at the clock (which a test may have moved); an
idle one sleeps in ``select()`` until bytes arrive, for :data:`IDLE_WAIT` seconds at
most. To end a connection promptly, :meth:`_Link.end` shuts down the reading side of
both sockets (``SHUT_RD``, which sends nothing to the peers): a thread waiting in
``select()`` wakes at once and sees the connection is ending. :meth:`NetworkSimulator.stop`
ends every connection that way, then joins every thread it started.

How connections end
===================

* a side closes (``recv`` returns ``b""``): once everything before it is delivered,
  the other side gets the same half-close (``shutdown(SHUT_WR)``), and the other
  direction carries on until it ends too, exactly as TCP allows;
* a side resets the connection: the other side is reset too (``SO_LINGER`` 0);
* a fault planned by the shaper: ``reset`` resets both sides; ``half-close`` gives
  the receiving side an end of stream as if the sender had half-closed (the
  sender's later bytes are dropped, the other direction goes on); ``mid-line``
  closes both sides after delivering a line only in part.

What the simulator did is kept as :class:`SimEvent` records (:meth:`NetworkSimulator.events`),
which the swarm turns into shaded windows on its charts.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chatlab.sim.network import DIRECTIONS, Network, get_profile
from chatlab.sim.shaper import Shaper

log = logging.getLogger("chatlab.sim")

STEP = 0.05  # seconds: the longest a thread with something scheduled waits before looking at the clock again
IDLE_WAIT = 0.5  # seconds an idle direction waits for bytes before looking around (ending wakes it sooner)
RECV_SIZE = 65536
MAX_BUFFER = 256 * 1024  # bytes a direction holds before it stops reading from its sender
CONNECT_TIMEOUT = 5.0  # seconds to reach the upstream server


@dataclass(frozen=True)
class SimEvent:
    """Something the simulator did to a connection.

    ``kind`` is ``open``, ``close``, ``upstream-failed``, a window (``stall``,
    ``slow-consumer``: from ``start`` to ``end``) or a fault (``reset``,
    ``half-close``, ``mid-line``: ``end == start``). Times are on the simulator's clock.
    """

    start: float
    end: float
    connection: int  #: the connection's number, counted from 0 in accepting order
    client: tuple[str, int]  #: the client's address, as the simulator saw it
    direction: str  #: "up", "down", or "" for the whole connection
    kind: str
    detail: str = ""


class _Link:
    """One relayed connection: the two sockets, the two shapers, and how it ends."""

    def __init__(self, number: int, client: socket.socket, client_address: tuple[str, int], server: socket.socket,
                 network: Network, seed: int | str, origin: float) -> None:
        self.number = number
        self.client = client
        self.client_address = client_address
        self.server = server
        # Each shaper is used by one pump thread only, until both pumps are done.
        self.shapers = {
            direction: Shaper(network.direction(direction), f"{seed}/{number}/{direction}", origin)
            for direction in DIRECTIONS
        }
        self.ending = threading.Event()  # set: both pumps stop, and the last one closes the sockets
        self._lock = threading.Lock()  # guards: reset, pumps_running
        self.reset = False  # close both sockets with an RST (SO_LINGER 0) rather than a FIN
        self.pumps_running = len(DIRECTIONS)

    def end(self, reset: bool) -> None:
        """Ask both pumps to stop, and wake them; with ``reset``, the sockets will be closed with an RST."""
        with self._lock:
            self.reset = self.reset or reset
        self.ending.set()
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RD)  # a pump waiting to read wakes up now
            except OSError:
                pass  # not connected any more: nobody waits on it

    def pump_done(self) -> bool:
        """One pump has finished; True for the last one, which must close the sockets."""
        with self._lock:
            self.pumps_running -= 1
            return self.pumps_running == 0

    def close(self) -> bool:
        """Close both sockets, with an RST if a reset was asked for (called by the last pump); True if reset."""
        with self._lock:
            reset = self.reset
        for sock in (self.client, self.server):
            try:
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            except OSError:
                pass  # already gone: nothing left to close
        return reset


class NetworkSimulator:
    """A TCP proxy in front of ``upstream`` that impairs every connection as ``network`` says.

    ``network`` is a :class:`~chatlab.sim.network.Network` or a profile's name.
    ``network_for(number, client_address)``, when given, chooses the network of
    each connection instead (a Network or a profile's name), so that one simulator
    can give, say, every fifth connection a flaky link.
    ``seed`` makes it reproducible: connection ``n``'s direction ``d`` draws from
    generators seeded with ``f"{seed}/{n}/{d}"``. ``clock`` (seconds, monotonic) is
    the one every timetable is computed on; it is ``time.monotonic`` unless a test
    replaces it. ``on_event`` is called (from a simulator thread) with every
    :class:`SimEvent` as it is recorded.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        network: Network | str = "lan",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | str = 0,
        clock: Callable[[], float] = time.monotonic,
        max_buffer: int = MAX_BUFFER,
        on_event: Callable[[SimEvent], None] | None = None,
        network_for: Callable[[int, tuple[str, int]], Network | str] | None = None,
    ) -> None:
        self.upstream = upstream
        self.network = get_profile(network) if isinstance(network, str) else network
        self.network_for = network_for
        self.seed = seed
        self.clock = clock
        self.max_buffer = max_buffer
        self.on_event = on_event
        self._listen_address = (host, port)
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()  # set: every thread winds down
        self._accept_thread = threading.Thread(target=self._accept_loop, name="sim-accept")
        self._lock = threading.Lock()  # guards: _threads, _events, _connections, _links
        self._threads: list[threading.Thread] = []  # pump threads started, pruned when finished
        self._events: list[SimEvent] = []
        self._connections = 0  # connections accepted so far
        self._links: dict[int, _Link] = {}  # connections being relayed, by number

    # -- starting and stopping ---------------------------------------------------------------

    def start(self) -> NetworkSimulator:
        """Listen and start accepting; returns self. OSError if the address cannot be used."""
        self._listener = socket.create_server(self._listen_address)
        self._listener.setblocking(False)
        self._accept_thread.start()
        return self

    @property
    def address(self) -> tuple[str, int]:
        """Where clients connect: (host, port) of the simulator's listening socket."""
        assert self._listener is not None, "start() the simulator first"
        host, port = self._listener.getsockname()[:2]
        return host, port

    def stop(self) -> None:
        """Stop accepting, end every connection, and join every thread. Safe to call twice."""
        self._stopping.set()
        if self._accept_thread.is_alive():
            self._accept_thread.join()
        with self._lock:
            threads = list(self._threads)
            links = list(self._links.values())
        for link in links:
            link.end(reset=False)
        for thread in threads:
            thread.join()

    def __enter__(self) -> NetworkSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def events(self) -> list[SimEvent]:
        """A copy of everything recorded so far, in recording order."""
        with self._lock:
            return list(self._events)

    def _record(self, event: SimEvent) -> None:
        with self._lock:
            self._events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    # -- accepting ------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        try:
            while not self._stopping.is_set():
                readable, _, _ = select.select([self._listener], [], [], STEP)
                if not readable:
                    continue
                try:
                    client, client_address = self._listener.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    continue  # the client gave up before we got to it
                self._open(client, client_address[:2])
        except Exception:  # one top-level handler per thread: log, and let stop() clean up
            log.exception("simulator: the accepting thread failed")
        finally:
            self._listener.close()

    def _open(self, client: socket.socket, client_address: tuple[str, int]) -> None:
        """Connect a new client to the upstream server and start its two pumps."""
        with self._lock:
            number = self._connections
            self._connections += 1
            self._threads = [thread for thread in self._threads if thread.is_alive()]
        now = self.clock()
        try:
            server = socket.create_connection(self.upstream, timeout=CONNECT_TIMEOUT)
        except OSError as error:
            self._record(SimEvent(now, now, number, client_address, "", "upstream-failed", str(error)))
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # the client sees a reset: nobody is there
            return
        try:
            for sock in (client, server):
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # pieces leave as they are cut
        except OSError as error:  # the client left already: nothing to relay, keep accepting others
            self._record(SimEvent(now, now, number, client_address, "", "close", f"gone before relaying: {error}"))
            client.close()
            server.close()
            return
        network = self.network
        if self.network_for is not None:
            chosen = self.network_for(number, client_address)
            network = get_profile(chosen) if isinstance(chosen, str) else chosen
        link = _Link(number, client, client_address, server, network, self.seed, now)
        self._record(SimEvent(now, now, number, client_address, "", "open", network.name))
        pumps = [
            threading.Thread(target=self._pump, args=(link, direction), name=f"sim-{direction}-{number}")
            for direction in DIRECTIONS
        ]
        with self._lock:
            self._threads += pumps
            self._links[number] = link
        for pump in pumps:
            pump.start()

    # -- relaying one direction ---------------------------------------------------------------------

    def _pump(self, link: _Link, direction: str) -> None:
        """Relay one direction of ``link`` until it ends (see "How connections end")."""
        source, sink = (link.client, link.server) if direction == "up" else (link.server, link.client)
        shaper = link.shapers[direction]
        source_open = True  # the sender has not closed its side
        sink_shut = False  # we have half-closed the receiving side
        try:
            while not (self._stopping.is_set() or link.ending.is_set()):
                now = self.clock()
                for piece in shaper.pop_due(now):
                    if piece.data and not sink_shut and not self._send_all(link, sink, piece.data):
                        return
                    if piece.action:
                        self._record(SimEvent(now, now, link.number, link.client_address, direction, piece.action,
                                              f"after {shaper.passed} bytes"))
                        if piece.action == "half-close":
                            sink.shutdown(socket.SHUT_WR)
                            sink_shut = True
                        else:
                            link.end(reset=piece.action == "reset")
                            return
                now = self.clock()  # sending may have taken a while
                if not source_open and shaper.is_empty():
                    if not sink_shut:
                        sink.shutdown(socket.SHUT_WR)  # pass the sender's half-close on
                    return
                due = shaper.next_due()
                paused_until = shaper.reading_paused_until(now)
                wait = IDLE_WAIT if due is None and paused_until is None else STEP
                if due is not None:
                    wait = min(wait, max(0.0, due - now))
                if paused_until is not None:
                    wait = min(wait, max(0.0, paused_until - now))
                if not (source_open and paused_until is None and shaper.queued_bytes < self.max_buffer):
                    link.ending.wait(wait)  # nothing to read for now: wait for the next piece's time
                    continue
                readable, _, _ = select.select([source], [], [], wait)
                if not readable or shaper.reading_paused_until(self.clock()) is not None:
                    continue  # nothing came, or a slow-consumer pause began while we waited
                try:
                    data = source.recv(RECV_SIZE)
                except BlockingIOError:
                    continue
                if data:
                    shaper.push(data, self.clock())
                else:
                    source_open = False
        except OSError as error:  # a reset or a broken pipe on either side: the connection is over
            log.debug("simulator: connection %d %s: %s", link.number, direction, error)
            link.end(reset=True)
        except Exception:  # one top-level handler per thread
            log.exception("simulator: connection %d %s failed", link.number, direction)
            link.end(reset=True)
        finally:
            if link.pump_done():
                self._finish(link)

    def _send_all(self, link: _Link, sink: socket.socket, data: bytes) -> bool:
        """Send all of ``data``, waiting for room; False if the connection ended meanwhile."""
        view = memoryview(data)
        while view:
            if self._stopping.is_set() or link.ending.is_set():
                return False
            _, writable, _ = select.select([], [sink], [], STEP)
            if not writable:
                continue
            try:
                sent = sink.send(view)
            except BlockingIOError:
                continue
            view = view[sent:]
        return True

    def _finish(self, link: _Link) -> None:
        """Both directions are done: record the windows each direction went through, and close."""
        now = self.clock()
        with self._lock:
            del self._links[link.number]
        for direction, shaper in link.shapers.items():
            for window in shaper.windows_until(now):
                self._record(SimEvent(window.start, min(window.end, now), link.number, link.client_address,
                                      direction, window.kind))
        reset = link.close()
        self._record(SimEvent(now, now, link.number, link.client_address, "", "close", "reset" if reset else "closed"))
