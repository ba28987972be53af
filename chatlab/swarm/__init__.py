"""The bot swarm: scripted bot threads, a delivery checker, latency and fairness metrics, reports.

Scenario files import what they need from here::

    from chatlab.swarm import Bot, Scenario, between, constant, poisson, task

and notebooks run a whole scenario with one call::

    import chatlab.swarm
    result = chatlab.swarm.run("bots/broadcast.py", bots=50, server="reference")
"""

from chatlab.swarm.scenario import Bot, Scenario, between, constant, poisson, task

__all__ = ["Bot", "Scenario", "between", "constant", "poisson", "task", "run"]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    # run() pulls in numpy and matplotlib; scenario files that only need Bot do not pay for them.
    if name == "run":
        from chatlab.swarm.runner import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
