"""The autograder, ``chatlab grade``: conformance checks for any server that keeps PROTOCOL.md.

* :mod:`chatlab.grade.checks`: the checks, by category, each a promise of PROTOCOL.md;
* :mod:`chatlab.grade.probe`: the scripted raw clients the direct checks use;
* :mod:`chatlab.grade.grader`: running the checks with timeouts, scoring them with a
  rubric (``rubric.toml``), fresh servers per category, the scorecard, Gradescope's
  ``results.json``, ``report.html`` and the batch CSV.
"""
