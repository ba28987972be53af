"""The swarm engine: one thread per bot, a planned schedule, and a record of everything.

A run goes through four phases::

    start barrier ─ ramp-up ─────── steady ─────────── drain ──┤ stop
                    bots connect    bots run tasks     nobody sends; wait (bounded)
                    one by one      on their schedule  for every expected delivery

Each bot has one thread (:class:`BotRunner`). Between two planned tasks it waits in
``select()`` on its socket, so it reads what arrives the moment it arrives and is
never busy while idle. Every send and every received line is appended to the bot's
own event list (no lock needed: only that thread appends), and the lists are merged
after the run. The bots judge nothing: the checker and the metrics work on the
merged log afterwards.

Two things keep the measurement honest:

* the schedule is *planned* (open loop): a task is due at its planned time whatever
  happened to the previous one, and latency is measured from the planned time;
* a control thread (:class:`StallMonitor`) sleeps in short steps and records how late
  it wakes. If the harness itself is starved (too many threads for the cores), the
  report shows it, instead of blaming the server.
"""

from __future__ import annotations

import random
import runpy
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chatlab import protocol
from chatlab.protocol import Line, LineBuffer, Notice, is_valid_name, parse_server_line
from chatlab.swarm import events as ev
from chatlab.swarm.events import Event
from chatlab.swarm.scenario import Bot, Scenario, poisson

CONNECT_TIMEOUT = 10.0  # seconds for a connection and its name to be accepted
QUIT_TIMEOUT = 5.0  # seconds a leaving bot waits for the server to close
STALL_STEP = 0.01  # seconds between two wake-ups of the stall monitor
THREAD_STACK_SIZE = 256 * 1024


class ScenarioError(Exception):
    """A scenario file that cannot be loaded or makes no sense."""


def load_scenario(path: str | Path) -> Scenario:
    """Run a scenario file and return its ``scenario`` variable."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"no such scenario file: {path}")
    try:
        namespace = runpy.run_path(str(path))
    except Exception as error:  # the file is the user's: report, do not crash
        raise ScenarioError(f"{path} failed to load: {type(error).__name__}: {error}") from error
    scenario = namespace.get("scenario")
    if not isinstance(scenario, Scenario):
        raise ScenarioError(f"{path} defines no `scenario = Scenario(...)`")
    return scenario


# -- names and words, drawn once from faker with the run's seed ----------------------------


@dataclass
class Vocabulary:
    """Names and words for a run, generated up front from one seeded Faker.

    Creating a Faker per bot would cost seconds for a thousand bots; instead the
    run draws everything it needs once, and each bot builds sentences from these
    words with its own seeded random generator.
    """

    names: list[str]
    words: list[str]

    @classmethod
    def generate(cls, seed: int, count: int) -> Vocabulary:
        from faker import Faker  # imported here: faker is slow to import

        fake = Faker()
        fake.seed_instance(seed)
        names: list[str] = []
        taken: set[str] = set()
        while len(names) < count:
            name = fake.first_name()
            if len(names) >= 200:  # first names run out: number them
                name = f"{name}{len(names)}"
            if is_valid_name(name) and name.casefold() not in taken:
                names.append(name)
                taken.add(name.casefold())
        words = sorted({word for word in fake.words(nb=400) if word.isalpha()})
        return cls(names, words)


# -- one bot ------------------------------------------------------------------------------


@dataclass
class Timeline:
    """The run's phase boundaries, in ``time.monotonic_ns()``."""

    start_ns: int
    steady_start_ns: int
    steady_end_ns: int


class BotRunner:
    """Runs one :class:`Bot` in its own thread: connects, schedules tasks, records events."""

    def __init__(
        self,
        bot_class: type[Bot],
        label: str,
        name: str,
        seed: int,
        vocabulary: Vocabulary,
        address: tuple[str, int],
        go: threading.Event,
        draining: threading.Event,
        stopped: threading.Event,
        wait_time_override: Callable[[random.Random], float] | None = None,
    ) -> None:
        self.label = label
        self.name = name
        self.rng = random.Random(f"{seed}/{label}")
        self.vocabulary = vocabulary
        self.address = address
        self.timeline = Timeline(0, 0, 0)  # set by the group before `go`
        self.connect_at_ns = 0  # likewise: when this bot connects
        self.go = go  # the start barrier: set once every bot thread of the run is ready
        self.draining = draining  # set: no more tasks, just keep reading
        self.done_sending = threading.Event()  # set by this thread once it will send no more
        self.stopped = stopped  # set: the run is over, stop recording and close
        self.events: list[Event] = []  # appended by this bot's thread only
        self.sent = 0  # messages sent, for the progress line (read racily by the main thread)
        self.received = 0  # lines received, likewise

        self.sock: socket.socket | None = None
        self.buffer = LineBuffer(max_line=None)
        self.conn = -1  # number of the current connection
        self.joined = False
        self.reading = True
        self.online: set[str] = set()
        self.seq = 0  # messages sent so far, for their id tags
        self.planned_ns = 0  # when the task being run was planned; sends record it
        self.bot = bot_class(self)
        self.wait_time = wait_time_override or bot_class.wait_time
        self.task_names = [name for name, _ in bot_class.tasks()]
        self.task_weights = [weight for _, weight in bot_class.tasks()]
        self.thread = threading.Thread(target=self._run, name=f"bot-{label}")

    # -- recording ---------------------------------------------------------------------

    def record(self, kind: str, **fields: object) -> None:
        if self.stopped.is_set():
            return  # after the run: closing noise is not part of the record
        self.events.append(Event(time.monotonic_ns(), self.label, kind, self.conn, self.name, **fields))  # type: ignore[arg-type]

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.go.wait()
            self._wait_until(self.connect_at_ns)
            if not self.stopped.is_set():
                self.connect()
            next_ns = max(self.timeline.steady_start_ns, time.monotonic_ns()) + self._gap_ns()
            while not self.draining.is_set():
                if not self._wait_until(next_ns):
                    break  # drain began while waiting
                self._act(next_ns)
                next_ns += self._gap_ns()
            self.done_sending.set()
            while not self.stopped.is_set() and self.sock is not None:
                self._pump(until_ns=None)
        except Exception as error:  # one bot's failure must not stop the swarm
            self.record(ev.CLOSED, text=f"bot error: {type(error).__name__}: {error}")
        finally:
            self.done_sending.set()
            self._close_quietly()

    def _gap_ns(self) -> int:
        return int(self.wait_time(self.rng) * 1e9)

    def _act(self, planned_ns: int) -> None:
        self.planned_ns = planned_ns
        if self.joined:
            if self.task_names:
                name = self.rng.choices(self.task_names, self.task_weights)[0]
                getattr(self.bot, name)()
        elif self.bot.rejoin and self.sock is None:
            self.connect()

    def _wait_until(self, deadline_ns: int) -> bool:
        """Read incoming lines until ``deadline_ns``; False if the drain or the stop came first."""
        while True:
            if self.draining.is_set() and deadline_ns > self.timeline.steady_end_ns:
                return False
            remaining = (deadline_ns - time.monotonic_ns()) / 1e9
            if remaining <= 0:
                return True
            if self.sock is not None and self.reading:
                self._pump(until_ns=deadline_ns)
            else:
                self.draining.wait(remaining)
                if self.stopped.is_set():
                    return False

    def _pump(self, until_ns: int | None) -> None:
        """Wait for the socket to be readable (until ``until_ns``, or a short step) and read."""
        assert self.sock is not None
        timeout = 0.05 if until_ns is None else max(0.0, min(0.05, (until_ns - time.monotonic_ns()) / 1e9))
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if not readable:
            return
        try:
            data = self.sock.recv(65536)
        except OSError as error:
            self._ended(f"error: {error}")
            return
        if not data:
            self._ended("server closed")
            return
        for frame in self.buffer.feed(data):
            text = frame.text if isinstance(frame, Line) else frame.data.decode("utf-8", "replace")
            self.record(ev.RECV, text=text)
            self.received += 1
            self._track(text)

    def _track(self, text: str) -> None:
        """Keep ``online`` up to date from the lines this bot sees."""
        line = parse_server_line(text)
        if isinstance(line, Notice):
            if line.joined:
                self.online.add(line.joined)
            elif line.left:
                self.online.discard(line.left)

    # -- connecting and leaving --------------------------------------------------------------

    def connect(self) -> bool:
        """Connect and ask for a name; True once accepted."""
        self.conn += 1
        self.name = self.bot.choose_name()
        self.buffer = LineBuffer(max_line=None)
        self.reading = True
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.bot.receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.bot.receive_buffer)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(self.address)
        except OSError as error:
            sock.close()
            self.record(ev.CONNECT_FAILED, text=str(error))
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        local_host, local_port = sock.getsockname()[:2]
        self.record(ev.CONNECT, text=f"{local_host}:{local_port}")  # lets a network simulator's records find this bot
        welcome = self._read_line()
        if welcome is None:
            return False
        if welcome.startswith("! "):  # "! server full"
            self.record(ev.REFUSED, text=welcome)
            self._ended("refused")
            return False
        if not self.bot.sends_name:
            return False  # a silent connection: it just holds its place
        sock.settimeout(None)
        self.record(ev.NAME)
        sock.sendall(protocol.encode_line(self.name))
        sock.settimeout(CONNECT_TIMEOUT)
        answer = self._read_line()
        if self.sock is None or answer is None:
            return False
        sock.settimeout(None)
        if answer.startswith("! "):
            self.record(ev.REFUSED, text=answer)
            self._ended("refused")
            return False
        self.record(ev.JOINED, text=answer)
        self.joined = True
        greeting = answer.partition("Online: ")[2]
        self.online = {self.name, *(name for name in greeting.split(", ") if name)}
        self.planned_ns = time.monotonic_ns()  # what on_join() sends is due now
        self.bot.on_join()
        return True

    def _read_line(self) -> str | None:
        """Read until one line arrives (during the handshake); None if the connection ended."""
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError as error:
                self._ended(f"error: {error}")
                return None
            if not data:
                self._ended("server closed")
                return None
            frames = self.buffer.feed(data)
            if frames:
                first, rest = frames[0], frames[1:]
                text = first.text if isinstance(first, Line) else ""
                self.record(ev.RECV, text=text)
                for frame in rest:  # anything right behind it, kept for later
                    if isinstance(frame, Line):
                        self.record(ev.RECV, text=frame.text)
                        self._track(frame.text)
                return text

    def _ended(self, why: str) -> None:
        """The connection is over: record it, close it, tell the bot."""
        was_joined = self.joined
        self.record(ev.CLOSED, text=why)
        self.joined = False
        self.online = set()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if was_joined:
            self.bot.on_leave()

    def leave(self, how: str) -> None:
        """Leave the chat in one of the ways PROTOCOL.md says must all be announced."""
        sock = self.sock
        if sock is None:
            return
        self.record(ev.LEAVE, text=how)
        try:
            if how == "quit":
                sock.sendall(protocol.encode_line("/quit"))
                self._read_until_closed()
                return
            if how == "half-close":
                sock.shutdown(socket.SHUT_WR)
                self._read_until_closed()
                return
            if how == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif how == "mid-line":
                sock.sendall(b"and then the line just sto")
            elif how != "close":
                raise ValueError(f"unknown way to leave: {how!r}")
        except OSError:
            pass  # the server closed first: the departure happened anyway
        self._ended(f"we left ({how})")

    def _read_until_closed(self) -> None:
        deadline = time.monotonic_ns() + int(QUIT_TIMEOUT * 1e9)
        while self.sock is not None and time.monotonic_ns() < deadline:
            self._pump(until_ns=deadline)
        if self.sock is not None:
            self._ended("we closed (the server did not)")

    def _close_quietly(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- sending ------------------------------------------------------------------------------

    def sentence(self) -> str:
        words = self.rng.choices(self.vocabulary.words, k=self.rng.randint(3, 9))
        return " ".join(words).capitalize() + "."

    def send_message(self, text: str, target: str | None = None, pieces: int = 1) -> None:
        """Send one tagged chat line, in ``pieces`` separate writes (1: all at once)."""
        if self.sock is None:
            return
        msg_id = ev.message_id(self.label, self.seq)
        self.seq += 1
        body = ev.tag_text(text, msg_id)
        line = body if target is None else f"@{target} {body}"
        kind = ev.SEND if target is None else ev.WHISPER
        self.record(kind, peer=target or "", msg_id=msg_id, text=line, planned_ns=self.planned_ns)
        data = protocol.encode_line(line)
        cuts = sorted(self.rng.sample(range(1, len(data)), min(pieces, len(data)) - 1)) if pieces > 1 else []
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            self._send(data[start:end])
        self.sent += 1

    def send_command(self, line: str) -> None:
        if self.sock is None:
            return
        self.record(ev.COMMAND, text=line)
        self._send(protocol.encode_line(line))

    def send_raw(self, data: bytes, what: str) -> None:
        if self.sock is None:
            return
        self.record(ev.RAW, text=what)
        self._send(data)

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except OSError as error:
            self._ended(f"error: {error}")


class StallMonitor:
    """A thread that sleeps in short steps and records how late it wakes.

    If it wakes 30 ms late, every bot thread could have been 30 ms late too: that
    part of the measured latency belongs to the harness, not to the server.
    """

    def __init__(self, stopped: threading.Event) -> None:
        self.stopped = stopped
        self.events: list[Event] = []
        self.thread = threading.Thread(target=self._run, name="stall-monitor")

    def _run(self) -> None:
        planned = time.monotonic_ns()
        step = int(STALL_STEP * 1e9)
        while not self.stopped.is_set():
            planned += step
            self.stopped.wait(max(0.0, (planned - time.monotonic_ns()) / 1e9))
            now = time.monotonic_ns()
            self.events.append(Event(now, "harness", ev.STALL, planned_ns=planned))
            planned = max(planned, now - step)  # do not try to catch up a long stall


# -- the run ----------------------------------------------------------------------------------


@dataclass
class RawRun:
    """What the engine hands to the checker: the merged log and the phase times."""

    events: list[Event]
    timeline: Timeline
    drain_end_ns: int
    bots: int
    connections_asked: int
    labels: dict[str, str] = field(default_factory=dict)  # label -> persona


@dataclass(frozen=True)
class PlannedBot:
    """One bot of the run: its place in the joining order, class, label and name."""

    index: int
    bot_class: type[Bot]
    label: str
    name: str
    network: str = ""  #: the simulated network it connects through ("": straight to the server)


def _joining_order(scenario: Scenario, bots: int | None, seed: int) -> list[type[Bot]]:
    population = scenario.population(bots)
    if not population:
        raise ScenarioError("the scenario has no bots")
    random.Random(seed).shuffle(population)  # personas join in a mixed order
    return population


def plan_networks(scenario: Scenario, bots: int | None, seed: int, network: str = "") -> list[str]:
    """The network of every bot, in joining order ("" for none); cheap, and the same in any process.

    A bot class's own ``network`` comes first. Then each share of
    ``scenario.networks`` (``{"mobile": 0.1}``: a tenth of the bots) goes to bots
    picked with the seed among the rest, and whoever is left gets ``network``
    (``chatlab swarm --network``).
    """
    population = _joining_order(scenario, bots, seed)
    networks = [bot_class.network or "" for bot_class in population]
    shares = scenario.networks
    if any(not 0 <= share <= 1 for share in shares.values()) or sum(shares.values()) > 1:
        raise ScenarioError(f"network shares must each be between 0 and 1 and add up to at most 1, got {shares}")
    free = [index for index, name in enumerate(networks) if not name]
    random.Random(f"{seed}/networks").shuffle(free)
    for name, share in shares.items():
        count = round(share * len(population))
        for index in free[:count]:
            networks[index] = name
        free = free[count:]
    for index in free:
        networks[index] = network
    return networks


def plan_population(scenario: Scenario, bots: int | None, seed: int,
                    network: str = "") -> tuple[list[PlannedBot], Vocabulary]:
    """Every bot of the run, in joining order; the same for the same seed, in any process."""
    population = _joining_order(scenario, bots, seed)
    networks = plan_networks(scenario, bots, seed, network)
    vocabulary = Vocabulary.generate(seed, len(population))
    plan = [
        PlannedBot(i, bot_class, f"b{i:03d}", vocabulary.names[i], networks[i]) for i, bot_class in enumerate(population)
    ]
    return plan, vocabulary


def make_timeline(ramp_up: float, steady: float) -> Timeline:
    start_ns = time.monotonic_ns() + int(0.1e9)  # a moment for the `go` to reach every thread
    ramp_ns = int(ramp_up * 1e9)
    return Timeline(start_ns, start_ns + ramp_ns, start_ns + ramp_ns + int(steady * 1e9))


def _route(planned: PlannedBot, address: tuple[str, int], routes: dict[str, tuple[str, int]] | None) -> tuple[str, int]:
    """Where a bot connects: its network simulator's address, or the server's."""
    if not planned.network:
        return address
    if routes is None or planned.network not in routes:
        raise ScenarioError(f"bot {planned.label} is on network {planned.network!r}, but no simulator runs it")
    return routes[planned.network]


class BotGroup:
    """Bot threads in this process, for part or all of the population."""

    def __init__(self, plan: list[PlannedBot], total: int, vocabulary: Vocabulary, address: tuple[str, int],
                 seed: int, rate: float | None, routes: dict[str, tuple[str, int]] | None = None) -> None:
        self.total = total
        self.go, self.draining, self.stopped = threading.Event(), threading.Event(), threading.Event()
        wait_override = poisson(rate) if rate else None
        threading.stack_size(THREAD_STACK_SIZE)
        self.runners = [
            BotRunner(planned.bot_class, planned.label, planned.name, seed, vocabulary,
                      _route(planned, address, routes),
                      self.go, self.draining, self.stopped, wait_override)
            for planned in plan
        ]
        self.indexes = [planned.index for planned in plan]
        self.monitor = StallMonitor(self.stopped)
        for runner in self.runners:
            runner.thread.start()  # each waits at the start barrier (`go`)

    def launch(self, timeline: Timeline) -> None:
        """Give every bot the timeline and its connection time, then open the barrier."""
        ramp_ns = timeline.steady_start_ns - timeline.start_ns
        for runner, index in zip(self.runners, self.indexes, strict=True):
            runner.timeline = timeline
            runner.connect_at_ns = timeline.start_ns + (ramp_ns * index // self.total if self.total > 1 else 0)
        self.monitor.thread.start()
        self.go.set()

    def begin_drain(self) -> None:
        """Stop every bot's tasks, and wait (bounded) until a task in progress has finished.

        After this no bot sends anything, so a snapshot of the log holds every send.
        """
        self.draining.set()
        deadline = time.monotonic() + CONNECT_TIMEOUT + QUIT_TIMEOUT
        for runner in self.runners:
            runner.done_sending.wait(max(0.0, deadline - time.monotonic()))

    def counts(self) -> tuple[int, int]:
        """(sent, received) so far, for the progress line."""
        return sum(r.sent for r in self.runners), sum(r.received for r in self.runners)

    def events(self) -> list[Event]:
        """All events so far (a copy: the bots may still be appending)."""
        merged = [event for runner in self.runners for event in list(runner.events)]
        return merged + list(self.monitor.events)

    def stop(self) -> None:
        """End the run: no more recording; every thread closes its socket and is joined."""
        self.go.set()  # in case the run ends before it began
        self.draining.set()
        self.stopped.set()
        for runner in self.runners:
            runner.thread.join(CONNECT_TIMEOUT + QUIT_TIMEOUT)
        if self.monitor.thread.is_alive():
            self.monitor.thread.join(1.0)

    def connections_asked(self) -> int:
        return sum(runner.conn + 1 for runner in self.runners)

    def labels(self) -> dict[str, str]:
        return {runner.label: runner.bot.persona for runner in self.runners}


def run_bots(
    scenario: Scenario,
    address: tuple[str, int],
    *,
    bots: int | None = None,
    duration: float | None = None,
    ramp_up: float | None = None,
    seed: int = 0,
    rate: float | None = None,
    drain_done: Callable[[list[Event]], bool] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    network: str = "",
    routes: dict[str, tuple[str, int]] | None = None,
) -> RawRun:
    """Run the scenario's bots in this process against ``address``; return the merged log.

    A bot on a simulated network (see :func:`plan_networks`; ``network`` is the
    default) connects to ``routes[its network]`` instead: a simulator in front of
    ``address``.

    ``drain_done(events)`` is asked during the drain whether every expected delivery
    has arrived; the drain ends when it says so or after ``scenario.drain`` seconds.
    ``progress(phase, sent, received)`` is called about twice a second.
    """
    plan, vocabulary = plan_population(scenario, bots, seed, network)
    group = BotGroup(plan, len(plan), vocabulary, address, seed, rate, routes)
    timeline = make_timeline(scenario.ramp_up if ramp_up is None else ramp_up,
                             scenario.duration if duration is None else duration)
    group.launch(timeline)
    try:
        _steady(timeline, group.counts, progress)
        group.begin_drain()
        drain_end_ns = _drain(scenario.drain, group.counts, progress,
                              None if drain_done is None else lambda: drain_done(_in_order(group.events())))
    finally:
        group.stop()
    if progress is not None:
        progress("done", *group.counts())
    return RawRun(_in_order(group.events()), timeline, drain_end_ns, len(plan), group.connections_asked(), group.labels())


def _steady(timeline: Timeline, counts: Callable[[], tuple[int, int]],
            progress: Callable[[str, int, int], None] | None) -> None:
    """Wait through the ramp-up and the steady phase, reporting progress."""
    while (now := time.monotonic_ns()) < timeline.steady_end_ns:
        if progress is not None:
            progress("ramp-up" if now < timeline.steady_start_ns else "steady", *counts())
        time.sleep(min(0.5, (timeline.steady_end_ns - now) / 1e9))  # pacing a progress line, not synchronizing


def _drain(limit: float, counts: Callable[[], tuple[int, int]], progress: Callable[[str, int, int], None] | None,
           done: Callable[[], bool] | None) -> int:
    """Wait until ``done()`` says every expected delivery arrived, at most ``limit`` seconds.

    Without ``done`` (nobody to judge what is due), the drain ends once nothing more
    has been received for a second.
    """
    deadline = time.monotonic_ns() + int(limit * 1e9)
    pause, quiet_since, last_received = 0.25, time.monotonic(), -1
    while time.monotonic_ns() < deadline:
        sent, received = counts()
        if progress is not None:
            progress("drain", sent, received)
        if done is not None:
            asked = time.monotonic()
            if done():
                break
            pause = max(0.25, 2 * (time.monotonic() - asked))  # a big log takes a while to check
        else:
            if received != last_received:
                quiet_since, last_received = time.monotonic(), received
            elif time.monotonic() - quiet_since >= 1.0:
                break
        time.sleep(pause)  # pacing the checks, not synchronizing
    return time.monotonic_ns()


def _in_order(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda event: event.t_ns)


# -- bots in worker processes -----------------------------------------------------------------
#
# One Python process runs one thread at a time (the GIL). A thousand bots that each
# read hundreds of lines a second are more than one process can keep up with, and
# the harness would then measure itself. ``run_bots_in_workers`` splits the bots
# over several processes, each running a BotGroup. time.monotonic_ns() is the same
# clock in every process of a machine, so their events merge into one timeline.


def _worker_main(scenario_path: str, address: tuple[str, int], bots: int | None, seed: int, rate: float | None,
                 worker: int, workers: int, pipe, counters, network: str = "",
                 routes: dict[str, tuple[str, int]] | None = None) -> None:  # type: ignore[no-untyped-def]
    """The body of one worker process: its share of the bots, driven by the coordinator."""
    scenario = load_scenario(scenario_path)
    plan, vocabulary = plan_population(scenario, bots, seed, network)
    share = [planned for planned in plan if planned.index % workers == worker]
    group = BotGroup(share, len(plan), vocabulary, address, seed, rate, routes)
    try:
        pipe.send("ready")
        group.launch(pipe.recv())
        while True:
            counters[0], counters[1] = group.counts()
            if pipe.poll(0.25):
                command = pipe.recv()
                if command == "drain":
                    group.begin_drain()
                elif command == "snapshot":
                    pipe.send(group.events())
                elif command == "stop":
                    break
    finally:
        group.stop()
    pipe.send((group.events(), group.connections_asked(), group.labels()))


def run_bots_in_workers(
    scenario_path: str | Path,
    address: tuple[str, int],
    *,
    workers: int,
    bots: int | None = None,
    duration: float | None = None,
    ramp_up: float | None = None,
    seed: int = 0,
    rate: float | None = None,
    drain_done: Callable[[list[Event]], bool] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    network: str = "",
    routes: dict[str, tuple[str, int]] | None = None,
) -> RawRun:
    """Like :func:`run_bots`, with the bots spread over ``workers`` processes.

    During the drain, ``drain_done`` is asked about a snapshot of every worker's log.
    """
    import multiprocessing

    scenario = load_scenario(scenario_path)
    total = len(scenario.population(bots))
    context = multiprocessing.get_context("spawn")  # never fork a process full of threads
    pipes, processes, counters = [], [], []
    for worker in range(workers):
        ours, theirs = context.Pipe()
        shared = context.Array("q", 2, lock=False)
        process = context.Process(
            target=_worker_main, name=f"swarm-worker-{worker}",
            args=(str(scenario_path), address, bots, seed, rate, worker, workers, theirs, shared, network, routes),
        )
        process.start()
        pipes.append(ours)
        processes.append(process)
        counters.append(shared)

    def counts() -> tuple[int, int]:
        return sum(c[0] for c in counters), sum(c[1] for c in counters)

    try:
        for pipe in pipes:
            if not pipe.poll(60) or pipe.recv() != "ready":
                raise ScenarioError("a worker process did not start")
        timeline = make_timeline(scenario.ramp_up if ramp_up is None else ramp_up,
                                 scenario.duration if duration is None else duration)
        for pipe in pipes:
            pipe.send(timeline)
        _steady(timeline, counts, progress)
        for pipe in pipes:
            pipe.send("drain")

        def snapshot() -> list[Event]:
            for pipe in pipes:
                pipe.send("snapshot")
            events: list[Event] = []
            for pipe in pipes:
                if not pipe.poll(30):
                    raise ScenarioError("a worker process stopped answering")
                events += pipe.recv()
            return _in_order(events)

        drain_end_ns = _drain(scenario.drain, counts, progress,
                              None if drain_done is None else lambda: drain_done(snapshot()))
        for pipe in pipes:
            pipe.send("stop")
        events: list[Event] = []
        asked, labels = 0, {}
        for pipe in pipes:
            if not pipe.poll(CONNECT_TIMEOUT + QUIT_TIMEOUT + 30):
                raise ScenarioError("a worker process did not report its events")
            worker_events, worker_asked, worker_labels = pipe.recv()
            events += worker_events
            asked += worker_asked
            labels.update(worker_labels)
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join(5)
    if progress is not None:
        progress("done", *counts())
    return RawRun(_in_order(events), timeline, drain_end_ns, total, asked, labels)


def progress_printer(stream=sys.stderr) -> Callable[[str, int, int], None]:  # type: ignore[no-untyped-def]
    """A progress line for terminals: phase, and live send and receive rates.

    Redrawn in place on a terminal; elsewhere (a log, CI) only the phase changes are printed.
    """
    last = {"t": time.monotonic(), "sent": 0, "received": 0, "phase": ""}
    interactive = stream.isatty()

    def show(phase: str, sent: int, received: int) -> None:
        if not interactive:
            if phase != last["phase"]:
                print(f"{phase}: {sent:,} sent, {received:,} received", file=stream, flush=True)
                last["phase"] = phase
            return
        now = time.monotonic()
        elapsed = max(1e-9, now - last["t"])
        send_rate = (sent - last["sent"]) / elapsed
        receive_rate = (received - last["received"]) / elapsed
        last.update(t=now, sent=sent, received=received)
        end = "\n" if phase == "done" else ""
        print(f"\r{phase:<8} sent {sent:>8,}  received {received:>10,}  "
              f"({send_rate:>7,.0f} sent/s, {receive_rate:>9,.0f} received/s)   ", end=end, file=stream, flush=True)

    return show
