"""The bot swarm: scripted bot threads, a delivery checker, latency and fairness metrics, reports.

Scenario files import what they need from here::

    from chatlab.swarm import Bot, Scenario, between, constant, poisson, task
"""

from chatlab.swarm.scenario import Bot, Scenario, between, constant, poisson, task

__all__ = ["Bot", "Scenario", "between", "constant", "poisson", "task"]
