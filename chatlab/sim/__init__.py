"""The network simulator: a TCP proxy that makes a real network's behaviour visible on one laptop.

Three layers, each usable alone:

* :mod:`chatlab.sim.network`: what to do, as data (:class:`Impairment`,
  :class:`Network`, the named :data:`PROFILES`);
* :mod:`chatlab.sim.shaper`: when each byte arrives, as pure logic (:class:`Shaper`);
* :mod:`chatlab.sim.proxy`: the sockets and threads (:class:`NetworkSimulator`).

The whole kit in one example::

    from chatlab.server import ChatServer
    from chatlab.sim import simulate

    with ChatServer(port=0) as server, simulate(server.address, "fragmenting", seed=1) as network:
        host, port = network.address   # a client connected here meets a fragmenting network
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from chatlab.sim.network import PROFILES, Impairment, Network, NetworkError, describe_profiles, get_profile
from chatlab.sim.proxy import NetworkSimulator, SimEvent
from chatlab.sim.shaper import Piece, Shaper, Window

__all__ = [
    "PROFILES",
    "Impairment",
    "Network",
    "NetworkError",
    "NetworkSimulator",
    "Piece",
    "Shaper",
    "SimEvent",
    "Window",
    "describe_profiles",
    "get_profile",
    "simulate",
]


@contextlib.contextmanager
def simulate(upstream: tuple[str, int], network: Network | str = "lan", **options: object) -> Iterator[NetworkSimulator]:
    """Start a :class:`NetworkSimulator` in front of ``upstream``; stop it (threads joined) on exit.

    ``options`` are :class:`NetworkSimulator`'s keyword arguments (``seed``, ``clock``, ...).
    """
    simulator = NetworkSimulator(upstream, network, **options)  # type: ignore[arg-type]
    with simulator:
        yield simulator
