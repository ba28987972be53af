"""Benchmarks: the reference server, its asyncio twin and the naive server, measured side by side.

``chatlab bench`` runs each server in its own process, drives it from load-generating
processes (:mod:`chatlab.bench.loadgen`), repeats every cell (:mod:`chatlab.bench.runner`)
over a matrix of workloads (:mod:`chatlab.bench.suite`), and writes a report
(:mod:`chatlab.bench.report`). This module stays light: a load process imports it.
"""

SERVERS = ("reference", "asyncio", "naive")
WORKLOADS = ("classroom", "busy", "fixed", "saturate", "connections", "sweep")
