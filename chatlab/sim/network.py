"""What a simulated network does to a connection: impairments, networks and named profiles.

This module is plain data: it says *what* to do to the bytes, and
:mod:`chatlab.sim.shaper` works out *when* each byte arrives. Nothing here touches a
socket or a clock.

One connection has two directions, and each is impaired on its own:

* **up**: from the client to the server (what a user types);
* **down**: from the server to the client (what a user reads).

An :class:`Impairment` describes one direction; a :class:`Network` pairs two of them
under a name. :data:`PROFILES` holds the named networks (``lan``, ``wifi``,
``mobile``, ``satellite``, ``flaky``, ``fragmenting``), and ``chatlab sim --list``
prints them with every parameter.

The distributions, once and for all
===================================

Every random draw comes from a ``random.Random`` seeded for that connection and that
direction, so the same seed gives the same network (see :class:`chatlab.sim.shaper.Shaper`).

* **latency** is the least delay any byte sees; it is never undercut.
* **jitter** is an extra delay on top, drawn once per write that arrives:

  - ``uniform``: uniform between 0 and ``jitter`` (mean ``jitter / 2``);
  - ``normal``: the absolute value of a normal draw with standard deviation
    ``jitter`` (a *half-normal*: mean about ``0.8 * jitter``, and now and then a
    delay two or three times ``jitter``, which is what real queues do).

  Jitter never reorders bytes: a write that drew a short delay waits behind an
  earlier one that drew a long delay, exactly as TCP's in-order delivery makes it
  wait (head-of-line blocking).
* **fragment** sizes are uniform integers between the two bounds, and the gaps
  between two fragments uniform between the two ``fragment_gap`` bounds.
* **stalls** and **slow-consumer** pauses start at random moments, with
  exponentially distributed quiet times of mean ``stall_every`` (``slow_every``)
  seconds between them (a Poisson process), and last a uniform time between the
  two ``stall_for`` (``slow_for``) bounds.
* a **fault** happens on a connection with probability ``fault_probability``, after
  a number of bytes in that direction drawn uniformly between the two
  ``fault_after`` bounds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

JITTER_DISTRIBUTIONS = ("uniform", "normal")
FAULTS = ("reset", "half-close", "mid-line")
DIRECTIONS = ("up", "down")


class NetworkError(ValueError):
    """A network, profile or setting that makes no sense (a user's mistake, told plainly)."""


@dataclass(frozen=True)
class Impairment:
    """Everything the simulator can do to one direction of one connection.

    Times are in seconds, sizes in bytes, rates in bytes per second. The defaults
    do nothing: ``Impairment()`` is a perfect wire.
    """

    latency: float = 0.0  #: seconds every byte is delayed at least
    jitter: float = 0.0  #: seconds: the scale of the extra random delay (see the module docstring)
    jitter_distribution: str = "uniform"  #: "uniform" or "normal" (half-normal)
    bandwidth: float = 0.0  #: bytes per second the link carries; 0: no limit
    fragment: tuple[int, int] = (0, 0)  #: each write is cut into pieces of this many bytes (min, max); (0, 0): not cut
    fragment_gap: tuple[float, float] = (0.0, 0.0)  #: seconds between two pieces of one write (min, max)
    cut_before_lf: float = 0.0  #: probability of a cut right before each LF (a line arrives without its end)
    cut_in_char: float = 0.0  #: probability of a cut inside each multi-byte UTF-8 character
    coalesce: float = 0.0  #: seconds writes are held so that several arrive in one piece; 0: not held
    stall_every: float = 0.0  #: mean seconds between two stalls (nothing is delivered during one); 0: never
    stall_for: tuple[float, float] = (0.0, 0.0)  #: how long a stall lasts, seconds (min, max)
    slow_every: float = 0.0  #: mean seconds between two pauses in reading from the sender (slow consumer); 0: never
    slow_for: tuple[float, float] = (0.0, 0.0)  #: how long a pause lasts, seconds (min, max)
    fault: str = ""  #: "reset", "half-close", "mid-line", or "" for none
    fault_probability: float = 1.0  #: chance that a connection gets the fault at all
    fault_after: tuple[int, int] = (0, 0)  #: bytes in this direction before the fault (min, max)

    def __post_init__(self) -> None:
        for name in ("latency", "jitter", "bandwidth", "coalesce", "stall_every", "slow_every"):
            _check(name, getattr(self, name) >= 0, "0 or more")
        for name in ("cut_before_lf", "cut_in_char", "fault_probability"):
            _check(name, 0 <= getattr(self, name) <= 1, "a probability between 0 and 1")
        for name in ("fragment", "fragment_gap", "stall_for", "slow_for", "fault_after"):
            low, high = getattr(self, name)
            _check(name, 0 <= low <= high, "a range LOW,HIGH with 0 <= LOW <= HIGH")
        _check("fragment", self.fragment == (0, 0) or self.fragment[0] >= 1, "at least 1 byte per piece, or 0,0 for no cutting")
        _check("jitter_distribution", self.jitter_distribution in JITTER_DISTRIBUTIONS, f"one of {', '.join(JITTER_DISTRIBUTIONS)}")
        _check("fault", self.fault in ("", *FAULTS), f"one of {', '.join(FAULTS)}, or empty for none")
        _check("stall_for", not self.stall_every or self.stall_for[1] > 0, "longer than 0 when stall_every is set")
        _check("slow_for", not self.slow_every or self.slow_for[1] > 0, "longer than 0 when slow_every is set")

    def settings(self) -> dict[str, object]:
        """The parameters that differ from a perfect wire, in declaration order."""
        perfect = Impairment()
        return {
            item.name: getattr(self, item.name)
            for item in dataclasses.fields(self)
            if getattr(self, item.name) != getattr(perfect, item.name)
        }

    def describe(self) -> str:
        """One line, ``latency=0.04 jitter=0.03 ...``, or ``perfect`` when nothing is set."""
        return " ".join(f"{name}={_format(value)}" for name, value in self.settings().items()) or "perfect"


def _check(name: str, condition: bool, rule: str) -> None:
    if not condition:
        raise NetworkError(f"{name} must be {rule}")


def _format(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(_format(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Network:
    """A named pair of impairments: ``up`` (client to server) and ``down`` (server to client)."""

    name: str
    up: Impairment = field(default_factory=Impairment)
    down: Impairment = field(default_factory=Impairment)
    description: str = ""

    @classmethod
    def symmetric(cls, name: str, impairment: Impairment, description: str = "") -> Network:
        """The same impairment both ways."""
        return cls(name, impairment, impairment, description)

    def direction(self, direction: str) -> Impairment:
        """The impairment of ``"up"`` or ``"down"``."""
        return self.up if direction == "up" else self.down

    def with_settings(self, settings: list[str] | tuple[str, ...]) -> Network:
        """A copy with ``KEY=VALUE`` settings applied, as ``chatlab sim --set`` takes them.

        ``latency=0.1`` sets both directions, ``down.bandwidth=20000`` one of them.
        Ranges are written ``LOW,HIGH`` (``fragment=1,8``); ``fault=`` clears a fault::

            >>> PROFILES["lan"].with_settings(["down.latency=0.25"]).down.latency
            0.25
        """
        up, down = self.up, self.down
        for setting in settings:
            key, equals, text = setting.partition("=")
            if not equals:
                raise NetworkError(f"expected KEY=VALUE, got {setting!r}")
            where, dot, name = key.strip().rpartition(".")
            if dot and where not in DIRECTIONS:
                raise NetworkError(f"{key!r}: a direction is 'up' or 'down'")
            value = parse_value(name, text.strip())
            if where in ("", "up"):
                up = dataclasses.replace(up, **{name: value})
            if where in ("", "down"):
                down = dataclasses.replace(down, **{name: value})
        return Network(self.name if not settings else f"{self.name}+", up, down, self.description)

    def describe(self) -> str:
        """Several lines: the name, what it stands for, and each direction's exact parameters."""
        lines = [f"{self.name}: {self.description}" if self.description else self.name]
        lines.append(f"    up   {self.up.describe()}")
        lines.append(f"    down {self.down.describe()}")
        return "\n".join(lines)


_KINDS = {item.name: type(getattr(Impairment(), item.name)) for item in dataclasses.fields(Impairment)}
_INTEGER_RANGES = ("fragment", "fault_after")


def parse_value(name: str, text: str) -> object:
    """The value of setting ``name`` read from ``text``; NetworkError names what was wrong."""
    kind = _KINDS.get(name)
    if kind is None:
        raise NetworkError(f"unknown setting {name!r}: known ones are {', '.join(_KINDS)}")
    try:
        if kind is str:
            return text
        if kind is tuple:
            parts = text.split(",")
            if len(parts) == 1:
                parts = parts * 2  # one number: an exact value
            if len(parts) != 2:
                raise ValueError
            number = int if name in _INTEGER_RANGES else float
            low, high = (number(part) for part in parts)
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError
            return (low, high)
        value = float(text)
        if not math.isfinite(value):
            raise ValueError
        return value
    except ValueError:
        expected = "LOW,HIGH" if kind is tuple else "a number"
        raise NetworkError(f"{name}: expected {expected}, got {text!r}") from None


# -- the named profiles ------------------------------------------------------------------
#
# Each stands for a kind of network a chat really meets. The numbers are round on
# purpose: they are meant to be felt and read, not to model a particular operator.

PROFILES: dict[str, Network] = {
    network.name: network
    for network in (
        Network.symmetric(
            "lan",
            Impairment(latency=0.0005, jitter=0.0002),
            "a wired office network: half a millisecond, nothing else",
        ),
        Network.symmetric(
            "wifi",
            Impairment(
                latency=0.003, jitter=0.004, jitter_distribution="normal", bandwidth=2_500_000,
                coalesce=0.002, stall_every=20.0, stall_for=(0.05, 0.2),
            ),
            "home wi-fi: a few ms with a long tail, radio batching, a short hiccup now and then",
        ),
        Network(
            "mobile",
            up=Impairment(
                latency=0.035, jitter=0.02, jitter_distribution="normal", bandwidth=125_000,
                fragment=(536, 1400), coalesce=0.01, stall_every=8.0, stall_for=(0.2, 0.8),
            ),
            down=Impairment(
                latency=0.035, jitter=0.02, jitter_distribution="normal", bandwidth=500_000,
                fragment=(536, 1400), coalesce=0.01, stall_every=8.0, stall_for=(0.2, 0.8),
            ),
            description="4G on the move: tens of ms, a slow uplink, radio batching, handover stalls",
        ),
        Network(
            "satellite",
            up=Impairment(latency=0.3, jitter=0.02, bandwidth=60_000),
            down=Impairment(latency=0.3, jitter=0.02, bandwidth=1_000_000),
            description="a geostationary link: 300 ms each way (600 ms round trip), a thin uplink",
        ),
        Network(
            "flaky",
            up=Impairment(latency=0.02, jitter=0.02, stall_every=3.0, stall_for=(0.1, 0.5)),
            down=Impairment(
                latency=0.02, jitter=0.02, stall_every=3.0, stall_for=(0.1, 0.5),
                slow_every=4.0, slow_for=(0.1, 0.4),
                fault="reset", fault_probability=0.3, fault_after=(2048, 32768),
            ),
            description="a bad connection: stalls both ways, the reader falls behind, and some connections are reset",
        ),
        Network.symmetric(
            "fragmenting",
            Impairment(
                latency=0.001, fragment=(1, 16), fragment_gap=(0.0005, 0.002),
                cut_before_lf=0.5, cut_in_char=0.5,
            ),
            "every write arrives in small pieces, often cut just before the LF or inside a character",
        ),
    )
}


def get_profile(name: str) -> Network:
    """The named profile, or a NetworkError that lists the names there are."""
    try:
        return PROFILES[name]
    except KeyError:
        raise NetworkError(f"no network profile {name!r}: choose one of {', '.join(PROFILES)}") from None


LEGEND = """\
Units: seconds, bytes, bytes per second. Ranges are MIN,MAX. Each direction of each connection draws
from its own generators, seeded from --seed, the connection's number and the direction.
  latency       the least delay of every byte, never undercut; bytes are never reordered
  jitter        extra delay per write: uniform -> uniform(0, jitter); normal -> |normal(0, jitter)| (half-normal)
  bandwidth     each piece holds the link for len/bandwidth seconds
  fragment      piece sizes uniform in MIN..MAX, fragment_gap uniform between pieces;
                cut_before_lf, cut_in_char: chance of a cut before each LF, inside each multi-byte character
  coalesce      writes are held this long after the first, then go on as one piece
  stall_*       stalls start after exponential quiet times of mean stall_every, last uniform stall_for
  slow_*        likewise: pauses in reading from the sender (a slow consumer)
  fault         reset, half-close or mid-line, on a connection with chance fault_probability,
                after a number of bytes uniform in fault_after"""


def describe_profiles() -> str:
    """Every profile with its exact parameters, then what they mean, for ``chatlab sim --list``."""
    return "\n".join(network.describe() for network in PROFILES.values()) + "\n\n" + LEGEND
