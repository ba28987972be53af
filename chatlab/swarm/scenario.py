"""The scenario API: bots are plain classes with weighted tasks and a think time.

A scenario file in ``bots/`` reads like this::

    from chatlab.swarm import Bot, Scenario, between, task

    class Chatty(Bot):
        wait_time = between(0.5, 2.0)    # seconds between two tasks

        @task(3)                         # three times as likely as whisper()
        def chat(self):
            self.say()

        @task(1)
        def whisper(self):
            self.whisper_someone()

    scenario = Scenario(mix={Chatty: 1}, duration=10)

Nothing else to learn: no metaclasses, no registration. The engine
(``chatlab/swarm/engine.py``) gives each bot its own thread, connects it, calls
``on_join()``, and then, at every moment the bot's schedule says, picks one task at
random by weight and calls it. What the bot does and sees is recorded as events.

Think time and the open loop
============================

``wait_time`` returns the gap to the *next planned* task, and the plan does not
move when the server is slow. If a send is late because the server stalled, the
next one is still due at its planned time, and latency is measured from the planned
time. A closed loop (wait for the answer, then think, then send) would send less
whenever the server is slow, and so measure less of the slowness: that blind spot is
called *coordinated omission*. The open loop keeps the harness honest.

The distributions:

* ``constant(s)``: exactly ``s`` seconds, a metronome;
* ``between(a, b)``: uniform between ``a`` and ``b``;
* ``poisson(rate)``: exponential gaps with mean ``1/rate``, so tasks form a Poisson
  process of ``rate`` per second, the way independent people type.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatlab.swarm.engine import BotRunner

WaitTime = Callable[[random.Random], float]


def constant(seconds: float) -> WaitTime:
    """Always the same think time."""
    return lambda rng: seconds


def between(low: float, high: float) -> WaitTime:
    """A think time drawn uniformly between ``low`` and ``high`` seconds."""
    return lambda rng: rng.uniform(low, high)


def poisson(rate: float) -> WaitTime:
    """Exponential think times: on average ``rate`` tasks per second, at random moments."""
    return lambda rng: rng.expovariate(rate)


def task(weight: int = 1) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a method as a task; a task with weight 3 is picked three times as often as weight 1."""

    def mark(method: Callable[..., None]) -> Callable[..., None]:
        method.task_weight = weight  # type: ignore[attr-defined]
        return method

    return mark


class Bot:
    """One scripted chat user. Subclass it, add ``@task`` methods, set ``wait_time``.

    Inside a task, use the actions below; they record what they send. The bot's own
    random generator is ``self.rng`` (seeded from the run's seed and the bot's label),
    so a run is reproducible: use it, never the ``random`` module's global functions.

    Class attributes a persona may set:

    * ``wait_time``: the think-time distribution (default: Poisson, one task every 2 s);
    * ``rejoin``: after leaving, connect again at the next planned task (churners);
    * ``receive_buffer``: a small SO_RCVBUF in bytes, for bots that stop reading;
    * ``sends_name``: False for a connection that never sends its name;
    * ``persona``: a word for reports ("chatty", "lurker"...);
    * ``network``: a simulated network profile this persona always connects
      through (``"mobile"``; see :mod:`chatlab.sim`), or None.
    """

    wait_time: WaitTime = poisson(0.5)
    rejoin: bool = False
    receive_buffer: int | None = None
    sends_name: bool = True
    persona: str = "bot"
    network: str | None = None

    def __init__(self, runner: BotRunner) -> None:
        self._runner = runner
        self.label: str = runner.label  #: unique in the run, e.g. "b007"
        self.rng: random.Random = runner.rng
        self.name: str = runner.name  #: the chat name this bot asks for

    # -- hooks -----------------------------------------------------------------

    def on_join(self) -> None:
        """Called once the server accepted the name."""

    def on_leave(self) -> None:
        """Called when the connection has ended (the bot left or was cut off)."""

    def choose_name(self) -> str:
        """The name to ask for at each connection; by default the bot's generated name."""
        return self.name

    # -- what a task can do --------------------------------------------------------

    def say(self, text: str | None = None, pieces: int = 1) -> None:
        """Broadcast a line (a generated sentence unless ``text`` is given).

        ``pieces`` above 1 cuts the line's bytes at random places and writes each piece
        separately, possibly inside a UTF-8 character: a server must put it together.
        """
        self._runner.send_message(text or self.sentence(), pieces=pieces)

    def whisper(self, target: str, text: str | None = None) -> None:
        """Send a private line to ``target``."""
        self._runner.send_message(text or self.sentence(), target=target)

    def whisper_someone(self) -> None:
        """Whisper to someone this bot knows to be online (or say something if alone)."""
        others = sorted(self.online - {self.name})
        if others:
            self.whisper(self.rng.choice(others))
        else:
            self.say()

    def command(self, line: str) -> None:
        """Send a command such as ``/users``."""
        self._runner.send_command(line)

    def send_raw(self, data: bytes, what: str) -> None:
        """Send bytes exactly as given (bad input on purpose); ``what`` describes them."""
        self._runner.send_raw(data, what)

    def leave(self, how: str = "quit") -> None:
        """Leave: ``quit``, ``close``, ``reset`` (SO_LINGER 0), ``half-close`` or ``mid-line``."""
        self._runner.leave(how)

    def stop_reading(self) -> None:
        """Stop reading from the socket, as a frozen client would."""
        self._runner.reading = False

    def sentence(self) -> str:
        """A short generated sentence, drawn with this bot's random generator."""
        return self._runner.sentence()

    @property
    def online(self) -> set[str]:
        """The names this bot believes are online, from its greeting and the notices."""
        return set(self._runner.online)

    @property
    def connected(self) -> bool:
        """True while this bot's connection is open and its name accepted."""
        return self._runner.joined

    # -- for the engine ----------------------------------------------------------------

    @classmethod
    def tasks(cls) -> list[tuple[str, int]]:
        """(method name, weight) of every task, in a stable order."""
        found = []
        for name in sorted(dir(cls)):
            weight = getattr(getattr(cls, name), "task_weight", None)
            if weight:
                found.append((name, weight))
        return found


@dataclass
class Scenario:
    """What runs: which bots, how many, and for how long.

    ``mix`` maps bot classes to weights: ``--bots 50`` with ``{Chatty: 3, Lurker: 1}``
    gives about 38 chatty bots and 12 lurkers. ``fixed`` maps bot classes to exact
    counts that do not scale (one slow reader, one flooder). The phases: bots connect
    spread over ``ramp_up`` seconds, run their tasks for ``duration`` seconds, then
    the drain waits at most ``drain`` seconds for every expected delivery.

    ``networks`` puts shares of the bots on simulated networks (:mod:`chatlab.sim`):
    ``networks={"mobile": 0.1}`` sends a tenth of them, picked with the run's seed,
    through the ``mobile`` profile. Bots whose class names a ``network`` keep theirs;
    the others connect straight to the server, or through ``chatlab swarm --network``.
    """

    mix: dict[type[Bot], int]
    fixed: dict[type[Bot], int] = field(default_factory=dict)
    bots: int = 20  #: default size of the mix part (the ``--bots`` option overrides it)
    duration: float = 5.0  #: seconds of steady phase (``--duration`` overrides it)
    ramp_up: float = 1.0
    drain: float = 5.0
    description: str = ""
    #: options for a server the swarm starts in-process (ChatServer keyword arguments,
    #: e.g. a small ``outbox_limit``); ignored against an outside ``--target``
    server_options: dict[str, object] = field(default_factory=dict)
    networks: dict[str, float] = field(default_factory=dict)  #: network profile -> share of the bots on it

    def population(self, bots: int | None = None) -> list[type[Bot]]:
        """The class of every bot, in a stable order: the mix scaled to ``bots``, then the fixed ones."""
        total = self.bots if bots is None else bots
        weight_sum = sum(self.mix.values())
        classes: list[type[Bot]] = []
        if weight_sum:
            remainders = []
            for bot_class, weight in self.mix.items():
                exact = total * weight / weight_sum
                classes += [bot_class] * int(exact)
                remainders.append((exact - int(exact), bot_class))
            for _, bot_class in sorted(remainders, key=lambda item: -item[0])[: total - len(classes)]:
                classes.append(bot_class)
        for bot_class, count in self.fixed.items():
            classes += [bot_class] * count
        return classes
